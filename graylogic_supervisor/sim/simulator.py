"""``simulate``: rounds of incidents through the real runner, store and learning loop.

Everything the daemon would use is real (``Runner``, ``Database`` on a scratch
store in memory, ``LearningService`` with its metrics, analysis, approval and rollback);
only time is virtual and the actions are the scenario's.

Randomness is common to the rounds: incident *i* of every round draws its cause (and
the time since the previous incident) from a ``Random`` seeded with (seed, *i*), and the
n-th run of each action in it from one seeded with (seed, *i*, action, n)
(``sim/actions.py``). So every round faces the same incidents with the same luck, and
rounds differ by the playbook only. Ids and the runner's retry jitter come from the
simulation's own ``Random``. A seed replays the same report.

Incidents come 600 s apart, unless the scenario gives its site's rate
(``site: {incidents_per_week: 3}``): then they arrive at random at that mean rate, as
failures on a site do. The analysis runs at the end of each round and, as the daemon's
schedule would run it, whenever the analysis interval (``learning.analysis_cron``:
weekly by default) has passed since the previous one; with ``--auto-approve`` each
analysis's recommendations are approved there and then. A round's report lists its
analyses (``analyses``) and every recommendation they made.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from graylogic_supervisor.clock import VirtualClock, isoformat
from graylogic_supervisor.config import LearningConfig
from graylogic_supervisor.domain.actions import ActionKind, ActionSpec
from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.memory import (
    Environment,
    FailureContext,
    FailureRecord,
    Resolution,
    Resources,
)
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.learning.draft_steps import playbook_id_for
from graylogic_supervisor.learning.drafts import NO_BASE
from graylogic_supervisor.learning.service import (
    Alert,
    LearningError,
    LearningService,
)
from graylogic_supervisor.learning.trials import TrialArms
from graylogic_supervisor.playbooks.loader import load_playbook
from graylogic_supervisor.playbooks.model import Playbook
from graylogic_supervisor.sim.actions import Incident, scenario_registry
from graylogic_supervisor.sim.floor import floor_s
from graylogic_supervisor.sim.scenario import Scenario
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.ids import new_id
from graylogic_supervisor.store.memory import MemoryRepository
from graylogic_supervisor.store.trials import TrialRepository
from graylogic_supervisor.store.versions import PlaybookVersions, playbook_yaml

SIMULATOR = "simulator"
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
BETWEEN_INCIDENTS_S = 600.0  # without a site rate
WEEK_S = 7 * 86400.0
RECENT = timedelta(days=30)  # the spec's window for "enough executions" (BR: 10 in 30 days)


@dataclass(frozen=True)
class SimulationOptions:
    incidents: int = 200
    rounds: int = 5
    seed: int = 0
    auto_approve: bool = False
    confidence_threshold: float = 0.8
    min_executions: int = 10
    analysis_interval_s: float = WEEK_S  # the daemon's schedule: ``cron_interval_s``
    start: datetime = START  # the virtual clock's first moment (a store judged "now": recent)
    store: Path | None = None  # keep the store in this (new) file; None: in memory


def cron_interval_s(cron: str, zone: str | None = None) -> float:
    """The time between two analyses on the daemon's schedule (the first two after the
    simulation's start)."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(cron, timezone=zone or "UTC")
    first: datetime | None = trigger.get_next_fire_time(None, START)
    assert first is not None  # a crontab always fires again
    second: datetime | None = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    assert second is not None
    return (second - first).total_seconds()


def between_incidents_s(scenario: Scenario, draws: random.Random) -> float:
    """The time from one incident to the next: fixed, or a site's random arrivals."""
    if scenario.site is None:
        return BETWEEN_INCIDENTS_S
    return draws.expovariate(scenario.site.incidents_per_week / WEEK_S)


def scenario_playbook(scenario: Scenario, registry_specs: Mapping[str, ActionSpec]) -> Playbook:
    """The playbook under test, validated against the scenario's actions."""
    assert scenario.playbook_file is not None  # load_scenario resolved it
    return load_playbook(scenario.playbook_file, registry_specs).playbook


