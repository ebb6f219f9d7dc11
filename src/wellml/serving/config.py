"""Endpoint configurations: production variants, shadow variants, the deployment policy and its
alarms, rate limits and autoscaling. A configuration is immutable; every change to an endpoint
is a new numbered version of it (SageMaker's EndpointConfig)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from wellml.errors import InvalidInput

STRATEGIES = ("all-at-once", "canary", "linear")
_VARIANT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
CAPTURE_STATISTICS = ("mean", "min", "max", "null_rate")


def check_variant_name(name: str) -> str:
    """Return ``name`` if it is a valid variant name (SageMaker's rule), else raise.

    Raises:
        InvalidInput: not 1-63 letters, digits and inner hyphens.
    """
    if not isinstance(name, str) or len(name) > 63 or not _VARIANT_NAME.match(name):
        raise InvalidInput(f"invalid variant name {name!r}: 1-63 letters, digits and inner hyphens")
    return name


@dataclass(frozen=True)
class AutoScaling:
    """Target tracking on in-flight requests per replica, within ``[min, max]`` replicas."""

    min_replicas: int = 1
    max_replicas: int = 4
    target_inflight: float = 4.0
    scale_out_cooldown_s: float = 30.0
    scale_in_cooldown_s: float = 120.0

    def __post_init__(self) -> None:
        if self.min_replicas < 1 or self.max_replicas < self.min_replicas:
            raise InvalidInput("autoscaling needs 1 <= min_replicas <= max_replicas")
        if self.target_inflight <= 0:
            raise InvalidInput("autoscaling target_inflight must be positive")
        if self.scale_out_cooldown_s < 0 or self.scale_in_cooldown_s < 0:
            raise InvalidInput("autoscaling cooldowns cannot be negative")

    def desired(self, current: int, mean_inflight: float) -> int:
        """Replicas needed to bring in-flight requests per replica to the target."""
        want = math.ceil(mean_inflight / self.target_inflight) if mean_inflight > 0 else 1
        return max(self.min_replicas, min(self.max_replicas, want))

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_inflight": self.target_inflight,
            "scale_out_cooldown_s": self.scale_out_cooldown_s,
            "scale_in_cooldown_s": self.scale_in_cooldown_s,
        }


def parse_memory(text: str | int) -> int:
    """Bytes from a size such as ``512MiB``, ``1.5GB``, ``300 MB`` or a plain number of bytes.

    Raises:
        InvalidInput: not a size, or not positive.
    """
    from pydantic import ByteSize, TypeAdapter, ValidationError

    if isinstance(text, bool):
        raise InvalidInput(f"cannot read memory size {text!r}; write e.g. 512MiB or 2GB")
    try:
        size = int(TypeAdapter(ByteSize).validate_python(text))
    except ValidationError:
        raise InvalidInput(f"cannot read memory size {text!r}; write e.g. 512MiB or 2GB") from None
    if size < 1:
        raise InvalidInput(f"memory size {text!r} must be positive")
    return size


@dataclass(frozen=True)
class MultiModel:
    """Many model versions behind one variant: each is loaded in a replica on its first
    request and evicted least recently used when the loaded models would exceed
    ``memory_budget_bytes`` (or ``max_models``).

    ``models`` lists what a request may name: a model name (any approved version of it) or one
    version (``name@3``; ``name@alias`` is pinned to its version when the endpoint is
    configured). Only approved versions are ever served.
    """

    models: tuple[str, ...]
    memory_budget_bytes: int
    max_models: int | None = None

    def __post_init__(self) -> None:
        from wellml.names import parse_ref

        if isinstance(self.models, str) or not self.models:
            raise InvalidInput("a multi-model variant needs at least one model name or version")
        for entry in self.models:
            parse_ref(entry, "multi-model entry")
        if len(set(self.models)) != len(self.models):
            raise InvalidInput("multi-model entries must be unique")
        if (
            isinstance(self.memory_budget_bytes, bool)
            or not isinstance(self.memory_budget_bytes, int)
            or self.memory_budget_bytes < 1
        ):
            raise InvalidInput("the multi-model memory budget must be a positive number of bytes")
        if self.max_models is not None and (
            isinstance(self.max_models, bool)
            or not isinstance(self.max_models, int)
            or self.max_models < 1
        ):
            raise InvalidInput("max_models must be a whole number of at least 1")

    def allows(self, name: str, version: int) -> bool:
        """Whether a request may name version ``version`` of model ``name``."""
        return name in self.models or f"{name}@{version}" in self.models

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "models": list(self.models),
            "memory_budget_bytes": self.memory_budget_bytes,
            "max_models": self.max_models,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultiModel:
        """Inverse of :meth:`to_dict`.

        Raises:
            InvalidInput: the data does not describe a valid multi-model set.
        """
        try:
            return cls(
                tuple(data["models"]),
                int(data["memory_budget_bytes"]),
                int(data["max_models"]) if data.get("max_models") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid multi-model settings: {exc}") from None


@dataclass(frozen=True)
class ProductionVariant:
    """One model version behind the endpoint with its replica count and traffic weight.

    A variant with ``multi_model`` serves every model version that set allows, chosen per
    request by the target-model header; its ``model_version`` is then the version the
    endpoint record shows and deployments smoke-test (see :meth:`multi`).
    """

    name: str
    model_version: str  # a resolved reference, e.g. churn@3
    replicas: int = 1
    weight: float = 1.0
    autoscaling: AutoScaling | None = None
    multi_model: MultiModel | None = None

    def __post_init__(self) -> None:
        check_variant_name(self.name)
        if self.replicas < 1:
            raise InvalidInput(f"variant {self.name}: replicas must be at least 1")
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise InvalidInput(f"variant {self.name}: weight must be a number >= 0")

    @classmethod
    def multi(
        cls,
        name: str,
        models: list[str] | tuple[str, ...],
        *,
        memory_budget: str | int,
        max_models: int | None = None,
        replicas: int = 1,
        weight: float = 1.0,
        autoscaling: AutoScaling | None = None,
    ) -> ProductionVariant:
        """A multi-model variant serving ``models`` (names or ``name@VERSION``) within
        ``memory_budget`` (bytes, or a size such as ``512MiB``)."""
        spec = MultiModel(tuple(models), parse_memory(memory_budget), max_models)
        return cls(name, spec.models[0], replicas, weight, autoscaling, spec)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``multi_model`` only for a multi-model variant)."""
        out: dict[str, Any] = {
            "name": self.name,
            "model_version": self.model_version,
            "replicas": self.replicas,
            "weight": self.weight,
            "autoscaling": self.autoscaling.to_dict() if self.autoscaling else None,
        }
        if self.multi_model is not None:
            out["multi_model"] = self.multi_model.to_dict()
        return out


@dataclass(frozen=True)
class ShadowVariant:
    """A model version that gets a copy of a share of the traffic; its answers are compared
    with the live variant's and never returned."""

    name: str
    model_version: str
    replicas: int = 1
    sampling_percent: float = 100.0

    def __post_init__(self) -> None:
        check_variant_name(self.name)
        if self.replicas < 1:
            raise InvalidInput(f"shadow {self.name}: replicas must be at least 1")
        if not 0 < self.sampling_percent <= 100:
            raise InvalidInput(f"shadow {self.name}: sampling percent must be in (0, 100]")

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "name": self.name,
            "model_version": self.model_version,
            "replicas": self.replicas,
            "sampling_percent": self.sampling_percent,
        }


