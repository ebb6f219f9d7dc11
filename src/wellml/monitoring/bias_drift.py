"""Bias drift: has a model's post-training bias moved away from its baseline?

The metrics are :mod:`wellml.clarify`'s post-training bias metrics, measured on labelled
predictions (captured traffic joined with ground truth) and on a baseline (the training or
validation data with the model's predictions). As in SageMaker Clarify's bias-drift monitor, a
metric is a violation when its current value is *worse* than the baseline, i.e. further from
the metric's ideal value (1 for DI, 0 for every other metric), by more than the tolerance:
``|current − ideal| > |baseline − ideal| + tolerance``. Clarify documents the direction only
for metrics whose ideal is 0; for DI, wellml measures the distance from 1 the same way.
Metrics that are undefined or infinite on either side are reported but not compared.

Feature-attribution drift is scored by :func:`attribution_ndcg`, Clarify's NDCG of the live
ranking of features by attribution against the baseline's; a score below 0.9 is a
violation. It takes two ``{feature: global attribution}`` maps, so any explainer that yields
global SHAP values can feed it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from wellml.errors import InvalidInput

__all__ = [
    "DEFAULT_BIAS_METHODS",
    "BiasDriftCheck",
    "BiasDriftResult",
    "attribution_drift_violations",
    "attribution_ndcg",
]

# Post-training metrics that need only labels, predictions and the facet (no k-NN, no groups).
DEFAULT_BIAS_METHODS = ("DPPL", "DI", "DCA", "DCR", "RD", "SD", "DAR", "DRR", "AD")
DEFAULT_BIAS_TOLERANCE = 0.1
IDEAL = {"DI": 1.0}


@dataclass(frozen=True)
class BiasDriftResult:
    """Current and baseline metric values per facet group, and the violations."""

    current: dict[str, dict[str, float | None]]
    baseline: dict[str, dict[str, float | None]]
    comparisons: list[dict[str, Any]]
    violations: list[dict[str, Any]]
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "current": self.current,
            "baseline": self.baseline,
            "comparisons": self.comparisons,
            "violations": self.violations,
            "analysis": self.report,
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class BiasDriftCheck:
    """Post-training bias of labelled predictions, compared with a baseline.

    Args:
        label: The ground-truth label column.
        label_values_or_threshold: The positive label value(s) (or ``Threshold``).
        facet: The facet column.
        facet_values_or_threshold: The value(s) selecting facet d; ``None`` for each value.
        predicted_label: The prediction column.
        methods: Post-training metric keys (default :data:`DEFAULT_BIAS_METHODS`).
        tolerances: Metric → tolerance; others use ``tolerance``.
        tolerance: Default tolerance.
    """

    def __init__(
        self,
        *,
        label: str,
        label_values_or_threshold: Any,
        facet: str,
        facet_values_or_threshold: Any,
        predicted_label: str = "prediction",
        methods: Sequence[str] = DEFAULT_BIAS_METHODS,
        tolerances: Mapping[str, float] | None = None,
        tolerance: float = DEFAULT_BIAS_TOLERANCE,
    ) -> None:
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
            raise InvalidInput(f"tolerance must be a number >= 0, not {tolerance!r}")
        self.label = label
        self.label_values_or_threshold = label_values_or_threshold
        self.facet = facet
        self.facet_values_or_threshold = facet_values_or_threshold
        self.predicted_label = predicted_label
        self.methods = list(methods)
        self.tolerances = dict(tolerances or {})
        self.tolerance = float(tolerance)

    def get_params(self) -> dict[str, Any]:
        """The parameters, by name."""
        return {
            "label": self.label,
            "label_values_or_threshold": self.label_values_or_threshold,
            "facet": self.facet,
            "facet_values_or_threshold": self.facet_values_or_threshold,
            "predicted_label": self.predicted_label,
            "methods": list(self.methods),
            "tolerances": dict(self.tolerances),
            "tolerance": self.tolerance,
        }

    def measure(self, frame: pd.DataFrame) -> tuple[dict[str, dict[str, float | None]], dict]:
        """The metric values per facet group, and Clarify's report of them.

        Raises:
            wellml.clarify.BiasInputError: see :mod:`wellml.clarify.bias`.
        """
        from wellml.clarify import posttraining_bias

        report = posttraining_bias(
            frame,
            label=self.label,
            label_values_or_threshold=self.label_values_or_threshold,
            facet=self.facet,
            facet_values_or_threshold=self.facet_values_or_threshold,
            predicted_label=self.predicted_label,
            methods=self.methods,
        )
        values = {
            group.value_or_threshold: {m.name: _finite_or_none(m.value) for m in group.metrics}
            for group in report.groups
        }
        return values, report.to_dict()

    def compute(
        self, frame: pd.DataFrame, *, baseline: Mapping[str, Mapping[str, float | None]]
    ) -> BiasDriftResult:
        """Measure the current bias and compare it with ``baseline`` (group → metric → value).

        Raises:
            wellml.clarify.BiasInputError: see :mod:`wellml.clarify.bias`.
        """
        current, report = self.measure(frame)
        comparisons = []
        violations = []
        for group, metrics in current.items():
            base_group = baseline.get(group, {})
            for name, value in metrics.items():
                base = base_group.get(name)
                if value is None or base is None:
                    continue
                ideal = IDEAL.get(name, 0.0)
                tol = float(self.tolerances.get(name, self.tolerance))
                limit = abs(base - ideal) + tol
                worse = abs(value - ideal) > limit
                comparisons.append(
                    {
                        "facet": self.facet,
                        "facet_value": group,
                        "metric": name,
                        "current": value,
                        "baseline": base,
                        "ideal": ideal,
                        "tolerance": tol,
                        "violation": bool(worse),
                    }
                )
                if worse:
                    violations.append(
                        {
                            "facet": self.facet,
                            "facet_value": group,
                            "metric_name": name,
                            "constraint_check_type": "bias_drift_check",
                            "description": f"{name} {value:.4f} is further from {ideal:g} than "
                            f"the baseline {base:.4f} by more than {tol}",
                        }
                    )
        return BiasDriftResult(
            current, {k: dict(v) for k, v in baseline.items()}, comparisons, violations, report
        )


def attribution_ndcg(baseline: Mapping[str, float], current: Mapping[str, float]) -> float:
    """Clarify's NDCG of the current attribution ranking against the baseline's.

    ``DCG = Σ a(F′ᵢ)/log₂(i+1)`` over the features ranked by current attribution, with ``a``
    the baseline attribution; ``iDCG`` is the same sum over the baseline's own ranking. Both
    rank by absolute attribution. Features missing on one side count as 0 there.

    Raises:
        InvalidInput: no features, or a baseline whose attributions are all 0.
    """
    features = sorted(set(baseline) | set(current))
    if not features:
        raise InvalidInput("no feature attributions to compare")
    base = {f: abs(float(baseline.get(f, 0.0))) for f in features}
    cur = {f: abs(float(current.get(f, 0.0))) for f in features}
    ideal = sorted(features, key=lambda f: -base[f])
    live = sorted(features, key=lambda f: -cur[f])
    idcg = sum(base[f] / math.log2(i + 2) for i, f in enumerate(ideal))
    if idcg == 0:
        raise InvalidInput("every baseline attribution is 0: the ranking says nothing")
    dcg = sum(base[f] / math.log2(i + 2) for i, f in enumerate(live))
    return dcg / idcg


def attribution_drift_violations(
    baseline: Mapping[str, float],
    current: Mapping[str, float],
    *,
    threshold: float = 0.9,
    label: str = "label0",
) -> list[dict[str, Any]]:
    """The feature-attribution drift violation (NDCG below ``threshold``), or none."""
    score = attribution_ndcg(baseline, current)
    if score >= threshold:
        return []
    return [
        {
            "label": label,
            "metric_name": "shap",
            "constraint_check_type": "feature_attribution_drift_check",
            "description": f"NDCG {score:.4f} of the attribution ranking is below {threshold}",
        }
    ]
