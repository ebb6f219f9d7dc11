"""Per-feature drift statistics: is the current data distributed like the reference data?

The model monitor compares a window of captured inference data (``current``) with the training
or baseline data (``reference``), one feature at a time. Each statistical test is a small object
in the scikit-learn style: keyword-only hyperparameters in ``__init__``, :meth:`DriftTest.
get_params`, and one verb, :meth:`DriftTest.compute`, which returns a :class:`FeatureDrift`.
:func:`detect_drift` runs the default tests over every column of two data frames and returns a
:class:`DriftReport`.

Tests and what they accept:

==========================  ======================  ==============================================
test                        kinds                   drifted when
==========================  ======================  ==============================================
:class:`KolmogorovSmirnov`  numeric                 p < alpha and statistic ≥ min_statistic
:class:`ChiSquare`          categorical             p < alpha and Cramér's V ≥ min_effect
:class:`PSI`                numeric, categorical    PSI ≥ threshold
:class:`JensenShannon`      numeric, categorical    JS distance ≥ threshold
:class:`Wasserstein`        numeric                 distance / reference std ≥ threshold
==========================  ======================  ==============================================

Why the two hypothesis tests carry an effect-size floor: a p-value answers "could these two
samples come from one distribution?", and with enough rows the answer is "no" for shifts far too
small to matter to a model (at a million rows a 0.5 % change in a category's share is highly
"significant"). A monitor that alarms on those is soon ignored. Requiring a minimum effect as
well keeps the p-value's protection against noise on small windows while ignoring trivial
shifts on large ones. The KS floor of 0.1 is the same L∞ distance between the two empirical
CDFs that SageMaker Model Monitor compares with its default ``comparison_threshold`` of 0.1.

Why the chi-square test is a two-sample test of homogeneity: the reference counts are a sample
too. Treating them as exact expected values (as Evidently does) ignores their sampling noise and
raises false alarms on undrifted columns; :func:`scipy.stats.chi2_contingency` on the 2 × k table
of both samples' counts does not.

Everything is vectorised over rows (sorting, ``searchsorted``, ``value_counts``), so a million
rows by twenty columns takes seconds. Each column is prepared once (nulls removed and numeric
values sorted) and the prepared sample is shared by all tests of that column.
"""

from __future__ import annotations

import abc
import inspect
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from wellml.errors import InvalidInput

__all__ = [
    "DISPLAY_BINS",
    "PSI",
    "AutoSelection",
    "ChiSquare",
    "DriftInputError",
    "DriftReport",
    "DriftTest",
    "FeatureDrift",
    "JensenShannon",
    "KolmogorovSmirnov",
    "Wasserstein",
    "detect_drift",
]

Kind = Literal["numeric", "categorical"]
NUMERIC: Kind = "numeric"
CATEGORICAL: Kind = "categorical"

# A numeric column with at most this many distinct values, all of them integers, is a flag or a
# code (0/1, 1/2), not a measurement: quantile bins collapse on it and the KS p-value is
# conservative on heavily tied data, while the chi-square test is exact for what it is. Fixed at
# 2 because the check compares every row with the column's minimum and maximum, with no sort.
MAX_CODE_VALUES = 2

# How many unseen category labels a result lists; the counts are always complete.
_MAX_EXAMPLES = 5


