"""Step durations from a supervisor store file, for a dry run's ``--history``: read
synchronously (the dry run calls it in a thread) and without leaving a trace."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from graylogic_supervisor.errors import StoreError

History = Mapping[tuple[str, str], tuple[float, int]]  # (step id, outcome) -> (sum, count)


def read_step_durations(path: Path, playbook_id: str) -> History:
    """Durations of the playbook's finished steps in a supervisor store, read without a trace.

    A read-only open of a WAL database that has no ``-wal`` file creates
    ``-wal`` and ``-shm`` beside it and cannot remove them. No ``-wal`` file
    means no connection has the store open, so the file alone is the whole
    database and is opened ``immutable``, which creates nothing.
    """
    mode = "ro" if Path(f"{path}-wal").exists() else "ro&immutable=1"
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open history {path}: {exc}") from exc
    try:
        rows = connection.execute(
            "SELECT s.step_id, s.outcome, SUM(s.duration_seconds), COUNT(s.duration_seconds)"
            " FROM execution_steps AS s JOIN executions AS e ON e.id = s.execution_id"
            " WHERE e.playbook_id = ? AND s.duration_seconds IS NOT NULL"
            " AND s.outcome IN ('success', 'failure', 'timeout', 'error')"
            " GROUP BY s.step_id, s.outcome",
            (playbook_id,),
        ).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"{path} is not a supervisor store: {exc}") from exc
    finally:
        connection.close()
    return {(str(step), str(word)): (float(total), int(count)) for step, word, total, count in rows}