async def simulate(scenario: Scenario, options: SimulationOptions) -> dict[str, Any]:
    """The whole simulation in a scratch store; the report FORMAT.md defines.

    The store is SQLite in memory: the same engine, schema and code as on disk, without
    the disk writes of a store nobody keeps (a quarter of the time here). ``options.store``
    keeps it in a new file instead, for the CLI, the admin page or an export to read.
    """
    if options.store is not None and options.store.exists():
        raise FileExistsError(f"{options.store} exists: a simulation keeps a store of its own")
    async with Database(options.store or Path(":memory:")) as db:
        simulation = await Simulation.start(db, scenario, options)
        rounds = [await simulation.round(number) for number in range(1, options.rounds + 1)]
        final = await simulation.versions.active_playbook(simulation.playbook_id)
    floor = round(floor_s(scenario), 2)
    last = rounds[-1]["mttr_s"] if rounds else None
    return {
        "scenario": scenario.name,
        "seed": options.seed,
        "rounds": rounds,
        "floor_s": floor,
        "final_to_floor": round(last / floor, 3) if last is not None and floor > 0 else None,
        "final_version": final.version if final is not None else NO_BASE,
        "final_playbook": (
            final.model_dump(mode="json", exclude_defaults=True) if final is not None else None
        ),
    }


