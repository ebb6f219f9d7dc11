"""What a trial computes: a user's objective function, or a scikit-learn estimator scored by
cross-validation, fold by fold, so that a bad configuration can be pruned after its first folds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wellml.errors import InvalidInput

# name -> (scikit-learn scorer, direction). Scorers are "greater is better"; a metric we
# minimise is the negated scorer (rmse = -neg_root_mean_squared_error).
METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "maximize"),
    "balanced_accuracy": ("balanced_accuracy", "maximize"),
    "f1": ("f1", "maximize"),
    "f1_macro": ("f1_macro", "maximize"),
    "f1_weighted": ("f1_weighted", "maximize"),
    "precision": ("precision", "maximize"),
    "recall": ("recall", "maximize"),
    "roc_auc": ("roc_auc", "maximize"),
    "roc_auc_ovr": ("roc_auc_ovr", "maximize"),
    "log_loss": ("neg_log_loss", "minimize"),
    "r2": ("r2", "maximize"),
    "rmse": ("neg_root_mean_squared_error", "minimize"),
    "mae": ("neg_mean_absolute_error", "minimize"),
    "mse": ("neg_mean_squared_error", "minimize"),
}
CLASSIFICATION_METRICS = (
    "accuracy", "balanced_accuracy", "f1", "f1_macro", "f1_weighted", "precision", "recall",
    "roc_auc", "roc_auc_ovr", "log_loss",
)  # fmt: skip
REGRESSION_METRICS = ("r2", "rmse", "mae", "mse")


@dataclass(frozen=True)
class Metric:
    """A metric a trial is scored by: its name, the scorer behind it, and which way is better."""

    name: str
    scorer: str
    direction: str

    @property
    def sign(self) -> float:
        """What the scorer's value is multiplied by to give the metric."""
        return -1.0 if self.direction == "minimize" else 1.0


def resolve_metric(name: str, direction: str | None = None) -> Metric:
    """The metric called ``name``: one of :data:`METRICS`, or any scikit-learn scorer name
    (maximised).

    Raises:
        InvalidInput: an unknown name, or a direction that contradicts the metric's.
    """
    from sklearn.metrics import get_scorer_names

    if name in METRICS:
        scorer, natural = METRICS[name]
    elif name in get_scorer_names():
        scorer, natural = name, "maximize"
    else:
        raise InvalidInput(
            f"unknown metric {name!r}: use one of {', '.join(METRICS)} or a scikit-learn "
            "scorer name"
        )
    if direction is not None and direction != natural:
        raise InvalidInput(f"metric {name!r} is to {natural}, not to {direction}")
    return Metric(name, scorer, natural)


def default_metric(problem: str) -> str:
    """The metric tuning and AutoML use when none is given: ROC AUC for binary
    classification, macro F1 for multiclass, RMSE for regression."""
    return {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}[problem]


def problem_of(estimator: Any, y: Any) -> str:
    """``binary``, ``multiclass`` or ``regression``, from the estimator and the labels."""
    import numpy as np
    from sklearn.base import is_classifier

    if not is_classifier(estimator):
        return "regression"
    classes = np.unique(np.asarray(y)[~_missing(y)])
    return "binary" if len(classes) <= 2 else "multiclass"


def _missing(y: Any) -> Any:
    import pandas as pd

    return pd.isna(pd.Series(y)).to_numpy()


def cv_folds(y: Any, *, classification: bool, folds: int, seed: int) -> list[tuple[Any, Any]]:
    """Train/validation index pairs: stratified for classification, shuffled with ``seed``.

    The number of folds shrinks for tiny data (at least 2 rows per validation fold, and no more
    folds than the rarest class has rows).

    Raises:
        InvalidInput: fewer than 4 rows, or a class with a single row.
    """
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    labels = np.asarray(y)
    n = len(labels)
    if n < 4:
        raise InvalidInput(f"{n} rows are too few to cross-validate (at least 4 are needed)")
    k = min(folds, n // 2)
    if classification:
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() < 2:
            raise InvalidInput(
                "every class needs at least 2 rows to cross-validate; the rarest has "
                f"{int(counts.min())}"
            )
        k = min(k, int(counts.min()))
        splitter: Any = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in splitter.split(np.zeros(n), labels)]
    splitter = KFold(n_splits=max(2, k), shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros(n))]


def take(data: Any, index: Any) -> Any:
    """Rows of a DataFrame, Series or array by position."""
    if hasattr(data, "iloc"):
        return data.iloc[index]
    import numpy as np

    return np.asarray(data)[index]


@dataclass
class EstimatorObjective:
    """Scores an estimator with the trial's parameters by K-fold cross-validation, reporting
    the mean score so far after each fold (pruners stop bad trials after their first folds).

    Attributes:
        estimator: the unfitted estimator (or pipeline); trial parameters are set on a clone.
        X, y: the data.
        metric: what to score.
        folds: train/validation index pairs.
        quiet: silence scikit-learn's convergence and fit warnings inside trials.
    """

    estimator: Any
    X: Any
    y: Any
    metric: Metric
    folds: list[tuple[Any, Any]]
    quiet: bool = True

    def __call__(self, params: Mapping[str, Any], trial: Any) -> float:
        """Mean validation score of the folds (the metric's own sign: RMSE is positive)."""
        from sklearn.base import clone
        from sklearn.metrics import get_scorer

        scorer = get_scorer(self.metric.scorer)
        configured = clone(self.estimator).set_params(**params)
        scores: list[float] = []
        for i, (train, valid) in enumerate(self.folds):
            model = clone(configured)
            with warnings.catch_warnings():
                if self.quiet:
                    warnings.simplefilter("ignore")
                model.fit(take(self.X, train), take(self.y, train))
                score = self.metric.sign * float(
                    scorer(model, take(self.X, valid), take(self.y, valid))
                )
            scores.append(score)
            trial.report(sum(scores) / len(scores), i + 1)
        return sum(scores) / len(scores)


def is_estimator(obj: Any) -> bool:
    """Whether ``obj`` looks like a scikit-learn estimator (``fit`` and ``get_params``)."""
    return hasattr(obj, "fit") and hasattr(obj, "get_params") and not isinstance(obj, type)


def check_params(estimator: Any, names: list[str]) -> None:
    """Raise when the search space names parameters the estimator does not have.

    Raises:
        InvalidInput: naming the unknown parameters and a few known ones.
    """
    known = set(estimator.get_params(deep=True))
    unknown = [n for n in names if n not in known]
    if unknown:
        sample = ", ".join(sorted(known)[:12])
        raise InvalidInput(
            f"{type(estimator).__name__} has no parameter(s) {', '.join(unknown)} "
            f"(it has e.g. {sample})"
        )


def objective_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments an objective function takes (1: params; 2: params and
    the trial).

    Raises:
        InvalidInput: it takes neither one nor two.
    """
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
        return 2
    if len(positional) not in (1, 2):
        raise InvalidInput(
            "an objective takes (params) or (params, trial) and returns a number; "
            f"this one takes {len(positional)} required arguments"
        )
    return len(positional)


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
