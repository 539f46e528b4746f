"""The escalation chain: who is told that recovery failed, and when, until someone answers.

Level 0 goes out the moment an incident is escalated; each later level goes
out once its ``after_s`` has passed since the escalation was raised, unless
someone has acknowledged it or the component is healthy again. The store is
the source of truth: ``raised_at`` sets the schedule and ``level`` records the
last level done, so a restarted daemon carries on where the last one stopped
and never sends a level twice.

A level is done when every channel took the notification or was given up
(``MAX_ATTEMPTS`` failed tries, one per loop tick). Levels go out in order: a
webhook that is down delays the next level by a few ticks, never skips it.
Which channels of the level in progress already went out is kept in memory; a
restart mid-level sends that level's channels again (a repeated call beats a
lost one).

One escalation per component until someone answers: a component that fails
again (a broker that dies seconds after every restart) while its escalation is
unacknowledged updates that escalation (``occurrences``, last incident, last
detail, ``updated_at``) instead of raising a new one per incident or per
breaker cooldown; if its short-lived recovery had closed the escalation, it is
reopened and its levels carry on where they stopped. After
``repeat_window_s`` with no new failure, or once someone acknowledges it, the
next failure raises a new escalation.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from graylogic_supervisor.clock import Clock, isoformat
from graylogic_supervisor.config import EscalationConfig, WebhookConfig
from graylogic_supervisor.engine.builtins.notify import AlertSink
from graylogic_supervisor.errors import StoreError
from graylogic_supervisor.store.escalations import (
    NOTHING_SENT,
    CallingEscalation,
    EscalationRepository,
)

if TYPE_CHECKING:  # imported where a webhook is sent: httpx costs about 4 MiB resident
    import httpx

logger = logging.getLogger(__name__)

# Failed tries of one channel for one level before the chain gives up on it and moves on.
MAX_ATTEMPTS = 5
WEBHOOK_PREFIX = "webhook:"


def due_levels(
    config: EscalationConfig, raised_at_elapsed_s: float, level_reached: int
) -> list[int]:
    """The levels to send now, in order: those after ``level_reached`` whose delay has passed.

    It stops at the first level not yet due, so a config whose delays are out of
    order delays a later level rather than skipping an earlier one.
    """
    due: list[int] = []
    for index in range(level_reached + 1, len(config.levels)):
        if config.levels[index].after_s > raised_at_elapsed_s:
            break
        due.append(index)
    return due


@dataclass
class _LevelInProgress:
    """One escalation's level being sent: channels done (sent or given up), failures so far."""

    level: int
    done: set[str] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)


