"""Identifiers for records: readable, sortable by time, and unique."""

from __future__ import annotations

import secrets
from datetime import datetime


def new_id(prefix: str, moment: datetime) -> str:
    """E.g. ``exec-20260119-142500-3f9a1c``: the UTC time it began, then randomness."""
    return f"{prefix}-{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
