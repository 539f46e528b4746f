"""A scenario may name a playbook of the project's playbooks/ directory by its id."""

from __future__ import annotations

from graylogic_supervisor.sim.scenario import load_scenario
from graylogic_supervisor.sim.simulator import SimulationOptions, simulate
from tests.daemon_process import REPO

SCENARIO = REPO / "tests" / "scenarios" / "mqtt-by-id.yaml"


async def test_the_playbook_is_found_by_id_and_run() -> None:
    scenario = load_scenario(SCENARIO, REPO / "playbooks")
    assert scenario.playbook_file == (REPO / "playbooks" / "mqtt-recover.yaml").resolve()
    report = await simulate(scenario, SimulationOptions(incidents=12, rounds=1))
    [only] = report["rounds"]
    assert (only["incidents"], only["resolved_by_playbook"]) == (12, 12)
    assert report["final_playbook"]["id"] == "PLAY-MQTT-RECOVER-001"
