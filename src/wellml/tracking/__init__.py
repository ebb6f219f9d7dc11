"""Experiment tracking: experiments, runs, params, metrics, artifacts, autologging."""

from wellml.tracking.autolog import autolog, evaluation_metrics
from wellml.tracking.service import ActiveRun, RunRecord, Tracking

__all__ = ["ActiveRun", "RunRecord", "Tracking", "autolog", "evaluation_metrics"]
