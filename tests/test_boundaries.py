"""DESIGN.md contract 9, the part import contracts cannot see: only store/ holds SQL.

(Which package imports what is checked by lint-imports, pyproject's [tool.importlinter].)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "graylogic_supervisor"
# The project writes SQL keywords in capitals; prose that starts with "Update" is not SQL.
# A keyword alone is no statement (iptables' "DROP" target, say).
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|BEGIN)\s+\S")


def sql_outside_the_store() -> list[str]:
    found = []
    for module in sorted(PACKAGE.rglob("*.py")):
        if module.relative_to(PACKAGE).parts[0] == "store":
            continue
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and SQL.match(text):
                found.append(f"{module.relative_to(PACKAGE)}:{node.lineno}: {text!r}")
    return found


def test_only_the_store_holds_sql() -> None:
    assert sql_outside_the_store() == []


def test_the_check_sees_sql_where_it_is() -> None:
    assert SQL.match("SELECT * FROM executions WHERE id = ?")
    assert SQL.match("  INSERT INTO x VALUES (1)")
    assert SQL.match("PRAGMA user_version")
    assert not SQL.match("select one of the versions below")
    assert not SQL.match("Update the playbook and send SIGHUP.")
    assert not SQL.match("DROP")  # a firewall rule's target
    assert SQL.match("DROP TRIGGER audit_log_no_delete")


def rows_outside_the_store() -> set[str]:
    """Modules outside store/ that import ``Row``: each would handle raw sqlite3 rows."""
    found = set()
    for module in sorted(PACKAGE.rglob("*.py")):
        if module.relative_to(PACKAGE).parts[0] == "store":
            continue
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and any(a.name == "Row" for a in node.names):
                found.add(str(module.relative_to(PACKAGE)))
    return found


def test_no_row_leaves_the_store() -> None:
    """The store's reads return typed records (store/records.py and beside each read)."""
    assert rows_outside_the_store() == set()
