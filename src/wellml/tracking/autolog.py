"""Autologging for scikit-learn: while active, every top-level ``fit`` logs the estimator's
params, its metrics on the training data (and on an evaluation set), the learning curves the
model exposes (see :func:`wellml.tracking.diagnostics.learning_curves`), the number of
iterations it trained for, the diagnostics rules' findings (overfitting, no improvement over a
dummy baseline, class imbalance, constant features) as ``diagnostics*`` tags, and the fitted
model as ``model.skops``. The run's wall and CPU time, peak memory and energy are recorded as
``system.*`` tags when it ends, as for every run."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from wellml.tracking.service import ActiveRun

_state = threading.local()


def evaluation_metrics(model: Any, X: Any, y: Any) -> dict[str, float]:
    """The standard metrics of a fitted model on ``(X, y)``: for classifiers accuracy,
    precision, recall, F1, ROC AUC and log loss; for regressors MAE, RMSE and R²."""
    from sklearn import metrics
    from sklearn.base import is_classifier

    y_true = np.asarray(y)
    if is_classifier(model):
        pred = model.predict(X)
        binary = len(getattr(model, "classes_", [])) == 2
        avg = "binary" if binary else "weighted"
        pos = model.classes_[1] if binary else None
        out = {
            "accuracy": metrics.accuracy_score(y_true, pred),
            "precision": metrics.precision_score(
                y_true, pred, average=avg, pos_label=pos, zero_division=0
            )
            if binary
            else metrics.precision_score(y_true, pred, average=avg, zero_division=0),
            "recall": metrics.recall_score(
                y_true, pred, average=avg, pos_label=pos, zero_division=0
            )
            if binary
            else metrics.recall_score(y_true, pred, average=avg, zero_division=0),
            "f1": metrics.f1_score(y_true, pred, average=avg, pos_label=pos, zero_division=0)
            if binary
            else metrics.f1_score(y_true, pred, average=avg, zero_division=0),
        }
        if hasattr(model, "predict_proba"):
            proba = model.predict_proba(X)
            try:
                out["roc_auc"] = (
                    metrics.roc_auc_score(y_true, proba[:, 1])
                    if binary
                    else metrics.roc_auc_score(
                        y_true, proba, multi_class="ovr", average="weighted", labels=model.classes_
                    )
                )
                out["log_loss"] = metrics.log_loss(y_true, proba, labels=model.classes_)
            except ValueError:
                pass  # one class only in y: AUC and log loss are undefined
        return {k: float(v) for k, v in out.items()}
    pred = model.predict(X)
    return {
        "mae": float(metrics.mean_absolute_error(y_true, pred)),
        "rmse": float(np.sqrt(metrics.mean_squared_error(y_true, pred))),
        "r2": float(metrics.r2_score(y_true, pred)),
    }


def _flat_params(model: Any) -> dict[str, str]:
    out = {}
    for k, v in model.get_params(deep=True).items():
        if hasattr(v, "get_params"):
            out[k] = type(v).__name__
        else:
            text = repr(v)
            out[k] = text if len(text) <= 500 else text[:497] + "..."
    return out


@contextmanager
def autolog(
    run: ActiveRun,
    *,
    eval_set: tuple[Any, Any] | None = None,
    log_model: bool = True,
    diagnostics: bool = True,
) -> Iterator[None]:
    """Log every top-level scikit-learn ``fit`` inside the block to ``run``.

    Args:
        eval_set: ``(X, y)`` held out from training; its metrics are logged with a ``val_``
            prefix, and a ``val_loss`` curve by stage for boosted models.
        log_model: store the fitted model as the run artifact ``model.skops``.
        diagnostics: check the fit against the diagnostics rules and record the findings.
    """
    from sklearn.base import BaseEstimator
    from sklearn.pipeline import Pipeline
    from sklearn.utils import all_estimators

    classes = {cls for _, cls in all_estimators()} | {Pipeline}
    originals: dict[type, Any] = {}
    for cls in classes:
        # Patch the class that defines fit: often a private base class that
        # all_estimators does not list (HistGradientBoostingClassifier's, for one).
        owner = next((k for k in cls.__mro__ if "fit" in k.__dict__), None)
        if owner is None or owner in originals or not issubclass(owner, BaseEstimator):
            continue
        cls, fit = owner, owner.__dict__["fit"]
        originals[cls] = fit
        cls.fit = _wrap(fit, run, eval_set, log_model, diagnostics)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for cls, fit in originals.items():
            cls.fit = fit  # type: ignore[attr-defined]


def _wrap(
    fit: Any, run: ActiveRun, eval_set: tuple[Any, Any] | None, log_model: bool, diagnose: bool
) -> Any:
    @functools.wraps(fit)
    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Signatures differ (LabelEncoder.fit(y), Pipeline.fit(X, y, **params)): pass
        # everything through untouched and read X and y only for logging.
        depth = getattr(_state, "depth", 0)
        _state.depth = depth + 1
        try:
            result = fit(self, *args, **kwargs)
        finally:
            _state.depth = depth
        X = args[0] if args else kwargs.get("X")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        if depth == 0 and X is not None and y is not None:
            # Fits made while logging (the diagnostics' dummy baseline) are not logged.
            _state.depth = 1
            try:
                _log_fit(run, self, X, y, eval_set, log_model, diagnose)
            finally:
                _state.depth = depth
        return result

    return patched


def _log_fit(
    run: ActiveRun,
    model: Any,
    X: Any,
    y: Any,
    eval_set: tuple[Any, Any] | None,
    log_model: bool,
    diagnose: bool,
) -> None:
    from wellml.registry.packaging import save_model
    from wellml.tracking import diagnostics

    metrics = {f"training_{k}": v for k, v in evaluation_metrics(model, X, y).items()}
    if eval_set is not None:
        metrics |= {f"val_{k}": v for k, v in evaluation_metrics(model, *eval_set).items()}
    n_iter = diagnostics.iterations(model)
    if n_iter is not None:
        metrics["n_iter"] = float(n_iter)
    run.log_batch(
        params=_flat_params(model), metrics=metrics, tags={"estimator": type(model).__name__}
    )
    diagnostics.record_learning_curves(run, diagnostics.learning_curves(model, eval_set))
    if diagnose:
        diagnostics.record_diagnostics(run, diagnostics.diagnose(model, X, y, eval_set=eval_set))
    if log_model:
        run.log_bytes(save_model(model), "model.skops")
