"""Alert routes: where a monitor's alerts go, and the retraining an alert may ask for.

Every alert is written to the workspace's alert event log. A route may add a webhook: the
alert is POSTed there as JSON, with a timeout and a few retries (connection errors, timeouts
and 5xx answers are retried with a doubling pause; a 4xx answer is final). A failed delivery is
recorded on the event, never raised: a monitor run does not fail because a chat server is
down. A route may also name a retraining pipeline (``module:function`` or a pipeline declared
in ``wellml.yaml``); an alert caused by drift (drifted features, a model-quality or bias-drift
violation) then records a retrain trigger for the pipelines capability to run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from wellml.errors import InvalidInput

__all__ = ["SEVERITIES", "AlertRoute", "Delivery", "RetrainAction", "deliver_webhook"]

SEVERITIES = ("info", "warning", "critical")
RETRAIN_WHEN = ("drift", "dataset_drift")


@dataclass(frozen=True)
class RetrainAction:
    """Retraining asked for by drift alerts.

    Attributes:
        pipeline: ``module:function`` of a pipeline, or the name of a declared pipeline.
        params: Parameters passed to the pipeline run.
        when: ``drift`` (any drifted feature or quality/bias violation) or ``dataset_drift``
            (only when the data-drift monitor's dataset-level verdict is drifted).
    """

    pipeline: str
    params: dict[str, Any] = field(default_factory=dict)
    when: str = "drift"

    def __post_init__(self) -> None:
        if not isinstance(self.pipeline, str) or not self.pipeline.strip():
            raise InvalidInput("a retrain action needs a pipeline (module:function or a name)")
        if self.when not in RETRAIN_WHEN:
            raise InvalidInput(f"retrain 'when' must be one of {', '.join(RETRAIN_WHEN)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the monitor's config."""
        return {"pipeline": self.pipeline, "params": dict(self.params), "when": self.when}


@dataclass(frozen=True)
class AlertRoute:
    """Where a monitor's alerts go besides the event log.

    Attributes:
        webhook: URL that receives each alert as a JSON POST, or None.
        timeout: Seconds per delivery attempt.
        retries: Further attempts after a failed one.
        backoff: Seconds before the first retry; doubled before each next one.
        min_severity: Alerts below this severity are logged but not sent.
        retrain: Retraining to request on drift, or None.
    """

    webhook: str | None = None
    timeout: float = 5.0
    retries: int = 2
    backoff: float = 0.5
    min_severity: str = "warning"
    retrain: RetrainAction | None = None

    def __post_init__(self) -> None:
        if self.webhook is not None and not str(self.webhook).startswith(("http://", "https://")):
            raise InvalidInput(f"webhook must be an http(s) URL, not {self.webhook!r}")
        if not (isinstance(self.timeout, int | float) and self.timeout > 0):
            raise InvalidInput(f"timeout must be a positive number, not {self.timeout!r}")
        if not (isinstance(self.retries, int) and 0 <= self.retries <= 10):
            raise InvalidInput(f"retries must be an integer from 0 to 10, not {self.retries!r}")
        if not (isinstance(self.backoff, int | float) and self.backoff >= 0):
            raise InvalidInput(f"backoff must be a number >= 0, not {self.backoff!r}")
        if self.min_severity not in SEVERITIES:
            raise InvalidInput(f"min_severity must be one of {', '.join(SEVERITIES)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the monitor's config."""
        return {
            "webhook": self.webhook,
            "timeout": self.timeout,
            "retries": self.retries,
            "backoff": self.backoff,
            "min_severity": self.min_severity,
            "retrain": self.retrain.to_dict() if self.retrain else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AlertRoute:
        """The route stored in a monitor's config (an empty route for None).

        Raises:
            InvalidInput: unknown keys or bad values.
        """
        if not data:
            return cls()
        known = {"webhook", "timeout", "retries", "backoff", "min_severity", "retrain"}
        unknown = set(data) - known
        if unknown:
            raise InvalidInput(
                f"unknown alert route key(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        retrain = data.get("retrain")
        action = None
        if retrain:
            if isinstance(retrain, str):
                action = RetrainAction(retrain)
            else:
                action = RetrainAction(
                    retrain.get("pipeline", ""),
                    dict(retrain.get("params") or {}),
                    retrain.get("when", "drift"),
                )
        return cls(
            webhook=data.get("webhook"),
            timeout=data.get("timeout", 5.0),
            retries=data.get("retries", 2),
            backoff=data.get("backoff", 0.5),
            min_severity=data.get("min_severity", "warning"),
            retrain=action,
        )

    def sends(self, severity: str) -> bool:
        """Whether an alert of ``severity`` goes to the webhook."""
        return self.webhook is not None and (
            SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)
        )


@dataclass(frozen=True)
class Delivery:
    """How a webhook delivery went."""

    delivered: bool
    attempts: int
    status_code: int | None
    error: str | None


def deliver_webhook(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout: float = 5.0,
    retries: int = 2,
    backoff: float = 0.5,
    transport: httpx.BaseTransport | None = None,
) -> Delivery:
    """POST ``payload`` as JSON to ``url``; never raises for network or HTTP failures.

    A 2xx answer is delivered. Connection errors, timeouts and 5xx answers are retried up to
    ``retries`` times, ``backoff`` seconds apart at first and twice as long each time after;
    a 3xx or 4xx answer is not retried.
    """
    attempts = 0
    error: str | None = None
    status: int | None = None
    pause = backoff
    with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
        while attempts <= retries:
            attempts += 1
            try:
                response = client.post(url, json=dict(payload))
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}".strip()
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return Delivery(True, attempts, status, None)
                error = f"HTTP {status}: {response.text[:200]}"
                if status < 500:
                    break
            if attempts <= retries and pause > 0:
                time.sleep(pause)
                pause *= 2
    return Delivery(False, attempts, status, error)
