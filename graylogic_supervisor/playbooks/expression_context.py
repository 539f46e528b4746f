"""What expressions see: read-only records of the run (steps, failure, params, time, resources).

Fields are read from plain data, never with ``getattr``; a missing field is an
``EvaluationProblem`` naming the path and what is there instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from graylogic_supervisor.domain.failure import FailureInfo
from graylogic_supervisor.domain.states import StepOutcome

ROOTS = ("steps", "failure", "params", "time", "resources")
STEP_FIELDS = frozenset({"outcome", "output", "result", "duration_s", "attempts"})
FIXED_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "failure": frozenset({"component", "error_id", "message"}),
        "time": frozenset({"hour", "minute", "weekday", "iso"}),
        "resources": frozenset({"memory_percent", "disk_percent", "cpu_percent", "load_per_cpu"}),
    }
)


class EvaluationProblem(Exception):
    """A run-time problem found inside an evaluation; becomes an ``ExpressionError``."""


class Record:
    """A read-only view of a mapping whose keys read as fields: ``steps.check_port.output.port``.

    Only the data's keys are reachable: there are no public methods for an
    expression to find, and a missing key is a ``EvaluationProblem`` that names the path
    and the keys that do exist.
    """

    __slots__ = ("_absent", "_data", "_path")

    def __init__(self, data: Mapping[str, Any], path: str, absent: str | None = None) -> None:
        self._data = data
        self._path = path
        self._absent = absent  # message for a missing key: {name} and {known} are filled in

    def field(self, name: str) -> Any:
        try:
            value = self._data[name]
        except KeyError:
            known = sorted(str(key) for key in self._data)
            listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "") or "none"
            if self._absent is not None:
                raise EvaluationProblem(
                    self._absent.format(name=repr(name), known=listed)
                ) from None
            raise EvaluationProblem(
                f"{self._path} has no field {name!r} (it has: {listed})"
            ) from None
        return wrap(value, f"{self._path}.{name}")

    @property
    def data(self) -> Mapping[str, Any]:
        return self._data

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self._data == other._data
        return isinstance(other, Mapping) and self._data == other

    __hash__ = None  # type: ignore[assignment]  # like the mapping it wraps

    def __repr__(self) -> str:
        return repr(dict(self._data))


def wrap(value: Any, path: str) -> Any:
    return Record(value, path) if isinstance(value, Mapping) else value


def unwrap(value: Any) -> Any:
    return value.data if isinstance(value, Record) else value


@dataclass(frozen=True)
class StepRecord:
    """What an earlier step came to, as expressions see it under ``steps.<id>``."""

    outcome: StepOutcome
    output: Mapping[str, Any]
    result: str
    duration_s: float
    attempts: int


class ResourceFigures(Protocol):
    """The host's load when the context is built (``memory.model.Resources`` fits)."""

    @property
    def memory_percent(self) -> float: ...
    @property
    def disk_percent(self) -> float: ...
    @property
    def cpu_percent(self) -> float: ...
    @property
    def load_per_cpu(self) -> float: ...


@dataclass(frozen=True)
class ExpressionContext:
    """The five roots an expression may name, already wrapped as records."""

    roots: Mapping[str, Record]


def expression_context(
    *,
    failure: FailureInfo,
    steps: Mapping[str, StepRecord],
    params: Mapping[str, Any],
    now: datetime,
    resources: ResourceFigures | None = None,
) -> ExpressionContext:
    """Build what expressions see from plain data the runner already holds.

    ``now`` is read as given: pass local time (``clock.now().astimezone()``),
    because installers write ``time.hour < 6`` by the wall clock. Without
    ``resources`` any ``resources.…`` fails at run time, so the runner can skip
    measuring when ``CompiledExpression.roots`` does not name it.
    """
    step_data = {
        step_id: {field.name: getattr(record, field.name) for field in fields(record)}
        for step_id, record in steps.items()
    }
    figures = {}
    if resources is not None:
        figures = {name: getattr(resources, name) for name in FIXED_FIELDS["resources"]}
    time_data = {
        "hour": now.hour,
        "minute": now.minute,
        "weekday": now.weekday(),
        "iso": now.isoformat(),
    }
    roots = {
        "steps": Record(step_data, "steps", "step {name} has not run (run so far: {known})"),
        "failure": Record(
            {name: getattr(failure, name) for name in FIXED_FIELDS["failure"]}, "failure"
        ),
        "params": Record(params, "params"),
        "time": Record(time_data, "time"),
        "resources": Record(
            figures,
            "resources",
            None if resources is not None else "resource figures are not measured in this run",
        ),
    }
    return ExpressionContext(MappingProxyType(roots))
