"""Training diagnostics: learning curves a fitted model exposes, and rules that flag problems.

Rules (each a :class:`Finding` when it fires):

====================  ===========================================================================
rule                  fires when
====================  ===========================================================================
``overfitting``       the training score beats the validation score by more than ``overfit_gap``
                      (accuracy for classifiers, R² for regressors; needs a validation set)
``no_improvement``    the model does not beat a dummy baseline (class prior / mean) fitted on the
                      same training data by more than ``baseline_margin``, on the validation set
                      when there is one and on the training data otherwise (balanced accuracy
                      for classifiers, R² for regressors)
``class_imbalance``   the rarest class is less than ``imbalance_share`` of the training labels
``constant_features`` an input column has one value (or none) in the training data
====================  ===========================================================================

:func:`record_diagnostics` writes the outcome to a run's tags: ``diagnostics.flags`` (the rules
that fired, comma-separated, empty when none did), ``diagnostics.<rule>`` (one line per fired
rule) and ``diagnostics`` (everything as JSON). Autologging records them for every logged fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RULES = ("overfitting", "no_improvement", "class_imbalance", "constant_features")
_MAX_CURVE_POINTS = 100


@dataclass(frozen=True)
class Finding:
    """A rule that fired: which, a one-line message, and the numbers behind it."""

    rule: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {"rule": self.rule, "message": self.message, "details": self.details}


@dataclass(frozen=True)
class Diagnostics:
    """What the rules found, which rules could be checked, and the scores they compared."""

    findings: tuple[Finding, ...]
    checked: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        """The rules that fired."""
        return [f.rule for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "flags": self.flags,
            "checked": list(self.checked),
            "findings": [f.to_dict() for f in self.findings],
            "scores": self.scores,
        }

    def to_tags(self) -> dict[str, str]:
        """The run tags that record it."""
        tags = {
            "diagnostics.flags": ",".join(self.flags),
            "diagnostics": json.dumps(self.to_dict(), sort_keys=True, default=_json_default),
        }
        tags |= {f"diagnostics.{f.rule}": f.message for f in self.findings}
        return tags


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


# --- learning curves ---------------------------------------------------------------------------


def _final_step(model: Any, X: Any) -> tuple[Any, Any]:
    """The last estimator of a pipeline and ``X`` transformed by the steps before it."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        final = model.steps[-1][1]
        Xt = model[:-1].transform(X) if len(model.steps) > 1 and X is not None else X
        return final, Xt
    return model, X


