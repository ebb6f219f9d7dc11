"""Endpoint configurations, deployment policies, alarms and rate limits as values."""

from __future__ import annotations

import pytest

from wellml.errors import InvalidInput
from wellml.governance.ratelimit import RateLimiter
from wellml.serving.config import (
    AutoScaling,
    CaptureMetricAlarm,
    DeploymentPolicy,
    EndpointConfig,
    ErrorRateAlarm,
    LatencyAlarm,
    ProductionVariant,
    RateLimit,
    ShadowVariant,
    parse_alarm,
    parse_variant,
)
from wellml.serving.supervisor import mix


def test_traffic_steps_follow_the_strategy() -> None:
    assert DeploymentPolicy(strategy="all-at-once").traffic_steps() == [1.0]
    assert DeploymentPolicy(strategy="canary", canary_percent=5).traffic_steps() == [0.05, 1.0]
    assert DeploymentPolicy(strategy="linear", linear_step_percent=25).traffic_steps() == [
        0.25,
        0.5,
        0.75,
        1.0,
    ]
    assert DeploymentPolicy(strategy="linear", linear_step_percent=40).traffic_steps() == [
        0.4,
        0.8,
        1.0,
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "yolo"},
        {"canary_percent": 0},
        {"canary_percent": 60},
        {"linear_step_percent": 0.5},
        {"bake_seconds": -1},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        DeploymentPolicy(**kwargs)  # type: ignore[arg-type]


def test_config_round_trips_and_reports_auto_rollback() -> None:
    config = EndpointConfig(
        variants=(
            ProductionVariant("a", "m@1", 2, 3.0, AutoScaling(min_replicas=2, max_replicas=5)),
            ProductionVariant("b", "m@2", 1, 1.0),
        ),
        shadows=(ShadowVariant("s", "m@3", 1, 50.0),),
        rate_limit=RateLimit(10, 20),
        policy=DeploymentPolicy(
            alarms=(
                ErrorRateAlarm(max_rate=0.02),
                LatencyAlarm(p99_ms=40),
                CaptureMetricAlarm("prediction", "mean", max=0.9),
            )
        ),
    )
    data = config.to_dict()
    assert data["auto_rollback"] is True
    assert EndpointConfig.from_dict(data) == config
    assert config.shares() == {"a": 0.75, "b": 0.25}
    assert config.primary().name == "a"
    assert EndpointConfig(variants=(ProductionVariant("a", "m@1"),)).auto_rollback is False


@pytest.mark.parametrize(
    "build",
    [
        lambda: EndpointConfig(variants=()),
        lambda: EndpointConfig(variants=(ProductionVariant("a", "m@1", weight=0),)),
        lambda: EndpointConfig(
            variants=(ProductionVariant("a", "m@1"),), shadows=(ShadowVariant("a", "m@2"),)
        ),
        lambda: ProductionVariant("-bad", "m@1"),
        lambda: ProductionVariant("a" * 64, "m@1"),
        lambda: ProductionVariant("a", "m@1", replicas=0),
        lambda: ProductionVariant("a", "m@1", weight=float("nan")),
        lambda: ShadowVariant("s", "m@1", sampling_percent=0),
        lambda: AutoScaling(min_replicas=3, max_replicas=2),
        lambda: RateLimit(0),
        lambda: CaptureMetricAlarm("prediction"),
    ],
)
def test_bad_configurations_are_refused(build: object) -> None:
    with pytest.raises(InvalidInput):
        build()  # type: ignore[operator]


def test_alarms_and_variants_read_from_the_command_line() -> None:
    assert parse_alarm("error_rate=0.05,4xx") == ErrorRateAlarm(max_rate=0.05, include_4xx=True)
    assert parse_alarm("p99_ms=25") == LatencyAlarm(p99_ms=25)
    assert parse_alarm("capture:prediction:mean<=0.8") == CaptureMetricAlarm(
        "prediction", "mean", max=0.8
    )
    assert parse_alarm("capture:probability:min>=0.1") == CaptureMetricAlarm(
        "probability", "min", min=0.1
    )
    for bad in ("latency", "error_rate=x", "capture:prediction:median<=1"):
        with pytest.raises(InvalidInput):
            parse_alarm(bad)
    assert parse_variant("b=m@2,weight=3,replicas=2") == {
        "name": "b",
        "model": "m@2",
        "weight": 3.0,
        "replicas": 2,
    }
    with pytest.raises(InvalidInput, match="unknown option"):
        parse_variant("s=m@2,weight=3", shadow=True)
    with pytest.raises(InvalidInput):
        parse_variant("m@2")


def test_mixing_moves_traffic_from_old_to_new_shares() -> None:
    old, new = {"blue": 1.0}, {"green": 1.0}
    assert mix(old, new, 0.1) == {"blue": 0.9, "green": 0.1}
    assert mix(old, new, 1.0) == {"blue": 0.0, "green": 1.0}
    assert mix({"a": 0.5, "b": 0.5}, {"a": 0.8, "b": 0.2}, 0.5) == {"a": 0.65, "b": 0.35}


def test_autoscaling_tracks_in_flight_requests_within_bounds() -> None:
    policy = AutoScaling(min_replicas=1, max_replicas=4, target_inflight=2)
    assert policy.desired(1, 0) == 1
    assert policy.desired(1, 5) == 3
    assert policy.desired(2, 100) == 4


def test_token_buckets_refill_at_their_rate_per_key() -> None:
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    assert [limiter.check("a", 2, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check("a", 2, 3)
    assert wait == pytest.approx(0.5)
    assert limiter.check("b", 2, 3) == 0.0  # another consumer has its own bucket
    clock[0] = 0.5
    assert limiter.check("a", 2, 3) == 0.0
    assert limiter.check("a", 2, 3) > 0
