"""The topics the supervisor publishes on, under its root.

{root}/health/supervisor               retained: online/offline (last will), overall health
{root}/supervisor/health/{component}   retained: each component's health
{root}/supervisor/executions/{component}  retained: the latest execution and its progress
{root}/supervisor/incidents/{component}   retained: the latest incident, its phase and breaker
{root}/supervisor/execution/{id}       not retained: a running execution's progress, each step
{root}/supervisor/state                retained: termination rate, safe mode, open incidents
{root}/supervisor/alerts               QoS 1: escalations and alert steps
{root}/supervisor/audit/head           retained: the audit chain's last verified entry (seq, hash)
"""

from __future__ import annotations

from typing import Any

from graylogic_supervisor import __version__


class Topics:
    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    @property
    def supervisor_health(self) -> str:
        return f"{self.root}/health/supervisor"

    @property
    def heartbeats(self) -> str:
        return f"{self.root}/health/+"

    def component_health(self, component: str) -> str:
        return f"{self.root}/supervisor/health/{component}"

    def execution(self, component: str) -> str:
        return f"{self.root}/supervisor/executions/{component}"

    def progress(self, execution_id: str) -> str:
        return f"{self.root}/supervisor/execution/{execution_id}"

    def incident(self, component: str) -> str:
        return f"{self.root}/supervisor/incidents/{component}"

    @property
    def state(self) -> str:
        return f"{self.root}/supervisor/state"

    @property
    def alerts(self) -> str:
        return f"{self.root}/supervisor/alerts"

    @property
    def audit_head(self) -> str:
        return f"{self.root}/supervisor/audit/head"


def offline_payload(site: str) -> dict[str, Any]:
    return {"status": "offline", "site": site, "version": __version__}