@dataclass(frozen=True)
class ErrorRateAlarm:
    """Fires when the share of failed requests (5xx, and 4xx if asked) reaches ``max_rate``."""

    max_rate: float = 0.01
    include_4xx: bool = False
    min_requests: int = 20
    kind: str = field(default="error_rate", init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.max_rate <= 1:
            raise InvalidInput("error_rate alarm: max_rate must be between 0 and 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "kind": self.kind,
            "max_rate": self.max_rate,
            "include_4xx": self.include_4xx,
            "min_requests": self.min_requests,
        }


@dataclass(frozen=True)
class LatencyAlarm:
    """Fires when the p99 latency of the watched variant exceeds ``p99_ms``."""

    p99_ms: float = 250.0
    min_requests: int = 20
    kind: str = field(default="latency", init=False)

    def __post_init__(self) -> None:
        if self.p99_ms <= 0:
            raise InvalidInput("latency alarm: p99_ms must be positive")

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"kind": self.kind, "p99_ms": self.p99_ms, "min_requests": self.min_requests}


@dataclass(frozen=True)
class CaptureMetricAlarm:
    """Fires when a statistic of a captured column (e.g. the mean of ``prediction``) over the
    watched variant's captured rows leaves ``[min, max]``."""

    column: str
    statistic: str = "mean"
    min: float | None = None
    max: float | None = None
    min_rows: int = 20
    kind: str = field(default="capture_metric", init=False)

    def __post_init__(self) -> None:
        if self.statistic not in CAPTURE_STATISTICS:
            raise InvalidInput(
                f"capture metric alarm: statistic must be one of {', '.join(CAPTURE_STATISTICS)}"
            )
        if self.min is None and self.max is None:
            raise InvalidInput("capture metric alarm: give min, max or both")

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "kind": self.kind,
            "column": self.column,
            "statistic": self.statistic,
            "min": self.min,
            "max": self.max,
            "min_rows": self.min_rows,
        }


