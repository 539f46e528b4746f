"""Where the files shipped with the package live.

A wheel carries ``config/`` and ``playbooks/`` inside the package as
``_bundled/``; a source checkout (editable install) has them at the top level.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_path(relative: str) -> Path:
    inside = _PACKAGE_DIR / "_bundled" / relative
    if inside.exists():
        return inside
    return _PACKAGE_DIR.parent / relative
