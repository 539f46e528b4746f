"""What the recovery policy must not forget across a restart: one row per component.

The policy's attempts and its termination window are rebuilt from the records
that exist anyway (viability evaluations, executions); what no other record
says exactly is kept here: the breaker, when it last opened, the cooldown it
reached, how many trials failed, the last failure signature and when the
component last re-armed. A row is written when one of these changes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.database import Database


@dataclass(frozen=True)
class StoredRecovery:
    """One component's give-up state, with wall-clock times as the store keeps them."""

    component: str
    breaker: str  # closed | open | half_open
    opened_at: datetime | None
    open_for_s: float
    failed_trials: int
    signature: tuple[str, str, str, str] | None  # action, outcome, step id, error id
    rearmed_at: datetime | None


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else isoformat(moment)


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


class RecoveryStateRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, records: Sequence[StoredRecovery], now: datetime) -> None:
        """Write the changed components' rows, all or none."""
        if not records:
            return
        async with self._db.transaction() as conn:
            for record in records:
                signature = None if record.signature is None else json.dumps(record.signature)
                await conn.execute(
                    "INSERT INTO recovery_state (component, breaker, opened_at, open_for_s,"
                    " failed_trials, signature, rearmed_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (component) DO UPDATE SET"
                    " breaker = excluded.breaker, opened_at = excluded.opened_at,"
                    " open_for_s = excluded.open_for_s, failed_trials = excluded.failed_trials,"
                    " signature = excluded.signature, rearmed_at = excluded.rearmed_at,"
                    " updated_at = excluded.updated_at",
                    (
                        record.component,
                        record.breaker,
                        _stamp(record.opened_at),
                        record.open_for_s,
                        record.failed_trials,
                        signature,
                        _stamp(record.rearmed_at),
                        isoformat(now),
                    ),
                )

    async def load(self) -> list[StoredRecovery]:
        try:
            rows = await self._db.fetchall("SELECT * FROM recovery_state ORDER BY component")
        except sqlite3.Error as exc:
            raise StoreError(f"reading the recovery state failed: {exc}") from exc
        found = []
        for row in rows:
            signature = json.loads(row["signature"]) if row["signature"] else None
            found.append(
                StoredRecovery(
                    row["component"],
                    row["breaker"],
                    _moment(row["opened_at"]),
                    float(row["open_for_s"]),
                    int(row["failed_trials"]),
                    None if signature is None else tuple(signature),
                    _moment(row["rearmed_at"]),
                )
            )
        return found
