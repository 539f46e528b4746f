"""A store filled by the simulator: real runner, real store, scenario actions."""

from __future__ import annotations

from pathlib import Path

from graylogic_supervisor.learning.service import Alert
from graylogic_supervisor.sim.scenario import load_scenario
from graylogic_supervisor.sim.simulator import Simulation, SimulationOptions
from graylogic_supervisor.store.database import Database

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


async def simulation(
    db: Database, name: str, seed: int = 0, alert: Alert | None = None
) -> Simulation:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    return await Simulation.start(db, scenario, SimulationOptions(seed=seed), alert=alert)


async def run(sim: Simulation, incidents: int, count: bool = True) -> list[float]:
    """``incidents`` incidents on the active version; their resolution times."""
    times = []
    for _ in range(incidents):
        playbook = await sim.versions.active_playbook(sim.playbook_id)
        assert playbook is not None
        took, _, _ = await sim.incident(playbook, count=count)
        times.append(took)
    return times
