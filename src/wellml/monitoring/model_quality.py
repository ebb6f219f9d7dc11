"""Model quality: how good the predictions are once the ground truth is known.

:func:`quality_metrics` measures predictions against labels, with Model Monitor's problem
types and metric names:

=========================  ===================================================================
problem type               metrics
=========================  ===================================================================
BinaryClassification       accuracy, precision, recall, f1 (of the positive label),
                           true_positive_rate, false_positive_rate, true_negative_rate,
                           false_negative_rate, confusion_matrix; with scores also auc (ROC,
                           ties share their rank) and log_loss
MulticlassClassification   accuracy, weighted_precision, weighted_recall, weighted_f1,
                           confusion_matrix
Regression                 mae, mse, rmse, r2
=========================  ===================================================================

A division by zero (precision with no positive prediction) gives 0, as scikit-learn's
``zero_division=0`` does. :class:`ModelQualityCheck` compares the metrics with baseline values
(the model version's validation metrics, or metrics measured on a baseline dataset): a metric
where higher is better is a violation when it falls more than its tolerance below the
baseline (an absolute tolerance, default 0.05); an error metric (mae, mse, rmse, log_loss) when
it rises more than its tolerance above the baseline, relative to it (default 0.1, i.e. 10 %).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from wellml.errors import InvalidInput

__all__ = [
    "BINARY",
    "LOWER_IS_BETTER",
    "MULTICLASS",
    "PROBLEM_TYPES",
    "REGRESSION",
    "ModelQualityCheck",
    "baseline_metric_names",
    "quality_metrics",
]

BINARY = "BinaryClassification"
MULTICLASS = "MulticlassClassification"
REGRESSION = "Regression"
PROBLEM_TYPES = (BINARY, MULTICLASS, REGRESSION)

LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "log_loss"})
COMPARED = {
    BINARY: ("accuracy", "precision", "recall", "f1", "auc", "log_loss"),
    MULTICLASS: ("accuracy", "weighted_precision", "weighted_recall", "weighted_f1"),
    REGRESSION: ("mae", "rmse", "r2"),
}
DEFAULT_TOLERANCE = 0.05
DEFAULT_ERROR_TOLERANCE = 0.1
_EPS = 1e-15

# Names under which validation metrics are commonly logged, and the metric each one is.
_ALIASES = {
    "roc_auc": "auc",
    "rocauc": "auc",
    "auc_roc": "auc",
    "f1_score": "f1",
    "logloss": "log_loss",
    "r2_score": "r2",
    "mean_absolute_error": "mae",
    "mean_squared_error": "mse",
    "root_mean_squared_error": "rmse",
    "precision_score": "precision",
    "recall_score": "recall",
    "accuracy_score": "accuracy",
}


def baseline_metric_names(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Logged metrics under Model Monitor's names: ``val_roc_auc`` → ``auc`` and so on.

    Non-numeric values are dropped; a ``val_``/``validation_`` prefix is removed.
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        name = str(key).lower()
        for prefix in ("validation_", "val_", "valid_"):
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[_ALIASES.get(name, name)] = float(value)
    return out


def _div(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return _div(2 * precision * recall, precision + recall)


def _auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the Mann–Whitney rank sum, tied scores sharing their average rank."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _binary(
    y: np.ndarray, yhat: np.ndarray, scores: np.ndarray | None, positive_label: Any
) -> dict[str, Any]:
    pos = y == positive_label
    pred = yhat == positive_label
    tp = int(np.sum(pos & pred))
    fp = int(np.sum(~pos & pred))
    fn = int(np.sum(pos & ~pred))
    tn = int(np.sum(~pos & ~pred))
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    out: dict[str, Any] = {
        "accuracy": _div(tp + tn, len(y)),
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "true_positive_rate": recall,
        "false_negative_rate": _div(fn, tp + fn),
        "true_negative_rate": _div(tn, tn + fp),
        "false_positive_rate": _div(fp, tn + fp),
        "confusion_matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }
    if scores is not None:
        out["auc"] = _auc(pos, scores)
        p = np.clip(scores, _EPS, 1 - _EPS)
        out["log_loss"] = float(-np.mean(np.where(pos, np.log(p), np.log(1 - p))))
    return out


def _multiclass(y: np.ndarray, yhat: np.ndarray) -> dict[str, Any]:
    labels = pd.unique(pd.Series(np.concatenate([y, yhat]), dtype=object))
    support_total = len(y)
    precision = recall = f1 = 0.0
    matrix: dict[str, dict[str, int]] = {}
    for label in labels:
        is_true = y == label
        is_pred = yhat == label
        tp = int(np.sum(is_true & is_pred))
        p = _div(tp, int(is_pred.sum()))
        r = _div(tp, int(is_true.sum()))
        weight = int(is_true.sum()) / support_total
        precision += weight * p
        recall += weight * r
        f1 += weight * _f1(p, r)
        matrix[str(label)] = {
            str(other): int(np.sum(is_true & (yhat == other))) for other in labels
        }
    return {
        "accuracy": _div(int(np.sum(y == yhat)), len(y)),
        "weighted_precision": precision,
        "weighted_recall": recall,
        "weighted_f1": f1,
        "confusion_matrix": matrix,
    }


def _regression(y: np.ndarray, yhat: np.ndarray) -> dict[str, Any]:
    err = yhat - y
    mse = float(np.mean(err**2))
    total = float(np.sum((y - y.mean()) ** 2))
    residual = float(np.sum(err**2))
    # For a constant target scikit-learn gives 1 for a perfect fit, else 0.
    perfect = 1.0 if residual == 0.0 else 0.0
    r2 = perfect if total == 0.0 else 1.0 - residual / total
    return {"mae": float(np.mean(np.abs(err))), "mse": mse, "rmse": math.sqrt(mse), "r2": r2}


def quality_metrics(
    y_true: Any,
    y_pred: Any,
    *,
    problem_type: str,
    scores: Any = None,
    positive_label: Any = 1,
) -> dict[str, Any]:
    """Model-quality metrics of predictions against labels.

    Args:
        y_true: Observed labels (or values for regression).
        y_pred: Predicted labels (or values).
        problem_type: ``BinaryClassification``, ``MulticlassClassification`` or
            ``Regression``.
        scores: Binary only: the predicted probability of ``positive_label`` per row, for
            auc and log_loss.
        positive_label: Binary only: the label counted as positive.

    Returns:
        Metric name → value (``confusion_matrix`` is a dict); ``n`` is the row count.

    Raises:
        InvalidInput: unknown problem type, no rows, lengths that differ, missing values,
            non-numeric regression values, or scores outside [0, 1].
    """
    if problem_type not in PROBLEM_TYPES:
        raise InvalidInput(
            f"problem_type must be one of {', '.join(PROBLEM_TYPES)}, not {problem_type!r}"
        )
    y = np.asarray(pd.Series(y_true).to_numpy())
    yhat = np.asarray(pd.Series(y_pred).to_numpy())
    if len(y) == 0:
        raise InvalidInput("no labelled rows to measure")
    if len(y) != len(yhat):
        raise InvalidInput(f"{len(y)} labels but {len(yhat)} predictions")
    if pd.isna(pd.Series(y)).any() or pd.isna(pd.Series(yhat)).any():
        raise InvalidInput("labels and predictions must not be missing")
    if problem_type == REGRESSION:
        try:
            out = _regression(y.astype(np.float64), yhat.astype(np.float64))
        except (TypeError, ValueError):
            raise InvalidInput("regression labels and predictions must be numbers") from None
    elif problem_type == BINARY:
        s = None
        if scores is not None:
            s = np.asarray(scores, dtype=np.float64)
            if len(s) != len(y):
                raise InvalidInput(f"{len(y)} labels but {len(s)} scores")
            if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
                raise InvalidInput("scores must be probabilities in [0, 1]")
        y, yhat, positive = _aligned_labels(y, yhat, positive_label)
        out = _binary(y, yhat, s, positive)
    else:
        y, yhat, _ = _aligned_labels(y, yhat, None)
        out = _multiclass(y, yhat)
    out["n"] = len(y)
    return out


def _aligned_labels(
    y: np.ndarray, yhat: np.ndarray, positive: Any
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Labels, predictions and the positive label compared as one type ("1" matches 1)."""
    if y.dtype.kind in "iufb" and yhat.dtype.kind in "iufb":
        return y, yhat, positive
    as_text = np.vectorize(_text, otypes=[object])
    return as_text(y), as_text(yhat), None if positive is None else _text(positive)