class Simulation:
    """A scenario's incidents run into a store, with the learning loop beside them."""

    def __init__(
        self,
        scenario: Scenario,
        options: SimulationOptions,
        playbook_id: str,
        rng: random.Random,
        *,
        clock: VirtualClock,
        runner: Runner,
        executions: ExecutionRepository,
        memory: MemoryRepository,
        incidents: dict[str, Incident],
        versions: PlaybookVersions,
        learning: LearningService,
        arms: TrialArms,
    ) -> None:
        self._scenario = scenario
        self._options = options
        self.playbook_id = playbook_id
        self._rng = rng
        self.clock = clock
        self._runner = runner
        self._executions = executions
        self._memory = memory
        self._incidents = incidents
        self.versions = versions
        self.learning = learning
        self._arms = arms
        self._served = 0  # incidents so far: the number of one run outside a round
        self._ran: list[tuple[datetime, str]] = []  # each incident's start and version
        self._analysed_at = clock.now()

    @classmethod
    async def start(
        cls,
        db: Database,
        scenario: Scenario,
        options: SimulationOptions,
        alert: Alert | None = None,
    ) -> Simulation:
        """Seed ``db`` with the scenario's playbook (and the user ``simulator``)."""
        rng = random.Random(options.seed)
        incidents: dict[str, Incident] = {}
        registry = scenario_registry(scenario, incidents)
        specs = registry.specs()
        clock = VirtualClock(options.start)
        versions = PlaybookVersions(db)
        if scenario.uncovered:  # the playbook a draft would make, once approved
            playbook_id = playbook_id_for(scenario.trigger.error_id, scenario.trigger.component)
        else:
            playbook = scenario_playbook(scenario, specs)
            playbook_id = playbook.id
            await versions.seed(playbook, playbook_yaml(playbook), "scenario", clock.now())
        executions = ExecutionRepository(db)
        settings = LearningConfig(
            min_executions=options.min_executions,
            confidence_threshold=options.confidence_threshold,
            manual_resolve_s=scenario.manual.resolve_s,
        )
        learning = LearningService(
            db, versions, AuditLog(db), specs, settings=settings, clock=clock, alert=alert, ids=rng
        )
        if options.auto_approve and await learning.users.get(SIMULATOR) is None:
            await learning.users.add(
                SIMULATOR, "system_owner", new_id("pw", options.start, rng), options.start
            )
        return cls(
            scenario,
            options,
            playbook_id,
            rng,
            clock=clock,
            runner=Runner(registry, executions, clock, rng=rng),
            executions=executions,
            memory=MemoryRepository(db),
            incidents=incidents,
            versions=versions,
            learning=learning,
            arms=TrialArms(TrialRepository(db), versions),
        )

    async def round(self, number: int) -> dict[str, Any]:
        """``options.incidents`` incidents, with the analyses (and approvals if automatic)
        the schedule runs among them, and one at the end."""
        versions, playbook_id, options = self.versions, self.playbook_id, self._options
        first = await versions.active_playbook(playbook_id)
        playbook = first  # None: no playbook covers it (yet), the technician comes
        times: list[float] = []
        resolved = 0
        rolled_back_to = None
        analyses: list[dict[str, Any]] = []
        recommendations: list[dict[str, Any]] = []
        began = isoformat(self.clock.now())
        for index in range(options.incidents):
            took, fixed, rollback = await self.incident(playbook, number=index)
            times.append(took)
            resolved += fixed
            if rollback is not None:
                rolled_back_to = rollback["to_version"]
            last = index == options.incidents - 1
            due = self.clock.now() - self._analysed_at >= timedelta(
                seconds=options.analysis_interval_s
            )
            if last or due:
                analysis, made = await self.analysis(index + 1)
                analyses.append(analysis)
                recommendations += made
            # rolled back, changes approved, a trial promoted, a draft approved or retired
            if await versions.active_version(playbook_id) != (
                playbook.version if playbook is not None else None
            ):
                playbook = await versions.active_playbook(playbook_id)
        ordered = sorted(times)
        count = len(times)
        return {
            "round": number,
            "playbook_version": first.version if first is not None else NO_BASE,
            "incidents": count,
            "resolved_by_playbook": resolved,
            "escalated": count - resolved,
            "success_rate": round(resolved / count, 4) if count else 0.0,
            "mttr_s": round(sum(times) / count, 2) if count else 0.0,
            "floor_s": round(floor_s(self._scenario), 2),
            "p95_s": round(ordered[max(0, math.ceil(0.95 * count) - 1)], 2) if count else 0.0,
            "recommendations": recommendations,
            "analyses": analyses,
            "rolled_back_to": rolled_back_to,
            "trials": await self._trials_since(began),
        }

    async def _trials_since(self, began: str) -> list[dict[str, Any]]:
        """The trials that ran during the round (started before it or in it), as they stand."""
        return [
            {
                "id": trial.id,
                "trial_version": trial.trial_version,
                "base_version": trial.base_version,
                "share": trial.share,
                "status": trial.status,
                "reason": trial.reason,
            }
            for trial in await self.learning.trials.store.listing(playbook_id=self.playbook_id)
            if trial.decided_at is None or trial.decided_at >= began
        ]

    async def analysis(self, after_incidents: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The learning analysis now, and approvals if automatic (the best saving first):
        the analysis's summary and its recommendations as the report shows them."""
        learning = self.learning
        self._analysed_at = self.clock.now()
        analysed = await self.versions.active_version(self.playbook_id) or NO_BASE
        analysis = await learning.analyze("simulation")
        recommendations = []
        for rec_id in analysis["recommendations"]:
            rec = await learning.store.get(rec_id)
            assert rec is not None
            recommendations.append(
                {
                    "id": rec.id,
                    "type": rec.type,
                    "confidence": rec.confidence,
                    "summary": rec.summary,
                    "approved": False,
                    "after_incidents": after_incidents,
                    "base_version": rec.base_version,
                    "sample_size": rec.sample_size,
                    "change": rec.change,
                    "trial": rec.trial,
                    "time_saved_s": -rec.expected_impact["resolution_time_s"]["change"],
                }
            )
        if self._options.auto_approve:
            # Changes first, then trials: a change approved after a trial would end it.
            for entry in sorted(recommendations, key=lambda r: (r["trial"], -r["time_saved_s"])):
                if entry["confidence"] < self._options.confidence_threshold:
                    continue
                if entry["trial"] and await learning.trials.store.running(self.playbook_id):
                    entry["refused"] = "a trial is running for this playbook"
                    continue
                try:
                    await learning.approve(entry["id"], SIMULATOR, "auto-approved in simulation")
                except LearningError as exc:
                    entry["refused"] = str(exc)
                else:
                    entry["approved"] = True
        for entry in recommendations:
            del entry["time_saved_s"]
        since = self._analysed_at - RECENT
        summary = {
            "after_incidents": after_incidents,
            "at": self._analysed_at.isoformat(),
            "version": analysed,
            # counted here, not by the learning code, to check its rule from outside
            "recent_executions": sum(
                1 for at, version in self._ran if version == analysed and at >= since
            ),
            "recommended": len(recommendations),
            "approved": sum(entry["approved"] for entry in recommendations),
        }
        return summary, recommendations

    async def incident(
        self, playbook: Playbook | None, count: bool = True, number: int | None = None
    ) -> tuple[float, bool, dict[str, Any] | None]:
        """One incident: the active ``playbook`` (or a running trial's version, for the
        trial's share), then a technician if it did not fix it. Returns its resolution
        time, whether the playbook fixed it, and a rollback it caused.
        ``number`` is its place in the round (its draws); by default the incidents are
        numbered in the order they come. ``count=False`` leaves it uncounted, as a
        supervisor stopped before counting."""
        scenario, clock, learning = self._scenario, self.clock, self.learning
        if number is None:
            number = self._served
        self._served += 1
        seed = f"{self._options.seed}:{number}"
        draws = random.Random(seed)
        cause = scenario.draw_cause(draws)
        await clock.sleep(between_incidents_s(scenario, draws))
        now = clock.now()
        failure_id = new_id("fail", now, self._rng)
        if playbook is not None:
            playbook = await self._arms.choose(playbook, failure_id)
        self._ran.append((now, playbook.version if playbook is not None else NO_BASE))
        message = f"{scenario.trigger.component} failed ({scenario.trigger.error_id})"
        self._incidents[failure_id] = incident = Incident(cause, seed)
        await self._executions.record_failure(
            failure_id,
            scenario.trigger.component,
            scenario.trigger.error_id,
            "error",
            message=message,
            detected_at=now,
        )
        took = 0.0
        execution_id = None
        if playbook is not None:  # else escalated at once: no playbook handles it
            began = clock.monotonic()
            outcome = await self._runner.run(
                playbook,
                FailureInfo(
                    failure_id, scenario.trigger.component, scenario.trigger.error_id, message
                ),
            )
            took = clock.monotonic() - began
            execution_id = outcome.execution_id
            # The fresh probe after the run: the incident's true state (the daemon probes).
            await self._executions.set_healthy_after(execution_id, incident.fixed)
        if incident.fixed:
            assert playbook is not None
            # What the supervisor knows: the step it credited, when that is a fix (never
            # the ground truth, which it cannot see).
            credited = self._credited_fix(playbook, outcome.resolved_by)
            resolution = Resolution(
                resolved_at=clock.now(),
                fixed_by="supervisor",
                what_fixed_it=f"{credited or 'recovered'} (playbook {playbook.version})",
                fix_action=credited,
                fix_target=None,
            )
        else:
            await clock.sleep(scenario.manual.resolve_s)
            took += scenario.manual.resolve_s
            fix = scenario.fix_action_for(cause)
            resolution = Resolution(
                resolved_at=clock.now(),
                fixed_by="technician",
                what_fixed_it=f"{fix or 'unknown'} by hand",
                fix_action=fix,
                fix_target=None,
                root_cause=cause,
            )
        # Captured and resolved in one write: nothing reads the memory mid-incident here.
        record = FailureRecord(
            context=_context(failure_id, scenario, message, now), resolution=resolution
        )
        await self._memory.save(record, clock.now())
        rollback = None
        if count and execution_id is not None:
            rollback = await learning.after_execution(execution_id)
        del self._incidents[failure_id]
        return took, incident.fixed, rollback

    def _credited_fix(self, playbook: Playbook, step_id: str | None) -> str | None:
        """The action of the runner's credited step, if it is a fix (a branch: ``g.b``)."""
        if step_id is None:
            return None
        group, _, branch = step_id.partition(".")
        try:
            step = playbook.step(group)
        except KeyError:
            return None
        if branch and step.parallel is not None:
            step = next((b for b in step.parallel.branches if b.id == branch), step)
        spec = self.learning.specs.get(step.action)
        return step.action if spec is not None and spec.kind is ActionKind.FIX else None


def _context(failure_id: str, scenario: Scenario, message: str, now: datetime) -> FailureContext:
    return FailureContext(
        failure_id=failure_id,
        incident_id=None,
        detected_at=now,
        error_id=scenario.trigger.error_id,
        component=scenario.trigger.component,
        severity="error",
        message=message,
        other_health={},
        recent_events=[],
        resources=Resources(memory_percent=0, disk_percent=0, cpu_percent=0, load_per_cpu=0),
        environment=Environment(hour=now.hour, weekday=now.weekday(), uptime_s=0),
    )
