"""Operators' commands to running executions: the CLI writes them, the daemon applies them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.store.database import Database

ALL = "*"


@dataclass(frozen=True)
class Command:
    id: int
    execution_id: str
    command: str
    step_id: str | None
    outcome: str | None
    issued_by: str
    reason: str


class CommandRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def issue(
        self,
        execution_id: str,
        command: str,
        issued_by: str,
        reason: str,
        *,
        now: datetime,
        step_id: str | None = None,
        outcome: str | None = None,
    ) -> int:
        return await self._db.insert(
            "INSERT INTO execution_commands (execution_id, command, step_id, outcome, issued_by,"
            " reason, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (execution_id, command, step_id, outcome, issued_by, reason, isoformat(now)),
        )

    async def pending(self) -> list[Command]:
        rows = await self._db.fetchall(
            "SELECT * FROM execution_commands WHERE applied_at IS NULL ORDER BY id"
        )
        return [
            Command(
                row["id"],
                row["execution_id"],
                row["command"],
                row["step_id"],
                row["outcome"],
                row["issued_by"],
                row["reason"],
            )
            for row in rows
        ]

    async def applied(self, command_id: int, result: str, now: datetime) -> None:
        await self._db.execute(
            "UPDATE execution_commands SET applied_at = ?, result = ? WHERE id = ?",
            (isoformat(now), result, command_id),
        )

    async def result(self, command_id: int) -> str | None:
        row = await self._db.fetchone(
            "SELECT result FROM execution_commands WHERE id = ?", (command_id,)
        )
        return None if row is None else row["result"]