Alarm = ErrorRateAlarm | LatencyAlarm | CaptureMetricAlarm


def alarm_from_dict(data: dict[str, Any]) -> Alarm:
    """Inverse of an alarm's ``to_dict``.

    Raises:
        InvalidInput: unknown kind or bad fields.
    """
    fields = {k: v for k, v in data.items() if k != "kind"}
    kind = data.get("kind")
    try:
        if kind == "error_rate":
            return ErrorRateAlarm(**fields)
        if kind == "latency":
            return LatencyAlarm(**fields)
        if kind == "capture_metric":
            return CaptureMetricAlarm(**fields)
    except TypeError as exc:
        raise InvalidInput(f"{kind} alarm: {exc}") from None
    raise InvalidInput(f"unknown alarm kind {kind!r}; use error_rate, latency or capture_metric")


def parse_alarm(text: str) -> Alarm:
    """An alarm from its command-line form.

    ``error_rate=0.01`` · ``error_rate=0.05,4xx`` · ``p99_ms=50`` ·
    ``capture:prediction:mean<=0.8`` · ``capture:probability:mean>=0.2``

    Raises:
        InvalidInput: a form not listed above.
    """
    text = text.strip()
    try:
        if text.startswith("error_rate="):
            value, *flags = text.removeprefix("error_rate=").split(",")
            return ErrorRateAlarm(max_rate=float(value), include_4xx="4xx" in flags)
        if text.startswith("p99_ms="):
            return LatencyAlarm(p99_ms=float(text.removeprefix("p99_ms=")))
        if text.startswith("capture:"):
            column, _, rest = text.removeprefix("capture:").partition(":")
            for op in ("<=", ">="):
                if op in rest:
                    stat, _, bound = rest.partition(op)
                    limit = float(bound)
                    if op == "<=":
                        return CaptureMetricAlarm(column, stat, max=limit)
                    return CaptureMetricAlarm(column, stat, min=limit)
    except ValueError:
        pass
    raise InvalidInput(
        f"cannot read alarm {text!r}; write error_rate=0.01[,4xx], p99_ms=50 or "
        "capture:COLUMN:STAT<=X / >=X"
    )


