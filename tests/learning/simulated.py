"""A store filled by the simulator: real runner, real store, scenario actions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from graylogic_supervisor.learning.service import Alert
from graylogic_supervisor.sim.scenario import load_scenario
from graylogic_supervisor.sim.simulator import Simulation, SimulationOptions
from graylogic_supervisor.store.database import Database

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


async def simulation(
    db: Database,
    name: str,
    seed: int = 0,
    alert: Alert | None = None,
    start: datetime | None = None,
) -> Simulation:
    """``start``: when its history begins (default the simulator's; a store a system
    clock will judge needs a recent one: the analysis counts the last 30 days)."""
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    options = (
        SimulationOptions(seed=seed) if start is None else SimulationOptions(seed=seed, start=start)
    )
    return await Simulation.start(db, scenario, options, alert=alert)


async def run(sim: Simulation, incidents: int, count: bool = True) -> list[float]:
    """``incidents`` incidents on the active version; their resolution times."""
    times = []
    for _ in range(incidents):
        playbook = await sim.versions.active_playbook(sim.playbook_id)
        assert playbook is not None
        took, _, _ = await sim.incident(playbook, count=count)
        times.append(took)
    return times
