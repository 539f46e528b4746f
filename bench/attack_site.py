"""The attacks through the daemon's other doors: its broker topics, its store, its state
directory, its signals, and its audit log at rest.

Each is a body for ``attack_target.Attack.run``: it breaks things, kills the broker once
while it does (``Attack.kill``), and adds its own figures and criteria.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from admin import log_in
from attack_target import BRIDGE, Attack, AttackDaemon, wait_until
from crash_store import audit_verify
from faults import MIB
from mqtt_ping import mqtt_connect
from processes import BenchError, Child

from graylogic_supervisor.store.audit import GENESIS, entry_hash

SECOND_RUN_WAIT_S = 30.0
DRAIN_WITHIN_S = 5.0  # after a flood, the daemon back to idle CPU within this
IDLE_CPU_PERCENT = 20.0  # of one core, over DRAIN_SAMPLE_S
DRAIN_SAMPLE_S = 0.5
DRAIN_WAIT_S = 120.0
FLOOD_LOG_LINES = 500  # the log lines an attack (flood and two broker kills) may cost
OFFLINE_SPELLS = 5
INCIDENT_WAIT_S = 30.0
HEALTH_WAIT_S = 10.0


# -- MQTT by hand -----------------------------------------------------------------


def remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        size, digit = divmod(size, 128)
        out.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(out)


def publish_packet(topic: str, payload: bytes) -> bytes:
    """MQTT 3.1.1 PUBLISH, QoS 0, not retained."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + payload
    return b"\x30" + remaining_length(len(body)) + body


def publish(port: int, packets: list[bytes]) -> None:
    """Anonymous: a fresh connection, the packets, DISCONNECT."""
    sock = mqtt_connect(port)
    if sock is None:
        raise BenchError("the broker refused an anonymous CONNECT")
    with sock:
        sock.sendall(b"".join(packets) + b"\xe0\x00")


def heartbeat(status: str) -> bytes:
    return json.dumps({"status": status, "ts": time.time()}).encode()


# -- 3: a real crash after the login bursts ------------------------------------------


def crash_after_bursts(a: Attack) -> None:
    """On the daemon of attacks 1 and 2: a broker crash must be recovered, no gate closed
    by what came before may hold it."""
    since = time.time()
    a.kill("during")
    with a.daemon.store() as db:
        rows = db.execute(
            "SELECT evaluated_at, allowed, reason, termination_rate FROM viability_evaluations"
            " WHERE component = 'mqtt' ORDER BY id"
        ).fetchall()
    a.figures["mqtt_evaluations_total"] = len(rows)
    a.figures["mqtt_evaluations_denied"] = sum(1 for r in rows if not r["allowed"])
    a.figures["evaluations_of_this_crash"] = [
        dict(r) for r in rows if r["evaluated_at"] >= time_iso(since)
    ]


def time_iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall))


# -- 4: a second daemon on the same state directory -------------------------------------


def second_run(daemon: AttackDaemon, log_name: str) -> tuple[int | None, float]:
    """``graylogic-supervisor run`` on the live daemon's config; its exit code (None: still
    running after ``SECOND_RUN_WAIT_S``, then stopped) and how long it ran."""
    argv = [sys.executable, "-m", "graylogic_supervisor", "run", "--config"]
    child = Child(
        [*argv, str(daemon.config_path), "--log-format", "text"],
        daemon.workdir / log_name,
        daemon.workdir,
    )
    started = time.monotonic()
    try:
        code: int | None = child.popen.wait(SECOND_RUN_WAIT_S)
    except subprocess.TimeoutExpired:
        code = None
    ran_s = round(time.monotonic() - started, 2)
    child.stop()
    return code, ran_s


def pid_files(daemon: AttackDaemon) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((daemon.state_dir / "run").glob("*.pid"))}


