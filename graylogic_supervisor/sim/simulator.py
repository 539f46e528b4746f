"""``simulate``: rounds of incidents through the real runner, store and learning loop.

Everything the daemon would use is real (``Runner``, ``Database`` on a scratch
store in memory, ``LearningService`` with its metrics, analysis, approval and rollback);
only time is virtual and the actions are the scenario's. A seeded ``Random``
draws causes, durations, outcomes and ids, so a seed replays the same report.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graylogic_supervisor.clock import VirtualClock
from graylogic_supervisor.engine.action import ActionSpec, FailureInfo
from graylogic_supervisor.engine.runner import Runner
from graylogic_supervisor.learning.analysis import AnalysisSettings
from graylogic_supervisor.learning.service import (
    Alert,
    LearningError,
    LearningService,
    LearningSettings,
)
from graylogic_supervisor.memory.model import (
    Environment,
    FailureContext,
    FailureRecord,
    Resolution,
    Resources,
)
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
from graylogic_supervisor.store.versions import PlaybookVersions, playbook_yaml

SIMULATOR = "simulator"
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
BETWEEN_INCIDENTS_S = 600.0


@dataclass(frozen=True)
class SimulationOptions:
    incidents: int = 200
    rounds: int = 5
    seed: int = 0
    auto_approve: bool = False
    confidence_threshold: float = 0.8
    min_executions: int = 10
    start: datetime = START  # the virtual clock's first moment (a store judged "now": recent)


def scenario_playbook(scenario: Scenario, registry_specs: Mapping[str, ActionSpec]) -> Playbook:
    """The playbook under test, validated against the scenario's actions."""
    assert scenario.playbook_file is not None  # load_scenario resolved it
    return load_playbook(scenario.playbook_file, registry_specs).playbook


async def simulate(scenario: Scenario, options: SimulationOptions) -> dict[str, Any]:
    """The whole simulation in a scratch store; the report FORMAT.md defines.

    The store is SQLite in memory: the same engine, schema and code as on disk, without
    the disk writes of a store nobody keeps (a quarter of the time here).
    """
    async with Database(Path(":memory:")) as db:
        simulation = await Simulation.start(db, scenario, options)
        rounds = [await simulation.round(number) for number in range(1, options.rounds + 1)]
        final = await simulation.versions.active_playbook(simulation.playbook_id)
        assert final is not None
    floor = round(floor_s(scenario), 2)
    last = rounds[-1]["mttr_s"] if rounds else None
    return {
        "scenario": scenario.name,
        "seed": options.seed,
        "rounds": rounds,
        "floor_s": floor,
        "final_to_floor": round(last / floor, 3) if last is not None and floor > 0 else None,
        "final_version": final.version,
        "final_playbook": final.model_dump(mode="json", exclude_defaults=True),
    }


class Simulation:
    """A scenario's incidents run into a store, with the learning loop beside them."""

    def __init__(
        self,
        scenario: Scenario,
        options: SimulationOptions,
        playbook_id: str,
        rng: random.Random,
        clock: VirtualClock,
        runner: Runner,
        executions: ExecutionRepository,
        memory: MemoryRepository,
        incidents: dict[str, Incident],
        versions: PlaybookVersions,
        learning: LearningService,
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
        registry = scenario_registry(scenario, incidents, rng)
        specs = registry.specs()
        playbook = scenario_playbook(scenario, specs)
        clock = VirtualClock(options.start)
        versions = PlaybookVersions(db)
        await versions.seed(playbook, playbook_yaml(playbook), "scenario", clock.now())
        executions = ExecutionRepository(db)
        settings = LearningSettings(
            AnalysisSettings(
                min_executions=options.min_executions,
                confidence_threshold=options.confidence_threshold,
                default_manual_s=scenario.manual.resolve_s,
            )
        )
        learning = LearningService(
            db, versions, AuditLog(db), specs, settings, clock, alert=alert, ids=rng
        )
        if options.auto_approve and await learning.users.get(SIMULATOR) is None:
            await learning.users.add(
                SIMULATOR, "system_owner", new_id("pw", options.start, rng), options.start
            )
        return cls(
            scenario,
            options,
            playbook.id,
            rng,
            clock,
            Runner(registry, executions, clock, rng=rng),
            executions,
            MemoryRepository(db),
            incidents,
            versions,
            learning,
        )

    async def round(self, number: int) -> dict[str, Any]:
        """``options.incidents`` incidents, the analysis, and approvals if automatic."""
        versions, learning, playbook_id = self.versions, self.learning, self.playbook_id
        first = await versions.active_playbook(playbook_id)
        assert first is not None
        playbook = first
        times: list[float] = []
        resolved = 0
        rolled_back_to = None
        for _ in range(self._options.incidents):
            took, fixed, rollback = await self.incident(playbook)
            times.append(took)
            resolved += fixed
            if rollback is not None:
                rolled_back_to = rollback["to_version"]
                again = await versions.active_playbook(playbook_id)
                assert again is not None
                playbook = again
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
                    "time_saved_s": -rec.expected_impact["resolution_time_s"]["change"],
                }
            )
        if self._options.auto_approve:
            for entry in sorted(recommendations, key=lambda r: -r["time_saved_s"]):
                if entry["confidence"] < self._options.confidence_threshold:
                    continue
                try:
                    await learning.approve(entry["id"], SIMULATOR, "auto-approved in simulation")
                except LearningError as exc:
                    entry["refused"] = str(exc)
                else:
                    entry["approved"] = True
        for entry in recommendations:
            del entry["time_saved_s"]
        ordered = sorted(times)
        count = len(times)
        return {
            "round": number,
            "playbook_version": first.version,
            "incidents": count,
            "resolved_by_playbook": resolved,
            "escalated": count - resolved,
            "success_rate": round(resolved / count, 4) if count else 0.0,
            "mttr_s": round(sum(times) / count, 2) if count else 0.0,
            "floor_s": round(floor_s(self._scenario), 2),
            "p95_s": round(ordered[max(0, math.ceil(0.95 * count) - 1)], 2) if count else 0.0,
            "recommendations": recommendations,
            "rolled_back_to": rolled_back_to,
        }

    async def incident(
        self, playbook: Playbook, count: bool = True
    ) -> tuple[float, bool, dict[str, Any] | None]:
        """One incident: the playbook, then a technician if it did not fix it. Returns its
        resolution time, whether the playbook fixed it, and a rollback it caused.
        ``count=False`` leaves it uncounted, as a supervisor stopped before counting."""
        scenario, clock, learning = self._scenario, self.clock, self.learning
        await clock.sleep(BETWEEN_INCIDENTS_S)
        cause = scenario.draw_cause(self._rng)
        now = clock.now()
        failure_id = new_id("fail", now, self._rng)
        message = f"{scenario.trigger.component} failed ({scenario.trigger.error_id})"
        self._incidents[failure_id] = incident = Incident(cause)
        await self._executions.record_failure(
            failure_id,
            scenario.trigger.component,
            scenario.trigger.error_id,
            "error",
            message,
            now,
        )
        began = clock.monotonic()
        outcome = await self._runner.run(
            playbook,
            FailureInfo(failure_id, scenario.trigger.component, scenario.trigger.error_id, message),
        )
        took = clock.monotonic() - began
        if incident.fixed:
            resolution = Resolution(
                resolved_at=clock.now(),
                fixed_by="supervisor",
                what_fixed_it=f"{incident.fixed_by} (playbook {playbook.version})",
                fix_action=incident.fixed_by,
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
        rollback = await learning.after_execution(outcome.execution_id) if count else None
        del self._incidents[failure_id]
        return took, incident.fixed, rollback


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
