"""Supervised services and the backends that control them (process, systemd)."""