@dataclass(frozen=True)
class DeploymentPolicy:
    """How an update reaches traffic: all at once, canary then the rest, or linear steps;
    each step bakes for ``bake_seconds`` while the alarms watch the new variants, and any
    alarm rolls every step back."""

    strategy: str = "canary"
    canary_percent: float = 10.0
    linear_step_percent: float = 25.0
    bake_seconds: float = 60.0
    termination_wait_seconds: float = 0.0
    smoke_test: bool = True
    alarms: tuple[Alarm, ...] = (ErrorRateAlarm(),)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InvalidInput(f"strategy must be one of {', '.join(STRATEGIES)}")
        if not 0 < self.canary_percent <= 50:
            raise InvalidInput("canary percent must be in (0, 50]")
        if not 1 <= self.linear_step_percent <= 50:
            raise InvalidInput("linear step percent must be in [1, 50]")
        if self.bake_seconds < 0 or self.termination_wait_seconds < 0:
            raise InvalidInput("bake and termination wait cannot be negative")

    def traffic_steps(self) -> list[float]:
        """The share of the new configuration's traffic at each step, ending at 1."""
        if self.strategy == "all-at-once":
            return [1.0]
        if self.strategy == "canary":
            return [self.canary_percent / 100, 1.0]
        step = self.linear_step_percent / 100
        n = math.ceil(1 / step - 1e-9)
        return [min(1.0, round(step * (i + 1), 6)) for i in range(n)]

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "strategy": self.strategy,
            "canary_percent": self.canary_percent,
            "linear_step_percent": self.linear_step_percent,
            "bake_seconds": self.bake_seconds,
            "termination_wait_seconds": self.termination_wait_seconds,
            "smoke_test": self.smoke_test,
            "alarms": [a.to_dict() for a in self.alarms],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentPolicy:
        """Inverse of :meth:`to_dict`."""
        fields = dict(data)
        alarms = tuple(alarm_from_dict(a) for a in fields.pop("alarms", []))
        try:
            return cls(**fields, alarms=alarms)
        except TypeError as exc:
            raise InvalidInput(f"deployment policy: {exc}") from None


@dataclass(frozen=True)
class RateLimit:
    """A token bucket per consumer token: ``rate`` requests a second, bursts of ``burst``."""

    rate: float
    burst: int | None = None

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise InvalidInput("rate limit: requests per second must be positive")
        if self.burst is not None and self.burst < 1:
            raise InvalidInput("rate limit: burst must be at least 1")

    @property
    def capacity(self) -> float:
        """The bucket size."""
        return float(self.burst if self.burst is not None else max(1, math.ceil(self.rate)))

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"rate": self.rate, "burst": self.burst}


