"""Bias metrics before training (on labels) and after training (on predictions).

The metrics, their keys and their definitions are SageMaker Clarify's, as implemented in the
open-source ``smclarify`` library (``bias/metrics/{pretraining,posttraining,common}.py``) and
documented in the SageMaker developer guide (``clarify-data-bias-metric-*``,
``clarify-post-training-bias-metric-*``). Docstrings below cite the ``smclarify`` function
each formula was checked against.

**Facets.** The rows whose facet column matches ``facet_values_or_threshold`` (one value, a
set of values, or a numeric :class:`Threshold`) form facet **d**, the disfavoured (sensitive)
group that bias is measured against; every other row forms facet **a**. This is what
``smclarify`` does (one SageMaker page says "advantaged" instead; the code and the bias-monitor
page say d). So ``CI = (n_a − n_d)/(n_a + n_d)`` is positive when d is the smaller group, and
``DPL = q_a − q_d`` is positive when d receives fewer positive labels. With
``facet_values_or_threshold=None`` each distinct facet value is taken as d in turn, against all
other rows, as Clarify does for a categorical facet without values.

**Labels.** ``label_values_or_threshold`` names the positive outcome: one value, a set of
values (a multi-class label is collapsed to positive vs. the rest) or a :class:`Threshold`.
A threshold ``t`` selects the values strictly greater than ``t``: Clarify's interval
``(t, max]``, written so in the report. Clarify guesses from the column's dtype whether a lone
number is a value or a threshold; wellml does not guess: a threshold is always spelled
``Threshold(t)``. Predicted labels use the same positive values or threshold as the labels,
unless ``probability_threshold`` is given, in which case a prediction is positive when the
score is strictly greater than it. Values are matched by equality; when nothing matches,
the values are converted to the column's type once (``"1"`` ↔ ``1``, ``"true"`` ↔ ``True``).

**Division** (``smclarify common.divide``): ``0/0 = 0``; ``x/0 = +inf`` for ``x > 0``; a
difference of two infinite ratios is 0. Infinite values are reported as such (``"Infinity"``
in JSON).

**Distributions** (``smclarify util.pdfs_aligned_nonzero``): KL, JS, LP, TVD and KS compare
the distributions of the *binary* positive-label indicator in a and in d, and keep only the
outcomes (positive, negative) that occur in **both** facets, without renormalising. So when
every d row is positive, the negative outcome is dropped and KL becomes
``q_a · ln q_a ≤ 0``: Clarify's rule, kept for agreement. When the facets share no outcome
(all a rows positive, all d rows negative, or the reverse) these five metrics are undefined.

Metrics (``n`` counts rows, ``n̂`` predictions; ``q_x = n_x(1)/n_x``)::

    pre-training  CI     (n_a − n_d)/(n_a + n_d)
                  DPL    q_a − q_d
                  KL     Σ_y P_a(y) ln(P_a(y)/P_d(y))
                  JS     ½[KL(P_a‖P) + KL(P_d‖P)], P = ½(P_a + P_d)
                  LP     ‖P_a − P_d‖₂
                  TVD    ½‖P_a − P_d‖₁
                  KS     max_y |P_a(y) − P_d(y)|
                  CDDL   Σ_i n_i·DD_i / Σ_i n_i, DD_i = n_d,i(0)/n_i(0) − n_d,i(1)/n_i(1)
    post-training DPPL   n̂_a(1)/n_a − n̂_d(1)/n_d
                  DI     (n̂_d(1)/n_d) / (n̂_a(1)/n_a)
                  DCA    n_a(1)/n̂_a(1) − n_d(1)/n̂_d(1)
                  DCR    n_d(0)/n̂_d(0) − n_a(0)/n̂_a(0)
                  RD     recall_a − recall_d
                  SD     specificity_d − specificity_a
                  DAR    precision_a − precision_d
                  DRR    TN_d/n̂_d(0) − TN_a/n̂_a(0)
                  AD     accuracy_a − accuracy_d
                  TE     FN_d/FP_d − FN_a/FP_a
                  CDDPL  CDDL on predicted labels
                  FT     (F⁺ − F⁻)/n_d, k-NN flip test
                  GE     generalized entropy (α = 2) of b = ŷ − y + 1, over all rows

**Missing values.** Rows missing the label, the facet, the predicted label or the group
variable are left out of every metric; :class:`~wellml.clarify.report.BiasReport` counts them.

**Refused input** (:class:`BiasInputError`, an :class:`~wellml.errors.InvalidInput`): a
missing or duplicated column; no rows (or none left after excluding missing values); a facet
group d or a with no rows; no positive label at all (a mistyped positive value cannot be told
from a label that is never positive); a :class:`Threshold` on a column that is not numeric;
a float facet without values or threshold; empty values; an unknown method or one of the
other stage; CDDL/CDDPL asked for by name without ``group_variable``; neither or both of
``predicted_label`` and ``model``; a model whose output is not one value per row.

**Undefined metrics** (value ``nan`` and a reason in ``error``, the rest of the report
intact): CDDL/CDDPL when every (predicted) label is positive or every one negative, or when
``methods="all"`` runs without ``group_variable``; KL/JS/LP/TVD/KS when the facets share no
outcome; GE when every prediction is a false negative; FT without usable numeric features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from wellml.clarify.report import BiasMetric, BiasReport, FacetBias, Stage
from wellml.errors import InvalidInput, UserCodeError

__all__ = [
    "POSTTRAINING_METHODS",
    "PRETRAINING_METHODS",
    "BiasInputError",
    "Model",
    "PosttrainingBias",
    "Predictor",
    "PretrainingBias",
    "Threshold",
    "ValuesOrThreshold",
    "posttraining_bias",
    "pretraining_bias",
]


class BiasInputError(InvalidInput, ValueError):
    """Data or parameters a bias analysis cannot use.

    It is a :class:`ValueError` for plain-Python callers and an
    :class:`~wellml.errors.InvalidInput` for wellml's CLI and REST edges.
    """


@dataclass(frozen=True)
class Threshold:
    """A numeric threshold: values strictly greater than ``value`` are selected.

    For a label this means positive; for a facet it means facet d. Clarify writes the selection
    as the interval ``(value, max]``.

    Attributes:
        value: A finite real number (not a bool).

    Raises:
        BiasInputError: ``value`` is not a finite real number.
    """

    value: float

    def __post_init__(self) -> None:
        v = self.value
        real = isinstance(v, int | float | np.integer | np.floating)
        if isinstance(v, bool | np.bool_) or not real:
            raise BiasInputError(f"Threshold needs a real number, not {v!r}")
        if not math.isfinite(float(v)):
            raise BiasInputError(f"Threshold needs a finite number, not {v!r}")


ValuesOrThreshold = Threshold | str | int | float | bool | Sequence[Any] | AbstractSet[Any]
"""One value, several values, or a :class:`Threshold`."""


class Predictor(Protocol):
    """Anything with a scikit-learn style ``predict`` over a data frame."""

    def predict(self, X: pd.DataFrame, /) -> Any:
        """One predicted label or score per row of ``X``."""
        ...


Model = Predictor | Callable[[pd.DataFrame], Any]
"""A :class:`Predictor`, or a plain function from a data frame to one prediction per row."""


# --------------------------------------------------------------------------------------------
# The metrics


class _Undefined(Exception):
    """A metric has no value on this data; the message says why."""


@dataclass(frozen=True)
class _Counts:
    """Row counts of one facet split, from one ``bincount`` over (facet, label, prediction)."""

    n_a: int
    n_d: int
    n_a1: int
    n_d1: int
    tn_a: int = 0
    fp_a: int = 0
    fn_a: int = 0
    tp_a: int = 0
    tn_d: int = 0
    fp_d: int = 0
    fn_d: int = 0
    tp_d: int = 0

    @property
    def n_a0(self) -> int:
        return self.n_a - self.n_a1

    @property
    def n_d0(self) -> int:
        return self.n_d - self.n_d1

    @property
    def nh_a1(self) -> int:
        return self.tp_a + self.fp_a

    @property
    def nh_d1(self) -> int:
        return self.tp_d + self.fp_d

    @property
    def nh_a0(self) -> int:
        return self.tn_a + self.fn_a

    @property
    def nh_d0(self) -> int:
        return self.tn_d + self.fn_d

    @classmethod
    def of(cls, d: np.ndarray, y: np.ndarray, yhat: np.ndarray | None) -> _Counts:
        """Counts for facet mask ``d``, positive labels ``y`` and positive predictions ``yhat``."""
        if yhat is None:
            a0, a1, d0, d1 = np.bincount(2 * d + y, minlength=4).tolist()
            return cls(n_a=a0 + a1, n_d=d0 + d1, n_a1=a1, n_d1=d1)
        # code = 4·d + 2·y + ŷ: cells (y, ŷ) = (0,0) TN, (0,1) FP, (1,0) FN, (1,1) TP, a then d.
        cells = np.bincount(4 * d + 2 * y + yhat, minlength=8).tolist()
        tn_a, fp_a, fn_a, tp_a, tn_d, fp_d, fn_d, tp_d = cells
        return cls(
            n_a=tn_a + fp_a + fn_a + tp_a,
            n_d=tn_d + fp_d + fn_d + tp_d,
            n_a1=fn_a + tp_a,
            n_d1=fn_d + tp_d,
            tn_a=tn_a,
            fp_a=fp_a,
            fn_a=fn_a,
            tp_a=tp_a,
            tn_d=tn_d,
            fp_d=fp_d,
            fn_d=fn_d,
            tp_d=tp_d,
        )


@dataclass(frozen=True)
class _Data:
    """What the metrics of one facet group read."""

    d: np.ndarray  # bool: facet d
    y: np.ndarray  # bool: positive label
    yhat: np.ndarray | None  # bool: positive prediction (post-training)
    groups: np.ndarray | None  # int codes of the group variable
    features: np.ndarray | None  # float, rows × numeric features, for FT
    features_problem: str  # why ``features`` is None
    counts: _Counts

    @property
    def predictions(self) -> np.ndarray:
        if self.yhat is None:  # pragma: no cover - post-training metrics always get them
            raise _Undefined("needs predicted labels")
        return self.yhat


def _divide(num: float, den: float) -> float:
    """Clarify's division: ``0/0 = 0``, ``x/0 = ±inf`` (``smclarify common.divide``)."""
    if den == 0:
        if num == 0:
            return 0.0
        return math.inf if num > 0 else -math.inf
    return num / den


