"""The attacks on the admin server: idle connections, login bursts, hostile bodies.

Each is a body for ``attack_target.Attack.run``: it breaks things, kills the broker once
while it does (``Attack.kill``), and adds its own figures and criteria.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import Counter
from typing import Any

import httpx
from admin import CSRF_FIELD, SESSION_COOKIE, log_in
from attack_target import Attack, AttackDaemon
from mqtt_ping import HOST
from processes import BenchError

LOGIN_COOKIE = "gls_login_csrf"  # the login form's double-submit cookie (web/auth.py)
LOGIN_LIMIT = 5  # failed logins a user and an address get within the window (the issue's)
REQUEST_TIMEOUT_S = 120.0
BURST_TIMEOUT_S = 20.0  # short mode: a guess unanswered by then counts as unanswered
SLOWLORIS_EVERY_S = 2.0


# -- 1: idle connections and slowloris ---------------------------------------------


def open_idle(port: int, wanted: int) -> tuple[list[socket.socket], str | None]:
    """Up to ``wanted`` TCP connections that send nothing; stops at the first refusal."""
    opened: list[socket.socket] = []
    for _ in range(wanted):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(2.0)
        try:
            sock.connect((HOST, port))
        except OSError as exc:
            sock.close()
            return opened, f"after {len(opened)}: {exc}"
        opened.append(sock)
    return opened, None


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed (or reset) this connection."""
    try:
        sock.setblocking(False)
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def slowloris(socks: list[socket.socket], stop: threading.Event) -> None:
    """A request line, then one header byte per connection every few seconds, never done."""
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: admin\r\nX-Slow: ")
    while not stop.wait(SLOWLORIS_EVERY_S):
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.sendall(b"a")


def idle_connections(a: Attack) -> None:
    """Idle connections to the admin port up to a cap or the first refusal, and slowloris
    connections beside them; the broker is killed while they are held."""
    wanted, slow, hold_s = (2000, 100, 8.0) if a.short else (2000, 300, 30.0)
    port = a.daemon.admin_port
    started = time.monotonic()
    idle, refused = open_idle(port, wanted)
    slow_socks, slow_refused = open_idle(port, slow)
    stop = threading.Event()
    loris = threading.Thread(target=slowloris, args=(slow_socks, stop), daemon=True)
    loris.start()
    a.figures.update(
        idle_opened=len(idle),
        idle_wanted=wanted,
        idle_refused=refused,
        slowloris_opened=len(slow_socks),
        slowloris_refused=slow_refused,
        opened_in_s=round(time.monotonic() - started, 2),
        hold_s=hold_s,
    )
    try:
        a.figures["healthz_while_held"] = a.daemon.healthz(timeout_s=5.0)
        a.kill("during")
        time.sleep(max(started + hold_s - time.monotonic(), 0.0))
        a.figures["idle_closed_by_server"] = sum(closed_by_peer(s) for s in idle)
        a.figures["slowloris_closed_by_server"] = sum(closed_by_peer(s) for s in slow_socks)
    finally:
        stop.set()
        loris.join()
        for sock in idle + slow_socks:
            sock.close()


# -- 2: bursts of wrong logins -------------------------------------------------------


async def login_token(client: httpx.AsyncClient) -> str:
    """The login form's double-submit token (its hidden field; the cookie holds the same)."""
    form = await client.get("/login")
    found = CSRF_FIELD.search(form.text)
    if form.status_code != 200 or found is None:
        raise BenchError(f"GET /login answered {form.status_code} without a csrf_token field")
    return found[1]


async def login_burst(
    base_url: str, address: str, user: str, size: int, timeout_s: float
) -> Counter[str]:
    """``size`` wrong logins at once from ``address``, through the real form: one GET for
    the double-submit token, then every POST with its cookie and field."""
    limits = httpx.Limits(max_connections=size + 1, max_keepalive_connections=size + 1)
    transport = httpx.AsyncHTTPTransport(local_address=address, limits=limits)
    async with httpx.AsyncClient(
        base_url=base_url, transport=transport, timeout=timeout_s
    ) as client:
        token = await login_token(client)

        async def guess(i: int) -> str:
            try:
                answer = await client.post(
                    "/login",
                    data={"csrf_token": token, "user": user, "password": f"guess-{i}"},
                    headers={"Cookie": f"{LOGIN_COOKIE}={token}"},
                )
            except httpx.HTTPError as exc:
                return type(exc).__name__
            return str(answer.status_code)

        return Counter(await asyncio.gather(*(guess(i) for i in range(size))))


