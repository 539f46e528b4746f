"""Playbooks: the YAML recovery procedures, their model, loader and validation."""
