"""Results of a bias analysis, and their JSON in the shape of Clarify's ``analysis.json``.

A :class:`BiasReport` holds one :class:`FacetBias` per facet group that was measured (one
group when the facet's values or threshold are given, one per distinct value otherwise), and
each group holds one :class:`BiasMetric` per method. :meth:`BiasReport.to_dict` gives the bias
section of a SageMaker Clarify ``analysis.json``::

    {"pre_training_bias_metrics": {
        "label": "approved",
        "label_value_or_threshold": "yes",
        "facets": {"sex": [{"value_or_threshold": "F",
                            "metrics": [{"name": "CI", "description": "Class Imbalance (CI)",
                                         "value": 0.2}, ...]}]}}}

and :func:`bias_analysis` merges several reports (pre- and post-training, several facets)
into one such document. Values follow Clarify's JSON conventions: ``±inf`` is written as the
strings ``"Infinity"`` / ``"-Infinity"``, and a metric that is undefined on the data has
``"value": null`` and an ``"error"`` saying why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from wellml.errors import InvalidInput

__all__ = ["BiasMetric", "BiasReport", "FacetBias", "bias_analysis"]

Stage = Literal["pre_training", "post_training"]


@dataclass(frozen=True)
class BiasMetric:
    """One bias metric measured on one facet group.

    Attributes:
        name: The Clarify method key (``"CI"``, ``"DPPL"``, ...).
        description: The metric's full name with its key, as Clarify reports it.
        value: The metric; ``nan`` when it is undefined on this data (``error`` says why),
            ``±inf`` where Clarify's division rule gives it (``x/0`` with ``x ≠ 0``).
        error: Why the value is undefined, else ``None``.
    """

    name: str
    description: str
    value: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The metric as Clarify writes it: ``name``, ``description``, ``value`` (+ ``error``)."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "value": _json_value(self.value),
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class FacetBias:
    """Every metric measured for one facet group *d* against the rest of the rows, *a*.

    Attributes:
        value_or_threshold: The facet value(s) that select *d*, comma-joined, or the threshold
            interval ``"(t, max]"`` for a numeric facet, as Clarify writes it.
        metrics: One result per method, sorted by name (Clarify's order).
        n_d: Rows in facet *d* (the matched, disfavoured group).
        n_a: Rows in facet *a* (every other row).
    """

    value_or_threshold: str
    metrics: tuple[BiasMetric, ...]
    n_d: int
    n_a: int

    @property
    def values(self) -> dict[str, float]:
        """Metric values by name."""
        return {m.name: m.value for m in self.metrics}

    def metric(self, name: str) -> BiasMetric:
        """The metric called ``name``.

        Raises:
            InvalidInput: No metric of that name was computed.
        """
        for m in self.metrics:
            if m.name == name:
                return m
        computed = ", ".join(m.name for m in self.metrics)
        raise InvalidInput(f"metric {name!r} was not computed; this group has: {computed}")

    def to_dict(self) -> dict[str, Any]:
        """The group as Clarify writes it: ``value_or_threshold`` and ``metrics``."""
        return {
            "value_or_threshold": self.value_or_threshold,
            "metrics": [m.to_dict() for m in self.metrics],
        }


@dataclass(frozen=True)
class BiasReport:
    """Bias metrics of one label and one facet column, before or after training.

    Attributes:
        stage: ``"pre_training"`` or ``"post_training"``.
        label: The label column.
        label_value_or_threshold: The positive label value(s), comma-joined, or the interval
            ``"(t, max]"`` of a numeric threshold.
        facet: The facet column.
        groups: One entry per facet group *d* measured.
        n_rows: Rows used (after excluding rows with missing values).
        n_excluded: Rows left out because a column the analysis reads was missing there.
        excluded_by_column: Missing values per column read, among all input rows; a row missing
            in two columns counts in both, and once in ``n_excluded``.
    """

    stage: Stage
    label: str
    label_value_or_threshold: str
    facet: str
    groups: tuple[FacetBias, ...]
    n_rows: int
    n_excluded: int
    # Excluded from the hash because a dict is unhashable; equality still compares it.
    excluded_by_column: dict[str, int] = field(default_factory=dict, hash=False)

    def value(self, name: str, value_or_threshold: str | None = None) -> float:
        """One metric's value.

        Args:
            name: Method key, e.g. ``"DPPL"``.
            value_or_threshold: Which facet group, as in :attr:`FacetBias.value_or_threshold`;
                may be omitted when the report has one group.

        Raises:
            InvalidInput: The group or the metric is not in the report, or the group was
                omitted while the report has several.
        """
        return self.group(value_or_threshold).metric(name).value

    def group(self, value_or_threshold: str | None = None) -> FacetBias:
        """The facet group selected by ``value_or_threshold`` (or the only one).

        Raises:
            InvalidInput: No such group, or none named while the report has several.
        """
        if value_or_threshold is None:
            if len(self.groups) != 1:
                names = ", ".join(repr(g.value_or_threshold) for g in self.groups)
                raise InvalidInput(f"the report has several facet groups ({names}); name one")
            return self.groups[0]
        for g in self.groups:
            if g.value_or_threshold == value_or_threshold:
                return g
        names = ", ".join(repr(g.value_or_threshold) for g in self.groups)
        raise InvalidInput(f"no facet group {value_or_threshold!r} in the report; it has: {names}")

    def to_dict(self) -> dict[str, Any]:
        """This stage's section of a Clarify ``analysis.json`` (plain, strict-JSON data)."""
        return {
            f"{self.stage}_bias_metrics": {
                "label": self.label,
                "label_value_or_threshold": self.label_value_or_threshold,
                "facets": {self.facet: [g.to_dict() for g in self.groups]},
            }
        }


def bias_analysis(reports: Iterable[BiasReport]) -> dict[str, Any]:
    """Merge reports into the bias sections of one Clarify ``analysis.json``.

    Reports of one stage land in one section; facets of different columns sit side by side
    under ``facets``, and groups of the same column are listed in report order.

    Args:
        reports: Pre- and post-training reports, all on the same label.

    Returns:
        ``{"pre_training_bias_metrics": ..., "post_training_bias_metrics": ...}`` with the
        sections that have at least one report.

    Raises:
        InvalidInput: No reports, or reports on different labels or positive label values.
    """
    out: dict[str, Any] = {}
    first: BiasReport | None = None
    for report in reports:
        if first is None:
            first = report
        elif (report.label, report.label_value_or_threshold) != (
            first.label,
            first.label_value_or_threshold,
        ):
            raise InvalidInput(
                "all reports of one analysis must share the label: "
                f"{first.label!r}={first.label_value_or_threshold!r} vs "
                f"{report.label!r}={report.label_value_or_threshold!r}"
            )
        key = f"{report.stage}_bias_metrics"
        section = out.setdefault(
            key,
            {
                "label": report.label,
                "label_value_or_threshold": report.label_value_or_threshold,
                "facets": {},
            },
        )
        section["facets"].setdefault(report.facet, []).extend(g.to_dict() for g in report.groups)
    if first is None:
        raise InvalidInput("bias_analysis needs at least one report")
    return out


def _json_value(value: float) -> float | str | None:
    """Clarify's JSON for a metric value: ``"Infinity"`` for ±inf, ``None`` for NaN."""
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
