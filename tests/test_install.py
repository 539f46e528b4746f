"""scripts/install: the program, the configuration, the state directory and the unit, as
on a controller; staged under DESTDIR, moved into place, re-installed and removed.

Each install builds a real virtual environment from this checkout (pip, not editable),
so the tests share two installs per module: one staged at the default paths (for the
layout and ``systemd-analyze verify``), one staged for paths inside the test's directory
and then moved there, which must run from its new place.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from graylogic_supervisor.config import load_config
from tests.conftest import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "scripts" / "install"
NAME = "graylogic-supervisor"
UNIT = f"{NAME}.service"
HOST_UNITS = Path("/usr/lib/systemd/system")


@dataclass(frozen=True)
class Install:
    """Final paths of an install; ``root`` is where they are ("/" once in place)."""

    root: Path
    prefix: Path
    sysconfdir: Path
    localstatedir: Path

    def at(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    @property
    def program(self) -> Path:
        return self.prefix / "bin" / NAME

    @property
    def config(self) -> Path:
        return self.sysconfdir / NAME / "supervisor.yaml"

    @property
    def state_dir(self) -> Path:
        return self.localstatedir / "lib" / NAME

    @property
    def unit(self) -> Path:
        return self.sysconfdir / "systemd" / "system" / UNIT

    def options(self) -> list[str]:
        return [
            "--prefix",
            str(self.prefix),
            "--sysconfdir",
            str(self.sysconfdir),
            "--localstatedir",
            str(self.localstatedir),
        ]


def install(*args: str, destdir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """scripts/install as an operator runs it (DESTDIR for a staged one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "PYTHONPATH")}
    if destdir is not None:
        env["DESTDIR"] = str(destdir)
    result = subprocess.run(
        [str(INSTALL), *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def program(
    where: Install, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed program, on its own environment (never this checkout's package)."""
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(where.at(where.program)), *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=where.root if where.root != Path("/") else None,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Install:
    """Staged under DESTDIR at the default paths, as a package build would."""
    root = tmp_path_factory.mktemp("destdir")
    install(destdir=root)
    return Install(root, Path("/usr/local"), Path("/etc"), Path("/var"))


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Install:
    """Staged under DESTDIR for paths inside the test's directory, then moved there."""
    base = tmp_path_factory.mktemp("controller")
    final = Install(Path("/"), base / "usr", base / "etc", base / "var")
    stage = tmp_path_factory.mktemp("stage")
    install(*final.options(), destdir=stage)
    for part in ("usr", "etc", "var"):
        shutil.move(stage / base.relative_to("/") / part, base / part)
    return final


# --- The staged tree ------------------------------------------------------------------


def test_staged_files_go_where_the_unit_expects_them(staged: Install) -> None:
    link = staged.at(staged.program)
    assert link.is_symlink() and not link.readlink().is_absolute()
    assert link.resolve() == staged.at(Path("/usr/local/lib") / NAME / "bin" / NAME)
    unit_text = staged.at(staged.unit).read_text()
    assert f"ExecStart={staged.program} run --config {staged.config}\n" in unit_text
    assert unit_text == (REPO / "systemd" / UNIT).read_text()  # the default paths need no change
    wants = staged.at(staged.unit.parent / "multi-user.target.wants" / UNIT)
    assert wants.readlink() == staged.unit
    modes = {
        path: staged.at(path).stat().st_mode & 0o777
        for path in (staged.config.parent, staged.config, staged.state_dir)
    }
    assert modes == {staged.config.parent: 0o750, staged.config: 0o640, staged.state_dir: 0o750}
    playbooks = sorted(p.name for p in staged.at(staged.config.parent / "playbooks").iterdir())
    assert playbooks == sorted(p.name for p in (REPO / "playbooks").glob("*.yaml"))


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl missing")
def test_systemctl_sees_the_staged_unit_enabled(staged: Install) -> None:
    answer = subprocess.run(
        ["systemctl", f"--root={staged.root}", "is-enabled", UNIT],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (answer.returncode, answer.stdout.strip()) == (0, "enabled")


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not HOST_UNITS.is_dir(),
    reason="systemd-analyze or the system's units missing",
)
def test_systemd_analyze_verify_passes_on_the_installed_unit(staged: Install) -> None:
    # A root needs the system's own units (sysinit.target, ...), as a controller has.
    units = staged.root / HOST_UNITS.relative_to("/")
    if not units.exists():
        shutil.copytree(HOST_UNITS, units, symlinks=True)
    verify = ["systemd-analyze", f"--root={staged.root}", "verify", "--man=no", UNIT]

    passed = subprocess.run(verify, capture_output=True, text=True, timeout=60, check=False)

    # systemd-analyze exits 0 on warnings: stderr is the verdict.
    assert (passed.returncode, passed.stderr) == (0, "")
    link = staged.at(staged.program)
    aside = link.with_name("aside")
    link.rename(aside)  # as shipped before this install existed
    try:
        failed = subprocess.run(verify, capture_output=True, text=True, timeout=60, check=False)
    finally:
        aside.rename(link)
    assert failed.returncode != 0
    assert f"Command {staged.program} is not executable" in failed.stderr


def test_the_staged_config_names_absolute_final_paths(staged: Install) -> None:
    text = staged.at(staged.config).read_text()
    config = load_config(staged.at(staged.config))

    assert config.state_dir == Path("/var/lib") / NAME
    assert config.database_path == Path("/var/lib") / NAME / "supervisor.db"
    assert config.catalog == Path("/etc") / NAME / "catalog.yaml"
    assert config.playbooks.directory == Path("/etc") / NAME / "playbooks"
    assert "state_dir: /var/lib/graylogic-supervisor " in text
    assert "# SQLite database, broker config and service logs" in text  # comments stay


def test_nothing_staged_names_the_staging_directory(staged: Install) -> None:
    staging = str(staged.root).encode()
    named = [
        path
        for path in staged.root.rglob("*")
        if path.is_file() and not path.is_symlink() and staging in path.read_bytes()
    ]
    assert named == []


# --- Moved into place ---------------------------------------------------------------


def test_the_moved_program_runs_on_its_own_environment(moved: Install) -> None:
    helped = program(moved, "--help")
    venv_python = moved.prefix / "lib" / NAME / "bin" / "python"
    origin = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import graylogic_supervisor; print(graylogic_supervisor.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=moved.prefix,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=True,
    )

    assert helped.returncode == 0 and "usage: graylogic-supervisor" in helped.stdout
    assert Path(origin.stdout.strip()).is_relative_to(moved.prefix / "lib" / NAME)


def test_the_moved_config_checks_and_commands_find_the_store_through_it(moved: Install) -> None:
    checked = program(moved, "check-config", str(moved.config))
    listed = program(
        moved, "executions", "list", env={"GRAYLOGIC_SUPERVISOR_CONFIG": str(moved.config)}
    )

    assert checked.returncode == 0, checked.stderr
    assert f"{moved.config}: ok (" in checked.stdout
    assert f"no database at {moved.state_dir / 'supervisor.db'}" in listed.stdout + listed.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_unit_of_another_prefix_runs_the_program_there_and_verifies(moved: Install) -> None:
    unit_text = moved.unit.read_text()
    verified = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(moved.unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert f"ExecStart={moved.program} run --config {moved.config}\n" in unit_text
    assert f"WorkingDirectory={moved.state_dir}\n" in unit_text
    assert f"ReadWritePaths={moved.state_dir}\n" in unit_text
    assert (verified.returncode, verified.stderr) == (0, "")


def test_a_reinstall_keeps_a_changed_config_and_the_daemon_writes_the_password_file(
    moved: Install, tmp_path: Path
) -> None:
    config = yaml.safe_load(moved.config.read_text())
    config["admin"]["port"] = free_port()
    config["broker"]["mode"] = "process"
    config["broker"]["process_port"] = free_port()
    config["mqtt"]["topic_root"] = f"install{config['broker']['process_port']}"
    changed = yaml.safe_dump(config)
    moved.config.write_text(changed)

    again = install(*moved.options())

    assert moved.config.read_text() == changed
    assert f"kept your {moved.config}; this version's is {moved.config}.new" in again.stdout
    assert load_config(moved.config.with_name("supervisor.yaml.new")).state_dir == moved.state_dir
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [str(moved.program), "run", "--log-format", "text"],
            stdout=out,
            stderr=out,
            env={
                **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                "GRAYLOGIC_SUPERVISOR_CONFIG": str(moved.config),
            },
            cwd=tmp_path,
        )
    password_file = moved.state_dir / "initial-admin-password"
    try:
        deadline = time.monotonic() + 30
        while "mqtt is healthy" not in log.read_text() and daemon.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    text = log.read_text()
    assert "mqtt is healthy" in text, text
    password = password_file.read_text().strip()
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert len(password) >= 16 and password not in text
    assert f"its password is in {password_file}" in text


def test_uninstall_keeps_config_and_state_and_purge_removes_them(moved: Install) -> None:
    (moved.state_dir / "kept.txt").write_text("the store stays")

    removed = install("--uninstall", *moved.options())

    for gone in (moved.program, moved.prefix / "lib" / NAME, moved.unit):
        assert not gone.exists() and not gone.is_symlink(), gone
    assert not (moved.unit.parent / "multi-user.target.wants" / UNIT).is_symlink()
    assert (moved.state_dir / "kept.txt").read_text() == "the store stays"
    assert moved.config.exists()
    assert f"kept {moved.state_dir}" in removed.stdout

    purged = install("--uninstall", "--purge", *moved.options())

    assert not moved.state_dir.exists() and not moved.config.parent.exists()
    assert f"removed {moved.state_dir}" in purged.stdout


def test_purge_without_uninstall_is_refused(tmp_path: Path) -> None:
    refused = subprocess.run(
        [str(INSTALL), "--purge", "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stderr == "install: --purge goes with --uninstall\n"


def test_a_relative_prefix_is_refused() -> None:
    refused = subprocess.run(
        [str(INSTALL), "--prefix", "usr"], capture_output=True, text=True, check=False
    )
    assert (refused.returncode, refused.stderr) == (
        1,
        "install: --prefix must be an absolute path, not usr\n",
    )