def _text(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@dataclass(frozen=True)
class ModelQualityResult:
    """Current metrics, the baseline they were compared with, and the violations."""

    metrics: dict[str, Any]
    baseline: dict[str, float]
    comparisons: list[dict[str, Any]]
    violations: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "metrics": self.metrics,
            "baseline": self.baseline,
            "comparisons": self.comparisons,
            "violations": self.violations,
        }


class ModelQualityCheck:
    """Measures predictions against ground truth and compares with baseline metrics.

    Args:
        problem_type: One of :data:`PROBLEM_TYPES`.
        positive_label: The positive label of a binary problem.
        tolerances: Metric → allowed degradation (absolute for scores, relative for error
            metrics); unnamed compared metrics use the defaults.
    """

    def __init__(
        self,
        *,
        problem_type: str,
        positive_label: Any = 1,
        tolerances: Mapping[str, float] | None = None,
    ) -> None:
        if problem_type not in PROBLEM_TYPES:
            raise InvalidInput(
                f"problem_type must be one of {', '.join(PROBLEM_TYPES)}, not {problem_type!r}"
            )
        for key, value in (tolerances or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidInput(f"tolerance {key!r} must be a number >= 0, not {value!r}")
        self.problem_type = problem_type
        self.positive_label = positive_label
        self.tolerances = dict(tolerances or {})

    def get_params(self) -> dict[str, Any]:
        """The parameters, by name."""
        return {
            "problem_type": self.problem_type,
            "positive_label": self.positive_label,
            "tolerances": dict(self.tolerances),
        }

    def tolerance(self, metric: str) -> float:
        """The allowed degradation of ``metric``."""
        default = DEFAULT_ERROR_TOLERANCE if metric in LOWER_IS_BETTER else DEFAULT_TOLERANCE
        return float(self.tolerances.get(metric, default))

    def compute(
        self,
        y_true: Any,
        y_pred: Any,
        *,
        baseline: Mapping[str, float],
        scores: Any = None,
    ) -> ModelQualityResult:
        """Measure and compare.

        Raises:
            InvalidInput: see :func:`quality_metrics`.
        """
        metrics = quality_metrics(
            y_true,
            y_pred,
            problem_type=self.problem_type,
            scores=scores,
            positive_label=self.positive_label,
        )
        comparisons = []
        violations = []
        for name in COMPARED[self.problem_type]:
            current = metrics.get(name)
            base = baseline.get(name)
            if current is None or base is None or not math.isfinite(current):
                continue
            tol = self.tolerance(name)
            if name in LOWER_IS_BETTER:
                limit = base * (1 + tol)
                worse = current > limit
            else:
                limit = base - tol
                worse = current < limit
            comparisons.append(
                {
                    "metric": name,
                    "current": current,
                    "baseline": base,
                    "limit": limit,
                    "tolerance": tol,
                    "violation": bool(worse),
                }
            )
            if worse:
                violations.append(
                    {
                        "metric_name": name,
                        "constraint_check_type": "model_quality_check",
                        "description": f"{name} {current:.4f} is worse than the baseline "
                        f"{base:.4f} beyond the tolerance {tol} (limit {limit:.4f})",
                    }
                )
        return ModelQualityResult(metrics, dict(baseline), comparisons, violations)
