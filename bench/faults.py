"""What ``chaos.py`` and ``soak.py`` share: the daemon with the shipped policy, and readings.

The daemon under test is ``BenchDaemon`` (its own Mosquitto through the process
backend, its own store, topic root and admin port) with three changes, all in its
config, none in its code:

- the recovery policy is the shipped one (``config/supervisor.yaml``), with only
  durations shortened (``SHORTENABLE``): counts, windows and rates stay as shipped,
  so every give-up rule fires as it would on a site, only sooner over;
- the components under test are ``policy.essentials``: safe mode is entered (five
  incidents within 60 s) and held, but the essentials still recover, as on a site
  that lists its broker as essential;
- ``admin.metrics_token`` is set, so ``/metrics`` can be scraped without a login.
"""

from __future__ import annotations

import contextlib
import math
import re
import secrets
import signal
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from daemon_under_test import BenchDaemon, Bridge
from mqtt_ping import HOST, mqtt_connect
from processes import BenchError, broker_child, children_running, is_live
from supervisors import REPO

MIB = 1_048_576
SHIPPED_CONFIG = REPO / "config" / "supervisor.yaml"
# The durations a harness may shorten so a run fits in minutes; nothing else.
SHORTENABLE = frozenset(
    {"rearm_after_s", "open_cooldown_s", "max_open_cooldown_s", "stabilisation_s"}
)
TASKS_GAUGE = "graylogic_supervisor_asyncio_tasks"
TRACEBACK = "Traceback (most recent call last)"


def shipped_policy(essentials: Sequence[str], **durations: float) -> dict[str, Any]:
    """The shipped policy section with ``durations`` shortened; anything else is refused."""
    refused = set(durations) - SHORTENABLE
    if refused:
        raise BenchError(f"only durations may change, not {sorted(refused)}")
    policy = dict(yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8"))["policy"])
    for name, value in durations.items():
        if value > policy.get(name, math.inf):
            raise BenchError(f"{name} {value:g} s is longer than the shipped one")
    return {**policy, **durations, "essentials": list(essentials)}


class FaultDaemon(BenchDaemon):
    """``BenchDaemon`` with a metrics token and the playbooks' cooldowns shortened too."""

    def __init__(
        self,
        workdir: Path,
        *,
        policy: dict[str, Any],
        playbook_cooldown_s: float,
        bridges: tuple[Bridge, ...] = (),
        step_timeout_s: float = 3.0,
    ) -> None:
        super().__init__(workdir, bridges=bridges, policy=policy, step_timeout_s=step_timeout_s)
        self.playbook_cooldown_s = playbook_cooldown_s
        self.metrics_token = secrets.token_hex(16)
        self.admin_port = 0

    def _config(self) -> str:
        config = yaml.safe_load(super()._config())
        config["admin"]["metrics_token"] = self.metrics_token
        self.admin_port = int(config["admin"]["port"])
        return yaml.safe_dump(config, sort_keys=False)

    def _playbooks(self) -> Path:
        """The shipped playbooks with every step's timeout and the cooldown after a failed
        run cut to test sizes (``limits.timeout_seconds``, the whole run's, stays)."""
        directory = super()._playbooks()
        step = f"    timeout_seconds: {self.step_timeout_s:g}"
        for path in directory.glob("*.yaml"):
            text = path.read_text(encoding="utf-8")
            text = re.sub(r"^    timeout_seconds: \d+$", step, text, flags=re.MULTILINE)
            text = re.sub(
                r"cooldown_seconds: \d+", f"cooldown_seconds: {self.playbook_cooldown_s:g}", text
            )
            path.write_text(text, encoding="utf-8")
        return directory

    def playbook(self, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(
            (self.workdir / "playbooks" / name).read_text(encoding="utf-8")
        )
        return loaded

    def config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(
            (self.workdir / "supervisor.yaml").read_text(encoding="utf-8")
        )
        return loaded

    # -- the broker -------------------------------------------------------------

    def live_broker(self) -> int | None:
        """The daemon's Mosquitto child, if there is exactly one and it answers CONNECT."""
        pid = broker_child(self.pid, self.workdir)
        if pid is None:
            return None
        sock = mqtt_connect(self.port, timeout_s=0.5)
        if sock is None:
            return None
        sock.close()
        return pid

    def kill_broker(self, pid: int) -> bool:
        """SIGKILL our broker ``pid`` if it still runs; False if it was gone already."""
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.ppid() == self.pid and proc.name() == "mosquitto" and is_live(proc):
                proc.send_signal(signal.SIGKILL)
                return True
        return False

    def bridge_process(self, bridge: Bridge) -> psutil.Process | None:
        found = children_running(self.pid, f"{self.topic_root}/health/{bridge.name}")
        return psutil.Process(found[0]) if len(found) == 1 else None

    # -- readings -----------------------------------------------------------------

    def scrape(self, timeout_s: float = 5.0) -> str:
        request = urllib.request.Request(
            f"http://{HOST}:{self.admin_port}/metrics",
            headers={"Authorization": f"Bearer {self.metrics_token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return str(response.read().decode("utf-8"))

    def tasks(self) -> int:
        """The daemon's asyncio task count, from its own gauge (the scrape's task included)."""
        match = re.search(rf"^{TASKS_GAUGE} (\S+)$", self.scrape(), re.MULTILINE)
        if match is None or match[1] == "NaN":
            raise BenchError(f"/metrics has no {TASKS_GAUGE}")
        return int(float(match[1]))

    def tracebacks(self) -> list[str]:
        """Each logged traceback, with the line before it (what was being done)."""
        lines = self.log_since(0).splitlines()
        return [
            " | ".join(lines[max(i - 1, 0) : i + 1])
            for i, line in enumerate(lines)
            if TRACEBACK in line
        ]

    def errors(self) -> list[str]:
        return [line for line in self.log_since(0).splitlines() if " ERROR " in line]


@dataclass(frozen=True)
class Sample:
    """One reading of the daemon process alone (not its broker or bridges)."""

    at_s: float
    rss_mb: float
    fds: int
    threads: int
    tasks: int


def sample(daemon: FaultDaemon, at_s: float) -> Sample:
    proc = psutil.Process(daemon.pid)
    with proc.oneshot():
        rss, fds, threads = proc.memory_info().rss, proc.num_fds(), proc.num_threads()
    return Sample(round(at_s, 2), round(rss / MIB, 3), fds, threads, daemon.tasks())


def samples_json(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    return [asdict(s) for s in samples]


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two distinct xs)."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


@contextlib.contextmanager
def running(daemon: FaultDaemon) -> Iterator[FaultDaemon]:
    """Enter the daemon and make sure its broker answers before anything is broken."""
    with daemon:
        deadline_s = 30.0
        daemon.wait_for_log(r"MQTT link to \S+ up", timeout_s=deadline_s)
        yield daemon