def _difference(x: float, y: float) -> float:
    """``x − y``, except that two equal infinities give 0, as ``smclarify`` forces."""
    if x == y and math.isinf(x):
        return 0.0
    return x - y


def _ratio_gap(num_1: float, den_1: float, num_2: float, den_2: float) -> float:
    """``num_1/den_1 − num_2/den_2`` with Clarify's division and difference."""
    return _difference(_divide(num_1, den_1), _divide(num_2, den_2))


def _ci(x: _Data) -> float:
    """Class Imbalance: ``(n_a − n_d)/(n_a + n_d)`` (``smclarify pretraining.CI``)."""
    c = x.counts
    return (c.n_a - c.n_d) / (c.n_a + c.n_d)


def _dpl(x: _Data) -> float:
    """Difference in positive proportions of labels: ``n_a(1)/n_a − n_d(1)/n_d``.

    ``smclarify common.DPL`` (called by ``pretraining.DPL``).
    """
    c = x.counts
    return c.n_a1 / c.n_a - c.n_d1 / c.n_d


def _label_distributions(x: _Data) -> tuple[np.ndarray, np.ndarray]:
    """P_a and P_d of the binary label on the outcomes non-zero in both facets.

    ``smclarify util.pdfs_aligned_nonzero``: outcomes missing from either facet are dropped and
    the rest is not renormalised.
    """
    c = x.counts
    pa = np.array([c.n_a0, c.n_a1], dtype=np.float64) / c.n_a
    pd_ = np.array([c.n_d0, c.n_d1], dtype=np.float64) / c.n_d
    keep = (pa > 0) & (pd_ > 0)
    if not keep.any():
        raise _Undefined(
            "facets a and d share no label outcome (one is all positive, the other all "
            "negative), so their label distributions have no common support"
        )
    return pa[keep], pd_[keep]