REFUSALS = ("401", "429", "503", "ReadError", "RemoteProtocolError")


def login_bursts(a: Attack) -> None:
    """Bursts of 150 concurrent wrong logins, each from its own loopback address and for
    its own user name (``admin`` first), as an attacker rotating both would; the broker is
    killed during the first burst."""
    bursts, size = (2, 150) if a.short else (13, 150)
    timeout_s = BURST_TIMEOUT_S if a.short else REQUEST_TIMEOUT_S
    results: list[dict[str, Any]] = []
    failure: list[BaseException] = []

    def attack() -> None:
        for k in range(bursts):
            user = "admin" if k == 0 else f"operator{k}"
            started = time.monotonic()
            try:
                outcomes = asyncio.run(
                    login_burst(a.daemon.base_url, f"127.0.0.{10 + k}", user, size, timeout_s)
                )
            except (BenchError, httpx.HTTPError, OSError) as exc:
                failure.append(exc)
                return
            results.append(
                {"user": user, "seconds": round(time.monotonic() - started, 2), **outcomes}
            )

    thread = threading.Thread(target=attack, name="logins", daemon=True)
    thread.start()
    time.sleep(1.0)  # the first burst is being hashed
    a.kill("during")
    thread.join()
    a.figures.update(bursts=results, burst_size=size, request_timeout_s=timeout_s)
    verified = [r.get("401", 0) for r in results]
    a.figures["argon2_verifications_per_burst"] = verified
    # Every guess refused at once: wrong (401), over the limit (429), the password pool
    # busy (503, Retry-After), or the connection closed at the admin server's cap. A
    # timeout, a 5xx other than 503 or a success is a failure.
    a.criteria["bursts_answered"] = len(results) == bursts and all(
        sum(v for k, v in r.items() if k in REFUSALS) == size for r in results
    )
    a.criteria["at_most_the_limit_verified"] = all(v <= LOGIN_LIMIT for v in verified)
    if failure:
        raise BenchError(f"burst {len(results) + 1}: {failure[0]!r}")


# -- 8: a deeply nested body, and a lockout of admin ------------------------------------


def nested(depth: int) -> dict[str, bytes]:
    """JSON bodies nested ``depth`` deep, under the API's 16 KiB body limit."""
    return {
        "arrays": b"[" * depth + b"]" * depth,
        "objects": b'{"a":' * depth + b"1" + b"}" * depth,
    }


async def hostile_requests(daemon: AttackDaemon, password: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=daemon.base_url, timeout=REQUEST_TIMEOUT_S) as me:
        await log_in(me, password)
        csrf = (await me.get("/api/v1/session")).json()["csrf"]
        statuses = {}
        for name, body in nested(2500).items():
            answer = await me.post(
                "/api/v1/safe-mode/leave",
                content=body,
                headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
            )
            statuses[name] = answer.status_code
    wrong = Counter[str]()
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(
        base_url=daemon.base_url, transport=transport, timeout=REQUEST_TIMEOUT_S
    ) as attacker:
        for i in range(LOGIN_LIMIT):
            token = await login_token(attacker)
            answer = await attacker.post(
                "/login", data={"csrf_token": token, "user": "admin", "password": f"no{i}"}
            )
            wrong[str(answer.status_code)] += 1
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.3")
    async with httpx.AsyncClient(
        base_url=daemon.base_url, transport=transport, timeout=REQUEST_TIMEOUT_S
    ) as owner:
        token = await login_token(owner)
        answer = await owner.post(
            "/login", data={"csrf_token": token, "user": "admin", "password": password}
        )
        owner_in = answer.status_code == 303 and SESSION_COOKIE in owner.cookies
    return {
        "nested_body_status": statuses,
        "wrong_logins_from_elsewhere": dict(wrong),
        "admin_login_from_another_address": answer.status_code,
        "admin_logged_in": owner_in,
    }


def hostile_bodies(a: Attack) -> None:
    """A deeply nested JSON body to the API, then five wrong logins for ``admin`` from one
    address and the right one from another; the broker is killed meanwhile."""
    password = a.daemon.password()
    killer = a.kill_in_background("during", 0.2)
    try:
        found = asyncio.run(hostile_requests(a.daemon, password))
    except httpx.HTTPError as exc:
        raise BenchError(f"{exc!r}") from exc
    finally:
        killer.join()
    a.figures.update(found)
    a.criteria["nested_body_400"] = all(s == 400 for s in found["nested_body_status"].values())
    a.criteria["admin_not_locked_out_elsewhere"] = found["admin_logged_in"]