class DriftInputError(InvalidInput, ValueError):
    """Data or parameters that drift detection cannot use.

    It is a :class:`ValueError` for plain-Python callers and an
    :class:`~wellml.errors.InvalidInput` for wellml's CLI and REST edges.
    """


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class FeatureDrift:
    """The result of one drift test on one feature.

    Attributes:
        feature: Column name.
        kind: ``"numeric"`` or ``"categorical"``.
        method: The test's name (``"ks"``, ``"chi_square"``, ``"psi"``, ``"jensen_shannon"``,
            ``"wasserstein"``).
        statistic: The test statistic or distance.
        p_value: The p-value, or ``None`` for distances that have none.
        threshold: The value the decision compares against (``alpha`` for hypothesis tests,
            the distance threshold otherwise).
        drifted: The verdict.
        reference_count: Non-null values in the reference.
        current_count: Non-null values in the current data.
        details: Test-specific extras (effect sizes, bin edges, unseen categories, missing
            counts, and in :func:`detect_drift` the other tests' results). JSON-ready.
    """

    feature: str
    kind: str
    method: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    reference_count: int
    current_count: int
    # Excluded from the hash because a dict is unhashable; equality still compares it.
    details: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: Python scalars only, non-finite floats as ``None``."""
        return {
            "feature": self.feature,
            "kind": self.kind,
            "method": self.method,
            "statistic": _jsonable(self.statistic),
            "p_value": _jsonable(self.p_value),
            "threshold": _jsonable(self.threshold),
            "drifted": bool(self.drifted),
            "reference_count": int(self.reference_count),
            "current_count": int(self.current_count),
            "details": _jsonable(self.details),
        }


@dataclass(frozen=True)
class DriftReport:
    """Drift of every checked feature, and the dataset-level verdict.

    Attributes:
        features: One result per feature, in the order checked.
        drifted_features: Names of the features whose verdict is drifted.
        share_drifted: ``len(drifted_features) / len(features)``.
        dataset_drift: ``share_drifted >= dataset_drift_share``.
    """

    features: tuple[FeatureDrift, ...]
    drifted_features: tuple[str, ...]
    share_drifted: float
    dataset_drift: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "features": [f.to_dict() for f in self.features],
            "drifted_features": list(self.drifted_features),
            "share_drifted": float(self.share_drifted),
            "dataset_drift": bool(self.dataset_drift),
        }


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars and containers to JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        # Strict JSON has no NaN or Infinity.
        return float(value) if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------------------------
# Prepared samples: one column of one frame, cleaned once and shared by every test.


@dataclass(frozen=True)
class _NumericSample:
    values: np.ndarray  # non-null float64, sorted ascending
    missing: int


@dataclass(frozen=True)
class _CategoricalSample:
    counts: pd.Series  # non-null category -> count (> 0), object index
    missing: int

    @property
    def present(self) -> int:
        return int(self.counts.sum())


_Sample = _NumericSample | _CategoricalSample


def _is_categorical_dtype(dtype: Any) -> bool:
    return (
        ptypes.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or ptypes.is_object_dtype(dtype)
        or ptypes.is_string_dtype(dtype)
    )


def _check_supported(feature: str, series: pd.Series) -> None:
    dtype = series.dtype
    if _is_categorical_dtype(dtype):
        return
    if ptypes.is_numeric_dtype(dtype) and not ptypes.is_complex_dtype(dtype):
        return
    raise DriftInputError(
        f"feature {feature!r} has dtype {dtype}, which drift detection does not support; "
        "convert it, or leave it out with features=[...]"
    )


def _to_float(feature: str, series: pd.Series, side: str) -> np.ndarray:
    """The column as float64 with NaN for nulls; raises when a value is not a number."""
    dtype = series.dtype
    if ptypes.is_numeric_dtype(dtype) and not ptypes.is_complex_dtype(dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            # Via object so categoricals of numbers and string dtypes convert alike.
            converted = pd.to_numeric(series.astype(object), errors="coerce")
        except (TypeError, ValueError):
            # Unhashable or exotic objects: fall through to the per-value report below.
            converted = pd.Series(np.nan, index=series.index)
        bad = converted.isna() & series.notna()
        if bad.any():
            example = series[bad].iloc[0]
            raise DriftInputError(
                f"feature {feature!r} is numeric but the {side} holds non-numeric values "
                f"such as {example!r} ({int(bad.sum())} of them)"
            )
        values = converted.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        raise DriftInputError(
            f"feature {feature!r}: the {side} holds infinite values; replace or drop them"
        )
    return values


def _numeric_sample(values: np.ndarray) -> _NumericSample:
    nulls = np.isnan(values)
    missing = int(nulls.sum())
    present = values[~nulls] if missing else values
    # Sorted once here so KS, quantile bins and bin counts all reuse it (ks_2samp re-sorts a
    # sorted array in a fraction of the time, and bin counts become O(bins · log n)).
    return _NumericSample(np.sort(present), missing)


def _categorical_sample(feature: str, series: pd.Series, side: str) -> _CategoricalSample:
    try:
        counts = series.value_counts(dropna=True, sort=True)
    except TypeError as exc:
        raise DriftInputError(
            f"feature {feature!r}: the {side} holds values that cannot be counted as "
            f"categories ({exc})"
        ) from None
    # A pandas Categorical reports declared-but-unobserved categories with count 0; they would
    # give the chi-square table all-zero columns.
    counts = counts[counts > 0]
    counts.index = pd.Index(counts.index.to_numpy(dtype=object), dtype=object)
    counts = counts.astype(np.int64)
    # The counts cover exactly the non-null values; no second pass to count the nulls.
    sample = _CategoricalSample(counts, len(series) - int(counts.sum()))
    if sample.present == 0:
        _only_missing(feature, side, len(series))
    return sample


def _only_missing(feature: str, side: str, rows: int) -> None:
    raise DriftInputError(
        f"feature {feature!r}: the {side} data holds only missing values ({rows} rows)"
    )


def _numbers(feature: str, series: pd.Series, side: str) -> np.ndarray:
    """:func:`_to_float`, refusing a column with no value at all."""
    values = _to_float(feature, series, side)
    if np.isnan(values).all():
        _only_missing(feature, side, len(values))
    return values


def _code_counts(values: np.ndarray) -> _CategoricalSample:
    """Categories of a numeric column of integer codes (see :data:`MAX_CODE_VALUES`)."""
    nulls = np.isnan(values)
    present = values[~nulls]
    uniq, counts = np.unique(present, return_counts=True)
    index = pd.Index([int(u) for u in uniq], dtype=object)
    # Most frequent first, like value_counts, so every categorical table has one column order.
    series = pd.Series(counts.astype(np.int64), index=index).sort_values(
        ascending=False, kind="stable"
    )
    return _CategoricalSample(series, int(nulls.sum()))


def _is_code_column(ref: np.ndarray, cur: np.ndarray) -> bool:
    """True when both samples together hold at most two distinct values, all integers."""
    lo = min(np.nanmin(ref), np.nanmin(cur))
    hi = max(np.nanmax(ref), np.nanmax(cur))
    if not (float(lo).is_integer() and float(hi).is_integer()):
        return False
    if lo == hi:
        return True
    # Two comparisons per row instead of np.unique's sort.
    return all(bool(np.all((a == lo) | (a == hi) | np.isnan(a))) for a in (ref, cur))


def _prepare(
    feature: str, reference: pd.Series, current: pd.Series, kind: Kind | None
) -> tuple[Kind, _Sample, _Sample]:
    """Validate one column pair, decide its kind and build both prepared samples.

    Raises:
        DriftInputError: empty or all-null data, an unsupported dtype, or non-numeric values in
            a column that is numeric (by ``kind`` or by the reference's dtype).
    """
    for side, series in (("reference", reference), ("current", current)):
        if len(series) == 0:
            raise DriftInputError(f"feature {feature!r}: the {side} data is empty")
    if kind is None:
        # The reference defines the schema, as a Model Monitor baseline does.
        _check_supported(feature, reference)
        kind = CATEGORICAL if _is_categorical_dtype(reference.dtype) else NUMERIC
        if kind == NUMERIC:
            ref_values = _numbers(feature, reference, "reference")
            cur_values = _numbers(feature, current, "current")
            if _is_code_column(ref_values, cur_values):
                return CATEGORICAL, _code_counts(ref_values), _code_counts(cur_values)
            return NUMERIC, _numeric_sample(ref_values), _numeric_sample(cur_values)
    if kind == NUMERIC:
        for series in (reference, current):
            _check_supported(feature, series)
        return (
            NUMERIC,
            _numeric_sample(_numbers(feature, reference, "reference")),
            _numeric_sample(_numbers(feature, current, "current")),
        )
    if kind == CATEGORICAL:
        return (
            CATEGORICAL,
            _categorical_sample(feature, reference, "reference"),
            _categorical_sample(feature, current, "current"),
        )
    raise DriftInputError(f"kind must be 'numeric' or 'categorical', not {kind!r}")


def _as_series(data: Any) -> pd.Series:
    if isinstance(data, pd.Series):
        return data.reset_index(drop=True)
    if isinstance(data, pd.DataFrame):
        raise DriftInputError("compute() takes one column; use detect_drift() for data frames")
    array = np.asarray(data)
    if array.ndim != 1:
        raise DriftInputError(f"expected one-dimensional data, got shape {array.shape}")
    return pd.Series(array)


# --------------------------------------------------------------------------------------------
# Shared binning for PSI and Jensen-Shannon


def _quantile_cuts(reference: np.ndarray, bins: int) -> np.ndarray:
    """Right-closed bin cut points from the reference's quantiles.

    The bins are ``(-inf, c_1], (c_1, c_2], ..., (c_k, inf)``: the outer bins are open so that
    current values outside the reference's range are still counted. Tied quantiles are merged
    (a spike of one value becomes one bin). A constant reference gets the cuts
    ``[nextafter(c, -inf), c]``, i.e. three bins: below, equal to and above the constant.
    """
    if reference[0] == reference[-1]:
        c = reference[0]
        return np.array([np.nextafter(c, -np.inf), c])
    inner = np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(inner)


def _numeric_counts(sample: _NumericSample, cuts: np.ndarray) -> np.ndarray:
    """Counts per bin of :func:`_quantile_cuts`, plus the missing values as the last bin."""
    # Values <= each cut, by binary search into the sorted sample: no pass over the rows.
    at_or_below = np.searchsorted(sample.values, cuts, side="right")
    edges = np.concatenate(([0], at_or_below, [len(sample.values)]))
    return np.append(np.diff(edges), sample.missing)


def _aligned_counts(
    ref: _CategoricalSample, cur: _CategoricalSample
) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Both samples' counts over the union of categories: reference order, then unseen ones."""
    unseen = cur.counts.index[~cur.counts.index.isin(ref.counts.index)]
    index = ref.counts.index.append(unseen)
    ref_counts = ref.counts.reindex(index, fill_value=0).to_numpy(dtype=np.int64)
    cur_counts = cur.counts.reindex(index, fill_value=0).to_numpy(dtype=np.int64)
    return index, ref_counts, cur_counts


def _unseen_details(index: pd.Index, ref_counts: np.ndarray, cur_counts: np.ndarray) -> dict:
    unseen = (ref_counts == 0) & (cur_counts > 0)
    vanished = (ref_counts > 0) & (cur_counts == 0)
    return {
        "categories": len(index),
        "unseen_categories": int(unseen.sum()),
        "unseen_count": int(cur_counts[unseen].sum()),
        "unseen_examples": [str(v) for v in index[unseen][:_MAX_EXAMPLES]],
        "vanished_categories": int(vanished.sum()),
    }


def _histograms(ref: _Sample, cur: _Sample, bins: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Both samples' counts over shared bins, missing values last; and details about the bins."""
    if isinstance(ref, _NumericSample) and isinstance(cur, _NumericSample):
        cuts = _quantile_cuts(ref.values, bins)
        details: dict[str, Any] = {"edges": [float(c) for c in cuts]}
        return _numeric_counts(ref, cuts), _numeric_counts(cur, cuts), details
    assert isinstance(ref, _CategoricalSample) and isinstance(cur, _CategoricalSample)
    index, ref_counts, cur_counts = _aligned_counts(ref, cur)
    details = _unseen_details(index, ref_counts, cur_counts)
    return np.append(ref_counts, ref.missing), np.append(cur_counts, cur.missing), details


# --------------------------------------------------------------------------------------------
# Tests


class DriftTest(abc.ABC):
    """Base of the drift tests: keyword-only hyperparameters, ``get_params`` and ``compute``.

    Subclasses store every ``__init__`` argument unchanged under its own name (so
    ``type(t)(**t.get_params())`` rebuilds an equal test) and implement ``_compute`` on the
    prepared samples.
    """

    method: ClassVar[str]
    kinds: ClassVar[frozenset[Kind]]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, by name, as passed to ``__init__``."""
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def compute(
        self,
        reference: Any,
        current: Any,
        *,
        feature: str | None = None,
        kind: Kind | None = None,
    ) -> FeatureDrift:
        """Compare one feature's current values with its reference values.

        Args:
            reference: One column: a pandas Series, numpy array or sequence. Nulls (None, NaN,
                pd.NA) count as missing.
            current: The same for the current data.
            feature: Name for the result; defaults to the Series name, else ``"value"``.
            kind: ``"numeric"`` or ``"categorical"``. ``None``: the test's kind when it takes
                only one (so KS runs on a 0/1 column), else inferred as in
                :func:`detect_drift`.

        Returns:
            The test's result; ``drifted`` is this test's verdict alone.

        Raises:
            DriftInputError: (a ``ValueError``) empty or all-null data, a kind this test does
                not support, or non-numeric values in numeric data.
        """
        ref = _as_series(reference)
        cur = _as_series(current)
        name = feature
        if name is None:
            name = str(reference.name) if getattr(reference, "name", None) is not None else "value"
        if kind is None and len(self.kinds) == 1:
            # Asking a one-kind test is a statement about the data; inference would only refuse.
            (kind,) = self.kinds
        resolved, ref_sample, cur_sample = _prepare(name, ref, cur, kind)
        self._check_kind(name, resolved)
        return self._compute(name, resolved, ref_sample, cur_sample)

    def _check_kind(self, feature: str, kind: str) -> None:
        if kind not in self.kinds:
            raise DriftInputError(
                f"{type(self).__name__} does not apply to {kind} data (feature {feature!r}); "
                f"it takes {' or '.join(sorted(self.kinds))} data"
            )

    def _result(
        self,
        feature: str,
        kind: str,
        ref: _Sample,
        cur: _Sample,
        *,
        statistic: float,
        p_value: float | None,
        threshold: float,
        drifted: bool,
        details: dict[str, Any],
    ) -> FeatureDrift:
        return FeatureDrift(
            feature=feature,
            kind=kind,
            method=self.method,
            statistic=float(statistic),
            p_value=None if p_value is None else float(p_value),
            threshold=float(threshold),
            drifted=bool(drifted),
            reference_count=_present(ref),
            current_count=_present(cur),
            details={
                **details,
                "reference_missing": ref.missing,
                "current_missing": cur.missing,
            },
        )

    @abc.abstractmethod
    def _compute(self, feature: str, kind: str, ref: _Sample, cur: _Sample) -> FeatureDrift:
        """Run the test on prepared samples of a kind in :attr:`kinds`."""


def _present(sample: _Sample) -> int:
    if isinstance(sample, _NumericSample):
        return len(sample.values)
    return sample.present


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _check_probability(name: str, value: float) -> None:
    if not (_is_number(value) and 0.0 < value < 1.0):
        raise DriftInputError(f"{name} must be between 0 and 1 (exclusive), not {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not (_is_number(value) and value >= 0 and math.isfinite(value)):
        raise DriftInputError(f"{name} must be a finite number >= 0, not {value!r}")


def _check_bins(bins: int) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise DriftInputError(f"bins must be an integer >= 2, not {bins!r}")


class KolmogorovSmirnov(DriftTest):
    """Two-sample Kolmogorov–Smirnov test on the non-null values of a numeric feature.

    The statistic and p-value are exactly :func:`scipy.stats.ks_2samp`'s (two-sided, default
    ``method="auto"``: exact up to 10,000 values per sample, asymptotic beyond; the asymptotic
    case is computed from the already sorted samples, see :func:`_ks_sorted`). Drift is
    declared when ``p < alpha`` **and** ``statistic >= min_statistic``. The statistic is the
    largest gap between the two empirical CDFs, so the floor reads as "at some value, at least
    10 % of one sample sits on a different side than in the other"; without it, huge windows
    flag shifts of a hundredth of a standard deviation.

    Args:
        alpha: Significance level, in (0, 1).
        min_statistic: Effect-size floor on the KS statistic, in [0, 1].

    Raises:
        DriftInputError: a parameter out of range.
    """

    method = "ks"
    kinds = frozenset({NUMERIC})

    def __init__(self, *, alpha: float = 0.05, min_statistic: float = 0.1) -> None:
        _check_probability("alpha", alpha)
        _check_non_negative("min_statistic", min_statistic)
        self.alpha = alpha
        self.min_statistic = min_statistic

    def _compute(self, feature: str, kind: str, ref: _Sample, cur: _Sample) -> FeatureDrift:
        assert isinstance(ref, _NumericSample) and isinstance(cur, _NumericSample)
        statistic, p_value, location = _ks_sorted(ref.values, cur.values)
        return self._result(
            feature,
            kind,
            ref,
            cur,
            statistic=statistic,
            p_value=p_value,
            threshold=self.alpha,
            drifted=p_value < self.alpha and statistic >= self.min_statistic,
            details={
                "min_statistic": self.min_statistic,
                "statistic_location": location,
            },
        )


class ChiSquare(DriftTest):
    """Chi-square test of homogeneity of a categorical feature's two samples.

    The table is 2 × k: the reference's and the current data's counts of each category seen
    in either sample, ordered by reference frequency with unseen categories last (nulls left
    out; :class:`PSI` covers missingness). Statistic, p-value and
    degrees of freedom are exactly :func:`scipy.stats.chi2_contingency`'s on that table,
    including its default Yates correction when k = 2. The effect size is Cramér's V
    (:func:`scipy.stats.contingency.association`, uncorrected), which for a 2 × k table is
    ``sqrt(chi2 / n)``. Drift is declared when ``p < alpha`` **and** ``V >= min_effect``: the
    floor keeps million-row windows from flagging trivially small changes in the mix. A single
    category in both samples gives statistic 0, p-value 1 and V 0.

    Args:
        alpha: Significance level, in (0, 1).
        min_effect: Effect-size floor on Cramér's V, in [0, 1].

    Raises:
        DriftInputError: a parameter out of range.
    """

    method = "chi_square"
    kinds = frozenset({CATEGORICAL})

    def __init__(self, *, alpha: float = 0.05, min_effect: float = 0.1) -> None:
        _check_probability("alpha", alpha)
        _check_non_negative("min_effect", min_effect)
        self.alpha = alpha
        self.min_effect = min_effect

    def _compute(self, feature: str, kind: str, ref: _Sample, cur: _Sample) -> FeatureDrift:
        assert isinstance(ref, _CategoricalSample) and isinstance(cur, _CategoricalSample)
        index, ref_counts, cur_counts = _aligned_counts(ref, cur)
        table = np.vstack([ref_counts, cur_counts])
        stats = _scipy_stats()
        res = stats.chi2_contingency(table)
        statistic, p_value = float(res.statistic), float(res.pvalue)
        # Cramér's V is undefined (0/0) with one category; nothing can have shifted then.
        cramers_v = (
            float(stats.contingency.association(table, method="cramer")) if len(index) > 1 else 0.0
        )
        return self._result(
            feature,
            kind,
            ref,
            cur,
            statistic=statistic,
            p_value=p_value,
            threshold=self.alpha,
            drifted=p_value < self.alpha and cramers_v >= self.min_effect,
            details={
                "cramers_v": cramers_v,
                "min_effect": self.min_effect,
                "dof": int(res.dof),
                **_unseen_details(index, ref_counts, cur_counts),
            },
        )


class PSI(DriftTest):
    """Population stability index: ``sum((c_i - r_i) * ln(c_i / r_i))`` over shared bins.

    ``r_i`` and ``c_i`` are the shares of all rows (missing included) of the reference and
    the current data in bin ``i``, each raised to at least ``epsilon`` so empty bins stay
    finite (the shares are not renormalised afterwards). Bins:

    * numeric: cut at the reference's ``bins``-quantiles, deduplicated, with open outer bins
      (see :func:`_quantile_cuts`; a constant reference gets below / equal / above bins);
    * categorical: one bin per category seen in either sample, unseen categories included;
      ``bins`` is not used;
    * missing values form their own bin in both kinds.

    Drift is declared when ``PSI >= threshold``. The customary reading: below 0.1 stable,
    0.1–0.2 moderate shift, 0.2 and above significant shift.

    Args:
        bins: Number of quantile bins for numeric features, at least 2.
        threshold: PSI at or above which the feature has drifted.
        epsilon: Floor on each bin's share, > 0.

    Raises:
        DriftInputError: a parameter out of range.
    """

    method = "psi"
    kinds = frozenset({NUMERIC, CATEGORICAL})

    def __init__(self, *, bins: int = 10, threshold: float = 0.2, epsilon: float = 1e-4) -> None:
        _check_bins(bins)
        _check_non_negative("threshold", threshold)
        if not (_is_number(epsilon) and 0 < epsilon < 1):
            raise DriftInputError(f"epsilon must be between 0 and 1 (exclusive), not {epsilon!r}")
        self.bins = bins
        self.threshold = threshold
        self.epsilon = epsilon

    def _compute(self, feature: str, kind: str, ref: _Sample, cur: _Sample) -> FeatureDrift:
        ref_counts, cur_counts, details = _histograms(ref, cur, self.bins)
        r = np.maximum(ref_counts / ref_counts.sum(), self.epsilon)
        c = np.maximum(cur_counts / cur_counts.sum(), self.epsilon)
        psi = float(np.sum((c - r) * np.log(c / r)))
        return self._result(
            feature,
            kind,
            ref,
            cur,
            statistic=psi,
            p_value=None,
            threshold=self.threshold,
            drifted=psi >= self.threshold,
            details=details,
        )


class JensenShannon(DriftTest):
    """Jensen–Shannon distance (base 2, so in [0, 1]) between the two binned distributions.

    The bins are :class:`PSI`'s (reference quantiles for numeric features, categories for
    categorical ones, missing values as one more bin); the value is
    :func:`scipy.spatial.distance.jensenshannon` of the two count vectors with ``base=2``.
    Drift is declared when the distance is ``>= threshold``.

    With ``base=math.e`` the distance is SciPy's default (natural logarithm), the one
    Evidently compares with its 0.1 threshold; in base 2 the same pair of distributions is
    ``1 / sqrt(ln 2) ≈ 1.2`` times further apart.

    Args:
        bins: Number of quantile bins for numeric features, at least 2.
        threshold: Distance at or above which the feature has drifted, in [0, 1].
        base: Logarithm base of the underlying divergence, > 1.

    Raises:
        DriftInputError: a parameter out of range.
    """

    method = "jensen_shannon"
    kinds = frozenset({NUMERIC, CATEGORICAL})

    def __init__(self, *, bins: int = 10, threshold: float = 0.1, base: float = 2.0) -> None:
        _check_bins(bins)
        _check_non_negative("threshold", threshold)
        if not (_is_number(base) and math.isfinite(base) and base > 1):
            raise DriftInputError(f"base must be a finite number > 1, not {base!r}")
        self.bins = bins
        self.threshold = threshold
        self.base = base

    def _compute(self, feature: str, kind: str, ref: _Sample, cur: _Sample) -> FeatureDrift:
        ref_counts, cur_counts, details = _histograms(ref, cur, self.bins)
        js = _jensen_shannon(ref_counts, cur_counts, self.base)
        return self._result(
            feature,
            kind,
            ref,
            cur,
            statistic=js,
            p_value=None,
            threshold=self.threshold,
            drifted=js >= self.threshold,
            details=details,
        )


class Wasserstein(DriftTest):
    """Earth mover's distance between the two samples, in reference standard deviations.

    The raw distance is :func:`scipy.stats.wasserstein_distance` of the non-null values,
    computed from the already sorted samples as the area between the two quantile functions
    (one pass over both, no further sort); it is
    divided by the reference's population standard deviation (``ddof=0``) so that one threshold
    fits features of any unit: 0.1 means the mass moved one tenth of a standard deviation on
    average. A constant reference has no spread, so the pooled standard deviation of both
    samples is used instead (and 1 when both are the same constant, where the distance is 0).
    Drift is declared when the normalised distance is ``>= threshold``.

    Args:
        threshold: Normalised distance at or above which the feature has drifted.

    Raises:
        DriftInputError: a parameter out of range.
    """

    method = "wasserstein"
    kinds = frozenset({NUMERIC})

    def __init__(self, *, threshold: float = 0.1) -> None:
        _check_non_negative("threshold", threshold)
        self.threshold = threshold

    def _compute(self, feature: str, kind: str, ref: _Sample, cur: _Sample) -> FeatureDrift:
        assert isinstance(ref, _NumericSample) and isinstance(cur, _NumericSample)
        raw = _wasserstein_sorted(ref.values, cur.values)
        scale = float(np.std(ref.values))
        scaled_by = "reference_std"
        if scale == 0.0:
            scale = float(np.std(np.concatenate([ref.values, cur.values]))) or 1.0
            scaled_by = "pooled_std"
        statistic = raw / scale
        return self._result(
            feature,
            kind,
            ref,
            cur,
            statistic=statistic,
            p_value=None,
            threshold=self.threshold,
            drifted=statistic >= self.threshold,
            details={"distance": raw, "scale": scale, "scaled_by": scaled_by},
        )


def _scipy_stats() -> Any:
    """``scipy.stats``, imported on first use: the distances need none of it, and it is the
    largest part of this module's memory (about 60 MiB)."""
    from scipy import stats

    return stats


