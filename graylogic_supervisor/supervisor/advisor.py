"""Between the supervisor and the failure memory: capture, advise, learn, and say why.

Every consultation writes a decision record to the audit log (action
``memory.decision``, subject the failure id): the past failures it matched and
their scores, the evidence and confidence of the best fix, and what was set
aside. ``graylogic-supervisor why ID`` prints it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.memory import Attempt, FailureContext, Resolution
from graylogic_supervisor.domain.outcomes import ExecutionOutcome
from graylogic_supervisor.memory.capture import ContextCapture
from graylogic_supervisor.memory.learned import learned_playbook
from graylogic_supervisor.memory.service import Decision, FailureMemory
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.versions import PlaybookVersions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LearnedFix:
    playbook: Playbook
    decision: Decision


@dataclass(frozen=True)
class Consultation:
    """What the memory decided for one failure, and the learned fix it chose (if any)."""

    context: FailureContext
    decision: Decision
    learned: LearnedFix | None
    decided_at: datetime


class MemoryAdvisor:
    def __init__(
        self,
        memory: FailureMemory,
        capture: ContextCapture,
        audit: AuditLog,
        versions: PlaybookVersions,
        *,
        actions: Mapping[str, ActionSpec],
        clock: Clock,
    ) -> None:
        self._memory = memory
        self._capture = capture
        self._audit = audit
        self._versions = versions
        self._actions = actions
        self._clock = clock

    def capture(
        self,
        failure_id: str,
        incident_id: str,
        component: str,
        error_id: str,
        *,
        severity: str,
        message: str,
    ) -> FailureContext:
        """What is known now, in memory: ``keep`` writes it (the supervisor decides first)."""
        return self._capture.capture(
            failure_id, incident_id, component, error_id, severity=severity, message=message
        )

    async def keep(self, context: FailureContext) -> None:
        """Write a captured context into the memory and its index."""
        await self._memory.capture(context)

    async def consult(self, context: FailureContext, playbook: Playbook | None) -> Consultation:
        """The decision, and the learned fix's version registered when it is the choice;
        ``record`` writes the decision (beside the run it chose, not before it)."""
        await self._memory.refresh()
        decision = await self._memory.decide(context, playbook.id if playbook else None)
        learned = None
        if decision.use_learned_fix and decision.best is not None:
            learned = learned_playbook(
                context.component,
                context.error_id,
                decision.best.fix_action,
                decision.best.fix_target,
                actions=self._actions,
            )
        if learned is None:
            return Consultation(context, decision, None, self._clock.now())
        await self._versions.register_inactive(
            learned,
            "failure-memory",
            f"learned from failures like {context.failure_id}",
            self._clock.now(),
        )
        return Consultation(context, decision, LearnedFix(learned, decision), self._clock.now())

    async def record(self, consultation: Consultation) -> None:
        """The decision record in the audit log (``why`` prints it), stamped when it was made."""
        context, decision = consultation.context, consultation.decision
        record = decision.record()
        if decision.use_learned_fix and consultation.learned is None:
            record["chosen"] = decision.playbook_id
            record["why"] += "; but that fix cannot run unattended here (unknown action,"
            record["why"] += " missing target or parameters): the playbook runs"
        await self._audit.append(
            "supervisor", "memory.decision", context.failure_id, record, now=consultation.decided_at
        )
        logger.info(
            "memory for %s: %s",
            context.component,
            record["why"],
            extra={"error_id": context.error_id},
        )

    async def executed(
        self,
        context: FailureContext,
        playbook: Playbook,
        outcome: ExecutionOutcome,
        kind: str,
        *,
        learned: LearnedFix | None,
        succeeded: bool,
    ) -> None:
        """Remember the attempt, a learned fix's result, and what fixed it."""
        await self._memory.note_attempt(
            context.failure_id,
            Attempt(
                execution_id=outcome.execution_id,
                kind="learned_fix" if kind == "learned_fix" else "playbook",
                playbook_id=playbook.id,
                status=outcome.status,
            ),
        )
        if learned is not None and learned.decision.best is not None:
            pattern = learned.decision.best.pattern_id
            await self._memory.learned_fix_outcome(learned.playbook.id, pattern, resolved=succeeded)
            await self._audit.append(
                "supervisor",
                "memory.outcome",
                context.failure_id,
                {
                    "execution_id": outcome.execution_id,
                    "pattern_id": pattern,
                    "fix": learned.decision.best.describe(),
                    "succeeded": succeeded,
                },
                now=self._clock.now(),
            )
        if not succeeded:
            return
        fixer = playbook.step(outcome.resolved_by) if outcome.resolved_by else None
        # A check that found the component healthy fixed nothing: only a fix teaches.
        spec = self._actions.get(fixer.action) if fixer is not None else None
        fixed = fixer is not None and spec is not None and spec.kind is ActionKind.FIX
        await self._memory.resolve(
            context.failure_id,
            Resolution(
                resolved_at=self._clock.now(),
                fixed_by="supervisor",
                what_fixed_it=f"{playbook.id}: {outcome.detail}",
                fix_action=fixer.action if fixed and fixer is not None else None,
                fix_target=fixer.target if fixed and fixer is not None else None,
            ),
        )
        if fixed:
            await self._memory.learn_around(context.failure_id)
