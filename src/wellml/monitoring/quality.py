"""Data quality: does the current data keep the baseline's constraints?

:class:`DataQualityCheck` compares a data frame with a baseline's statistics and constraints
(see :mod:`wellml.monitoring.baseline`) and returns Model Monitor's violations, named as in its
``constraint_violations.json``:

=========================  ===================================================================
check                      violation when
=========================  ===================================================================
missing_column_check       a baseline feature is not in the current data
extra_column_check         the current data has a column the baseline does not
data_type_check            more than ``datatype_check_threshold`` of a feature's values do not
                           fit its type (an ``Integral`` feature holding 2.5 or ``"x"``)
completeness_check         the share of non-null values is below the ``completeness``
                           constraint by more than ``completeness_tolerance``
value_range_check          (wellml) a negative value where ``is_non_negative`` holds, or more
                           than ``range_check_threshold`` of values outside ``[min, max]``
categorical_values_check   more than ``domain_content_threshold`` of values outside the domain
baseline_drift_check       the distance between the baseline's and the current distribution is
                           above ``comparison_threshold`` (``categorical_comparison_threshold``)
=========================  ===================================================================

The distance is Model Monitor's L∞: for numbers, the largest gap between the two CDFs, read at
the baseline's sketch points (its percentiles); ``Robust`` subtracts ``1.8·√((n+m)/(n·m))`` so
small windows do not alarm on noise, ``Simple`` does not. For categories it is the largest
difference of one category's share (``LInfinity``), or with ``ChiSquared`` the p-value of the
two-sample chi-square test, a violation when below the threshold. A feature's
``monitoringConfigOverrides`` replace the global settings for that feature. Only the baseline's
statistics are read, never its data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy import stats

from wellml.errors import InvalidInput
from wellml.monitoring.baseline import (
    BOOLEAN,
    FRACTIONAL,
    INTEGRAL,
    STRING,
    default_monitoring_config,
    feature_statistics,
    numeric_values,
)

__all__ = ["CHECK_TYPES", "DataQualityCheck", "DataQualityResult"]

CHECK_TYPES = (
    "missing_column_check",
    "extra_column_check",
    "data_type_check",
    "completeness_check",
    "value_range_check",
    "categorical_values_check",
    "baseline_drift_check",
)


@dataclass(frozen=True)
class DataQualityResult:
    """What a data-quality check found.

    Attributes:
        violations: Model Monitor violation records: ``feature_name``,
            ``constraint_check_type``, ``description``.
        features: Per-feature measurements (completeness, non-conforming share, out-of-range
            share, unknown-category share, distance), JSON-ready.
        statistics: The current data's statistics, in the baseline's shape.
    """

    violations: list[dict[str, Any]]
    features: list[dict[str, Any]]
    statistics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "violations": self.violations,
            "features": self.features,
            "statistics": self.statistics,
        }


def _violation(feature: str, check: str, description: str) -> dict[str, Any]:
    return {"feature_name": feature, "constraint_check_type": check, "description": description}


def _config_for(global_config: Mapping[str, Any], feature: Mapping[str, Any]) -> dict[str, Any]:
    config = default_monitoring_config()
    config.update({k: v for k, v in global_config.items() if k != "distribution_constraints"})
    config["distribution_constraints"].update(global_config.get("distribution_constraints", {}))
    overrides = feature.get("monitoringConfigOverrides") or {}
    config.update({k: v for k, v in overrides.items() if k != "distribution_constraints"})
    config["distribution_constraints"].update(overrides.get("distribution_constraints", {}))
    return config


def _key(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _nonconforming(series: pd.Series, kind: str) -> int:
    """How many non-null values do not fit ``kind``."""
    present = series.dropna()
    if kind in (STRING,) or len(present) == 0:
        return 0
    dtype = present.dtype
    if kind == BOOLEAN:
        if ptypes.is_bool_dtype(dtype):
            return 0
        text = present.astype(str).str.strip().str.lower()
        return int((~text.isin(["true", "false", "0", "1"])).sum())
    if ptypes.is_bool_dtype(dtype):
        return len(present)
    if ptypes.is_numeric_dtype(dtype):
        values = present.to_numpy(dtype=np.float64)
    else:
        values = pd.to_numeric(present.astype(object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    ok = np.isfinite(values)
    if kind == INTEGRAL:
        ok &= np.floor(np.where(ok, values, 0.0)) == np.where(ok, values, 0.0)
    return int(len(values) - ok.sum())


class DataQualityCheck:
    """Checks a data frame against a baseline's statistics and constraints.

    Args:
        ignore: Columns that are neither checked nor reported as extra (for captured traffic:
            the inference id, times and model outputs).
    """

    def __init__(self, *, ignore: Sequence[str] = ()) -> None:
        self.ignore = tuple(ignore)

    def get_params(self) -> dict[str, Any]:
        """The parameters, by name."""
        return {"ignore": list(self.ignore)}

    def compute(
        self,
        frame: pd.DataFrame,
        statistics: Mapping[str, Any],
        constraints: Mapping[str, Any],
    ) -> DataQualityResult:
        """Check ``frame`` against the baseline.

        Raises:
            InvalidInput: the frame has no rows.
        """
        if len(frame) == 0:
            raise InvalidInput("the current data has no rows to check")
        global_config = constraints.get("monitoring_config") or default_monitoring_config()
        base_stats = {f["name"]: f for f in statistics.get("features", [])}
        expected = [f["name"] for f in constraints["features"]]
        columns = [str(c) for c in frame.columns if str(c) not in self.ignore]
        violations = [
            _violation(
                name, "missing_column_check", f"column {name} is missing from the current data"
            )
            for name in expected
            if name not in columns
        ]
        violations += [
            _violation(
                name,
                "extra_column_check",
                f"column {name} is in the current data but not in the baseline",
            )
            for name in columns
            if name not in expected
        ]
        if global_config.get("evaluate_constraints", "Enabled") != "Enabled":
            return DataQualityResult(violations, [], {})
        present_features = [c for c in constraints["features"] if c["name"] in columns]
        current_stats = feature_statistics(frame, [c["name"] for c in present_features])
        measured = []
        for constraint in present_features:
            found, details = self._feature(
                frame[constraint["name"]],
                constraint,
                base_stats.get(constraint["name"], {}),
                _config_for(global_config, constraint),
            )
            violations += found
            measured.append(details)
        return DataQualityResult(violations, measured, current_stats)

    def _feature(
        self,
        series: pd.Series,
        constraint: Mapping[str, Any],
        base: Mapping[str, Any],
        config: Mapping[str, Any],
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        name = constraint["name"]
        kind = constraint.get("inferred_type", "Unknown")
        rows = len(series)
        present = int(series.notna().sum())
        completeness = present / rows
        details: dict[str, Any] = {"name": name, "completeness": completeness}
        found = []

        wanted = float(constraint.get("completeness", 0.0))
        tolerance = float(config.get("completeness_tolerance", 0.0))
        if completeness < wanted - tolerance - 1e-12:
            found.append(
                _violation(
                    name,
                    "completeness_check",
                    f"completeness {completeness:.4f} is below the constraint {wanted:.4f}"
                    + (f" minus tolerance {tolerance}" if tolerance else ""),
                )
            )
        if present == 0:
            return found, details

        bad = _nonconforming(series, kind)
        share = bad / present
        details["nonconforming_share"] = share
        if share > float(config.get("datatype_check_threshold", 0.1)):
            found.append(
                _violation(
                    name,
                    "data_type_check",
                    f"{share:.2%} of values ({bad} of {present}) are not {kind}, above the "
                    f"threshold {config.get('datatype_check_threshold')}",
                )
            )

        if kind in (INTEGRAL, FRACTIONAL):
            found += self._ranges(series, constraint, config, details)
        domain = (constraint.get("string_constraints") or {}).get("domains")
        if domain is not None:
            allowed = {_key(v) for v in domain}
            keys = series.dropna().map(_key)
            unknown = int((~keys.isin(allowed)).sum())
            share = unknown / present
            details["unknown_share"] = share
            if share > float(config.get("domain_content_threshold", 0.1)):
                examples = sorted(set(keys[~keys.isin(allowed)].head(1000)))[:5]
                found.append(
                    _violation(
                        name,
                        "categorical_values_check",
                        f"{share:.2%} of values ({unknown}) are outside the domain, above the "
                        f"threshold {config.get('domain_content_threshold')}; e.g. "
                        + ", ".join(examples),
                    )
                )
        found += self._distance(series, base, config, details)
        return found, details

    def _ranges(
        self,
        series: pd.Series,
        constraint: Mapping[str, Any],
        config: Mapping[str, Any],
        details: dict[str, Any],
    ) -> list[dict[str, Any]]:
        name = constraint["name"]
        nums = constraint.get("num_constraints") or {}
        values = numeric_values(series)
        if len(values) == 0:
            return []
        found = []
        if nums.get("is_non_negative") and values[0] < 0:
            negative = int(np.searchsorted(values, 0.0, side="left"))
            found.append(
                _violation(
                    name,
                    "value_range_check",
                    f"{negative} negative value(s) (min {values[0]:g}) where is_non_negative",
                )
            )
        lo, hi = nums.get("min"), nums.get("max")
        below = int(np.searchsorted(values, lo, side="left")) if lo is not None else 0
        above = (
            len(values) - int(np.searchsorted(values, hi, side="right")) if hi is not None else 0
        )
        share = (below + above) / len(values)
        details["out_of_range_share"] = share
        threshold = float(config.get("range_check_threshold", 0.01))
        if share > threshold:
            found.append(
                _violation(
                    name,
                    "value_range_check",
                    f"{share:.2%} of values are outside [{lo}, {hi}] ({below} below, {above} "
                    f"above), above the threshold {threshold}",
                )
            )
        return found

    def _distance(
        self,
        series: pd.Series,
        base: Mapping[str, Any],
        config: Mapping[str, Any],
        details: dict[str, Any],
    ) -> list[dict[str, Any]]:
        dist_config = config["distribution_constraints"]
        if dist_config.get("perform_comparison", "Enabled") != "Enabled" or not base:
            return []
        name = base["name"]
        n = base.get("num_present", 0)
        if base.get("drift_kind") == "numeric" and "sketch" in base:
            values = numeric_values(series)
            m = len(values)
            if m == 0 or n == 0:
                return []
            points = np.asarray(base["sketch"]["values"])
            base_cdf = np.asarray(base["sketch"]["cdf"])
            cur_cdf = np.searchsorted(values, points, side="right") / m
            simple = float(np.max(np.abs(cur_cdf - base_cdf)))
            method = dist_config.get("comparison_method", "Robust")
            distance = simple
            if method == "Robust":
                distance = max(0.0, simple - 1.8 * math.sqrt((n + m) / (n * m)))
            threshold = float(dist_config.get("comparison_threshold", 0.1))
            details.update({"distance": distance, "distance_method": f"linf_{method.lower()}"})
            if distance > threshold:
                return [
                    _violation(
                        name,
                        "baseline_drift_check",
                        f"L-infinity distance {distance:.4f} ({method}) between the baseline "
                        f"and current CDFs is above the threshold {threshold}",
                    )
                ]
            return []
        cats = base.get("categories")
        if cats is None or n == 0:
            return []
        base_counts = pd.Series(
            cats["counts"], index=[_key(v) for v in cats["values"]], dtype=float
        )
        base_counts = base_counts.groupby(level=0).sum()
        cur_counts = series.dropna().map(_key).value_counts().astype(float)
        if cur_counts.sum() == 0:
            return []
        index = base_counts.index.union(cur_counts.index)
        ref = base_counts.reindex(index, fill_value=0.0)
        cur = cur_counts.reindex(index, fill_value=0.0)
        threshold = float(
            dist_config.get(
                "categorical_comparison_threshold", dist_config.get("comparison_threshold", 0.1)
            )
        )
        method = dist_config.get("categorical_drift_method", "LInfinity")
        if method == "ChiSquared":
            table = np.vstack([ref.to_numpy(), cur.to_numpy()])
            table = table[:, table.sum(axis=0) > 0]
            p_value = 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table).pvalue)
            details.update({"distance": p_value, "distance_method": "chi_squared_p_value"})
            if p_value < threshold:
                return [
                    _violation(
                        name,
                        "baseline_drift_check",
                        f"chi-square p-value {p_value:.3g} is below the threshold {threshold}",
                    )
                ]
            return []
        distance = float(np.max(np.abs(ref / n - cur / cur.sum())))
        details.update({"distance": distance, "distance_method": "linf_categorical"})
        if distance > threshold:
            return [
                _violation(
                    name,
                    "baseline_drift_check",
                    f"largest change of a category's share {distance:.4f} is above the "
                    f"threshold {threshold}",
                )
            ]
        return []