def second_instance(a: Attack) -> None:
    """A second ``run`` on the same state directory must exit 1 and touch nothing; a
    broker killed while another one starts must still be recovered by the first."""
    daemon = a.daemon
    broker, files = daemon.broker_children(), pid_files(daemon)
    code, ran_s = second_run(daemon, "second-run.log")
    a.figures.update(second_exit_code=code, second_ran_s=ran_s)
    a.figures["second_log_tail"] = (daemon.workdir / "second-run.log").read_text(
        encoding="utf-8", errors="replace"
    )[-1500:]
    a.criteria["second_exits_1"] = code == 1
    a.criteria["broker_pid_unchanged"] = bool(broker) and daemon.broker_children() == broker
    a.criteria["pid_files_untouched"] = pid_files(daemon) == files
    killer = a.kill_in_background("during", 0.3)
    code, _ = second_run(daemon, "second-run-during-kill.log")
    killer.join()
    a.figures["second_exit_code_during_kill"] = code


# -- 5: another process holds the store's write lock -----------------------------------


def store_locked(a: Attack) -> None:
    """``BEGIN IMMEDIATE`` held by another process while the broker is killed."""
    hold_s = 5.0 if a.short else 15.0
    connection = sqlite3.connect(a.daemon.db_path, timeout=5, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        locked = time.monotonic()
        a.kill("during")
        time.sleep(max(locked + hold_s - time.monotonic(), 0.0))
        a.figures["lock_held_s"] = round(time.monotonic() - locked, 2)
        connection.execute("ROLLBACK")
    finally:
        connection.close()


# -- 6: heartbeats anyone on the broker can send -----------------------------------------


def bridge_incidents(daemon: AttackDaemon, since: str) -> tuple[int, int]:
    """Incidents of the bridge opened since ``since``, and how many of them are still open."""
    with daemon.store() as db:
        opened, still = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(closed_at IS NULL), 0) FROM incidents"
            " WHERE component = ? AND opened_at >= ?",
            (BRIDGE.name, since),
        ).fetchone()
    return int(opened), int(still)


def offline_spell(daemon: AttackDaemon, topic: str, since: str, spell_s: float) -> bool:
    """``offline`` for the bridge, anonymously, every 0.1 s for ``spell_s`` or until the
    daemon opens an incident for it, while the real bridge keeps beating; then left until
    that incident is closed. Whether an incident was opened (a healthy bridge failed)."""
    before, _ = bridge_incidents(daemon, since)
    deadline = time.monotonic() + spell_s
    sock = mqtt_connect(daemon.port)
    if sock is None:
        raise BenchError("the broker refused an anonymous CONNECT")
    with sock:
        while bridge_incidents(daemon, since)[0] == before:
            if time.monotonic() > deadline:
                return False
            sock.sendall(publish_packet(topic, heartbeat("offline")))
            time.sleep(0.1)
    wait_until(lambda: bridge_incidents(daemon, since)[1] == 0, INCIDENT_WAIT_S)
    return True


def heartbeats(a: Attack) -> None:
    """Five spells of anonymous ``offline`` heartbeats for a configured bridge that keeps
    beating: no incident for it and no safe mode. Then the
    bridge's process killed while ``online`` is faked for it: never healthy while dead,
    and restarted all the same."""
    daemon = a.daemon
    topic = f"{daemon.topic_root}/health/{BRIDGE.name}"
    since = time_iso(time.time())
    # Each spell lasts several of the bridge's windows: long enough to fail it, were an
    # anonymous `offline` (or the heartbeats it crowds out) believed.
    spell_s = (3 if a.short else 10) * (BRIDGE.heartbeat_window_s + BRIDGE.check_interval_s)
    spells = sum(offline_spell(daemon, topic, since, spell_s) for _ in range(OFFLINE_SPELLS))
    time.sleep(1.0)
    with daemon.store() as db:
        safe = db.execute("SELECT active, reason FROM safe_mode").fetchone()
    a.figures["safe_mode"] = dict(safe) if safe else None
    a.figures["offline_spells_that_opened_an_incident"] = spells
    a.figures["bridge_incidents"] = bridge_incidents(daemon, since)[0]
    a.criteria["no_safe_mode_from_one_bridge"] = not (safe and safe["active"])
    a.criteria["no_incident_from_anonymous_offline"] = spells == 0
    a.kill("during")
    fake_online(a, topic, 4.0 if a.short else 10.0)


