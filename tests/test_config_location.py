"""Which configuration a command uses: --config, then the environment, then /etc, then
the embedded defaults; and the command says which when it was not told."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from graylogic_supervisor.config import CONFIG_ENV, default_config_path, locate_config

REPO = Path(__file__).resolve().parents[1]


def test_the_order_is_flag_environment_site_file_defaults(tmp_path: Path) -> None:
    flag, environment, site = tmp_path / "flag.yaml", tmp_path / "env.yaml", tmp_path / "etc.yaml"
    site.write_text("{}")
    env = {CONFIG_ENV: str(environment)}
    assert locate_config(flag, env, site) == (flag, "--config")
    assert locate_config(None, env, site) == (environment, f"${CONFIG_ENV}")
    assert locate_config(None, {CONFIG_ENV: "  "}, site) == (site, "the site's configuration")
    assert locate_config(None, {}, tmp_path / "absent.yaml") == (
        default_config_path(),
        "the embedded defaults",
    )


def test_a_command_finds_the_store_through_the_environment_from_any_directory(
    tmp_path: Path,
) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "catalog": str(REPO / "config" / "catalog.yaml"),
                "playbooks": {"directory": str(REPO / "playbooks")},
                "components": {"mqtt": {"kind": "mqtt", "error_id": "ERR-INFRA-MQTT-001"}},
            }
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def safe_mode(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "graylogic_supervisor", "safe-mode", *args],
            cwd=elsewhere,
            env={**os.environ, CONFIG_ENV: str(config), "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    entered = safe_mode("enter", "--reason", "storm", "--by", "ida")
    assert entered.returncode == 0, entered.stderr
    assert f"config: {config} (${CONFIG_ENV})" in entered.stderr
    assert (tmp_path / "state").is_dir()  # the config's state, not ./.state here
    assert not (elsewhere / ".state").exists()
    status = safe_mode("status")
    assert "storm" in status.stdout