def _kl(x: _Data) -> float:
    """Kullback-Leibler divergence ``Σ P_a ln(P_a/P_d)`` (``smclarify pretraining.KL``)."""
    pa, pd_ = _label_distributions(x)
    return float(np.sum(pa * np.log(pa / pd_)))


def _js(x: _Data) -> float:
    """Jensen-Shannon divergence ``½[KL(P_a‖P) + KL(P_d‖P)]`` (``smclarify pretraining.JS``)."""
    pa, pd_ = _label_distributions(x)
    p = 0.5 * (pa + pd_)
    return float(0.5 * (np.sum(pa * np.log(pa / p)) + np.sum(pd_ * np.log(pd_ / p))))


def _lp(x: _Data) -> float:
    """L2 norm of ``P_a − P_d`` (``smclarify pretraining.LP``, ``LP_norm(..., 2)``)."""
    pa, pd_ = _label_distributions(x)
    return float(np.sqrt(np.sum((pa - pd_) ** 2)))


def _tvd(x: _Data) -> float:
    """Total variation distance ``½‖P_a − P_d‖₁`` (``smclarify pretraining.TVD``)."""
    pa, pd_ = _label_distributions(x)
    return float(0.5 * np.sum(np.abs(pa - pd_)))


def _ks(x: _Data) -> float:
    """Kolmogorov-Smirnov distance ``max |P_a − P_d|`` (``smclarify pretraining.KS``).

    The L∞ distance between the two label distributions, not a test on CDFs.
    """
    pa, pd_ = _label_distributions(x)
    return float(np.max(np.abs(pa - pd_)))


def _cdd(d: np.ndarray, positive: np.ndarray, groups: np.ndarray | None, what: str) -> float:
    """Conditional demographic disparity (``smclarify common.CDD``).

    ``Σ_i n_i·DD_i / Σ_i n_i`` over the subgroups i of the group variable, where ``DD_i`` is
    d's share of subgroup i's negatives minus d's share of its positives; a share whose
    subgroup has no negatives (positives) counts as 0.
    """
    if groups is None:
        raise _Undefined("needs a group_variable")
    if not positive.any():
        raise _Undefined(f"no positive {what}: demographic disparity is undefined")
    if positive.all():
        raise _Undefined(f"no negative {what}: demographic disparity is undefined")
    k = int(groups.max()) + 1
    n_i = np.bincount(groups, minlength=k).astype(np.float64)
    pos_i = np.bincount(groups, weights=positive, minlength=k)
    neg_i = n_i - pos_i
    d_pos_i = np.bincount(groups, weights=d & positive, minlength=k)
    d_neg_i = np.bincount(groups, weights=d & ~positive, minlength=k)
    share_pos = np.divide(d_pos_i, pos_i, out=np.zeros(k), where=pos_i > 0)
    share_neg = np.divide(d_neg_i, neg_i, out=np.zeros(k), where=neg_i > 0)
    return float(np.sum(n_i * (share_neg - share_pos)) / np.sum(n_i))


def _cddl(x: _Data) -> float:
    """Conditional demographic disparity in labels (``smclarify pretraining.CDDL``)."""
    return _cdd(x.d, x.y, x.groups, "labels")


def _dppl(x: _Data) -> float:
    """``n̂_a(1)/n_a − n̂_d(1)/n_d`` (``smclarify posttraining.DPPL``, i.e. DPL on ŷ)."""
    c = x.counts
    return c.nh_a1 / c.n_a - c.nh_d1 / c.n_d


def _di(x: _Data) -> float:
    """Disparate impact ``(n̂_d(1)/n_d)/(n̂_a(1)/n_a)`` (``smclarify posttraining.DI``)."""
    c = x.counts
    return _divide(c.nh_d1 / c.n_d, c.nh_a1 / c.n_a)


def _dca(x: _Data) -> float:
    """``n_a(1)/n̂_a(1) − n_d(1)/n̂_d(1)`` (``smclarify common.DCO``, first value)."""
    c = x.counts
    return _ratio_gap(c.n_a1, c.nh_a1, c.n_d1, c.nh_d1)


def _dcr(x: _Data) -> float:
    """``n_d(0)/n̂_d(0) − n_a(0)/n̂_a(0)`` (``smclarify common.DCO``, second value)."""
    c = x.counts
    return _ratio_gap(c.n_d0, c.nh_d0, c.n_a0, c.nh_a0)


def _rd(x: _Data) -> float:
    """Recall difference ``TP_a/(TP_a+FN_a) − TP_d/(TP_d+FN_d)`` (``smclarify common.DLA``)."""
    c = x.counts
    return _ratio_gap(c.tp_a, c.tp_a + c.fn_a, c.tp_d, c.tp_d + c.fn_d)


def _sd(x: _Data) -> float:
    """Specificity difference ``TN_d/(TN_d+FP_d) − TN_a/(TN_a+FP_a)`` (``common.DLA``)."""
    c = x.counts
    return _ratio_gap(c.tn_d, c.tn_d + c.fp_d, c.tn_a, c.tn_a + c.fp_a)


def _dar(x: _Data) -> float:
    """Precision difference ``TP_a/n̂_a(1) − TP_d/n̂_d(1)`` (``smclarify common.DLR``)."""
    c = x.counts
    return _ratio_gap(c.tp_a, c.nh_a1, c.tp_d, c.nh_d1)


