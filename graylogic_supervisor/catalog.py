"""The error catalog: what each error id means and which playbook handles it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from graylogic_supervisor.config import ERROR_ID_PATTERN
from graylogic_supervisor.errors import CatalogError
from graylogic_supervisor.yamlsource import load_located, validate_located

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