@dataclass(frozen=True)
class EndpointConfig:
    """Everything that defines what an endpoint serves and how."""

    variants: tuple[ProductionVariant, ...]
    shadows: tuple[ShadowVariant, ...] = ()
    auth: bool = True
    capture_percent: float = 100.0
    max_payload_bytes: int = 6 * 1024 * 1024
    feature_service: str | None = None
    rate_limit: RateLimit | None = None
    policy: DeploymentPolicy | None = None

    def __post_init__(self) -> None:
        if not self.variants:
            raise InvalidInput("an endpoint needs at least one production variant")
        if len(self.variants) > 10:
            raise InvalidInput("an endpoint takes at most 10 production variants")
        names = [v.name for v in self.variants] + [s.name for s in self.shadows]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InvalidInput(f"variant names must be unique: {', '.join(dup)}")
        if sum(v.weight for v in self.variants) <= 0:
            raise InvalidInput("at least one production variant needs a weight above 0")
        if not 0 <= self.capture_percent <= 100:
            raise InvalidInput("capture percent must be between 0 and 100")
        if self.max_payload_bytes < 1:
            raise InvalidInput("the payload limit must be positive")
        multi = [v.multi_model is not None for v in self.variants]
        if any(multi) and not all(multi):
            raise InvalidInput(
                "production variants are all multi-model or none is: a request names its "
                "target model on one and not on the other"
            )
        if any(multi) and self.shadows:
            raise InvalidInput("a multi-model endpoint takes no shadow variants")

    @property
    def multi_model(self) -> bool:
        """Whether requests name their target model (every production variant is multi-model)."""
        return self.variants[0].multi_model is not None

    @property
    def auto_rollback(self) -> bool:
        """Whether updates roll back by themselves: a policy with at least one alarm."""
        return self.policy is not None and bool(self.policy.alarms)

    def all_variants(self) -> tuple[ProductionVariant | ShadowVariant, ...]:
        """Production variants, then shadow variants."""
        return (*self.variants, *self.shadows)

    def variant(self, name: str) -> ProductionVariant | ShadowVariant:
        """A production or shadow variant by name.

        Raises:
            InvalidInput: no such variant.
        """
        for v in self.all_variants():
            if v.name == name:
                return v
        raise InvalidInput(
            f"no variant {name!r}; variants: " + ", ".join(v.name for v in self.all_variants())
        )

    def shares(self) -> dict[str, float]:
        """Each production variant's share of traffic (weight over the sum of weights)."""
        total = sum(v.weight for v in self.variants)
        return {v.name: v.weight / total for v in self.variants}

    def primary(self) -> ProductionVariant:
        """The variant with the largest weight (the first of equals)."""
        return max(self.variants, key=lambda v: v.weight)

    def with_changes(self, **changes: Any) -> EndpointConfig:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as stored; ``auto_rollback`` is included for readers of the record."""
        return {
            "variants": [v.to_dict() for v in self.variants],
            "shadows": [s.to_dict() for s in self.shadows],
            "auth": self.auth,
            "capture_percent": self.capture_percent,
            "max_payload_bytes": self.max_payload_bytes,
            "feature_service": self.feature_service,
            "rate_limit": self.rate_limit.to_dict() if self.rate_limit else None,
            "policy": self.policy.to_dict() if self.policy else None,
            "auto_rollback": self.auto_rollback,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EndpointConfig:
        """Inverse of :meth:`to_dict` (also reads the single-variant records of older
        versions, whose variants carry no replica count).

        Raises:
            InvalidInput: the data does not describe a valid configuration.
        """
        try:
            variants = tuple(
                ProductionVariant(
                    v["name"],
                    v["model_version"],
                    int(v.get("replicas", 1)),
                    float(v.get("weight", 1.0)),
                    AutoScaling(**v["autoscaling"]) if v.get("autoscaling") else None,
                    MultiModel.from_dict(v["multi_model"]) if v.get("multi_model") else None,
                )
                for v in data.get("variants", [])
            )
            shadows = tuple(
                ShadowVariant(
                    s["name"],
                    s["model_version"],
                    int(s.get("replicas", 1)),
                    float(s.get("sampling_percent", 100.0)),
                )
                for s in data.get("shadows", [])
            )
            rate = data.get("rate_limit")
            policy = data.get("policy")
            return cls(
                variants=variants,
                shadows=shadows,
                auth=bool(data.get("auth", True)),
                capture_percent=float(data.get("capture_percent", 100.0)),
                max_payload_bytes=int(data.get("max_payload_bytes", 6 * 1024 * 1024)),
                feature_service=data.get("feature_service"),
                rate_limit=RateLimit(**rate) if rate else None,
                policy=DeploymentPolicy.from_dict(policy) if policy else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid endpoint configuration: {exc}") from None


def parse_variant(text: str, *, shadow: bool = False) -> dict[str, Any]:
    """A variant from its command-line form ``NAME=MODEL@V[,weight=W][,replicas=N]`` (shadows:
    ``[,percent=P]``); the model reference is returned unresolved.

    Raises:
        InvalidInput: a malformed form.
    """
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise InvalidInput(f"cannot read variant {text!r}; write NAME=MODEL@VERSION[,key=value]")
    model, *options = rest.split(",")
    out: dict[str, Any] = {"name": check_variant_name(name.strip()), "model": model.strip()}
    allowed = {"replicas", "percent"} if shadow else {"replicas", "weight", "min", "max", "target"}
    for opt in options:
        key, _, value = opt.partition("=")
        key = key.strip()
        if key not in allowed:
            raise InvalidInput(f"variant {name}: unknown option {key!r} ({', '.join(allowed)})")
        try:
            out[key] = float(value) if key in ("weight", "percent", "target") else int(value)
        except ValueError:
            raise InvalidInput(f"variant {name}: {key} must be a number") from None
    return out
