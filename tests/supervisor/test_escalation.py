"""The escalation chain: levels on time, on MQTT and webhooks, until acked or resolved.

The webhook receiver is a real HTTP server on a free loopback port; time is a
ManualClock moved by hand, then one ``tick()`` of the chain runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.config import EscalationConfig
from graylogic_supervisor.store.audit import AuditLog
from graylogic_supervisor.store.database import Database
from graylogic_supervisor.store.escalations import EscalationRepository
from graylogic_supervisor.store.executions import ExecutionRepository
from graylogic_supervisor.store.incidents import IncidentRepository
from graylogic_supervisor.supervisor.escalation import MAX_ATTEMPTS, EscalationChain, due_levels
from tests.clocks import ManualClock
from tests.conftest import free_port

TOKEN = "tok-5f1e-never-log-me"
ERROR_ID = "ERR-INFRA-MQTT-001"
INCIDENT = "inc-20261126-120000-aaaaaa"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """A webhook endpoint speaking just enough HTTP/1.1; answers ``status``, or hangs."""

    status: int = 200
    hang: bool = False
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            method, path, _ = (await reader.readline()).decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(method, path, headers, json.loads(body)))
            if self.hang:
                await self._release.wait()
            head = f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n"
            writer.write(f"{head}\r\n".encode())
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            self._handlers.discard(task)

    async def release_all(self) -> None:
        self._release.set()
        await asyncio.gather(*self._handlers, return_exceptions=True)


@dataclass
class RecordingAlerts:
    """Our own AlertSink protocol; the real one publishes on the MQTT alert topic."""

    sent: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def alert(self, severity: str, message: str, context: dict[str, str]) -> None:
        self.sent.append((severity, message, context))

    def levels(self) -> list[str]:
        return [context["level"] for _, _, context in self.sent]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await receiver.release_all()
        await server.wait_closed()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def escalation_config(
    oncall_url: str, manager_url: str, timeout_s: float = 1.0
) -> EscalationConfig:
    return EscalationConfig.model_validate(
        {
            "levels": [
                {"after_s": 0, "channels": ["mqtt"]},
                {"after_s": 60, "channels": ["webhook:oncall"]},
                {"after_s": 300, "channels": ["webhook:manager", "mqtt"]},
            ],
            "webhooks": {
                "oncall": {"url": oncall_url, "token": TOKEN, "timeout_s": timeout_s},
                "manager": {"url": manager_url, "timeout_s": timeout_s},
            },
            "check_interval_s": 5,
        }
    )


@dataclass
class Harness:
    db: Database
    repo: EscalationRepository
    chain: EscalationChain
    clock: ManualClock
    alerts: RecordingAlerts

    async def escalate(self) -> str:
        return await self.chain.escalate(
            INCIDENT, "mqtt", ERROR_ID, "critical", message="broker down"
        )

    async def at(self, seconds: float) -> None:
        """Move the clock to ``seconds`` after the escalation was raised, then tick once."""
        self.clock.advance(seconds - self.clock.monotonic())
        await self.chain.tick()


async def open_incident(db: Database) -> None:
    now = ManualClock().now()
    await ExecutionRepository(db).record_failure(
        "fail-1", "mqtt", ERROR_ID, "critical", message="x", detected_at=now
    )
    await IncidentRepository(db).open(INCIDENT, "mqtt", ERROR_ID, "fail-1", detail="x", now=now)


@contextlib.asynccontextmanager
async def harness(
    path: Path,
    config: EscalationConfig,
    http: httpx.AsyncClient,
    clock: ManualClock | None = None,
) -> AsyncIterator[Harness]:
    async with Database(path) as db:
        if await IncidentRepository(db).get(INCIDENT) is None:
            await open_incident(db)
        repo = EscalationRepository(db, AuditLog(db))
        clock = clock or ManualClock()
        alerts = RecordingAlerts()
        chain = EscalationChain(config, repo, alerts, clock, http=http, site="dev-site")
        yield Harness(db, repo, chain, clock, alerts)


@pytest.fixture
async def h(tmp_path: Path, receiver: Receiver, http: httpx.AsyncClient) -> AsyncIterator[Harness]:
    config = escalation_config(receiver.url("/oncall"), receiver.url("/manager"))
    async with harness(tmp_path / "s.db", config, http) as built:
        yield built


# -- the schedule, pure ---------------------------------------------------------

LEVELS = escalation_config("http://x/a", "http://x/b")


@pytest.mark.parametrize(
    ("elapsed", "reached", "due"),
    [
        (0, -1, [0]),
        (59.9, 0, []),
        (60, 0, [1]),
        (1000, -1, [0, 1, 2]),
        (1000, 1, [2]),
        (1000, 2, []),
    ],
)
def test_due_levels_are_those_past_their_delay_after_the_last_reached(
    elapsed: float, reached: int, due: list[int]
) -> None:
    assert due_levels(LEVELS, elapsed, reached) == due


def test_due_levels_never_skip_a_level_when_delays_are_out_of_order() -> None:
    config = EscalationConfig.model_validate(
        {"levels": [{"after_s": d, "channels": ["mqtt"]} for d in (0, 600, 300)]}
    )
    assert due_levels(config, 400, 0) == []
    assert due_levels(config, 600, 0) == [1, 2]


# -- the chain ------------------------------------------------------------------


async def test_level_zero_goes_out_on_mqtt_at_once(h: Harness, receiver: Receiver) -> None:
    escalation_id = await h.escalate()
    assert h.alerts.sent == [
        (
            "critical",
            "broker down",
            {
                "escalation_id": escalation_id,
                "incident_id": INCIDENT,
                "component": "mqtt",
                "error_id": ERROR_ID,
                "level": "0",
            },
        )
    ]
    assert receiver.requests == []
    row = await h.repo.get(escalation_id)
    assert row is not None
    assert row["level"] == 0


async def test_escalating_an_incident_already_calling_someone_keeps_its_chain(
    h: Harness,
) -> None:
    first = await h.escalate()
    assert await h.escalate() == first
    assert len(h.alerts.sent) == 1
    await h.repo.acknowledge(first, "alice", h.clock.now())
    assert await h.escalate() != first  # a new reason after someone answered: call again
    assert h.alerts.levels() == ["0", "0"]


async def test_level_one_webhook_waits_for_its_delay_and_carries_token_and_json(
    h: Harness, receiver: Receiver
) -> None:
    escalation_id = await h.escalate()
    await h.at(59)
    assert receiver.requests == []
    await h.at(60)
    assert receiver.paths() == ["/oncall"]
    request = receiver.requests[0]
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "escalation_id": escalation_id,
        "incident_id": INCIDENT,
        "component": "mqtt",
        "error_id": ERROR_ID,
        "severity": "critical",
        "message": "broker down",
        "level": 1,
        "raised_at": "2026-11-26T12:00:00.000Z",
        "site": "dev-site",
    }
    await h.at(65)
    assert receiver.paths() == ["/oncall"]  # each level once
    assert h.alerts.levels() == ["0"]


async def test_level_two_goes_out_after_its_own_delay_on_all_its_channels(
    h: Harness, receiver: Receiver
) -> None:
    await h.escalate()
    await h.at(60)
    await h.at(299)
    assert receiver.paths() == ["/oncall"]
    await h.at(300)
    assert receiver.paths() == ["/oncall", "/manager"]
    assert "authorization" not in receiver.requests[1].headers  # manager has no token
    assert receiver.requests[1].body["level"] == 2
    assert h.alerts.levels() == ["0", "2"]
    await h.at(3600)
    assert len(receiver.requests) == 2


async def test_levels_missed_while_down_go_out_in_order_in_one_tick(
    h: Harness, receiver: Receiver
) -> None:
    await h.escalate()
    await h.at(400)
    assert receiver.paths() == ["/oncall", "/manager"]


async def test_an_acknowledged_escalation_gets_nothing_more(
    h: Harness, receiver: Receiver, tmp_path: Path
) -> None:
    escalation_id = await h.escalate()
    await h.at(60)
    # The CLI acknowledges from its own process: its own connection to the file.
    async with Database(tmp_path / "s.db") as cli_db:
        cli = EscalationRepository(cli_db, AuditLog(cli_db))
        assert await cli.acknowledge(escalation_id, "alice", h.clock.now())
    await h.at(3600)
    assert receiver.paths() == ["/oncall"]
    assert h.alerts.levels() == ["0"]
    acks = [e for e in await AuditLog(h.db).entries() if e["action"] == "escalation.acknowledge"]
    assert [(e["actor"], e["subject"]) for e in acks] == [("alice", "mqtt")]
    assert json.loads(acks[0]["detail"])["escalation_id"] == escalation_id


async def test_a_resolved_incident_gets_nothing_more(h: Harness, receiver: Receiver) -> None:
    escalation_id = await h.escalate()
    await h.at(30)
    assert await h.chain.resolve(INCIDENT) == 1
    await h.at(3600)
    assert receiver.requests == []
    assert h.alerts.levels() == ["0"]
    row = await h.repo.get(escalation_id)
    assert row is not None
    assert row["closed_at"] is not None


@pytest.mark.parametrize("failure", ["http-503", "connection-refused"])
async def test_a_failing_webhook_is_retried_each_tick_then_given_up_and_the_chain_moves_on(
    tmp_path: Path,
    receiver: Receiver,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    if failure == "http-503":
        receiver.status = 503
        oncall = receiver.url("/oncall")
    else:
        oncall = f"http://127.0.0.1:{free_port()}/oncall"
    config = escalation_config(oncall, receiver.url("/manager"))
    async with harness(tmp_path / "s.db", config, http) as h:
        escalation_id = await h.escalate()
        for tick in range(MAX_ATTEMPTS + 2):
            await h.at(60 + 5 * tick)
        if failure == "http-503":
            assert receiver.paths() == ["/oncall"] * MAX_ATTEMPTS
        warnings = [
            r
            for r in caplog.records
            if r.levelno == logging.WARNING and "webhook:oncall failed" in r.getMessage()
        ]
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(warnings) == MAX_ATTEMPTS - 1
        assert len(errors) == 1
        assert "gave up on webhook:oncall after 5 tries" in errors[0].getMessage()
        row = await h.repo.get(escalation_id)
        assert row is not None
        assert row["level"] == 1  # given up: recorded, so the chain moves on
        gave_up = [e for e in await AuditLog(h.db).entries() if e["action"] == "escalation.give_up"]
        assert json.loads(gave_up[0]["detail"])["channel"] == "webhook:oncall"
        receiver.status = 200
        await h.at(300)
        assert receiver.paths()[-1] == "/manager"
        assert h.alerts.levels() == ["0", "2"]


async def test_a_webhook_that_does_not_answer_times_out_and_is_retried(
    tmp_path: Path, receiver: Receiver, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    config = escalation_config(receiver.url("/oncall"), receiver.url("/manager"), timeout_s=0.1)
    async with harness(tmp_path / "s.db", config, http) as h:
        await h.escalate()
        receiver.hang = True
        await h.at(60)
        assert "no answer within 0.1 s" in caplog.text
        receiver.hang = False
        await h.at(65)
        assert receiver.paths() == ["/oncall", "/oncall"]
        await h.at(70)
        assert len(receiver.requests) == 2  # the retry got through: level 1 is done


async def test_a_restarted_chain_does_not_resend_levels_already_sent(
    tmp_path: Path, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    config = escalation_config(receiver.url("/oncall"), receiver.url("/manager"))
    clock = ManualClock()
    async with harness(tmp_path / "s.db", config, http, clock) as before:
        await before.escalate()
        await before.at(60)
    async with harness(tmp_path / "s.db", config, http, clock) as after:
        await after.at(61)
        assert receiver.paths() == ["/oncall"]
        assert after.alerts.sent == []
        await after.at(300)
        assert receiver.paths() == ["/oncall", "/manager"]
        assert after.alerts.levels() == ["2"]


async def test_the_token_never_appears_in_the_logs(
    tmp_path: Path, receiver: Receiver, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included:
    for chatty in ("httpx", "httpcore"):  # whatever an in-process CLI test set them to
        caplog.set_level(logging.DEBUG, logger=chatty)
    refused = f"http://127.0.0.1:{free_port()}/oncall"
    for n, oncall in enumerate((receiver.url("/oncall"), refused)):
        receiver.status = 500
        config = escalation_config(oncall, receiver.url("/manager"), timeout_s=0.1)
        async with harness(tmp_path / f"{n}.db", config, http) as h:
            await h.escalate()
            await h.at(60)  # 500, or refused
            receiver.status = 200
            await h.at(65)  # accepted, or refused again
            receiver.hang = True
            await h.at(300)  # the manager's webhook does not answer
            receiver.hang = False
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert any("webhook:oncall failed" in r.getMessage() for r in caplog.records)
    assert any("no answer" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in f"{r.getMessage()} {r.exc_text}" for r in caplog.records)


async def test_run_ticks_on_the_clock_through_network_errors(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = escalation_config(f"{dead}/oncall", f"{dead}/manager")
    async with harness(tmp_path / "s.db", config, http) as h:
        await h.escalate()
        task = asyncio.create_task(h.chain.run(), name="escalation-chain")
        try:
            async with asyncio.timeout(2):
                while h.alerts.levels() != ["0", "2"]:
                    await asyncio.sleep(0.001)
            assert not task.done()  # refused webhooks never ended the loop
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert h.clock.monotonic() >= 300


async def test_a_chain_without_an_injected_client_closes_its_own(tmp_path: Path) -> None:
    config = escalation_config("http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    async with Database(tmp_path / "s.db") as db:
        repo = EscalationRepository(db, AuditLog(db))
        async with EscalationChain(config, repo, RecordingAlerts(), ManualClock()) as chain:
            await chain.tick()
            assert chain._http is None  # nothing to send yet: no client opened
            client = chain._client()  # as the first webhook would
        assert client.is_closed
        assert chain._http is None


async def test_run_outlives_a_store_error(
    tmp_path: Path, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    config = escalation_config("http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    async with harness(tmp_path / "s.db", config, http) as h:
        await h.db.close()  # every read now fails, as a broken store would
        task = asyncio.create_task(h.chain.run(), name="escalation-chain")
        try:
            async with asyncio.timeout(2):
                while caplog.text.count("escalation check failed") < 2:
                    await asyncio.sleep(0.001)
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- a component that fails again and again ----------------------------------------


async def another_incident(h: Harness, number: int) -> str:
    incident_id = f"inc-20261126-120000-{number:06d}"
    now = h.clock.now()
    executions = ExecutionRepository(h.db)
    failure_id = f"fail-again-{number}"
    await executions.record_failure(
        failure_id, "mqtt", ERROR_ID, "critical", message="x", detected_at=now
    )
    await IncidentRepository(h.db).open(
        incident_id, "mqtt", ERROR_ID, failure_id, detail="x", now=now
    )
    return incident_id


async def test_a_component_failing_again_updates_its_escalation_instead_of_raising_another(
    h: Harness, receiver: Receiver
) -> None:
    """A broker that dies seconds after every restart: one escalation, updated."""
    first = await h.escalate()
    await h.at(5)
    assert await h.chain.resolve(INCIDENT) == 1  # restarted: healthy for a few seconds
    for number in range(1, 100):
        h.clock.advance(0.5)
        incident = await another_incident(h, number)
        last_failure_at = h.clock.now()
        escalation = await h.chain.escalate(
            incident, "mqtt", ERROR_ID, "critical", message=f"broker died again ({number})"
        )
        assert escalation == first
        h.clock.advance(0.1)
        await h.chain.resolve(incident)
    [row] = await h.db.fetchall("SELECT * FROM escalations")
    assert row["id"] == first
    assert row["occurrences"] == 100
    assert row["last_incident_id"] == "inc-20261126-120000-000099"
    assert row["last_detail"] == "broker died again (99)"
    assert row["updated_at"] == isoformat(last_failure_at)
    assert h.alerts.levels() == ["0"]  # nobody paged 100 times
    # It dies once more: reopened, and the chain goes on up its levels from its first raise.
    await h.chain.escalate(
        await another_incident(h, 100), "mqtt", ERROR_ID, "critical", message="broker died again"
    )
    await h.at(60)
    assert receiver.paths() == ["/oncall"]
    assert receiver.requests[0].body["escalation_id"] == first


async def test_a_second_reason_in_one_incident_updates_without_counting_another_incident(
    h: Harness,
) -> None:
    first = await h.escalate()
    assert (
        await h.chain.escalate(INCIDENT, "mqtt", ERROR_ID, "critical", message="breaker open")
        == first
    )
    row = await h.repo.get(first)
    assert row is not None
    assert (row["occurrences"], row["last_detail"]) == (1, "breaker open")
    assert h.alerts.levels() == ["0"]


async def test_after_an_acknowledgement_the_next_failure_raises_a_new_escalation(
    h: Harness,
) -> None:
    first = await h.escalate()
    await h.chain.resolve(INCIDENT)
    await h.repo.acknowledge(first, "alice", h.clock.now())
    second = await h.chain.escalate(
        await another_incident(h, 1), "mqtt", ERROR_ID, "critical", message="broker down again"
    )
    assert second != first
    assert h.alerts.levels() == ["0", "0"]
    row = await h.repo.get(second)
    assert row is not None
    assert row["occurrences"] == 1


async def test_a_failure_long_after_the_last_recovery_raises_a_new_escalation(
    h: Harness,
) -> None:
    first = await h.escalate()
    await h.chain.resolve(INCIDENT)  # healthy again; nobody acknowledged: nothing to answer
    h.clock.advance(EscalationConfig().repeat_window_s + 1)
    second = await h.chain.escalate(
        await another_incident(h, 1), "mqtt", ERROR_ID, "critical", message="broker down next day"
    )
    assert second != first
    assert h.alerts.levels() == ["0", "0"]


async def test_other_components_get_their_own_escalations(h: Harness) -> None:
    first = await h.escalate()
    now = h.clock.now()
    await ExecutionRepository(h.db).record_failure(
        "fail-k", "knx", ERROR_ID, "high", message="x", detected_at=now
    )
    await IncidentRepository(h.db).open("inc-knx", "knx", ERROR_ID, "fail-k", detail="x", now=now)
    other = await h.chain.escalate("inc-knx", "knx", ERROR_ID, "high", message="knx bridge down")
    assert other != first
    assert await h.chain.resolve("inc-knx") == 1
    row = await h.repo.get(first)
    assert row is not None and row["closed_at"] is None  # the broker's still calls
