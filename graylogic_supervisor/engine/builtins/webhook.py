"""``notify_webhook``: POST a message about the failure to one of the configured webhooks.

The playbook names the webhook (``escalation.webhooks``); the URL and token
stay in the config, the token never appears in a result. httpx is imported on
first use, as the escalation chain does, so a site without webhooks never pays for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from graylogic_supervisor.clock import isoformat
from graylogic_supervisor.config import WebhookConfig
from graylogic_supervisor.domain.actions import ActionKind
from graylogic_supervisor.engine.action import ActionParams, StepContext, StepResult


class WebhookParams(ActionParams):
    webhook: str = Field(min_length=1, description="a name in escalation.webhooks")
    message: str = Field(min_length=1)
    severity: Literal["critical", "high", "medium", "low"] = "medium"


class NotifyWebhook:
    name: ClassVar[str] = "notify_webhook"
    kind: ClassVar[ActionKind] = ActionKind.NOTIFY
    params_model: ClassVar[type[BaseModel]] = WebhookParams
    needs_target: ClassVar[bool] = False

    def __init__(self, webhooks: Mapping[str, WebhookConfig], site: str) -> None:
        self._webhooks = dict(webhooks)
        self._site = site

    def payload(self, ctx: StepContext, params: WebhookParams) -> dict[str, Any]:
        return {
            "site": self._site,
            "message": params.message,
            "severity": params.severity,
            "execution_id": ctx.execution_id,
            "playbook": ctx.playbook_id,
            "step": ctx.step_id,
            "component": ctx.failure.component,
            "error_id": ctx.failure.error_id,
            "sent_at": isoformat(ctx.clock.now()),
        }

    async def run(self, ctx: StepContext) -> StepResult:
        import httpx

        params = ctx.params
        assert isinstance(params, WebhookParams)
        webhook = self._webhooks.get(params.webhook)
        if webhook is None:
            known = ", ".join(sorted(self._webhooks)) or "none configured"
            return StepResult.failed(
                f"no webhook {params.webhook!r} in escalation.webhooks ({known})"
            )
        token = webhook.token.get_secret_value() if webhook.token is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = max(0.1, min(webhook.timeout_s, ctx.deadline - ctx.clock.monotonic()))
        try:
            async with httpx.AsyncClient(follow_redirects=False) as client:
                response = await ctx.clock.wait_for(
                    client.post(
                        webhook.url,
                        json=self.payload(ctx, params),
                        headers=headers,
                        timeout=timeout,
                    ),
                    timeout,
                )
        except (TimeoutError, httpx.TimeoutException):
            return StepResult.failed(f"webhook {params.webhook}: no answer within {timeout:g} s")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            problem = f"webhook {params.webhook}: {type(exc).__name__}: {exc}"
            return StepResult.failed(problem.replace(token, "***") if token else problem)
        if not response.is_success:
            return StepResult.failed(
                f"webhook {params.webhook} answered HTTP {response.status_code}",
                status=response.status_code,
            )
        return StepResult.ok(
            f"webhook {params.webhook} notified ({params.severity})", status=response.status_code
        )