def _drr(x: _Data) -> float:
    """``TN_d/n̂_d(0) − TN_a/n̂_a(0)``, the negative predictive values (``common.DLR``)."""
    c = x.counts
    return _ratio_gap(c.tn_d, c.nh_d0, c.tn_a, c.nh_a0)


def _ad(x: _Data) -> float:
    """Accuracy difference ``ACC_a − ACC_d`` (``smclarify posttraining.AD``)."""
    c = x.counts
    return _ratio_gap(c.tp_a + c.tn_a, c.n_a, c.tp_d + c.tn_d, c.n_d)


def _te(x: _Data) -> float:
    """Treatment equality ``FN_d/FP_d − FN_a/FP_a`` (``smclarify posttraining.TE``)."""
    c = x.counts
    return _ratio_gap(c.fn_d, c.fp_d, c.fn_a, c.fp_a)


def _cddpl(x: _Data) -> float:
    """CDD on predicted labels (``smclarify posttraining.CDDPL``)."""
    return _cdd(x.d, x.predictions, x.groups, "predicted labels")


def _ft(x: _Data) -> float:
    """Flip test (``smclarify posttraining.FT``).

    A k-nearest-neighbour classifier (k = 5 when facet a has more than 9 rows, else 1; uniform
    weights; Euclidean distance) learns facet a's *predicted* labels from the numeric
    features, then predicts each d row. ``F⁺`` counts d rows the model accepts and the
    neighbours reject, ``F⁻`` the reverse; FT = ``(F⁺ − F⁻)/n_d``. This is the sign of the
    ``smclarify`` code (its ``FlipSet_pos``); the developer guide words F⁺ the other way round.
    """
    yhat = x.predictions
    if x.features is None:
        raise _Undefined(x.features_problem)
    # Imported here: scikit-learn's neighbours module is slow to import and only FT needs it.
    from sklearn.neighbors import KNeighborsClassifier

    a = ~x.d
    n_a = x.counts.n_a
    knn = KNeighborsClassifier(n_neighbors=5 if n_a > 9 else 1, weights="uniform")
    knn.fit(x.features[a], yhat[a])
    neighbours = np.asarray(knn.predict(x.features[x.d]), dtype=bool)
    model = yhat[x.d]
    flips_pos = int(np.count_nonzero(model & ~neighbours))
    flips_neg = int(np.count_nonzero(~model & neighbours))
    return _divide(flips_pos - flips_neg, x.counts.n_d)


def _ge(x: _Data) -> float:
    """Generalized entropy index with α = 2 (``smclarify common.GE`` via ``posttraining.GE``).

    Benefit ``b_i = ŷ_i − y_i + 1`` ∈ {0, 1, 2} over all rows (facet-independent);
    ``GE = Σ[(b_i/b̄)² − 1] / (2n)``. Undefined when every benefit is 0, i.e. every
    prediction is a false negative.
    """
    yhat = x.predictions
    benefit = yhat.astype(np.int64) - x.y.astype(np.int64) + 1
    mean = float(benefit.mean())
    if mean == 0:
        raise _Undefined("every prediction is a false negative, so the mean benefit is 0")
    ratio = benefit / mean
    return float(np.sum(ratio * ratio - 1.0) / (len(benefit) * 2.0))


@dataclass(frozen=True)
class _Method:
    key: str
    description: str
    compute: Callable[[_Data], float]
    needs_group: bool = False


_PRE: dict[str, _Method] = {
    m.key: m
    for m in (
        _Method("CDDL", "Conditional Demographic Disparity in Labels (CDDL)", _cddl, True),
        _Method("CI", "Class Imbalance (CI)", _ci),
        _Method("DPL", "Difference in Positive Proportions in Labels (DPL)", _dpl),
        _Method("JS", "Jensen-Shannon Divergence (JS)", _js),
        _Method("KL", "Kullback-Leibler Divergence (KL)", _kl),
        _Method("KS", "Kolmogorov-Smirnov Distance (KS)", _ks),
        _Method("LP", "L-p Norm (LP)", _lp),
        _Method("TVD", "Total Variation Distance (TVD)", _tvd),
    )
}

_POST: dict[str, _Method] = {
    m.key: m
    for m in (
        _Method("AD", "Accuracy Difference (AD)", _ad),
        _Method(
            "CDDPL", "Conditional Demographic Disparity in Predicted Labels (CDDPL)", _cddpl, True
        ),
        _Method("DAR", "Difference in Acceptance Rates (DAR)", _dar),
        _Method("DCA", "Difference in Conditional Acceptance (DCA)", _dca),
        _Method("DCR", "Difference in Conditional Rejection (DCR)", _dcr),
        _Method("DI", "Disparate Impact (DI)", _di),
        _Method("DPPL", "Difference in Positive Proportions in Predicted Labels (DPPL)", _dppl),
        _Method("DRR", "Difference in Rejection Rates (DRR)", _drr),
        _Method("FT", "Flip Test (FT)", _ft),
        _Method("GE", "Generalized Entropy (GE)", _ge),
        _Method("RD", "Recall Difference (RD)", _rd),
        _Method("SD", "Specificity Difference (SD)", _sd),
        _Method("TE", "Treatment Equality (TE)", _te),
    )
}

PRETRAINING_METHODS: tuple[str, ...] = tuple(_PRE)
"""Keys of the pre-training metrics, in report (alphabetical) order."""

POSTTRAINING_METHODS: tuple[str, ...] = tuple(_POST)
"""Keys of the post-training metrics, in report (alphabetical) order."""

# The developer guide's page name for DCA.
_ALIASES = {"DCAcc": "DCA"}


# --------------------------------------------------------------------------------------------
# Reading the input


_MAX_SHOWN = 10


def _shown(values: Iterable[Any]) -> str:
    """Up to ``_MAX_SHOWN`` values for an error message."""
    items = list(values)
    text = ", ".join(repr(v) for v in items[:_MAX_SHOWN])
    return text + (f", ... ({len(items)} in all)" if len(items) > _MAX_SHOWN else "")


