"""Simulations for the goal tests, all started at once in a process pool.

A simulation takes seconds of CPU, so a test module submits every one it needs when
its fixture starts, and each test waits only for the reports it reads.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graylogic_supervisor.sim.scenario import Scenario, load_scenario
from graylogic_supervisor.sim.simulator import SimulationOptions, simulate

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def scenario(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.yaml")


@dataclass(frozen=True)
class Job:
    name: str
    options: SimulationOptions
    run: int = 1  # a second run of the same simulation is a job of its own


def simulation_report(job: Job) -> dict[str, Any]:
    """One simulation, in a worker process of the pool."""
    logging.getLogger("graylogic_supervisor").setLevel(logging.ERROR)  # as the CLI does
    return asyncio.run(simulate(scenario(job.name), job.options))


class Reports:
    """The pool's reports by job; reading one waits until it is done."""

    def __init__(self, futures: dict[Job, Future[dict[str, Any]]]) -> None:
        self._futures = futures

    def __getitem__(self, job: Job) -> dict[str, Any]:
        return self._futures[job].result()


@contextmanager
def reports_of(jobs: Sequence[Job]) -> Iterator[Reports]:
    """Every job submitted at once (list the long ones first, so the workers finish
    together); what a ``-k`` selection left unread is cancelled at the end."""
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter, not a fork of pytest
    with ProcessPoolExecutor(os.cpu_count(), mp_context=spawn) as pool:
        yield Reports({job: pool.submit(simulation_report, job) for job in jobs})
        pool.shutdown(cancel_futures=True)


def mttrs(report: dict[str, Any]) -> list[float]:
    return [entry["mttr_s"] for entry in report["rounds"]]


def describe(report: dict[str, Any]) -> str:
    """The rounds and their recommendations, to read when a goal is missed."""
    lines = [
        f"{report['scenario']} (seed {report['seed']}), final {report['final_version']},"
        f" floor {report['floor_s']} s"
    ]
    for entry in report["rounds"]:
        lines.append(
            f"round {entry['round']} ({entry['playbook_version']}): mttr {entry['mttr_s']} s,"
            f" success {entry['success_rate']}, rolled back to {entry['rolled_back_to']}"
        )
        for rec in entry["recommendations"]:
            mark = "approved" if rec["approved"] else "pending"
            lines.append(f"    [{mark}] {rec['type']} ({rec['confidence']}): {rec['summary']}")
    return "\n".join(lines)
