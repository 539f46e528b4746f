"""Reasons to hold a recovery that sit outside the attempt rules.

Checked, in this order, before the policy's attempt rules: a critical pattern
(never automatic: straight to a human), a maintenance window (an installer is
working: failures are expected), safe mode (only the essentials), flapping
(wait for the component to settle; not the essentials, whose restarts the attempt
budget and the breaker already bound, and which would otherwise stay down for the
whole stabilisation while a site waits on them). Each hold is a denied viability
verdict, recorded like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from graylogic_supervisor.clock import Clock
from graylogic_supervisor.store.controls import ControlRepository
from graylogic_supervisor.supervisor.policy import Reason, RecoveryPolicy, Verdict

# How often an incident held by safe mode or a maintenance window looks again.
RECHECK_S = 1.0


@dataclass(frozen=True)
class Hold:
    verdict: Verdict
    wait_s: float | None  # None: until the component is healthy again
    escalate: bool  # call a human about it


class Holds:
    def __init__(self, policy: RecoveryPolicy, controls: ControlRepository, clock: Clock) -> None:
        self._policy = policy
        self._controls = controls
        self._clock = clock

    async def check(
        self, component: str, error_id: str, message: str, max_attempts: int
    ) -> Hold | None:
        policy = self._policy
        why = policy.critical_match(error_id, message)
        if why is not None:
            verdict = policy.held(
                Reason.CRITICAL_PATTERN, f"critical failure: {why}", component, max_attempts
            )
            return Hold(verdict, None, True)
        window = await self._controls.window_for(component, self._clock.now())
        if window is not None:
            scope = "the site" if window["component"] == "*" else component
            verdict = policy.held(
                Reason.MAINTENANCE,
                f"maintenance of {scope} until {window['ends_at']} ({window['reason']},"
                f" {window['created_by']}): failure expected",
                component,
                max_attempts,
            )
            return Hold(verdict, RECHECK_S, False)
        safe_mode = await self._controls.safe_mode()
        if safe_mode.active and not policy.is_essential(component):
            verdict = policy.held(
                Reason.SAFE_MODE,
                f"safe mode since {safe_mode.since} ({safe_mode.reason}): only essentials recover",
                component,
                max_attempts,
            )
            return Hold(verdict, RECHECK_S, True)
        hold_s = 0.0 if policy.is_essential(component) else policy.stabilisation_hold(component)
        if hold_s > 0:
            verdict = policy.held(
                Reason.FLAPPING,
                f"flapping: held {hold_s:.0f} s for its health to settle",
                component,
                max_attempts,
            )
            return Hold(verdict, hold_s, False)
        return None