def _seen(series: pd.Series) -> str:
    try:
        return _shown(v.item() if isinstance(v, np.generic) else v for v in pd.unique(series))
    except TypeError:
        return "(values that cannot be listed)"


def _column(df: pd.DataFrame, name: str, role: str) -> pd.Series:
    """The column ``name`` of ``df``.

    Raises:
        BiasInputError: The column is missing or appears more than once.
    """
    try:
        present = name in df.columns
    except TypeError:
        present = False
    if not present:
        raise BiasInputError(
            f"{role} column {name!r} is not in the data; its columns are {_shown(df.columns)}"
        )
    column = df[name]
    if isinstance(column, pd.DataFrame):
        raise BiasInputError(f"{role} column {name!r} appears more than once in the data")
    return column


def _values_or_threshold(value: Any, role: str) -> tuple[Any, ...] | Threshold:
    """Normalise a values-or-threshold argument.

    Raises:
        BiasInputError: No values, a missing value among them, or an unhashable value.
    """
    if isinstance(value, Threshold):
        return value
    values: tuple[Any, ...]
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        values = (value,)
    elif isinstance(value, Mapping):
        raise BiasInputError(
            f"{role}_values_or_threshold must be values or a Threshold, not a mapping"
        )
    elif isinstance(value, AbstractSet):
        # Sorted so that the report's value string does not depend on set order.
        values = tuple(sorted(value, key=repr))
    else:
        values = tuple(value)
    if not values:
        raise BiasInputError(f"{role}_values_or_threshold is empty; give at least one value")
    for v in values:
        try:
            hash(v)
        except TypeError:
            raise BiasInputError(
                f"{role}_values_or_threshold holds {v!r}, which cannot be compared as a value"
            ) from None
        if v is None or v is pd.NA or (isinstance(v, float | np.floating) and math.isnan(v)):
            raise BiasInputError(
                f"{role}_values_or_threshold holds a missing value; rows with a missing "
                f"{role} are excluded, so it can never match"
            )
    return values


def _coerced(dtype: Any, values: tuple[Any, ...]) -> list[Any]:
    """``values`` converted to the type of a column of ``dtype``; those that convert."""
    base = dtype.categories.dtype if isinstance(dtype, pd.CategoricalDtype) else dtype
    out: list[Any] = []
    if ptypes.is_bool_dtype(base):
        for v in values:
            if isinstance(v, str) and v.strip().lower() in ("true", "false"):
                out.append(v.strip().lower() == "true")
    elif ptypes.is_numeric_dtype(base):
        for v in values:
            if isinstance(v, str):
                try:
                    out.append(float(v))
                except ValueError:
                    continue
    else:
        out = [str(v) for v in values if not isinstance(v, str)]
    return out


def _isin(series: pd.Series, values: tuple[Any, ...], what: str) -> np.ndarray:
    """Rows of ``series`` equal to one of ``values``, converting the values once if none is."""
    try:
        mask = series.isin(list(values)).to_numpy(dtype=bool)
        if not mask.any():
            alternatives = _coerced(series.dtype, values)
            if alternatives:
                mask = series.isin(alternatives).to_numpy(dtype=bool)
    except TypeError as exc:
        raise BiasInputError(f"cannot compare the {what} with {_shown(values)}: {exc}") from None
    return mask


def _numbers(series: pd.Series, what: str) -> np.ndarray:
    """The series as float64, for a threshold.

    Raises:
        BiasInputError: The series is boolean or not numeric.
    """
    dtype = series.dtype
    if ptypes.is_bool_dtype(dtype):
        raise BiasInputError(
            f"the {what} is boolean; give its positive value (True or False), not a threshold"
        )
    if not ptypes.is_numeric_dtype(dtype) or ptypes.is_complex_dtype(dtype):
        raise BiasInputError(
            f"the {what} has dtype {dtype}, so a numeric threshold cannot apply; give the "
            "value(s) to select instead, or convert the column to numbers"
        )
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _select(
    series: pd.Series, spec: tuple[Any, ...] | Threshold, what: str
) -> tuple[np.ndarray, str]:
    """Rows selected by values or a threshold, and Clarify's string for the selection."""
    if isinstance(spec, Threshold):
        numbers = _numbers(series, what)
        mask = numbers > spec.value
        t = _scalar(spec.value)
        top = _scalar(series.max()) if len(series) else t
        text = str(pd.Interval(t, top)) if top > t else f"({t}, {top}]"
        return mask, text
    return _isin(series, spec, what), ",".join(str(v) for v in spec)


def _predict(model: Model, X: pd.DataFrame) -> pd.Series:
    """One prediction per row of ``X`` from ``model``.

    Raises:
        UserCodeError: The model raised.
        BiasInputError: The model is not callable, or its output is not one value per row.
    """
    predict = getattr(model, "predict", None)
    if predict is None:
        if not callable(model):
            raise BiasInputError(
                f"model must have a predict method or be callable, not {type(model).__name__}"
            )
        predict = model
    try:
        output = predict(X)
    except Exception as exc:
        raise UserCodeError(f"the model's predict raised {type(exc).__name__}: {exc}") from exc
    if isinstance(output, pd.DataFrame):
        if output.shape[1] != 1:
            raise BiasInputError(
                f"the model returned a frame of {output.shape[1]} columns; return one "
                "predicted label or score per row"
            )
        output = output.iloc[:, 0]
    if isinstance(output, pd.Series):
        values = output.reset_index(drop=True)
    else:
        array = np.asarray(output)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise BiasInputError(
                f"the model returned an array of shape {array.shape}; return one predicted "
                "label or score per row"
            )
        values = pd.Series(array)
    if len(values) != len(X):
        raise BiasInputError(f"the model returned {len(values)} predictions for {len(X)} rows")
    return values