# Above this many values in the larger sample scipy's ks_2samp uses the asymptotic p-value.
_KS_EXACT_MAX = 10_000


def _ks_sorted(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """:func:`scipy.stats.ks_2samp` (two-sided, ``method="auto"``) of two sorted samples.

    Small samples go to SciPy, whose exact p-value this does not repeat. Large ones follow
    SciPy's steps exactly (the same statistic, location and asymptotic p-value) without its
    two sorts of data that is already sorted, which are most of its time at a million rows.

    Returns:
        ``(statistic, p_value, statistic_location)``.
    """
    stats = _scipy_stats()
    n1, n2 = len(a), len(b)
    if max(n1, n2) <= _KS_EXACT_MAX:
        with warnings.catch_warnings():
            # scipy falls back from the exact to the asymptotic p-value on some size pairs and
            # says so with a RuntimeWarning; the fallback is its documented behaviour.
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ks_2samp(a, b)
        return float(res.statistic), float(res.pvalue), float(res.statistic_location)
    data_all = np.concatenate([a, b])
    cddiffs = np.searchsorted(a, data_all, side="right") / n1
    cddiffs -= np.searchsorted(b, data_all, side="right") / n2
    arg_min = int(np.argmin(cddiffs))
    arg_max = int(np.argmax(cddiffs))
    min_s = float(np.clip(-cddiffs[arg_min], 0, 1))
    max_s = float(cddiffs[arg_max])
    if min_s > max_s:
        d, location = min_s, float(data_all[arg_min])
    else:
        d, location = max_s, float(data_all[arg_max])
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    p_value = float(np.clip(stats.distributions.kstwo.sf(d, np.round(en)), 0, 1))
    return d, p_value, location


def _jensen_shannon(p: np.ndarray, q: np.ndarray, base: float) -> float:
    """:func:`scipy.spatial.distance.jensenshannon` of two count vectors, in NumPy alone."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0

    def rel_entr(x: np.ndarray) -> float:
        inside = x > 0
        return float(np.sum(x[inside] * np.log(x[inside] / m[inside])))

    divergence = (rel_entr(p) + rel_entr(q)) / 2.0 / math.log(base)
    return math.sqrt(max(divergence, 0.0))


def _wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """The 1-Wasserstein distance of two sorted samples: ``∫₀¹ |Q_u(t) − Q_v(t)| dt``.

    In one dimension this equals the area between the two CDFs, which is what
    :func:`scipy.stats.wasserstein_distance` integrates. The quantile functions are step
    functions that change at ``i/n`` and ``j/m``; the merged order of those breakpoints follows
    from integer arithmetic, so no sort is needed.
    """
    n, m = len(u), len(v)
    if n == m:
        gaps = u - v
        np.abs(gaps, out=gaps)
        return float(gaps.mean())
    i = np.arange(1, n + 1, dtype=np.int64)
    j = np.arange(1, m + 1, dtype=np.int64)
    # Breakpoint i/n comes after the j/m strictly below it; j/m after the i/n at or below it.
    pos_u = (i - 1) + (i * m - 1) // n
    pos_v = (j - 1) + (j * n) // m
    total = n + m
    breaks = np.empty(total)
    breaks[pos_u] = i / n
    breaks[pos_v] = j / m
    from_u = np.zeros(total, dtype=bool)
    from_u[pos_u] = True
    # On the interval ending at breakpoint k, Q_u takes the value after the u-breakpoints
    # before k, and Q_v likewise.
    iu = np.cumsum(from_u) - from_u
    iv = np.arange(total) - iu
    np.minimum(iu, n - 1, out=iu)
    np.minimum(iv, m - 1, out=iv)
    widths = np.diff(breaks, prepend=0.0)
    return float(np.sum(np.abs(u[iu] - v[iv]) * widths))


# --------------------------------------------------------------------------------------------
# Choosing the test by kind and sample size


class AutoSelection:
    """Chooses each feature's drift test from its kind and the size of the smaller sample.

    Small samples (at most ``small_sample`` non-null values on either side) get hypothesis
    tests,
    which protect against noise where noise is large: :class:`KolmogorovSmirnov` for numeric
    features and the two-sample :class:`ChiSquare` for categorical ones, each with its effect
    floor. Larger samples get distances, whose thresholds read the same at any size:
    :class:`Wasserstein` (in reference standard deviations) for numeric features and
    :class:`JensenShannon` over the categories for categorical ones. This is the rule of
    Evidently's ``DataDriftPreset`` (with 1,000 rows as the boundary and 0.1 as both distance
    thresholds), except that the categorical test always compares two samples and that the
    smaller sample decides, not the reference alone: a distance measured on a window of 300
    rows is too noisy for a 0.1 threshold however large the reference is.

    Args:
        small_sample: Largest sample size that gets the hypothesis tests.
        ks_alpha: Significance level of the KS test.
        ks_min_statistic: Effect-size floor of the KS test.
        chi2_alpha: Significance level of the chi-square test.
        chi2_min_effect: Cramér's V floor of the chi-square test.
        wasserstein: Threshold of the normalised Wasserstein distance.
        jensen_shannon: Threshold of the Jensen–Shannon distance.
        js_base: Logarithm base of the Jensen–Shannon distance (2, or ``math.e`` as in
            SciPy's and Evidently's default).

    Raises:
        DriftInputError: a parameter out of range.
    """

    def __init__(
        self,
        *,
        small_sample: int = 1000,
        ks_alpha: float = 0.05,
        ks_min_statistic: float = 0.1,
        chi2_alpha: float = 0.05,
        chi2_min_effect: float = 0.1,
        wasserstein: float = 0.1,
        jensen_shannon: float = 0.1,
        js_base: float = 2.0,
    ) -> None:
        if isinstance(small_sample, bool) or not isinstance(small_sample, int | np.integer):
            raise DriftInputError(f"small_sample must be an integer, not {small_sample!r}")
        if small_sample < 0:
            raise DriftInputError(f"small_sample must be >= 0, not {small_sample!r}")
        self.small_sample = small_sample
        self.ks_alpha = ks_alpha
        self.ks_min_statistic = ks_min_statistic
        self.chi2_alpha = chi2_alpha
        self.chi2_min_effect = chi2_min_effect
        self.wasserstein = wasserstein
        self.jensen_shannon = jensen_shannon
        self.js_base = js_base
        # Built once: they validate the parameters and are shared by every feature.
        self._small = {
            NUMERIC: KolmogorovSmirnov(alpha=ks_alpha, min_statistic=ks_min_statistic),
            CATEGORICAL: ChiSquare(alpha=chi2_alpha, min_effect=chi2_min_effect),
        }
        self._large = {
            NUMERIC: Wasserstein(threshold=wasserstein),
            CATEGORICAL: JensenShannon(threshold=jensen_shannon, base=js_base),
        }

    def get_params(self) -> dict[str, Any]:
        """The parameters, by name, as passed to ``__init__``."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def tests_for(self, kind: Kind, reference_count: int, current_count: int) -> list[DriftTest]:
        """The test for a feature of this kind with samples of these sizes (non-null)."""
        small = min(reference_count, current_count) <= self.small_sample
        chosen = self._small if small else self._large
        return [chosen[kind]]


