"""Experiment tracking: experiments, runs, params, metrics, artifacts, autologging, and what
each run cost (resources) and what looks wrong with it (diagnostics)."""

from wellml.tracking.autolog import autolog, evaluation_metrics
from wellml.tracking.diagnostics import Diagnostics, Finding, diagnose, learning_curves
from wellml.tracking.resources import ResourceMeter, ResourceUsage
from wellml.tracking.service import ActiveRun, RunRecord, Tracking

__all__ = [
    "ActiveRun",
    "Diagnostics",
    "Finding",
    "ResourceMeter",
    "ResourceUsage",
    "RunRecord",
    "Tracking",
    "autolog",
    "diagnose",
    "evaluation_metrics",
    "learning_curves",
]
