"""Every state the store keeps, by name: one ``StrEnum`` per column the schema checks.

A member is equal to its string, so rows read from SQLite, JSON payloads and
templates compare with them unchanged; code compares with members, never with
literals, so a misspelt state is an attribute error, not a silent mismatch.
"""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    """``executions.status``."""

    RUNNING = "running"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class StepOutcome(StrEnum):
    """``execution_steps.outcome``: a step that ran, or one that was skipped."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


class IncidentPhase(StrEnum):
    """``incidents.phase``: where an incident is between detection and its end."""

    DETECTED = "detected"
    RECOVERING = "recovering"
    EXECUTING = "executing"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    FAILED = "failed"


class RecommendationStatus(StrEnum):
    """``recommendations.status``: only a pending one can be decided."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    ARCHIVED = "archived"
    SUPERSEDED = "superseded"


class TrialStatus(StrEnum):
    """``learning_trials.status``."""

    RUNNING = "running"
    PROMOTED = "promoted"
    DROPPED = "dropped"


class VersionStatus(StrEnum):
    """``playbook_versions.status``: a version whose YAML no longer loads is ``failed``."""

    OK = "ok"
    FAILED = "failed"