def fake_online(a: Attack, topic: str, seconds: float) -> None:
    daemon = a.daemon
    bridge = daemon.bridge_process(BRIDGE)
    if bridge is None:
        raise BenchError("no bridge process to kill")
    dead_pid = bridge.pid
    bridge.kill()
    killed = time.monotonic()
    grace_s = BRIDGE.heartbeat_window_s + BRIDGE.check_interval_s  # its own detection bound
    lies = dead_samples = healthy_while_dead = 0
    sock = mqtt_connect(daemon.port)
    if sock is None:
        raise BenchError("the broker refused an anonymous CONNECT")
    with sock:
        while time.monotonic() - killed < seconds:
            with contextlib.suppress(OSError):
                sock.sendall(publish_packet(topic, heartbeat("online")))
                lies += 1
            live = daemon.bridge_process(BRIDGE)
            dead = live is None or live.pid == dead_pid
            gauge = daemon.component_healthy(BRIDGE.name)
            if dead and time.monotonic() - killed > grace_s:
                dead_samples += 1
                healthy_while_dead += gauge == 1.0
            time.sleep(0.1)
    restarted = wait_until(
        lambda: (p := daemon.bridge_process(BRIDGE)) is not None and p.pid != dead_pid,
        HEALTH_WAIT_S,
    )
    a.figures.update(
        fake_online_sent=lies,
        samples_bridge_dead=dead_samples,
        samples_healthy_while_dead=healthy_while_dead,
        bridge_restarted=restarted,
    )
    a.criteria["never_healthy_while_dead"] = healthy_while_dead == 0
    a.criteria["dead_bridge_restarted"] = restarted
    wait_until(lambda: daemon.component_healthy(BRIDGE.name) == 1.0, HEALTH_WAIT_S)


# -- 7: a flood of the daemon's subscription ------------------------------------------------


def flood_packets(root: str) -> bytes:
    """One batch: valid heartbeats of the bridge, malformed ones, unknown bridges."""
    bridge = f"{root}/health/{BRIDGE.name}"
    batch = []
    for i in range(100):
        batch.append(publish_packet(bridge, heartbeat("online")))
        batch.append(publish_packet(bridge, b'{"status": "on' + str(i).encode()))
        batch.append(publish_packet(f"{root}/health/intruder{i}", heartbeat("online")))
    return b"".join(batch)


def flood(port: int, batch: bytes, until: float, sent: list[int]) -> None:
    """As fast as the socket takes them, reconnecting when the broker goes."""
    per_batch = batch.count(b"\x30")  # close enough: a count, not an exact figure
    while time.monotonic() < until:
        sock = mqtt_connect(port, timeout_s=0.5)
        if sock is None:
            time.sleep(0.01)
            continue
        with sock:
            try:
                while time.monotonic() < until:
                    sock.sendall(batch)
                    sent[0] += per_batch
            except OSError:
                continue


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def mqtt_flood(a: Attack) -> None:
    seconds = 5.0 if a.short else 20.0
    daemon = a.daemon
    proc = psutil.Process(daemon.pid)
    offset = daemon.log_size()
    sent = [0]
    until = time.monotonic() + seconds
    thread = threading.Thread(
        target=flood, args=(daemon.port, flood_packets(daemon.topic_root), until, sent)
    )
    thread.start()
    time.sleep(seconds / 2)
    a.kill("during")
    thread.join()
    ended = time.monotonic()
    drained_s = None
    while time.monotonic() - ended < DRAIN_WAIT_S and daemon.alive():
        before = cpu_seconds(proc)
        time.sleep(DRAIN_SAMPLE_S)
        if 100 * (cpu_seconds(proc) - before) / DRAIN_SAMPLE_S < IDLE_CPU_PERCENT:
            drained_s = round(time.monotonic() - ended - DRAIN_SAMPLE_S, 2)
            break
    log = daemon.log_since(offset)
    lines = log.count("\n")
    a.figures.update(
        flood_s=seconds,
        messages_sent=sent[0],
        drained_after_s=drained_s,
        log_lines_flood=lines,
        log_mb_flood=round(len(log.encode()) / MIB, 2),
        rss_mb_after_flood=round(proc.memory_info().rss / MIB, 1),
    )
    a.criteria["backlog_drained"] = drained_s is not None and drained_s <= DRAIN_WITHIN_S
    a.criteria["log_volume_bounded"] = lines <= FLOOD_LOG_LINES


# -- 9: the audit chain tampered with at rest -------------------------------------------------


