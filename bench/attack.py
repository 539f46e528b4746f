"""Attacks on a live daemon (issue 13): each must leave it alive and supervising.

Each attack runs against a real daemon (``attack_target.AttackDaemon``: its own
Mosquitto through the process backend, a ``bridge-knx`` run by the process backend,
the shipped recovery policy with only durations shortened, the admin page on a free
port, the soft file limit of a systemd unit), in bounded loops on loopback:

====  =====================  ==================================================================
 1    idle_connections       2,000 idle TCP connections to the admin port (or until refused),
                             and slowloris connections sending a header byte every 2 s
 2    login_bursts           bursts of 150 concurrent wrong logins through the real form
 3    crash_after_bursts     after 1 and 2, on the same daemon: a real broker crash
 4    second_instance        a second ``run`` on the same state directory
 5    store_locked           another process holds ``BEGIN IMMEDIATE`` on the store
 6    heartbeats             five anonymous ``offline`` heartbeats; ``online`` faked for a dead
                             bridge
 7    mqtt_flood             a flood of ``{root}/health/+``
 8    hostile_bodies         a deeply nested JSON body; five wrong logins for ``admin``
 9    audit_tampering        the audit chain's tail deleted, the chain recomputed, at rest
10    sighup_burst           50 SIGHUPs in a second
====  =====================  ==================================================================

1 to 3 share a daemon (3 is about what 1 and 2 leave behind; if one of them killed the
daemon, the next starts a fresh one and says so); every other attack has its own.

Every attack must hold (``attack_target.COMMON``): the daemon alive (its process
running and ``/healthz`` answering); the broker killed during the attack and once after
it, each back within 1 s (SIGKILL of the daemon's own Mosquitto to a CONNACK from its
successor); no restart of a healthy broker (its pid gone without our kill, or an
execution for ``mqtt`` outside our kills' windows); the daemon's peak RSS under the
unit's ``MemoryMax``; ``PRAGMA integrity_check`` ok and ``graylogic-supervisor audit
verify`` exit 0 after it; and the daemon stops on SIGTERM within its
``shutdown_grace_s`` and 10 s. Each attack adds criteria of its own.

    .venv/bin/python bench/attack.py [--json] [--short] [--only 1,2,3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil
from attack_site import (
    audit_tampering,
    crash_after_bursts,
    heartbeats,
    mqtt_flood,
    second_instance,
    sighup_burst,
    store_locked,
)
from attack_target import RECOVERED_WITHIN_S, Attack, AttackDaemon, memory_max_mb
from attack_web import hostile_bodies, idle_connections, login_bursts
from processes import BenchError, run_harness
from recovery import workspace

Body = Callable[[Attack], None]
ATTACKS: dict[str, Body] = {
    "idle_connections": idle_connections,
    "login_bursts": login_bursts,
    "crash_after_bursts": crash_after_bursts,
    "second_instance": second_instance,
    "store_locked": store_locked,
    "heartbeats": heartbeats,
    "mqtt_flood": mqtt_flood,
    "hostile_bodies": hostile_bodies,
    "audit_tampering": audit_tampering,
    "sighup_burst": sighup_burst,
}
NAMES = list(ATTACKS)
SHARED = ("idle_connections", "login_bursts", "crash_after_bursts")  # one daemon, in order
STOP_MARGIN_S = 10.0

logger = logging.getLogger("bench.attack")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise


def groups(names: Sequence[str]) -> list[list[str]]:
    """The attacks in the order of ``ATTACKS``, those of ``SHARED`` on one daemon."""
    shared = [n for n in NAMES if n in names and n in SHARED]
    alone = [[n] for n in NAMES if n in names and n not in SHARED]
    return ([shared] if shared else []) + alone


def stop(daemon: AttackDaemon) -> dict[str, Any]:
    """SIGTERM, and how long the daemon took to exit (None: not within its grace)."""
    grace_s = float(daemon.config().get("shutdown_grace_s", 10)) + STOP_MARGIN_S
    popen = daemon.daemon.popen
    if popen.poll() is not None:
        return {"exit_code": popen.returncode, "stop_s": None, "was_running": False}
    started = time.monotonic()
    popen.send_signal(signal.SIGTERM)
    try:
        code: int | None = popen.wait(grace_s)
    except subprocess.TimeoutExpired:
        code = None
    return {
        "exit_code": code,
        "stop_s": round(time.monotonic() - started, 2) if code is not None else None,
        "was_running": True,
    }


def run_group(
    group: list[str], short: bool, keep: bool, recovered_within_s: float
) -> dict[str, dict[str, Any]]:
    """The attacks of one group, each on the daemon of the one before while it lives."""
    results: dict[str, dict[str, Any]] = {}
    pending = list(group)
    while pending:
        with workspace(f"attack-{pending[0]}", keep) as workdir:
            daemon = AttackDaemon(workdir)
            ran: list[str] = []
            try:
                with daemon:
                    while pending:
                        name = pending.pop(0)
                        attack = Attack(name, daemon, short, recovered_within_s)
                        if ran:
                            attack.figures["after_on_the_same_daemon"] = list(ran)
                        elif name != group[0]:
                            attack.figures["fresh_daemon"] = "the daemon before it died"
                        results[name] = attack.run(ATTACKS[name])
                        ran.append(name)
                        if not daemon.alive():
                            break
                    stopped = stop(daemon)
            except (BenchError, OSError, psutil.Error, subprocess.SubprocessError) as exc:
                logger.error("%s: %s", pending[0] if pending else group[-1], exc)
                name = pending.pop(0) if pending and not ran else ran[-1] if ran else group[0]
                results.setdefault(name, {"ok": False, "criteria": {}, "figures": {}})
                results[name]["error"] = f"{type(exc).__name__}: {exc}"
                results[name]["ok"] = False
                stopped = {"exit_code": None, "stop_s": None, "was_running": None}
            for name in ran:
                clean = stopped["exit_code"] == 0
                results[name]["figures"]["sigterm"] = stopped
                results[name]["criteria"]["stops_on_sigterm"] = clean
                results[name]["ok"] = results[name]["ok"] and clean
    return results


def measure(args: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # ours, not the daemon's
    started = time.monotonic()
    attacks: dict[str, dict[str, Any]] = {}
    for group in groups(args.only):
        attacks.update(run_group(group, args.short, args.keep, args.recovered_within))
    ordered = {n: attacks[n] for n in NAMES if n in attacks}
    return {
        "ok": bool(ordered) and all(r["ok"] for r in ordered.values()),
        "attacks": ordered,
        "held": sum(1 for r in ordered.values() if r["ok"]),
        "short": args.short,
        "recovered_within_s": args.recovered_within,
        "memory_max_mb": memory_max_mb(),
        "seconds": round(time.monotonic() - started, 1),
    }


def table(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"attack: error: {result['error']}"
    lines = []
    for name, r in result["attacks"].items():
        figures = r["figures"]
        kills = ", ".join(f"{k['label']} {k['recovered_s']} s" for k in figures.get("kills", []))
        number = NAMES.index(name) + 1
        lines.append(f"{number:>2} {name:<22} {'held' if r['ok'] else 'FAILED'}")
        if r.get("error"):
            lines.append(f"     error: {r['error']}")
        lines.append(
            f"     broker back after kills: {kills or 'none'}; RSS peak"
            f" {figures.get('rss_mb_peak')} MiB of {figures.get('memory_max_mb')};"
            f" fds peak {figures.get('fds_peak')}; log {figures.get('log_lines')} lines"
        )
        for criterion, ok in r["criteria"].items():
            lines.append(f"     {'ok    ' if ok else 'FAILED'} {criterion}")
        shown = {
            k: v
            for k, v in figures.items()
            if k not in {"kills", "rss_mb_peak", "memory_max_mb", "fds_peak", "log_lines"}
        }
        lines.append(f"     {json.dumps(shown)[:600]}")
    lines.append(
        f"{result['held']} of {len(result['attacks'])} attacks held"
        f" ({'short' if result['short'] else 'full'} mode, {result['seconds']:g} s)"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--short", action="store_true", help="CI: shorter holds and floods")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dirs and logs")
    parser.add_argument(
        "--recovered-within",
        type=float,
        default=RECOVERED_WITHIN_S,
        metavar="S",
        help=f"a killed broker must answer within S s (the requirement: {RECOVERED_WITHIN_S:g})",
    )
    parser.add_argument(
        "--only", default="", help="attacks by number or name, comma-separated (all)"
    )
    args = parser.parse_args(argv)
    chosen = []
    for item in filter(None, args.only.split(",")):
        item = item.strip()
        if item.isdigit() and 1 <= int(item) <= len(NAMES):
            chosen.append(NAMES[int(item) - 1])
        elif item in ATTACKS:
            chosen.append(item)
        else:
            parser.error(f"no attack {item!r}: 1-{len(NAMES)} or one of {', '.join(NAMES)}")
    args.only = chosen or NAMES
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_harness(lambda: measure(args), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
