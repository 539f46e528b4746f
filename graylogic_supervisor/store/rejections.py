"""Rejected changes as the store keeps them: by a person, or by a rollback away from
the version a change made (learning/rejections.py decides what they hold back)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graylogic_supervisor.store.database import Database, Row


@dataclass(frozen=True)
class Rejection:
    playbook_id: str
    change_key: str
    recommendation_id: str
    kind: str  # "rejected" or "rolled_back"
    version: str | None
    by: str
    at: str
    reason: str
    executions: int  # the playbook's counted executions at the time

    def as_dict(self) -> dict[str, Any]:
        return {
            "recommendation_id": self.recommendation_id,
            "kind": self.kind,
            "version": self.version,
            "by": self.by,
            "at": self.at,
            "reason": self.reason,
            "executions": self.executions,
        }


def _rejection(row: Row) -> Rejection:
    return Rejection(
        playbook_id=str(row["playbook_id"]),
        change_key=str(row["change_key"]),
        recommendation_id=str(row["recommendation_id"]),
        kind=str(row["kind"]),
        version=row["version"],
        by=str(row["by"]),
        at=str(row["at"]),
        reason=str(row["reason"]),
        executions=int(row["executions"]),
    )


class RejectionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def latest(self, playbook_id: str) -> dict[str, Rejection]:
        """The latest rejection of each change of the playbook, by change key."""
        rows = await self._db.fetchall(
            "SELECT * FROM learning_rejections WHERE playbook_id = ? ORDER BY at, id",
            (playbook_id,),
        )
        return {row["change_key"]: _rejection(row) for row in rows}