def _thin(values: list[float]) -> list[tuple[int, float]]:
    every = max(1, len(values) // _MAX_CURVE_POINTS)
    return [
        (i + 1, float(v))
        for i, v in enumerate(values)
        if (i % every == 0 or i == len(values) - 1) and math.isfinite(float(v))
    ]


def learning_curves(
    model: Any, eval_set: tuple[Any, Any] | None = None
) -> dict[str, list[tuple[int, float]]]:
    """Curves by training iteration that a fitted model exposes, as ``(step, value)`` points.

    - ``training_loss``: ``loss_curve_`` (MLP), or the training deviance of gradient boosting
      (``train_score_`` of ``GradientBoosting*``);
    - ``training_score`` / ``validation_score``: ``train_score_`` / ``validation_score_`` of
      histogram gradient boosting (negative loss) and ``validation_scores_`` of an MLP with
      early stopping;
    - ``val_loss``: log loss (classifiers) or RMSE (regressors) on ``eval_set`` after each stage,
      for models with ``staged_predict_proba`` / ``staged_predict``.

    At most about 100 points per curve are kept (evenly spaced, the last always).
    """
    from sklearn.base import is_classifier

    final, _ = _final_step(model, None)
    curves: dict[str, list[tuple[int, float]]] = {}
    loss_curve = getattr(final, "loss_curve_", None)
    if loss_curve is not None:
        curves["training_loss"] = _thin(list(loss_curve))
    hist_train = getattr(final, "train_score_", None)
    if hist_train is not None and len(hist_train):
        name = "training_score" if hasattr(final, "validation_score_") else "training_loss"
        curves[name] = _thin(list(hist_train))
    for attr in ("validation_score_", "validation_scores_"):
        scores = getattr(final, attr, None)
        if scores is not None and len(scores):
            curves["validation_score"] = _thin(list(scores))
    if eval_set is not None:
        X_val, y_val = eval_set
        final, Xt = _final_step(model, X_val)
        staged = (
            getattr(final, "staged_predict_proba", None)
            if is_classifier(final)
            else getattr(final, "staged_predict", None)
        )
        if staged is not None:
            from sklearn import metrics

            y_true = np.asarray(y_val)
            values = []
            for out in staged(Xt):
                if is_classifier(final):
                    values.append(metrics.log_loss(y_true, out, labels=final.classes_))
                else:
                    values.append(float(np.sqrt(metrics.mean_squared_error(y_true, out))))
            curves["val_loss"] = _thin(values)
    return curves


def iterations(model: Any) -> int | None:
    """How many iterations (epochs, boosting rounds, solver steps) training took, if known."""
    final, _ = _final_step(model, None)
    n = getattr(final, "n_iter_", None)
    if n is None:
        return None
    arr = np.asarray(n).ravel()
    return int(arr.max()) if arr.size else None


# --- rules -------------------------------------------------------------------------------------


def _columns(X: Any) -> list[tuple[str, Any]]:
    if hasattr(X, "columns"):
        return [(str(c), X[c]) for c in X.columns]
    arr = np.asarray(X)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    return [(f"x{i}", arr[:, i]) for i in range(arr.shape[1])]


def constant_features(X: Any) -> list[str]:
    """Columns with at most one distinct value (missing values ignored)."""
    import pandas as pd

    out = []
    for name, col in _columns(X):
        if pd.Series(col).nunique(dropna=True) <= 1:
            out.append(name)
    return out


def _score(model: Any, X: Any, y: Any, classifier: bool, balanced: bool = False) -> float:
    from sklearn import metrics

    pred = model.predict(X)
    if classifier:
        fn = metrics.balanced_accuracy_score if balanced else metrics.accuracy_score
        return float(fn(np.asarray(y), pred))
    return float(metrics.r2_score(np.asarray(y), pred))


def diagnose(
    model: Any,
    X: Any,
    y: Any,
    *,
    eval_set: tuple[Any, Any] | None = None,
    overfit_gap: float = 0.1,
    baseline_margin: float = 0.01,
    imbalance_share: float = 0.1,
) -> Diagnostics:
    """Check a fitted model and its training data against the rules in the module docstring.

    Args:
        model: the fitted estimator (or pipeline).
        X: the training inputs; y: the training labels or targets.
        eval_set: held-out ``(X, y)``; without it the overfitting rule is not checked.
        overfit_gap: the largest accepted training-minus-validation score.
        baseline_margin: how much the model must beat the dummy baseline by.
        imbalance_share: the smallest accepted share of the rarest class.
    """
    import warnings

    from sklearn.base import is_classifier
    from sklearn.dummy import DummyClassifier, DummyRegressor

    classifier = is_classifier(model)
    findings: list[Finding] = []
    checked: list[str] = []
    scores: dict[str, float] = {}

    checked.append("constant_features")
    constant = constant_features(X)
    if constant:
        shown = ", ".join(constant[:10]) + (" ..." if len(constant) > 10 else "")
        findings.append(
            Finding(
                "constant_features",
                f"{len(constant)} input column(s) have a single value: {shown}",
                {"columns": constant},
            )
        )

    labels = np.asarray(y)
    if classifier:
        checked.append("class_imbalance")
        values, counts = np.unique(labels, return_counts=True)
        if len(values) > 1:
            share = float(counts.min() / counts.sum())
            scores["minority_share"] = share
            if share < imbalance_share:
                rare = values[int(counts.argmin())]
                findings.append(
                    Finding(
                        "class_imbalance",
                        f"class {rare!r} is {share:.1%} of the training labels "
                        f"(below {imbalance_share:.0%})",
                        {
                            "counts": {str(v): int(c) for v, c in zip(values, counts)},
                            "minority_share": share,
                        },
                    )
                )

    name = "accuracy" if classifier else "r2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = _score(model, X, y, classifier)
        scores[f"training_{name}"] = train
        if eval_set is not None:
            checked.append("overfitting")
            val = _score(model, eval_set[0], eval_set[1], classifier)
            scores[f"validation_{name}"] = val
            gap = train - val
            if gap > overfit_gap:
                findings.append(
                    Finding(
                        "overfitting",
                        f"training {name} {train:.3f} vs validation {val:.3f}: a gap of "
                        f"{gap:.3f} (more than {overfit_gap:g})",
                        {"training": train, "validation": val, "gap": gap},
                    )
                )

        checked.append("no_improvement")
        dummy = DummyClassifier(strategy="prior") if classifier else DummyRegressor(strategy="mean")
        dummy.fit(X, y)
        X_eval, y_eval = eval_set if eval_set is not None else (X, y)
        where = "validation" if eval_set is not None else "training"
        metric = "balanced accuracy" if classifier else "R²"
        mine = _score(model, X_eval, y_eval, classifier, balanced=True)
        base = _score(dummy, X_eval, y_eval, classifier, balanced=True)
        scores["baseline_score"], scores["model_score"] = base, mine
        if not mine > base + baseline_margin:
            findings.append(
                Finding(
                    "no_improvement",
                    f"{where} {metric} {mine:.3f} does not beat the dummy baseline's {base:.3f}"
                    + (f" by {baseline_margin:g}" if baseline_margin else ""),
                    {"model": mine, "baseline": base, "margin": baseline_margin, "on": where},
                )
            )
    return Diagnostics(tuple(findings), tuple(checked), scores)


def record_diagnostics(run: Any, diagnostics: Diagnostics) -> None:
    """Write diagnostics to an active run's tags (see the module docstring)."""
    run.set_tags(diagnostics.to_tags())


def record_learning_curves(run: Any, curves: dict[str, list[tuple[int, float]]]) -> None:
    """Log learning curves as metric histories of an active run (one point per step)."""
    import time

    ts = time.time()
    points = [(key, value, step, ts) for key, curve in curves.items() for step, value in curve]
    if points:
        run.log_batch(metrics=points)