def _ft_features(frame: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """The numeric and boolean columns of ``frame`` as a float matrix, or why there is none."""
    numeric = [
        c
        for c in frame.columns
        if (ptypes.is_numeric_dtype(frame[c].dtype) or ptypes.is_bool_dtype(frame[c].dtype))
        and not ptypes.is_complex_dtype(frame[c].dtype)
    ]
    if not numeric:
        return None, "the flip test needs numeric feature columns and there are none"
    matrix = frame[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(matrix)
    if bad.any():
        cols = [numeric[j] for j in np.flatnonzero(bad.any(axis=0))]
        return None, (
            "the flip test's k-NN cannot use missing or infinite feature values, found in "
            f"{_shown(cols)}; fill them or leave those columns out with features=[...]"
        )
    return matrix, ""


def _resolve_methods(
    methods: str | Sequence[str], stage: Stage, group_variable: str | None
) -> tuple[_Method, ...]:
    """The methods to run, in report order.

    Raises:
        BiasInputError: No methods, an unknown key, a key of the other stage, or a CDD metric
            asked for by name without a group variable.
    """
    table, other = (_PRE, _POST) if stage == "pre_training" else (_POST, _PRE)
    if isinstance(methods, str):
        if methods == "all":
            return tuple(table.values())
        keys = [methods]
    else:
        keys = list(methods)
    if not keys:
        raise BiasInputError('methods is empty; give metric keys or "all"')
    chosen: set[str] = set()
    for key in keys:
        key = _ALIASES.get(key, key) if isinstance(key, str) else key
        if key not in table:
            where = (
                f"; it is a {'post' if stage == 'pre_training' else 'pre'}-training metric"
                if key in other
                else ""
            )
            raise BiasInputError(
                f"unknown {stage.replace('_', '-')} metric {key!r}{where}; choose from "
                f"{', '.join(table)}"
            )
        if table[key].needs_group and group_variable is None:
            raise BiasInputError(f"{key} needs group_variable, the column to condition on")
        chosen.add(key)
    return tuple(m for k, m in table.items() if k in chosen)


def _analyse(
    df: pd.DataFrame,
    *,
    stage: Stage,
    label: str,
    label_values_or_threshold: Any,
    facet: str,
    facet_values_or_threshold: Any,
    group_variable: str | None,
    methods: str | Sequence[str],
    predicted_label: str | None = None,
    probability_threshold: float | None = None,
    features: Sequence[str] | None = None,
    model: Model | None = None,
) -> BiasReport:
    """Validate, prepare and compute one bias report (the work behind both stages)."""
    if not isinstance(df, pd.DataFrame):
        raise BiasInputError(f"the data must be a pandas DataFrame, not {type(df).__name__}")
    chosen = _resolve_methods(methods, stage, group_variable)
    label_spec = _values_or_threshold(label_values_or_threshold, "label")
    facet_spec = (
        None
        if facet_values_or_threshold is None
        else _values_or_threshold(facet_values_or_threshold, "facet")
    )
    if label == facet:
        raise BiasInputError(f"label and facet are the same column {label!r}")
    if probability_threshold is not None and (
        isinstance(probability_threshold, bool | np.bool_)
        or not isinstance(probability_threshold, int | float | np.integer | np.floating)
        or not math.isfinite(float(probability_threshold))
    ):
        raise BiasInputError(
            f"probability_threshold must be a finite number, not {probability_threshold!r}"
        )

    read: dict[str, str] = {label: "label", facet: "facet"}
    if group_variable is not None:
        read.setdefault(group_variable, "group variable")
    post = stage == "post_training"
    if post:
        if (predicted_label is None) == (model is None):
            raise BiasInputError(
                "post-training bias needs exactly one of predicted_label (a column of "
                "predictions) and model (something to predict with)"
            )
        if predicted_label is not None:
            if predicted_label in (label, facet):
                raise BiasInputError(
                    f"predicted_label {predicted_label!r} must differ from the label and facet"
                )
            read[predicted_label] = "predicted label"
    columns = {name: _column(df, name, role) for name, role in read.items()}

    feature_names: list[str] = []
    if post:
        if features is None:
            feature_names = [c for c in df.columns if c not in (label, predicted_label)]
        else:
            feature_names = list(features)
            for name in feature_names:
                _column(df, name, "feature")
                if name in (label, predicted_label):
                    raise BiasInputError(f"features must not include the {read[name]} {name!r}")

    n_input = len(df)
    if n_input == 0:
        raise BiasInputError("the data has no rows")
    keep = np.ones(n_input, dtype=bool)
    excluded: dict[str, int] = {}
    for name, series in columns.items():
        missing = series.isna().to_numpy(dtype=bool)
        excluded[name] = int(missing.sum())
        keep &= ~missing
    rows = np.flatnonzero(keep)

    predicted: pd.Series | None = None
    if post and model is not None:
        predicted = _predict(model, df.iloc[rows][feature_names])
        missing = predicted.isna().to_numpy(dtype=bool)
        excluded["model.predict"] = int(missing.sum())
        predicted = predicted[~missing].reset_index(drop=True)
        rows = rows[~missing]
    elif predicted_label is not None:
        predicted = columns[predicted_label].iloc[rows].reset_index(drop=True)

    if len(rows) == 0:
        by_column = ", ".join(f"{k}: {v}" for k, v in excluded.items() if v)
        raise BiasInputError(
            f"no rows left: all {n_input} rows miss a value the analysis reads ({by_column})"
        )
    kept = {name: s.iloc[rows].reset_index(drop=True) for name, s in columns.items()}

    y, label_text = _select(kept[label], label_spec, f"label column {label!r}")
    if not y.any():
        how = (
            f"no value is greater than {label_spec.value}"
            if isinstance(label_spec, Threshold)
            else "none of those values occurs"
        )
        raise BiasInputError(
            f"no row has a positive label: label_values_or_threshold={label_text!r} but {how} "
            f"in column {label!r} (values seen: {_seen(kept[label])}); for a numeric threshold "
            "pass Threshold(t)"
        )

    yhat: np.ndarray | None = None
    if predicted is not None:
        what = (
            f"predicted label column {predicted_label!r}"
            if predicted_label is not None
            else "model output"
        )
        if probability_threshold is not None:
            yhat = _numbers(predicted, what) > probability_threshold
        else:
            yhat, _ = _select(predicted, label_spec, what)

    groups: np.ndarray | None = None
    if group_variable is not None:
        try:
            codes, _ = pd.factorize(kept[group_variable])
        except TypeError as exc:
            raise BiasInputError(
                f"group variable {group_variable!r} holds values that cannot be grouped: {exc}"
            ) from None
        groups = np.asarray(codes, dtype=np.int64)

    ft_matrix: np.ndarray | None = None
    ft_problem = ""
    if any(m.key == "FT" for m in chosen):
        ft_columns = [c for c in feature_names if c != facet]
        ft_matrix, ft_problem = _ft_features(df.iloc[rows][ft_columns])

    facet_series = kept[facet]
    splits: list[tuple[str, np.ndarray]]
    if facet_spec is None:
        if ptypes.is_float_dtype(facet_series.dtype):
            raise BiasInputError(
                f"facet column {facet!r} holds floats: give facet_values_or_threshold, e.g. "
                "Threshold(t) to take the rows above t as facet d"
            )
        try:
            codes, uniques = pd.factorize(facet_series)
        except TypeError as exc:
            raise BiasInputError(
                f"facet column {facet!r} holds values that cannot be compared: {exc}"
            ) from None
        splits = [(str(_scalar(v)), codes == i) for i, v in enumerate(uniques)]
    else:
        mask, text = _select(facet_series, facet_spec, f"facet column {facet!r}")
        splits = [(text, mask)]

    y_int = y.astype(np.int64)
    yhat_int = None if yhat is None else yhat.astype(np.int64)
    results: list[FacetBias] = []
    for text, d in splits:
        n_d = int(np.count_nonzero(d))
        if n_d == 0:
            raise BiasInputError(
                f"facet d is empty: facet_values_or_threshold={text!r} matches no row of "
                f"column {facet!r} (values seen: {_seen(facet_series)})"
            )
        if n_d == len(d):
            raise BiasInputError(
                f"facet a is empty: facet_values_or_threshold={text!r} matches every row of "
                f"column {facet!r}, leaving nothing to compare with"
            )
        data = _Data(
            d=d,
            y=y,
            yhat=yhat,
            groups=groups,
            features=ft_matrix,
            features_problem=ft_problem,
            counts=_Counts.of(d.astype(np.int64), y_int, yhat_int),
        )
        metrics = []
        for method in chosen:
            try:
                metrics.append(
                    BiasMetric(method.key, method.description, float(method.compute(data)))
                )
            except _Undefined as why:
                metrics.append(BiasMetric(method.key, method.description, math.nan, str(why)))
        results.append(
            FacetBias(
                value_or_threshold=text,
                metrics=tuple(metrics),
                n_d=n_d,
                n_a=len(d) - n_d,
            )
        )

    return BiasReport(
        stage=stage,
        label=label,
        label_value_or_threshold=label_text,
        facet=facet,
        groups=tuple(results),
        n_rows=len(rows),
        n_excluded=n_input - len(rows),
        excluded_by_column=excluded,
    )


# --------------------------------------------------------------------------------------------
# The public objects and functions


def _params(analysis: Any) -> dict[str, Any]:
    """The fields of a bias analysis dataclass by name, as passed."""
    return {f.name: getattr(analysis, f.name) for f in fields(analysis)}


@dataclass(frozen=True, kw_only=True)
class PretrainingBias:
    """Pre-training bias: how a dataset's labels differ between facet d and facet a.

    Keyword-only parameters, :meth:`get_params` and one verb, :meth:`compute`, as for the
    other wellml analyses; the parameters are what a run or monitor records.

    Attributes:
        label: The label column.
        label_values_or_threshold: The positive label value, values, or ``Threshold(t)``
            (positive when the label is greater than ``t``).
        facet: The facet (sensitive attribute) column.
        facet_values_or_threshold: The value(s), or ``Threshold(t)``, selecting facet **d**,
            the disfavoured group bias is measured against; every other row is facet **a**.
            ``None``: each distinct value in turn, against the rest.
        group_variable: Column whose subgroups CDDL conditions on; ``None`` leaves CDDL
            undefined under ``methods="all"``.
        methods: ``"all"``, one key or a list of keys from :data:`PRETRAINING_METHODS`.
    """

    label: str
    label_values_or_threshold: ValuesOrThreshold
    facet: str
    facet_values_or_threshold: ValuesOrThreshold | None
    group_variable: str | None = None
    methods: str | Sequence[str] = "all"

    def get_params(self) -> dict[str, Any]:
        """The parameters by name, as passed (``type(b)(**b.get_params()) == b``)."""
        return _params(self)

    def compute(self, df: pd.DataFrame) -> BiasReport:
        """Measure the pre-training bias metrics on ``df``.

        Args:
            df: The dataset: label, facet and (optionally) group variable columns.

        Returns:
            One group per facet d measured, each with one metric per method.

        Raises:
            BiasInputError: See the module docstring's list of refused input.
        """
        return _analyse(
            df,
            stage="pre_training",
            label=self.label,
            label_values_or_threshold=self.label_values_or_threshold,
            facet=self.facet,
            facet_values_or_threshold=self.facet_values_or_threshold,
            group_variable=self.group_variable,
            methods=self.methods,
        )


@dataclass(frozen=True, kw_only=True)
class PosttrainingBias:
    """Post-training bias: how a model's predictions treat facet d compared with facet a.

    Attributes:
        label: The observed label column.
        label_values_or_threshold: The positive label value, values, or ``Threshold(t)``;
            also applied to the predictions unless ``probability_threshold`` is given.
        facet: The facet (sensitive attribute) column.
        facet_values_or_threshold: The value(s), or ``Threshold(t)``, selecting facet **d**,
            the disfavoured group; every other row is facet **a**. ``None``: each distinct
            value in turn.
        predicted_label: Column of predictions. Give this or a model to :meth:`compute`.
        probability_threshold: When set, predictions are scores and a prediction is positive
            when its score is greater than this.
        features: Columns the model reads, and whose numeric ones (less the facet) the flip
            test's k-NN measures distance on; default every column except the label and the
            predicted label.
        group_variable: Column whose subgroups CDDPL conditions on.
        methods: ``"all"``, one key or a list of keys from :data:`POSTTRAINING_METHODS`.
    """

    label: str
    label_values_or_threshold: ValuesOrThreshold
    facet: str
    facet_values_or_threshold: ValuesOrThreshold | None
    predicted_label: str | None = None
    probability_threshold: float | None = None
    features: Sequence[str] | None = None
    group_variable: str | None = None
    methods: str | Sequence[str] = "all"

    def get_params(self) -> dict[str, Any]:
        """The parameters by name, as passed (``type(b)(**b.get_params()) == b``)."""
        return _params(self)

    def compute(self, df: pd.DataFrame, *, model: Model | None = None) -> BiasReport:
        """Measure the post-training bias metrics on ``df``.

        Args:
            df: Label, facet and feature columns, and the predicted label column when
                ``predicted_label`` is set.
            model: Instead of ``predicted_label``: an object with ``predict(X)``, or a
                function of ``X``, returning one label or score per row of
                ``X = df[features]`` (rows missing the label, facet or group are not passed).

        Returns:
            One group per facet d measured, each with one metric per method.

        Raises:
            BiasInputError: See the module docstring's list of refused input.
            UserCodeError: The model raised; the original exception is the ``__cause__``.
        """
        return _analyse(
            df,
            stage="post_training",
            label=self.label,
            label_values_or_threshold=self.label_values_or_threshold,
            facet=self.facet,
            facet_values_or_threshold=self.facet_values_or_threshold,
            group_variable=self.group_variable,
            methods=self.methods,
            predicted_label=self.predicted_label,
            probability_threshold=self.probability_threshold,
            features=self.features,
            model=model,
        )


def pretraining_bias(
    df: pd.DataFrame,
    *,
    label: str,
    label_values_or_threshold: ValuesOrThreshold,
    facet: str,
    facet_values_or_threshold: ValuesOrThreshold | None,
    group_variable: str | None = None,
    methods: str | Sequence[str] = "all",
) -> BiasReport:
    """Pre-training bias metrics of a dataset: ``PretrainingBias(...).compute(df)``.

    Args:
        df: The dataset.
        label: The label column.
        label_values_or_threshold: Positive label value(s), or ``Threshold(t)``.
        facet: The facet column.
        facet_values_or_threshold: Value(s) or ``Threshold(t)`` selecting facet **d** (the
            disfavoured group); ``None`` for each distinct value in turn.
        group_variable: Column CDDL conditions on.
        methods: ``"all"``, one key or a list of keys from :data:`PRETRAINING_METHODS`.

    Returns:
        The report; ``report.to_dict()`` is Clarify's ``pre_training_bias_metrics`` section.

    Raises:
        BiasInputError: See the module docstring's list of refused input.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"sex": ["F", "F", "M", "M", "M"], "y": [0, 1, 1, 1, 0]})
        >>> r = pretraining_bias(df, label="y", label_values_or_threshold=1,
        ...                      facet="sex", facet_values_or_threshold="F", methods=["CI"])
        >>> r.value("CI")
        0.2
    """
    return PretrainingBias(
        label=label,
        label_values_or_threshold=label_values_or_threshold,
        facet=facet,
        facet_values_or_threshold=facet_values_or_threshold,
        group_variable=group_variable,
        methods=methods,
    ).compute(df)


def posttraining_bias(
    df: pd.DataFrame,
    *,
    label: str,
    label_values_or_threshold: ValuesOrThreshold,
    facet: str,
    facet_values_or_threshold: ValuesOrThreshold | None,
    predicted_label: str | None = None,
    model: Model | None = None,
    probability_threshold: float | None = None,
    features: Sequence[str] | None = None,
    group_variable: str | None = None,
    methods: str | Sequence[str] = "all",
) -> BiasReport:
    """Post-training bias metrics of predictions: ``PosttrainingBias(...).compute(df)``.

    Args:
        df: The dataset with labels (and predictions, when ``predicted_label`` is set).
        label: The observed label column.
        label_values_or_threshold: Positive label value(s), or ``Threshold(t)``; predictions
            are read the same way unless ``probability_threshold`` is set.
        facet: The facet column.
        facet_values_or_threshold: Value(s) or ``Threshold(t)`` selecting facet **d** (the
            disfavoured group); ``None`` for each distinct value in turn.
        predicted_label: Column of predictions; give this or ``model``.
        model: Object with ``predict(X)`` (or a function of ``X``) giving one label or score
            per row of ``X = df[features]``.
        probability_threshold: Predictions are scores; positive when greater than this.
        features: Columns for the model and the flip test (default: all but the label and
            the predicted label).
        group_variable: Column CDDPL conditions on.
        methods: ``"all"``, one key or a list of keys from :data:`POSTTRAINING_METHODS`.

    Returns:
        The report; ``report.to_dict()`` is Clarify's ``post_training_bias_metrics`` section.

    Raises:
        BiasInputError: See the module docstring's list of refused input.
        UserCodeError: The model raised.
    """
    return PosttrainingBias(
        label=label,
        label_values_or_threshold=label_values_or_threshold,
        facet=facet,
        facet_values_or_threshold=facet_values_or_threshold,
        predicted_label=predicted_label,
        probability_threshold=probability_threshold,
        features=features,
        group_variable=group_variable,
        methods=methods,
    ).compute(df, model=model)