class EscalationChain:
    """Sends each escalation's levels on time; an async context manager owning its HTTP client."""

    def __init__(
        self,
        config: EscalationConfig,
        repository: EscalationRepository,
        alerts: AlertSink,
        clock: Clock,
        *,
        http: httpx.AsyncClient | None = None,
        site: str | None = None,
    ) -> None:
        self._config = config
        self._repository = repository
        self._alerts = alerts
        self._clock = clock
        self._owns_http = http is None
        # Made on first use: a site without webhooks never opens an HTTP client.
        self._http: httpx.AsyncClient | None = http
        self._site = site
        self._in_progress: dict[str, _LevelInProgress] = {}
        # Escalations being sent right now (by escalate() or a tick): never twice at once.
        self._busy: set[str] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this chain made it (an injected one belongs to its owner)."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    async def escalate(
        self, incident_id: str, component: str, error_id: str, severity: str, *, message: str
    ) -> str:
        """Call a human about an incident; returns the escalation's id.

        A component already calling someone (not acknowledged) keeps its chain:
        another reason to escalate, or another incident of the same component,
        updates it and must not restart the schedule or page everyone again.
        """
        now = self._clock.now()
        since = now - timedelta(seconds=self._config.repeat_window_s)
        existing = await self._repository.unacknowledged_for_component(component, since)
        if existing is not None:
            occurrences = await self._repository.repeat(existing, incident_id, message, now)
            if occurrences is not None:  # None: acknowledged just now, so a new one is due
                logger.warning(
                    "%s failed again (%s): escalation %s, still waiting for an answer,"
                    " updated (%d incident(s)); not raised again",
                    component,
                    message,
                    existing,
                    occurrences,
                    extra={"error_id": error_id},
                )
                return existing
        escalation_id = await self._repository.raise_(
            incident_id, component, severity, message, now=now
        )
        logger.warning(
            "escalation %s raised for %s: %s",
            escalation_id,
            component,
            message,
            extra={"error_id": error_id},
        )
        escalation = CallingEscalation(
            id=escalation_id,
            incident_id=incident_id,
            component=component,
            error_id=error_id,
            severity=severity,
            message=message,
            raised_at=now,
            level=NOTHING_SENT,
        )
        await self._advance(escalation, now)
        return escalation_id

    async def resolve(self, incident_id: str) -> int:
        """The incident is over: no further level goes out; returns how many were closed."""
        closed = await self._repository.close_for_incident(incident_id, self._clock.now())
        if closed:
            logger.info("incident %s is over: %d escalation(s) closed", incident_id, closed)
        return closed

    async def healthy(self, component: str) -> int:
        """Healthy with no incident open (say, first seen after a restart, which keeps
        acknowledged escalations): none of its escalations stays open; returns how many."""
        closed = await self._repository.close_for_component(component, self._clock.now())
        if closed:
            logger.info("%s is healthy: %d escalation(s) closed", component, closed)
        return closed

    async def run(self) -> None:
        """Tick every ``check_interval_s`` until cancelled.

        Network failures never leave a tick (they are retried); a store error is
        logged and the next tick tries again, because this loop is how a human
        hears of trouble and must outlive a briefly locked database.
        """
        while True:
            try:
                await self.tick()
            except* StoreError as errors:
                logger.error(
                    "escalation check failed, trying again in %g s: %s",
                    self._config.check_interval_s,
                    "; ".join(str(error) for error in errors.exceptions),
                )
            await self._clock.sleep(self._config.check_interval_s)

    async def tick(self) -> None:
        """Send every level that is due, and retry the channels that failed last time."""
        now = self._clock.now()
        escalations = await self._repository.calling()
        still_open = {escalation.id for escalation in escalations}
        for gone in self._in_progress.keys() - still_open:
            del self._in_progress[gone]  # acknowledged or closed mid-level
        async with asyncio.TaskGroup() as group:
            for escalation in escalations:
                group.create_task(
                    self._advance(escalation, now), name=f"escalation:{escalation.id}"
                )

    async def _advance(self, escalation: CallingEscalation, now: datetime) -> None:
        """Send the escalation's due levels in order, stopping at one not yet done."""
        if escalation.id in self._busy:
            return
        self._busy.add(escalation.id)
        try:
            elapsed = (now - escalation.raised_at).total_seconds()
            for level in due_levels(self._config, elapsed, escalation.level):
                if not await self._send_level(escalation, level, now):
                    return  # a channel failed: the next tick retries it
                await self._repository.set_level(escalation.id, level)
        finally:
            self._busy.discard(escalation.id)

    async def _send_level(self, escalation: CallingEscalation, level: int, now: datetime) -> bool:
        """Try the level's channels not yet done; True once all are sent or given up."""
        progress = self._in_progress.get(escalation.id)
        if progress is None or progress.level != level:
            progress = self._in_progress[escalation.id] = _LevelInProgress(level)
        channels = [
            c for c in dict.fromkeys(self._config.levels[level].channels) if c not in progress.done
        ]
        async with asyncio.TaskGroup() as group:
            attempts = {
                channel: group.create_task(
                    self._send(escalation, level, channel), name=f"escalation:{channel}"
                )
                for channel in channels
            }
        for channel, attempt in attempts.items():
            problem = attempt.result()
            if problem is None:
                progress.done.add(channel)
                logger.info(
                    "escalation %s level %d sent to %s",
                    escalation.id,
                    level,
                    channel,
                    extra={"error_id": escalation.error_id},
                )
                continue
            failures = progress.failures[channel] = progress.failures.get(channel, 0) + 1
            if failures < MAX_ATTEMPTS:
                logger.warning(
                    "escalation %s level %d: %s failed (%s); try %d of %d, again next check",
                    escalation.id,
                    level,
                    channel,
                    problem,
                    failures,
                    MAX_ATTEMPTS,
                    extra={"error_id": escalation.error_id},
                )
                continue
            logger.error(
                "escalation %s level %d: gave up on %s after %d tries (%s)",
                escalation.id,
                level,
                channel,
                failures,
                problem,
                extra={"error_id": escalation.error_id},
            )
            await self._repository.record_give_up(
                escalation.id, escalation.component, level, channel, attempts=failures, now=now
            )
            progress.done.add(channel)
        if not progress.done.issuperset(self._config.levels[level].channels):
            return False
        del self._in_progress[escalation.id]
        return True

    async def _send(self, escalation: CallingEscalation, level: int, channel: str) -> str | None:
        """Deliver to one channel; returns what went wrong, or None."""
        if channel == "mqtt":
            self._alerts.alert(
                escalation.severity,
                escalation.message,
                {
                    "escalation_id": escalation.id,
                    "incident_id": escalation.incident_id,
                    "component": escalation.component,
                    "error_id": escalation.error_id,
                    "level": str(level),
                },
            )
            return None
        webhook = self._config.webhooks[channel.removeprefix(WEBHOOK_PREFIX)]
        return await self._post(webhook, self._payload(escalation, level))

    def _payload(self, escalation: CallingEscalation, level: int) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "escalation_id": escalation.id,
            "incident_id": escalation.incident_id,
            "component": escalation.component,
            "error_id": escalation.error_id,
            "severity": escalation.severity,
            "message": escalation.message,
            "level": level,
            "raised_at": isoformat(escalation.raised_at),
        }
        if self._site is not None:
            payload["site"] = self._site
        return payload

    async def _post(self, webhook: WebhookConfig, payload: dict[str, Any]) -> str | None:
        """POST the payload; returns the problem (never containing the token), or None."""
        import httpx

        token = webhook.token.get_secret_value() if webhook.token is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            # httpx's timeout bounds each phase; wait_for bounds the whole exchange.
            response = await self._clock.wait_for(
                self._client().post(
                    webhook.url, json=payload, headers=headers, timeout=webhook.timeout_s
                ),
                webhook.timeout_s,
            )
        except (TimeoutError, httpx.TimeoutException):
            return f"no answer within {webhook.timeout_s:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            return problem.replace(token, "***") if token else problem
        if not response.is_success:
            return f"answered HTTP {response.status_code}"
        return None
