"""Explanations of a model's predictions: SHAP values, global rankings and partial dependence.

:func:`explain` (or :class:`ShapExplainer`) attributes each prediction of a fitted model to the
model's input columns with the SHAP library, and :func:`partial_dependence` shows how the
average prediction moves with one column. Both work on the **original input columns** of a
data frame, also when the model is a scikit-learn ``Pipeline`` that encodes them first.

**What is explained.** For a classifier, the predicted probability of one class (``target_class``;
by default the second of ``model.classes_`` for a binary model, and it must be named for a
multi-class one); for a regressor, the prediction. Units are those of the output (probability,
not log-odds), as in Clarify with ``use_logit=false``.

**Baseline.** SHAP values say how far each column moves a prediction away from the average
prediction over a set of baseline rows (the *expected value*). As in SageMaker Clarify, the
default baseline summarises the data with k-means: the rows are clustered (numeric columns
standardised, other columns one-hot encoded, at most 5,000 rows sampled with the seed) into
``n_clusters`` groups, and each group gives one baseline row: the group's mean for float
columns, its rounded mean for integer columns, and its most frequent value for the others.
``baseline="mean"`` gives one row of column means and modes; a data frame gives the rows
themselves. Clarify weights no cluster by its size, and neither does wellml.

**Algorithms.** ``method="auto"`` uses SHAP's exact ``TreeExplainer`` (interventional, on the
baseline rows) when the model, or the last step of a ``Pipeline``, is a tree ensemble it
supports; otherwise, and whenever the tree path cannot be used, SHAP's ``KernelExplainer``
(Kernel SHAP, Clarify's algorithm) with ``n_samples`` coalitions per row and no L1 feature
selection, so every column gets a value. Kernel SHAP draws from NumPy's global random state:
it is seeded with ``seed`` for the call and restored afterwards, so a result repeats exactly.

**Pipelines on the tree path.** The tree explainer sees the columns the ``Pipeline``'s
preprocessing produces (one-hot columns, scaled columns, ...). Their SHAP values are mapped
back to the original columns **by summing**: each produced column is credited to the one
original column whose shuffling (a cyclic shift of its values among the explained and
baseline rows) changes it. When a produced column changes with two or more original columns
(``PolynomialFeatures``, ``PCA``, ``Normalizer``, ...), the sum would mix them, so the whole
pipeline is explained with Kernel SHAP instead, in the original columns. A produced column
that no shift changes is constant on those rows and gets no credit. Either way the result
is checked: the values of every row must add up to the prediction minus the expected value
(within ``1e-6``), or the tree path is abandoned for Kernel SHAP and
:attr:`Explanation.notes` says why.

**Refused input** (:class:`ExplainInputError`, an :class:`~wellml.errors.InvalidInput`): not a
data frame; no rows; a missing or duplicated column; a model without ``predict``; a
multi-class model without ``target_class``, or an unknown class; a model that cannot predict
on the rows (the model's exception is the ``__cause__``); output that is not one number per
row; a baseline without rows or without the model's columns; non-positive sizes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from wellml.errors import InvalidInput, UserCodeError

__all__ = [
    "ExplainInputError",
    "Explanation",
    "PartialDependence",
    "ShapExplainer",
    "baseline_rows",
    "explain",
    "partial_dependence",
]

Method = Literal["auto", "tree", "kernel"]
BaselineSpec: TypeAlias = Literal["kmeans", "mean"] | pd.DataFrame

_ADDITIVITY_TOLERANCE = 1e-6
_MAX_CLUSTER_ROWS = 5_000
_SHOWN = 10


class ExplainInputError(InvalidInput, ValueError):
    """Data, model or parameters an explanation cannot use.

    It is a :class:`ValueError` for plain-Python callers and an
    :class:`~wellml.errors.InvalidInput` for wellml's CLI and REST edges.
    """


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class Explanation:
    """SHAP values of a model's predictions on some rows.

    For every row, ``expected_value + shap_values[row].sum() == predictions[row]``
    (additivity, exact for the tree path and enforced by Kernel SHAP).

    Attributes:
        label: What is explained: the class (as text) whose probability is explained, or
            ``"label0"`` for a regressor's prediction (Clarify's name for an unnamed label).
        method: ``"tree"`` or ``"kernel"``: the SHAP algorithm used.
        features: The original input columns, in the model's order.
        shap_values: One row per explained row, one column per feature.
        expected_value: The mean model output over the baseline rows (the base value).
        predictions: The model output explained, one per row.
        data: The explained rows (the feature columns), with their original index.
        baseline: The baseline rows the values are relative to.
        params: The parameters used, for records (the baseline as its kind and row count).
        notes: Why the tree path was not used, when ``method="auto"`` fell back.
    """

    label: str
    method: str
    features: tuple[str, ...]
    shap_values: np.ndarray
    expected_value: float
    predictions: np.ndarray
    data: pd.DataFrame
    baseline: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def n_rows(self) -> int:
        """How many rows were explained."""
        return int(self.shap_values.shape[0])

    @property
    def global_shap_values(self) -> dict[str, float]:
        """Mean absolute SHAP value per feature (Clarify's ``mean_abs``), largest first."""
        means = np.abs(self.shap_values).mean(axis=0)
        order = sorted(range(len(self.features)), key=lambda j: (-means[j], self.features[j]))
        return {self.features[j]: float(means[j]) for j in order}

    @property
    def ranking(self) -> tuple[str, ...]:
        """The features from most to least important (by mean absolute SHAP value)."""
        return tuple(self.global_shap_values)

    @property
    def additivity_error(self) -> float:
        """The largest ``|expected_value + Σ shap − prediction|`` over the rows."""
        if self.n_rows == 0:
            return 0.0
        total = self.expected_value + self.shap_values.sum(axis=1)
        return float(np.max(np.abs(total - self.predictions)))

    def local(self, position: int) -> dict[str, float]:
        """The SHAP values of one explained row, by feature.

        Args:
            position: The row's position among the explained rows (0-based).

        Raises:
            ExplainInputError: No row at that position.
        """
        if not 0 <= position < self.n_rows:
            raise ExplainInputError(
                f"row position {position} is out of range: {self.n_rows} rows were explained"
            )
        row = self.shap_values[position]
        return {f: float(v) for f, v in zip(self.features, row, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """The ``explanations`` section of a Clarify ``analysis.json`` (strict JSON data).

        Clarify names the section ``kernel_shap`` whichever SHAP algorithm ran; wellml keeps
        the name so that readers of Clarify's file read this one. :attr:`method` says which
        algorithm produced the values.
        """
        return {
            "explanations": {
                "kernel_shap": {
                    self.label: {
                        "global_shap_values": self.global_shap_values,
                        "expected_value": float(self.expected_value),
                    }
                }
            }
        }

    def local_to_dict(self) -> dict[str, Any]:
        """Everything per row, as plain JSON data: what Clarify writes to its local SHAP file.

        Keys: ``label``, ``method``, ``features``, ``expected_value``, ``row_ids``,
        ``predicted_values``, ``shap_values`` (rows × features), ``feature_values`` (rows ×
        features, missing values as ``null``), ``baseline`` (rows × features), ``params``
        and ``notes``.
        """
        return {
            "label": self.label,
            "method": self.method,
            "features": list(self.features),
            "expected_value": float(self.expected_value),
            "row_ids": [json_scalar(v) for v in self.data.index],
            "predicted_values": [float(v) for v in self.predictions],
            "shap_values": [[float(v) for v in row] for row in self.shap_values],
            "feature_values": _rows_as_lists(self.data),
            "baseline": _rows_as_lists(self.baseline),
            "params": dict(self.params),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class PartialDependence:
    """How the average model output moves when one feature is set to each grid value.

    Attributes:
        feature: The column varied.
        kind: ``"numeric"`` (a grid of values) or ``"categorical"`` (the values seen).
        values: The grid: the values the feature was set to, in order.
        average: The mean model output over the sampled rows, one per grid value.
        label: What is averaged (as :attr:`Explanation.label`).
        n_rows: How many rows were averaged over.
    """

    feature: str
    kind: str
    values: tuple[Any, ...]
    average: tuple[float, ...]
    label: str
    n_rows: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: ``feature``, ``kind``, ``values``, ``average``, ``label``,
        ``n_rows``."""
        return {
            "feature": self.feature,
            "kind": self.kind,
            "values": [json_scalar(v) for v in self.values],
            "average": [float(v) for v in self.average],
            "label": self.label,
            "n_rows": self.n_rows,
        }


# --------------------------------------------------------------------------------------------
# The public objects and functions


@dataclass(frozen=True, kw_only=True, eq=False)
class ShapExplainer:
    """SHAP explanations of a fitted model, with Clarify's parameters.

    Keyword-only parameters, :meth:`get_params` and one verb, :meth:`compute`, as for the
    other wellml analyses.

    Attributes:
        features: The columns the model reads, in order. Default: the model's
            ``feature_names_in_`` when it has them, else every column.
        target_class: The class whose probability is explained (classifiers). Default: the
            second class of a binary model; required for more than two classes.
        method: ``"auto"`` (tree when possible, else kernel), ``"tree"`` or ``"kernel"``.
        baseline: ``"kmeans"`` (Clarify's default), ``"mean"``, or a data frame of rows.
        n_clusters: Baseline rows made by ``"kmeans"`` (fewer when the data has fewer
            distinct rows).
        n_samples: Coalitions Kernel SHAP evaluates per row (Clarify's ``num_samples``);
            with ``2**M − 2`` or more for ``M`` features the values are exact.
        max_rows: Explain at most this many rows, sampled with the seed; ``None`` for all.
        seed: Seed of every random choice: row sample, clustering and Kernel SHAP.
    """

    features: Sequence[str] | None = None
    target_class: Any = None
    method: Method = "auto"
    baseline: BaselineSpec = "kmeans"
    n_clusters: int = 10
    n_samples: int = 256
    max_rows: int | None = None
    seed: int = 0

    def get_params(self) -> dict[str, Any]:
        """The parameters by name, as passed."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def compute(self, model: Any, df: pd.DataFrame) -> Explanation:
        """Explain ``model``'s output on the rows of ``df``.

        Args:
            model: A fitted model with ``predict`` (and ``predict_proba`` for a classifier),
                such as a scikit-learn estimator or ``Pipeline``.
            df: The rows to explain; extra columns are ignored.

        Returns:
            The SHAP values, one row per explained row and one column per feature.

        Raises:
            ExplainInputError: See the module docstring's list of refused input.
            UserCodeError: The model raised while being explained, after predicting on the
                rows once without error.
        """
        _check_positive(self.n_clusters, "n_clusters")
        _check_positive(self.n_samples, "n_samples")
        if self.max_rows is not None:
            _check_positive(self.max_rows, "max_rows")
        if self.method not in ("auto", "tree", "kernel"):
            raise ExplainInputError(
                f"method must be 'auto', 'tree' or 'kernel', not {self.method!r}"
            )
        frame, features = _feature_frame(df, model, self.features)
        output = _Output.of(model, self.target_class)
        rows = _sample_rows(frame, self.max_rows, self.seed)
        predictions = output.checked(rows)
        base = _baseline_frame(frame, self.baseline, self.n_clusters, self.seed, features)
        output.checked(base, what="baseline rows")
        params: dict[str, Any] = {
            "method": self.method,
            "baseline": self.baseline if isinstance(self.baseline, str) else "given",
            "baseline_rows": len(base),
            "n_clusters": self.n_clusters,
            "n_samples": self.n_samples,
            "max_rows": self.max_rows,
            "seed": self.seed,
            "target_class": json_scalar(output.target) if output.target is not None else None,
        }

        notes: list[str] = []
        is_tree = _tree_model(model) is not None
        if self.method == "tree" and not is_tree:
            raise ExplainInputError(
                f"the tree explainer cannot be used: {_final_step(model).__class__.__name__} "
                "is not a tree model"
            )
        if self.method in ("auto", "tree") and is_tree:
            try:
                values, expected = _tree_shap(model, output, rows, base, predictions)
            except _NoTreePath as why:
                if self.method == "tree":
                    raise ExplainInputError(f"the tree explainer cannot be used: {why}") from None
                notes.append(f"kernel SHAP was used because {why}")
            else:
                return Explanation(
                    label=output.label,
                    method="tree",
                    features=features,
                    shap_values=values,
                    expected_value=expected,
                    predictions=predictions,
                    data=rows,
                    baseline=base,
                    params=params,
                )
        values, expected = _kernel_shap(output, rows, base, self.n_samples, self.seed)
        return Explanation(
            label=output.label,
            method="kernel",
            features=features,
            shap_values=values,
            expected_value=expected,
            predictions=predictions,
            data=rows,
            baseline=base,
            params=params,
            notes=tuple(notes),
        )


def explain(
    model: Any,
    df: pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    target_class: Any = None,
    method: Method = "auto",
    baseline: BaselineSpec = "kmeans",
    n_clusters: int = 10,
    n_samples: int = 256,
    max_rows: int | None = None,
    seed: int = 0,
) -> Explanation:
    """SHAP values of ``model`` on ``df``: ``ShapExplainer(...).compute(model, df)``.

    Args:
        model: A fitted model with ``predict`` (and ``predict_proba`` for a classifier).
        df: The rows to explain.
        features: The columns the model reads (default: ``model.feature_names_in_`` or all).
        target_class: The class whose probability is explained (classifiers).
        method: ``"auto"``, ``"tree"`` or ``"kernel"``.
        baseline: ``"kmeans"``, ``"mean"`` or a data frame of baseline rows.
        n_clusters: Baseline rows made by ``"kmeans"``.
        n_samples: Kernel SHAP coalitions per row.
        max_rows: Explain at most this many rows (sampled with the seed).
        seed: Seed of every random choice.

    Returns:
        The explanation; ``to_dict()`` is Clarify's ``explanations`` section.

    Raises:
        ExplainInputError: See the module docstring's list of refused input.
        UserCodeError: The model raised while being explained.

    Example:
        >>> import numpy as np, pandas as pd
        >>> from sklearn.ensemble import RandomForestRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = pd.DataFrame({"signal": rng.normal(size=200), "noise": rng.normal(size=200)})
        >>> model = RandomForestRegressor(20, random_state=0).fit(X, 3 * X["signal"])
        >>> e = explain(model, X, max_rows=50)
        >>> e.method, e.ranking
        ('tree', ('signal', 'noise'))
    """
    return ShapExplainer(
        features=features,
        target_class=target_class,
        method=method,
        baseline=baseline,
        n_clusters=n_clusters,
        n_samples=n_samples,
        max_rows=max_rows,
        seed=seed,
    ).compute(model, df)


def partial_dependence(
    model: Any,
    df: pd.DataFrame,
    feature: str,
    *,
    features: Sequence[str] | None = None,
    target_class: Any = None,
    grid_resolution: int = 20,
    max_categories: int = 20,
    max_rows: int | None = 200,
    seed: int = 0,
) -> PartialDependence:
    """The average model output with ``feature`` set to each value of a grid.

    For each grid value, every sampled row gets that value in ``feature`` (the other columns
    untouched) and the model's outputs are averaged; all grid values go to the model in one
    call. A numeric feature's grid is its distinct values when it has at most
    ``grid_resolution`` of them, else ``grid_resolution`` quantiles from the 5th to the 95th
    percentile (as scikit-learn's ``partial_dependence``; integers stay integers). Any other
    feature is categorical: its ``max_categories`` most frequent values, most frequent first.

    Args:
        model: A fitted model with ``predict`` (and ``predict_proba`` for a classifier).
        df: The data: the rows averaged over, and where the grid comes from.
        feature: The column to vary.
        features: The columns the model reads (default: ``model.feature_names_in_`` or all).
        target_class: The class whose probability is averaged (classifiers).
        grid_resolution: Largest numeric grid.
        max_categories: Largest categorical grid.
        max_rows: Average over at most this many rows (sampled with the seed); ``None``
            for all.
        seed: Seed of the row sample.

    Returns:
        The grid and the average output at each of its values.

    Raises:
        ExplainInputError: ``feature`` is not one of the model's columns, it has no
            non-missing value, or as :meth:`ShapExplainer.compute`.
    """
    _check_positive(grid_resolution, "grid_resolution")
    _check_positive(max_categories, "max_categories")
    if max_rows is not None:
        _check_positive(max_rows, "max_rows")
    frame, names = _feature_frame(df, model, features)
    if feature not in names:
        raise ExplainInputError(
            f"feature {feature!r} is not one of the model's columns; they are {_shown(names)}"
        )
    output = _Output.of(model, target_class)
    rows = _sample_rows(frame, max_rows, seed)
    output.checked(rows)
    column = frame[feature].dropna()
    if column.empty:
        raise ExplainInputError(f"feature {feature!r} has no non-missing value to vary")
    kind, grid = _grid(column, grid_resolution, max_categories)
    repeated = pd.concat([rows] * len(grid), ignore_index=True)
    repeated[feature] = pd.Series(np.repeat(np.asarray(grid, dtype=object), len(rows))).astype(
        frame[feature].dtype
    )
    outputs = output.checked(repeated, what=f"rows with {feature!r} varied")
    average = outputs.reshape(len(grid), len(rows)).mean(axis=1)
    return PartialDependence(
        feature=feature,
        kind=kind,
        values=tuple(_scalar(v) for v in grid),
        average=tuple(float(a) for a in average),
        label=output.label,
        n_rows=len(rows),
    )


def baseline_rows(
    df: pd.DataFrame,
    *,
    method: Literal["kmeans", "mean"] = "kmeans",
    n_clusters: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Baseline rows summarising ``df``, as :class:`ShapExplainer` makes them.

    Args:
        df: The data (every column is kept, with its dtype).
        method: ``"kmeans"``: one row per k-means cluster; ``"mean"``: one row of column
            means (rounded for integers) and modes (other columns).
        n_clusters: Clusters for ``"kmeans"``, fewer when ``df`` has fewer distinct rows.
        seed: Seed of the row sample (at most 5,000 rows are clustered) and of k-means.

    Returns:
        The baseline rows, with ``df``'s columns and dtypes.

    Raises:
        ExplainInputError: ``df`` has no rows, or an unknown method.
    """
    if not isinstance(df, pd.DataFrame):
        raise ExplainInputError(f"the data must be a pandas DataFrame, not {type(df).__name__}")
    if len(df) == 0:
        raise ExplainInputError("the data has no rows to summarise")
    _check_positive(n_clusters, "n_clusters")
    if method == "mean":
        row = _summary_row(df, np.ones(len(df), dtype=bool))
        return pd.DataFrame([row]).reset_index(drop=True).astype(df.dtypes.to_dict())
    if method != "kmeans":
        raise ExplainInputError(f"baseline must be 'kmeans', 'mean' or rows, not {method!r}")
    frame = _sample_rows(df, _MAX_CLUSTER_ROWS, seed)
    matrix = _cluster_matrix(frame)
    distinct = len(np.unique(matrix, axis=0))
    k = min(n_clusters, distinct)
    if k <= 1:
        labels = np.zeros(len(frame), dtype=np.int64)
    else:
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(matrix)
    groups = [_summary_row(frame, labels == c) for c in range(k) if np.any(labels == c)]
    out = pd.DataFrame(groups).reset_index(drop=True)
    return out.astype(df.dtypes.to_dict())


# --------------------------------------------------------------------------------------------
# Reading the input


def _shown(values: Sequence[Any]) -> str:
    items = list(values)
    text = ", ".join(repr(v) for v in items[:_SHOWN])
    return text + (f", ... ({len(items)} in all)" if len(items) > _SHOWN else "")


def _check_positive(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ExplainInputError(f"{name} must be a positive integer, not {value!r}")


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def json_scalar(value: Any) -> Any:
    """A value as strict JSON: numbers, text, booleans or ``None`` (missing, non-finite)."""
    value = _scalar(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def _rows_as_lists(frame: pd.DataFrame) -> list[list[Any]]:
    return [[json_scalar(v) for v in row] for row in frame.itertuples(index=False, name=None)]


def _feature_frame(
    df: Any, model: Any, features: Sequence[str] | None
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The columns the model reads, checked.

    Raises:
        ExplainInputError: Not a data frame, no rows, a missing or duplicated column.
    """
    if not isinstance(df, pd.DataFrame):
        raise ExplainInputError(f"the data must be a pandas DataFrame, not {type(df).__name__}")
    if features is None:
        known = getattr(model, "feature_names_in_", None)
        names = tuple(str(c) for c in (known if known is not None else df.columns))
    else:
        if isinstance(features, str):
            raise ExplainInputError("features must be a list of column names, not one string")
        names = tuple(features)
    if not names:
        raise ExplainInputError("there are no feature columns to explain")
    if len(set(names)) != len(names):
        raise ExplainInputError(f"features name a column twice: {_shown(names)}")
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise ExplainInputError(
            f"the data lacks the model's column(s) {_shown(missing)}; its columns are "
            f"{_shown([str(c) for c in df.columns])}"
        )
    duplicated = [n for n in names if isinstance(df[n], pd.DataFrame)]
    if duplicated:
        raise ExplainInputError(f"column(s) {_shown(duplicated)} appear more than once")
    if len(df) == 0:
        raise ExplainInputError("the data has no rows")
    return df[list(names)], names


def _sample_rows(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``frame``, a seeded sample kept in the original order."""
    if max_rows is None or len(frame) <= max_rows:
        return frame
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[picked]


def _is_numeric(dtype: Any) -> bool:
    return bool(
        ptypes.is_numeric_dtype(dtype)
        and not ptypes.is_bool_dtype(dtype)
        and not ptypes.is_complex_dtype(dtype)
    )


class _Output:
    """The model output an explanation explains: one class's probability, or the prediction."""

    def __init__(
        self, model: Any, proba: Callable[[pd.DataFrame], Any] | None, index: int, target: Any
    ) -> None:
        self.model = model
        self._proba = proba
        self._index = index
        self.target = target
        self.is_classifier = proba is not None
        self.label = str(target) if proba is not None else "label0"
        self.n_classes = 0

    @classmethod
    def of(cls, model: Any, target_class: Any) -> _Output:
        """The output of ``model`` for ``target_class``.

        Raises:
            ExplainInputError: No ``predict``; a multi-class model without a target class;
                an unknown class; a target class for a model without classes.
        """
        if not callable(getattr(model, "predict", None)):
            raise ExplainInputError(
                f"the model must have a predict method, not be a {type(model).__name__}"
            )
        classes = getattr(model, "classes_", None)
        proba = getattr(model, "predict_proba", None)
        if classes is None or not callable(proba):
            if target_class is not None:
                raise ExplainInputError(
                    f"target_class={target_class!r} needs a classifier with predict_proba; "
                    "this model predicts one value per row"
                )
            return cls(model, None, 0, None)
        labels = [_scalar(c) for c in np.asarray(classes)]
        if target_class is None:
            if len(labels) != 2:
                raise ExplainInputError(
                    f"the model has {len(labels)} classes; choose the one to explain with "
                    f"target_class (one of {_shown(labels)})"
                )
            index = 1
        else:
            matches = [i for i, c in enumerate(labels) if c == target_class]
            if not matches:
                matches = [i for i, c in enumerate(labels) if str(c) == str(target_class)]
            if not matches:
                raise ExplainInputError(
                    f"target_class {target_class!r} is not a class of the model; its classes "
                    f"are {_shown(labels)}"
                )
            index = matches[0]
        out = cls(model, proba, index, labels[index])
        out.n_classes = len(labels)
        return out

    @property
    def index(self) -> int:
        """The column of ``predict_proba`` explained."""
        return self._index

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        """The output on ``frame`` as float64, one value per row (no checks)."""
        if self._proba is not None:
            return np.asarray(self._proba(frame), dtype=np.float64)[:, self._index]
        return np.asarray(self.model.predict(frame), dtype=np.float64).reshape(len(frame))

    def checked(self, frame: pd.DataFrame, *, what: str = "rows") -> np.ndarray:
        """The output on ``frame``, refusing a model that cannot predict or odd output.

        Raises:
            ExplainInputError: The model raised, or its output is not one finite number
                per row.
        """
        call = self._proba if self._proba is not None else self.model.predict
        name = "predict_proba" if self._proba is not None else "predict"
        try:
            raw = call(frame)
        except Exception as exc:
            raise ExplainInputError(
                f"the model cannot predict on these {what}: its {name} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            array = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise ExplainInputError(
                f"the model's {name} returned values that are not numbers; a classifier needs "
                "predict_proba, a regressor numeric predictions"
            ) from None
        if self._proba is not None:
            if array.ndim != 2 or array.shape[0] != len(frame) or array.shape[1] <= self._index:
                raise ExplainInputError(
                    f"predict_proba returned shape {array.shape} for {len(frame)} rows"
                )
            values = array[:, self._index]
        else:
            if array.ndim == 2 and array.shape[1] == 1:
                array = array[:, 0]
            if array.ndim != 1 or len(array) != len(frame):
                raise ExplainInputError(
                    f"predict returned shape {array.shape} for {len(frame)} rows; explanations "
                    "need one number per row (for a classifier, predict_proba)"
                )
            values = array
        if not np.all(np.isfinite(values)):
            raise ExplainInputError(f"the model returned missing or infinite values on {what}")
        return values


# --------------------------------------------------------------------------------------------
# Baselines


def _baseline_frame(
    frame: pd.DataFrame,
    spec: Any,
    n_clusters: int,
    seed: int,
    features: tuple[str, ...],
) -> pd.DataFrame:
    if isinstance(spec, pd.DataFrame):
        missing = [f for f in features if f not in spec.columns]
        if missing:
            raise ExplainInputError(f"the baseline lacks the model's column(s) {_shown(missing)}")
        if len(spec) == 0:
            raise ExplainInputError("the baseline has no rows")
        return spec[list(features)].reset_index(drop=True)
    if isinstance(spec, str) and spec in ("kmeans", "mean"):
        return baseline_rows(frame, method=spec, n_clusters=n_clusters, seed=seed)  # type: ignore[arg-type]
    raise ExplainInputError(f"baseline must be 'kmeans', 'mean' or a DataFrame, not {spec!r}")


def _cluster_matrix(frame: pd.DataFrame) -> np.ndarray:
    """Numeric columns standardised, others one-hot (a mismatch weighs one standard deviation)."""
    parts: list[np.ndarray] = []
    for name in frame.columns:
        column = frame[name]
        if _is_numeric(column.dtype):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                continue
            centre, scale = float(finite.mean()), float(finite.std())
            values = np.where(np.isfinite(values), values, centre)
            parts.append(((values - centre) / (scale if scale > 0 else 1.0))[:, None])
        else:
            codes, _ = pd.factorize(column, use_na_sentinel=False)
            onehot = np.zeros((len(column), int(codes.max()) + 1))
            onehot[np.arange(len(column)), codes] = 1.0 / math.sqrt(2.0)
            parts.append(onehot)
    if not parts:
        return np.zeros((len(frame), 1))
    return np.hstack(parts)


def _summary_row(frame: pd.DataFrame, members: np.ndarray) -> pd.Series:
    """One baseline row for the rows ``members``: means, rounded means and modes."""
    values: dict[str, Any] = {}
    for name in frame.columns:
        column = frame[name][members]
        dtype = column.dtype
        if _is_numeric(dtype):
            numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
            mean = float(np.nanmean(numbers)) if np.isfinite(numbers).any() else math.nan
            values[name] = round(mean) if ptypes.is_integer_dtype(dtype) else mean
        else:
            counts = column.value_counts(dropna=True, sort=True)
            values[name] = counts.index[0] if len(counts) else None
    return pd.Series(values, dtype=object)


# --------------------------------------------------------------------------------------------
# Kernel SHAP


class _Codec:
    """Rows as float matrices for Kernel SHAP: non-numeric columns as codes, and back."""

    def __init__(self, template: pd.DataFrame, others: Sequence[pd.DataFrame]) -> None:
        self.columns = list(template.columns)
        self.dtypes = template.dtypes.to_dict()
        self.categories: dict[str, pd.Index] = {}
        for name in self.columns:
            if not _is_numeric(self.dtypes[name]):
                seen = pd.concat([template[name], *(o[name] for o in others)], ignore_index=True)
                uniques = pd.unique(seen.dropna().astype(object))
                self.categories[name] = pd.Index(uniques, dtype=object)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)), dtype=np.float64)
        for j, name in enumerate(self.columns):
            if name in self.categories:
                codes = self.categories[name].get_indexer(frame[name].astype(object))
                out[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                out[:, j] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for j, name in enumerate(self.columns):
            column = matrix[:, j]
            dtype = self.dtypes[name]
            if name in self.categories:
                cats = np.asarray(self.categories[name], dtype=object)
                missing = ~np.isfinite(column)
                codes = np.where(missing, 0, column).astype(np.int64)
                values = cats[codes] if len(cats) else np.full(len(column), None, dtype=object)
                values = np.array(values, dtype=object)
                values[missing] = None
                data[name] = _typed(pd.Series(values, dtype=object), dtype)
            else:
                data[name] = _typed(pd.Series(column), dtype)
        return pd.DataFrame(data, columns=self.columns)


def _typed(series: pd.Series, dtype: Any) -> pd.Series:
    try:
        return series.astype(dtype)
    except (TypeError, ValueError):
        return series


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed NumPy's global random state for a block and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _kernel_shap(
    output: _Output, rows: pd.DataFrame, base: pd.DataFrame, n_samples: int, seed: int
) -> tuple[np.ndarray, float]:
    import shap

    codec = _Codec(rows, [base])

    def model_output(matrix: np.ndarray) -> np.ndarray:
        try:
            return output(codec.decode(matrix))
        except Exception as exc:
            raise UserCodeError(
                f"the model raised {type(exc).__name__} while being explained: {exc}"
            ) from exc

    with _seeded(seed), warnings.catch_warnings():
        # Kernel SHAP's constrained fit warns on rows no feature changes; those get zeros.
        warnings.simplefilter("ignore", RuntimeWarning)
        explainer = shap.KernelExplainer(model_output, codec.encode(base))
        values = explainer.shap_values(
            codec.encode(rows), nsamples=n_samples, silent=True, l1_reg=False
        )
    array = np.asarray(values, dtype=np.float64).reshape(len(rows), len(codec.columns))
    return array, float(np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)[0])


# --------------------------------------------------------------------------------------------
# Tree SHAP


class _NoTreePath(Exception):
    """The tree explainer cannot explain this model on these rows; the message says why."""


def _dense(matrix: Any, what: str) -> np.ndarray:
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    try:
        return np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise _NoTreePath(f"{what} are not all numbers") from None


def _source_columns(pre: Any, probe: pd.DataFrame) -> np.ndarray:
    """For each column the preprocessing produces, the original column it comes from (−1: none).

    Raises:
        _NoTreePath: The preprocessing fails on the probe, or a produced column changes with
            more than one original column.
    """
    try:
        reference = _dense(pre.transform(probe), "the preprocessed columns")
    except _NoTreePath:
        raise
    except Exception as exc:
        raise _NoTreePath(f"the pipeline's preprocessing raised {type(exc).__name__}") from None
    source = np.full(reference.shape[1], -1, dtype=np.int64)
    previous = np.roll(np.arange(len(probe)), 1)
    for j, name in enumerate(probe.columns):
        shifted = probe.copy()
        shifted[name] = probe[name].iloc[previous].set_axis(probe.index)
        try:
            moved = _dense(pre.transform(shifted), "the preprocessed columns")
        except Exception as exc:
            raise _NoTreePath(f"the pipeline's preprocessing raised {type(exc).__name__}") from None
        same = (moved == reference) | (np.isnan(moved) & np.isnan(reference))
        changed = np.flatnonzero(~same.all(axis=0))
        shared = changed[source[changed] >= 0]
        if shared.size:
            other = probe.columns[int(source[shared[0]])]
            raise _NoTreePath(
                f"a preprocessed column depends on both {other!r} and {name!r}, so its SHAP "
                "value cannot be credited to one original column"
            )
        source[changed] = j
    return source


_TREE_MODULES = ("sklearn.ensemble", "sklearn.tree", "xgboost", "lightgbm", "catboost")


def _final_step(model: Any) -> Any:
    from sklearn.pipeline import Pipeline

    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def _tree_model(model: Any) -> Any:
    """The tree model to explain (a pipeline's last step), or ``None`` for other models."""
    final = _final_step(model)
    module = type(final).__module__
    return final if module.startswith(_TREE_MODULES) else None


def _float32_thresholds(final: Any) -> Any:
    """A copy of a scikit-learn tree model whose split thresholds are float32 numbers.

    scikit-learn compares float32 inputs with float64 thresholds (midpoints between two
    float32 values); SHAP's tree code compares them with the thresholds rounded to float32,
    so an input one float32 step below a threshold can take the other branch. Rounding each
    threshold down to the float32 number at or below it keeps every split of every float32
    input the same, so the copy predicts exactly as the model does, and SHAP agrees with it.
    Other models are returned as they are.
    """
    if not type(final).__module__.startswith("sklearn."):
        return final
    import copy

    clone = copy.deepcopy(final)
    if hasattr(clone, "tree_"):
        trees = [clone]
    else:
        trees = [t for t in np.ravel(getattr(clone, "estimators_", [])) if hasattr(t, "tree_")]
    for tree in trees:
        thresholds = tree.tree_.threshold
        if not thresholds.flags.writeable:
            return final
        rounded = thresholds.astype(np.float32)
        above = rounded.astype(np.float64) > thresholds
        rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
        split = tree.tree_.feature >= 0
        thresholds[split] = rounded[split].astype(np.float64)
    return clone


def _tree_shap(
    model: Any,
    output: _Output,
    rows: pd.DataFrame,
    base: pd.DataFrame,
    predictions: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Exact interventional tree SHAP, mapped back to the original columns.

    Raises:
        _NoTreePath: Why the tree explainer cannot be used here.
    """
    from sklearn.pipeline import Pipeline

    n_features = rows.shape[1]
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        final = model.steps[-1][1]
        pre = model[:-1]
        probe = pd.concat([rows, base], ignore_index=True)
        source = _source_columns(pre, probe)
        x = _dense(pre.transform(rows), "the preprocessed columns")
        background = _dense(pre.transform(base), "the preprocessed columns")
    else:
        final = _final_step(model)
        non_numeric = [c for c in rows.columns if not _is_numeric(rows[c].dtype)]
        if non_numeric:
            raise _NoTreePath(
                f"the model reads non-numeric column(s) {_shown(non_numeric)} directly"
            )
        source = np.arange(n_features)
        x = _dense(rows.to_numpy(dtype=np.float64, na_value=np.nan), "the columns")
        background = _dense(base.to_numpy(dtype=np.float64, na_value=np.nan), "the baseline")

    import shap

    # scikit-learn's trees compare float32 values with their thresholds: so must SHAP, or
    # a value just beside a threshold takes the other branch.
    x, background = x.astype(np.float32), background.astype(np.float32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = shap.TreeExplainer(
                _float32_thresholds(final),
                data=background,
                feature_perturbation="interventional",
                model_output="probability" if output.is_classifier else "raw",
            )
            raw = explainer.shap_values(x, check_additivity=False)
    except Exception as exc:
        kind = type(final).__name__
        raise _NoTreePath(
            f"SHAP's tree explainer does not support {kind} ({type(exc).__name__})"
        ) from None

    values = np.asarray(raw, dtype=np.float64)
    expected = np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)
    if values.ndim == 3:
        values = values[:, :, output.index]
        expected_value = float(expected[output.index] if expected.size > 1 else expected[0])
    elif output.is_classifier and output.n_classes == 2:
        # One set of values for a binary model: those of the second class.
        expected_value = float(expected[-1])
        if output.index == 0:
            values, expected_value = -values, 1.0 - expected_value
    elif not output.is_classifier:
        expected_value = float(expected[0])
    else:
        raise _NoTreePath("the tree explainer returned one output for a multi-class model")

    mapped = np.zeros((len(rows), n_features))
    for k, j in enumerate(source):
        if j >= 0:
            mapped[:, j] += values[:, k]
    error = float(np.max(np.abs(expected_value + mapped.sum(axis=1) - predictions)))
    scale = max(1.0, float(np.max(np.abs(predictions))))
    if not error <= _ADDITIVITY_TOLERANCE * scale:
        raise _NoTreePath(
            f"the tree explainer's values missed the model's predictions by up to {error:.3g}"
        )
    return mapped, expected_value


# --------------------------------------------------------------------------------------------
# Partial dependence grids


def _grid(column: pd.Series, resolution: int, max_categories: int) -> tuple[str, list[Any]]:
    """``("numeric" | "categorical", grid values)`` of a column without missing values."""
    if _is_numeric(column.dtype):
        uniques = np.sort(pd.unique(column.to_numpy()))
        if len(uniques) <= resolution:
            return "numeric", [_scalar(v) for v in uniques]
        quantiles = np.quantile(
            column.to_numpy(dtype=np.float64), np.linspace(0.05, 0.95, resolution)
        )
        if ptypes.is_integer_dtype(column.dtype):
            return "numeric", [int(v) for v in np.unique(np.round(quantiles))]
        return "numeric", [float(v) for v in np.unique(quantiles)]
    counts = column.value_counts(sort=True)
    return "categorical", [_scalar(v) for v in counts.index[:max_categories]]