def tampered_copy(daemon: AttackDaemon, name: str) -> tuple[Path, sqlite3.Connection]:
    """A copy of the stopped daemon's state directory and a config that points at it."""
    home = daemon.workdir / f"tampered-{name}"
    shutil.copytree(daemon.state_dir, home / "state", ignore=shutil.ignore_patterns("run"))
    config = daemon.config()
    config["state_dir"] = str(home / "state")
    path = home / "supervisor.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    db = sqlite3.connect(home / "state" / daemon.db_path.name, isolation_level=None)
    for (trigger,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
    ).fetchall():
        db.execute(f'DROP TRIGGER "{trigger}"')
    return path, db


def recompute_chain(db: sqlite3.Connection) -> None:
    """Change the first entry's detail, then every hash after it, as the code computes them."""
    rows = db.execute(
        "SELECT seq, at, actor, action, subject, detail FROM audit_log ORDER BY seq"
    ).fetchall()
    prev = GENESIS
    db.execute("BEGIN")
    for i, (seq, at, actor, action, subject, detail) in enumerate(rows):
        if i == 0:
            detail = json.dumps({"tampered": True})
        digest = entry_hash(prev, seq, at, actor, action=action, subject=subject, detail=detail)
        db.execute(
            "UPDATE audit_log SET detail = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (detail, prev, digest, seq),
        )
        prev = digest
    db.execute("COMMIT")


def verify_exit(config: Path) -> tuple[int, str]:
    verify = audit_verify(config)
    out, _ = verify.communicate(timeout=60)
    return verify.returncode, out.strip()[-500:]


def audit_tampering(a: Attack) -> None:
    """Entries written (logins), the broker killed, the daemon stopped; then on copies of
    its state: the chain's tail deleted, the chain recomputed after a change. ``audit
    verify`` must exit 1 on both and 0 on an untouched copy. The daemon is started again
    on its own state for the kill after."""
    daemon = a.daemon
    password = daemon.password()
    for _ in range(3):
        asyncio_log_in(daemon, password)
    a.kill("during")
    a.watch.killed.update(daemon.broker_children())  # stopping the daemon stops its broker
    daemon.close()
    a.figures["stop_exit_code"] = daemon.daemon.popen.returncode
    entries = sqlite3.connect(daemon.db_path).execute("SELECT COUNT(*) FROM audit_log")
    a.figures["audit_entries"] = entries.fetchone()[0]
    results: dict[str, Any] = {}
    for name in ("untouched", "tail_deleted", "chain_recomputed"):
        config, db = tampered_copy(daemon, name)
        with contextlib.closing(db):
            if name == "tail_deleted":
                db.execute("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")
            elif name == "chain_recomputed":
                recompute_chain(db)
        code, out = verify_exit(config)
        results[name] = {"exit": code, "output": out}
    a.figures["verify"] = results
    a.criteria["untouched_copy_verifies"] = results["untouched"]["exit"] == 0
    a.criteria["tail_deletion_detected"] = results["tail_deleted"]["exit"] == 1
    a.criteria["recomputed_chain_detected"] = results["chain_recomputed"]["exit"] == 1
    daemon.children = [c for c in daemon.children if c.popen.poll() is None]
    daemon.LOG_NAME = "daemon-restarted.log"  # start-up is read from a log of its own
    daemon.__enter__()


def asyncio_log_in(daemon: AttackDaemon, password: str) -> None:
    async def once() -> None:
        async with httpx.AsyncClient(base_url=daemon.base_url, timeout=60) as client:
            await log_in(client, password)

    asyncio.run(once())


# -- 10: a burst of SIGHUP ---------------------------------------------------------------------


def sighup_burst(a: Attack) -> None:
    """50 SIGHUPs within a second (a reload each), the broker killed in the middle."""
    offset = a.daemon.log_size()
    killer = a.kill_in_background("during", 0.5)
    sent = 0
    for _ in itertools.repeat(None, 50):
        with contextlib.suppress(ProcessLookupError):
            os.kill(a.daemon.pid, signal.SIGHUP)
            sent += 1
        time.sleep(0.02)
    killer.join()
    time.sleep(1.0)
    a.figures["sighup_sent"] = sent
    a.figures["reload_lines"] = a.daemon.log_since(offset).count("reload")