# --------------------------------------------------------------------------------------------
# What a report shows of each feature's two distributions

DISPLAY_BINS = 20
_DISPLAY_CATEGORIES = 20


def _display(ref: _Sample, cur: _Sample) -> dict[str, Any]:
    """Both samples' histograms on shared bins, small enough to store with every report.

    Numeric: ``DISPLAY_BINS`` equal-width bins over the range of both samples, counted by
    binary search in the sorted values. Categorical: the ``_DISPLAY_CATEGORIES`` most frequent
    categories of the reference (then unseen ones), with the rest as ``"(other)"``.
    """
    if isinstance(ref, _NumericSample) and isinstance(cur, _NumericSample):
        if len(ref.values) == 0 or len(cur.values) == 0:
            return {}
        lo = float(min(ref.values[0], cur.values[0]))
        hi = float(max(ref.values[-1], cur.values[-1]))
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, DISPLAY_BINS + 1)

        def counts(values: np.ndarray) -> list[int]:
            # Right-closed bins except the first, which also holds the minimum.
            at = np.searchsorted(values, edges[1:-1], side="right")
            return [int(c) for c in np.diff(np.concatenate(([0], at, [len(values)])))]

        return {
            "type": "histogram",
            "edges": [float(e) for e in edges],
            "reference": counts(ref.values),
            "current": counts(cur.values),
        }
    assert isinstance(ref, _CategoricalSample) and isinstance(cur, _CategoricalSample)
    index, ref_counts, cur_counts = _aligned_counts(ref, cur)
    keep = _DISPLAY_CATEGORIES
    labels = [str(v) for v in index[:keep]]
    ref_shown = [int(c) for c in ref_counts[:keep]]
    cur_shown = [int(c) for c in cur_counts[:keep]]
    if len(index) > keep:
        labels.append("(other)")
        ref_shown.append(int(ref_counts[keep:].sum()))
        cur_shown.append(int(cur_counts[keep:].sum()))
    return {
        "type": "categories",
        "categories": labels,
        "reference": ref_shown,
        "current": cur_shown,
    }


