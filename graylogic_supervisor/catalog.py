"""The error catalog: what each error id means and which playbook handles it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from graylogic_supervisor.config import ERROR_ID_PATTERN, SupervisorConfig
from graylogic_supervisor.errors import CatalogError, ConfigError, SourceProblem
from graylogic_supervisor.yamlsource import LocatedData, load_located, validate_located

Severity = Literal["critical", "high", "medium", "low"]


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    severity: Severity
    symptoms: list[str] = Field(min_length=1)
    likely_causes: list[str] = Field(min_length=1)
    playbook: str | None
    expected_recovery_s: float = Field(gt=0)
    max_recovery_s: float = Field(gt=0)


class ErrorCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    errors: dict[str, CatalogEntry]

    @field_validator("errors")
    @classmethod
    def _ids_follow_the_scheme(cls, value: dict[str, CatalogEntry]) -> dict[str, CatalogEntry]:
        bad = [error_id for error_id in value if not re.match(ERROR_ID_PATTERN, error_id)]
        if bad:
            raise ValueError(f"error ids must look like ERR-DOMAIN-COMPONENT-NNN: {bad}")
        return value

    def entry(self, error_id: str) -> CatalogEntry:
        return self.errors[error_id]


def load_catalog(path: Path) -> ErrorCatalog:
    return validate_located(load_located(path, CatalogError), ErrorCatalog, CatalogError)


def check_catalog_covers(
    config: SupervisorConfig, catalog: ErrorCatalog, config_file: Path | None = None
) -> None:
    """Every component's error id must be in the catalog: a failure must be explainable.

    With ``config_file`` the errors carry the line of each ``error_id`` in it.
    """
    missing = [
        (name, component.error_id)
        for name, component in config.components.items()
        if component.error_id not in catalog.errors
    ]
    if not missing:
        return
    file = config_file or Path("config")
    located = load_located(config_file, ConfigError) if config_file else LocatedData(file, None)
    raise ConfigError(
        file,
        [
            SourceProblem(
                file,
                located.line_of(("components", name, "error_id")),
                f"components.{name}.error_id",
                f"{error_id} is not in the catalog {config.catalog}",
            )
            for name, error_id in missing
        ],
    )


def catalog_playbook_warnings(catalog: ErrorCatalog, playbook_ids: set[str]) -> list[str]:
    """Catalog entries that name a playbook nobody loaded: their failures would find none."""
    return [
        f"catalog: {error_id} names playbook {entry.playbook}, which is not loaded"
        for error_id, entry in catalog.errors.items()
        if entry.playbook is not None and entry.playbook not in playbook_ids
    ]
