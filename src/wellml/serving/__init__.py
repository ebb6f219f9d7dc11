"""Serving: real-time endpoints of weighted production variants and shadow variants, deployed
by strategies that bake and roll back on alarms, with signature checks, tokens, rate limits,
metrics and data capture; multi-model variants, explanations on request, Ray Serve; and batch
transform."""

from wellml.serving.config import (
    AutoScaling,
    CaptureMetricAlarm,
    DeploymentPolicy,
    EndpointConfig,
    ErrorRateAlarm,
    LatencyAlarm,
    MultiModel,
    ProductionVariant,
    RateLimit,
    ShadowVariant,
)
from wellml.serving.service import EndpointRecord, Endpoints, RunningEndpoint

__all__ = [
    "AutoScaling",
    "CaptureMetricAlarm",
    "DeploymentPolicy",
    "EndpointConfig",
    "EndpointRecord",
    "Endpoints",
    "ErrorRateAlarm",
    "LatencyAlarm",
    "MultiModel",
    "ProductionVariant",
    "RateLimit",
    "RunningEndpoint",
    "ShadowVariant",
]