# --------------------------------------------------------------------------------------------
# Many features at once


def _default_tests(kind: Kind) -> list[DriftTest]:
    if kind == NUMERIC:
        return [KolmogorovSmirnov(), PSI()]
    return [ChiSquare(), PSI()]


def _check_tests(tests: Iterable[DriftTest] | None, kind: Kind) -> list[DriftTest]:
    if tests is None:
        return _default_tests(kind)
    out = list(tests)
    if not out:
        raise DriftInputError(f"{kind}_tests must hold at least one test")
    for test in out:
        if not isinstance(test, DriftTest):
            raise DriftInputError(f"{kind}_tests holds {test!r}, which is not a DriftTest")
        if kind not in test.kinds:
            raise DriftInputError(f"{kind}_tests holds {test!r}, which does not take {kind} data")
    methods = [t.method for t in out]
    if len(set(methods)) != len(methods):
        # The secondary results are keyed by method name in details.
        raise DriftInputError(f"{kind}_tests runs a method twice: {methods}")
    return out


def _missing_columns(frame: pd.DataFrame, names: Sequence[str]) -> list[str]:
    present = set(frame.columns)
    return [n for n in names if n not in present]


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    numeric_tests: Sequence[DriftTest] | None = None,
    categorical_tests: Sequence[DriftTest] | None = None,
    selection: AutoSelection | None = None,
    dataset_drift_share: float = 0.5,
    distributions: bool = False,
    n_jobs: int = 1,
) -> DriftReport:
    """Test every feature of ``current`` for drift from ``reference``.

    Kinds: when ``categorical`` is ``None`` each feature's kind comes from the reference's
    dtype: bool, object, string and category columns are categorical, numeric columns numeric,
    except that a numeric column whose values (in both frames together) are at most
    :data:`MAX_CODE_VALUES` distinct integers, such as a 0/1 flag, is categorical (quantile
    bins and KS fit codes poorly; the chi-square test fits them exactly). When ``categorical``
    is given it is the full list of categorical features and every other feature is numeric,
    so a caller holding a schema decides every kind.

    Each feature runs its kind's tests (defaults: numeric KS + PSI, categorical chi-square +
    PSI), or with ``selection`` the one test that :class:`AutoSelection` picks for its kind
    and sample sizes. Its verdict is drifted when **any** test says so. The reported
    :class:`FeatureDrift` is the first (primary) test's result with ``drifted`` set to that
    verdict, and ``details`` adding ``drifted_by`` (the methods that flagged it) and one entry
    per other test, keyed by method name, with its ``statistic``, ``p_value``, ``threshold``
    and ``drifted``.

    Args:
        reference: Baseline data, one column per feature.
        current: Data to check.
        features: Columns to check; default: the reference's columns that current also has.
        categorical: Exactly the categorical features (see above); ``None`` to infer.
        numeric_tests: Tests for numeric features, primary first.
        categorical_tests: Tests for categorical features, primary first.
        selection: Choose each feature's test by kind and size instead; excludes
            ``numeric_tests`` and ``categorical_tests``.
        dataset_drift_share: The dataset has drifted when at least this share of its
            features has, in (0, 1].
        distributions: Add ``details["distribution"]`` to each result: both samples'
            histograms on shared bins (see :data:`DISPLAY_BINS`), what a report draws.
        n_jobs: Features checked at once, in threads (sorting and counting release the
            GIL); 1 checks them one after another.

    Returns:
        One result per feature, in ``features`` order, and the dataset verdict.

    Raises:
        DriftInputError: (a ``ValueError``) columns missing from either frame (all named),
            no features, empty frames or all-null columns, non-numeric values in a numeric
            feature, unsupported dtypes (e.g. datetimes: leave them out with ``features``),
            a test that does not take its kind, or a bad ``dataset_drift_share``. Messages
            name the column.
    """
    if not (_is_number(dataset_drift_share) and 0 < dataset_drift_share <= 1):
        raise DriftInputError(f"dataset_drift_share must be in (0, 1], not {dataset_drift_share!r}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise DriftInputError(f"n_jobs must be an integer >= 1, not {n_jobs!r}")
    if selection is not None:
        if numeric_tests is not None or categorical_tests is not None:
            raise DriftInputError("give either selection or numeric_tests/categorical_tests")
        if not isinstance(selection, AutoSelection):
            raise DriftInputError(f"selection must be an AutoSelection, not {selection!r}")
    tests_by_kind = {
        NUMERIC: _check_tests(numeric_tests, NUMERIC),
        CATEGORICAL: _check_tests(categorical_tests, CATEGORICAL),
    }
    if features is None:
        shared = set(current.columns)
        names = [c for c in reference.columns if c in shared]
        if not names:
            raise DriftInputError("reference and current have no columns in common")
    else:
        if isinstance(features, str):
            raise DriftInputError("features must be a sequence of column names, not a string")
        names = list(features)
        if not names:
            raise DriftInputError("features is empty: there is nothing to check")
        if len(set(names)) != len(names):
            raise DriftInputError(f"features names a column twice: {names}")
    if categorical is not None:
        if isinstance(categorical, str):
            raise DriftInputError("categorical must be a sequence of column names, not a string")
        strays = [c for c in categorical if c not in names]
        if strays:
            raise DriftInputError(f"categorical names columns that are not features: {strays}")
    for side, frame in (("reference", reference), ("current", current)):
        missing = _missing_columns(frame, names)
        if missing:
            raise DriftInputError(f"the {side} data lacks feature columns: {missing}")
        doubled = sorted({str(c) for c in frame.columns[frame.columns.duplicated()] if c in names})
        if doubled:
            raise DriftInputError(f"the {side} data has feature columns twice: {doubled}")
    for side, frame in (("reference", reference), ("current", current)):
        if len(frame) == 0:
            raise DriftInputError(
                f"the {side} data is empty: no rows to compare for features {names}"
            )

    def check(name: Any) -> FeatureDrift:
        kind: Kind | None = None
        if categorical is not None:
            kind = CATEGORICAL if name in categorical else NUMERIC
        label = str(name)
        resolved, ref_sample, cur_sample = _prepare(label, reference[name], current[name], kind)
        if selection is not None:
            tests = selection.tests_for(resolved, _present(ref_sample), _present(cur_sample))
        else:
            tests = tests_by_kind[resolved]
        result = _combine([t._compute(label, resolved, ref_sample, cur_sample) for t in tests])
        if distributions:
            shown = _display(ref_sample, cur_sample)
            result = replace(result, details={**result.details, "distribution": shown})
        return result

    if n_jobs == 1 or len(names) == 1:
        results = [check(name) for name in names]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(n_jobs, len(names))) as pool:
            results = list(pool.map(check, names))

    drifted = tuple(r.feature for r in results if r.drifted)
    share = len(drifted) / len(results)
    return DriftReport(
        features=tuple(results),
        drifted_features=drifted,
        share_drifted=share,
        dataset_drift=share >= dataset_drift_share,
    )


def _combine(runs: list[FeatureDrift]) -> FeatureDrift:
    """The primary result, with the any-test verdict and the other tests in its details."""
    primary, others = runs[0], runs[1:]
    details = dict(primary.details)
    details["drifted_by"] = [r.method for r in runs if r.drifted]
    for other in others:
        details[other.method] = {
            "statistic": other.statistic,
            "p_value": other.p_value,
            "threshold": other.threshold,
            "drifted": other.drifted,
        }
    return replace(primary, drifted=any(r.drifted for r in runs), details=details)
