"""Baseline statistics and suggested constraints of a table, in Model Monitor's shape.

:func:`feature_statistics` describes each column of a data frame: its inferred type (Model
Monitor's ``Integral``, ``Fractional``, ``String``, plus ``Boolean``), present and missing
counts, and its distribution: for numbers the moments, the range, ten equal-width buckets and a
cumulative sketch (the value at every percentile with the exact share of values at or below
it); for categories the counts of the most frequent values. :func:`suggest_constraints` turns
statistics into constraints a data-quality monitor checks; :func:`edit_constraints` applies
edits such as ``{"age.completeness": 0.95}``; :func:`export_statistics` and
:func:`export_constraints` write Model Monitor's ``statistics.json`` and
``constraints.json``.

Constraints are Model Monitor's, with two additions in ``num_constraints``: ``min`` and
``max``, the observed range, checked with a tolerated out-of-range share
(``monitoring_config.range_check_threshold``), and ``monitoring_config`` takes
``completeness_tolerance``, how far completeness may fall below the constraint.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from wellml.errors import InvalidInput

__all__ = [
    "BOOLEAN",
    "FRACTIONAL",
    "INTEGRAL",
    "STRING",
    "UNKNOWN",
    "ConstraintError",
    "default_monitoring_config",
    "edit_constraints",
    "export_constraints",
    "export_statistics",
    "feature_statistics",
    "inferred_type",
    "suggest_constraints",
]

INTEGRAL = "Integral"
FRACTIONAL = "Fractional"
STRING = "String"
BOOLEAN = "Boolean"
UNKNOWN = "Unknown"
TYPES = (INTEGRAL, FRACTIONAL, STRING, BOOLEAN, UNKNOWN)

HISTOGRAM_BUCKETS = 10  # Model Monitor's fixed bucket count
SKETCH_POINTS = 101  # percentiles 0..100
MAX_CATEGORIES = 1000  # category counts kept per feature; the rest are summed as "other"
MAX_DOMAIN = 50  # a domain constraint is suggested up to this many distinct values
# Integral columns with at most this many distinct values are codes (0/1 flags): drift tests
# treat them as categories, as :mod:`wellml.monitoring.drift` does.
MAX_CODE_VALUES = 2


class ConstraintError(InvalidInput, ValueError):
    """An edit that names an unknown feature or setting, or gives it a bad value."""


def default_monitoring_config() -> dict[str, Any]:
    """Model Monitor's ``monitoring_config`` defaults, with wellml's two additions."""
    return {
        "evaluate_constraints": "Enabled",
        "emit_metrics": "Enabled",
        "datatype_check_threshold": 0.1,
        "domain_content_threshold": 0.1,
        "range_check_threshold": 0.01,
        "completeness_tolerance": 0.0,
        "distribution_constraints": {
            "perform_comparison": "Enabled",
            "comparison_threshold": 0.1,
            "comparison_method": "Robust",
            "categorical_comparison_threshold": 0.1,
            "categorical_drift_method": "LInfinity",
        },
    }


# --------------------------------------------------------------------------------------------
# Statistics


def inferred_type(series: pd.Series) -> str:
    """The Model Monitor type of a column from its dtype (``Unknown`` for anything else)."""
    dtype = series.dtype
    if ptypes.is_bool_dtype(dtype):
        return BOOLEAN
    if ptypes.is_integer_dtype(dtype):
        return INTEGRAL
    if ptypes.is_float_dtype(dtype):
        return FRACTIONAL
    if (
        ptypes.is_string_dtype(dtype)
        or ptypes.is_object_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    ):
        return STRING
    return UNKNOWN


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _numeric_statistics(values: np.ndarray, kind: str) -> dict[str, Any]:
    """Moments, range, buckets and the cumulative sketch of non-null sorted values."""
    n = len(values)
    if n == 0:
        return {}
    lo, hi = float(values[0]), float(values[-1])
    if lo == hi:
        edges = np.linspace(lo - 0.5, hi + 0.5, HISTOGRAM_BUCKETS + 1)
    else:
        edges = np.linspace(lo, hi, HISTOGRAM_BUCKETS + 1)
    at = np.searchsorted(values, edges[1:-1], side="left")
    counts = np.diff(np.concatenate(([0], at, [n])))
    points = np.unique(np.quantile(values, np.linspace(0.0, 1.0, SKETCH_POINTS)))
    cdf = np.searchsorted(values, points, side="right") / n
    total = float(values.sum())
    return {
        "mean": _finite(total / n),
        "sum": _finite(total),
        "std_dev": _finite(float(values.std())),
        "min": int(lo) if kind == INTEGRAL else lo,
        "max": int(hi) if kind == INTEGRAL else hi,
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "sketch": {"values": [float(p) for p in points], "cdf": [float(c) for c in cdf]},
    }


def _category_key(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _categorical_statistics(series: pd.Series) -> dict[str, Any]:
    counts = series.value_counts(dropna=True, sort=True)
    counts = counts[counts > 0]
    kept = counts.iloc[:MAX_CATEGORIES]
    return {
        "distinct_count": len(counts),
        "categories": {
            "values": [_category_key(v) for v in kept.index],
            "counts": [int(c) for c in kept.to_numpy()],
        },
        "other_count": int(counts.iloc[MAX_CATEGORIES:].sum()),
    }


def numeric_values(series: pd.Series) -> np.ndarray:
    """A column's non-null values as sorted float64 (non-numbers dropped)."""
    if ptypes.is_numeric_dtype(series.dtype) and not ptypes.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(series.astype(object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    values = values[np.isfinite(values)]
    values.sort()
    return values


def feature_statistics(frame: pd.DataFrame, features: Sequence[str] | None = None) -> dict:
    """Statistics of the columns of ``frame``: ``{"dataset": {...}, "features": [...]}``.

    Each feature entry has ``name``, ``inferred_type``, ``drift_kind`` (``numeric`` or
    ``categorical``), ``num_present``, ``num_missing``, and for numbers ``mean``, ``sum``,
    ``std_dev``, ``min``, ``max``, ``histogram`` and ``sketch``; for categories (strings,
    booleans and integer codes) ``distinct_count``, ``categories`` and ``other_count``.

    Raises:
        InvalidInput: a named feature is not a column.
    """
    names = list(frame.columns) if features is None else list(features)
    missing = [f for f in names if f not in frame.columns]
    if missing:
        raise InvalidInput(f"the data has no column(s) {', '.join(map(str, missing))}")
    out = []
    for name in names:
        series = frame[name]
        kind = inferred_type(series)
        present = int(series.notna().sum())
        entry: dict[str, Any] = {
            "name": str(name),
            "inferred_type": kind,
            "drift_kind": "numeric" if kind in (INTEGRAL, FRACTIONAL) else "categorical",
            "num_present": present,
            "num_missing": len(series) - present,
        }
        if kind in (INTEGRAL, FRACTIONAL):
            values = numeric_values(series)
            entry.update(_numeric_statistics(values, kind))
            if kind == INTEGRAL and len(values) and _distinct_sorted(values) <= MAX_CODE_VALUES:
                entry["drift_kind"] = "categorical"
                entry.update(_categorical_statistics(series))
        elif kind in (STRING, BOOLEAN):
            entry.update(_categorical_statistics(series))
        out.append(entry)
    return {"dataset": {"item_count": len(frame)}, "features": out}


def _distinct_sorted(values: np.ndarray) -> int:
    return int(np.count_nonzero(np.diff(values))) + 1 if len(values) else 0


# --------------------------------------------------------------------------------------------
# Constraints


def suggest_constraints(statistics: Mapping[str, Any]) -> dict[str, Any]:
    """Constraints that the baseline data itself satisfies (Model Monitor's suggestion).

    Completeness is the observed share of non-null values; numbers get ``is_non_negative``
    and their observed ``min`` and ``max``; strings, booleans and codes with at most
    :data:`MAX_DOMAIN` distinct values (all of them counted) get their observed domain.
    """
    features = []
    for f in statistics["features"]:
        total = f["num_present"] + f["num_missing"]
        entry: dict[str, Any] = {
            "name": f["name"],
            "inferred_type": f["inferred_type"],
            "completeness": f["num_present"] / total if total else 1.0,
            "monitoringConfigOverrides": {},
        }
        if f["inferred_type"] in (INTEGRAL, FRACTIONAL) and f.get("min") is not None:
            entry["num_constraints"] = {
                "is_non_negative": bool(f["min"] >= 0),
                "min": f["min"],
                "max": f["max"],
            }
        cats = f.get("categories")
        if (
            cats is not None
            and f.get("other_count", 0) == 0
            and 0 < f.get("distinct_count", 0) <= MAX_DOMAIN
        ):
            entry["string_constraints"] = {"domains": list(cats["values"])}
        features.append(entry)
    return {"version": 0, "features": features, "monitoring_config": default_monitoring_config()}


_FEATURE_KEYS = ("completeness", "inferred_type", "is_non_negative", "min", "max", "domains")
_CONFIG_KEYS = {
    "datatype_check_threshold": "fraction",
    "domain_content_threshold": "fraction",
    "range_check_threshold": "fraction",
    "completeness_tolerance": "fraction",
    "evaluate_constraints": "switch",
    "emit_metrics": "switch",
}
_DISTRIBUTION_KEYS = {
    "perform_comparison": "switch",
    "comparison_threshold": "fraction",
    "categorical_comparison_threshold": "fraction",
    "comparison_method": ("Simple", "Robust"),
    "categorical_drift_method": ("LInfinity", "ChiSquared"),
}
CONFIG_PREFIX = "monitoring_config"


def _number(path: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConstraintError(f"{path} takes a number, not {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConstraintError(f"{path} takes a number, not {value!r}") from None
    if not math.isfinite(out):
        raise ConstraintError(f"{path} takes a finite number, not {value!r}")
    return out


def _fraction(path: str, value: Any) -> float:
    out = _number(path, value)
    if not 0.0 <= out <= 1.0:
        raise ConstraintError(f"{path} must be between 0 and 1, not {value!r}")
    return out


def _boolean(path: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ConstraintError(f"{path} takes true or false, not {value!r}")


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))


def _switch(path: str, value: Any) -> str:
    if isinstance(value, bool):
        return "Enabled" if value else "Disabled"
    text = str(value).strip().lower()
    if text in ("enabled", "true", "on", "yes"):
        return "Enabled"
    if text in ("disabled", "false", "off", "no"):
        return "Disabled"
    raise ConstraintError(f"{path} takes Enabled or Disabled, not {value!r}")


def _setting(path: str, kind: Any, value: Any) -> Any:
    if kind == "fraction":
        return _fraction(path, value)
    if kind == "switch":
        return _switch(path, value)
    choices = {c.lower(): c for c in kind}
    chosen = choices.get(str(value).strip().lower())
    if chosen is None:
        raise ConstraintError(f"{path} takes one of {', '.join(kind)}, not {value!r}")
    return chosen


def _domain(path: str, value: Any, kind: str) -> list[Any]:
    if isinstance(value, str):
        items: list[Any] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise ConstraintError(f"{path} takes a list of values or a comma-separated string")
    if not items:
        raise ConstraintError(f"{path} must name at least one value")
    if kind == INTEGRAL:
        try:
            return [int(v) for v in items]
        except (TypeError, ValueError):
            raise ConstraintError(
                f"{path}: the values of an Integral domain are integers"
            ) from None
    if kind == BOOLEAN:
        return [_boolean(path, v) for v in items]
    return items


def edit_constraints(constraints: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``constraints`` with ``changes`` applied; the input is not modified.

    Keys are ``FEATURE.SETTING`` with SETTING one of ``completeness`` (0–1),
    ``inferred_type``, ``is_non_negative``, ``min``, ``max`` (``None`` clears a bound) and
    ``domains`` (a list, or comma-separated text; ``None`` removes the domain), or
    ``monitoring_config.SETTING`` with SETTING one of ``datatype_check_threshold``,
    ``domain_content_threshold``, ``range_check_threshold``, ``completeness_tolerance``,
    ``evaluate_constraints``, ``emit_metrics`` or one of the distribution settings
    (``comparison_threshold``, ``categorical_comparison_threshold``, ``comparison_method``,
    ``categorical_drift_method``, ``perform_comparison``). Values may be given as text, as the
    CLI passes them.

    Raises:
        ConstraintError: no changes, an unknown feature or setting, or a bad value; nothing
            is changed then.
    """
    if not changes:
        raise ConstraintError("no changes given")
    out = copy.deepcopy(dict(constraints))
    by_name = {f["name"]: f for f in out["features"]}
    config = out.setdefault("monitoring_config", default_monitoring_config())
    for path, value in changes.items():
        target, dot, setting = str(path).rpartition(".")
        if not dot or not target or not setting:
            raise ConstraintError(f"{path!r} is not FEATURE.SETTING or {CONFIG_PREFIX}.SETTING")
        if target == CONFIG_PREFIX and target not in by_name:
            if setting in _CONFIG_KEYS:
                config[setting] = _setting(path, _CONFIG_KEYS[setting], value)
            elif setting in _DISTRIBUTION_KEYS:
                dist = config.setdefault("distribution_constraints", {})
                dist[setting] = _setting(path, _DISTRIBUTION_KEYS[setting], value)
            else:
                known = ", ".join([*_CONFIG_KEYS, *_DISTRIBUTION_KEYS])
                raise ConstraintError(f"unknown setting {path!r}; known: {known}")
            continue
        feature = by_name.get(target)
        if feature is None:
            raise ConstraintError(
                f"the constraints have no feature {target!r}; features: {', '.join(by_name)}"
            )
        _edit_feature(feature, path, setting, value)
    for f in out["features"]:
        nums = f.get("num_constraints") or {}
        lo, hi = nums.get("min"), nums.get("max")
        if lo is not None and hi is not None and lo > hi:
            raise ConstraintError(f"{f['name']}: min {lo} is above max {hi}")
    return out


def _edit_feature(feature: dict[str, Any], path: str, setting: str, value: Any) -> None:
    kind = feature.get("inferred_type", UNKNOWN)
    if setting == "completeness":
        feature["completeness"] = _fraction(path, value)
    elif setting == "inferred_type":
        chosen = {t.lower(): t for t in TYPES}.get(str(value).strip().lower())
        if chosen is None:
            raise ConstraintError(f"{path} takes one of {', '.join(TYPES)}, not {value!r}")
        feature["inferred_type"] = chosen
    elif setting in ("is_non_negative", "min", "max"):
        if kind not in (INTEGRAL, FRACTIONAL):
            raise ConstraintError(f"{path}: {feature['name']} is {kind}, not a number")
        nums = feature.setdefault("num_constraints", {})
        if setting == "is_non_negative":
            nums[setting] = _boolean(path, value)
        elif _is_none(value):
            nums[setting] = None
        else:
            number = _number(path, value)
            nums[setting] = int(number) if kind == INTEGRAL and number.is_integer() else number
    elif setting == "domains":
        if _is_none(value):
            feature.pop("string_constraints", None)
        else:
            feature["string_constraints"] = {"domains": _domain(path, value, kind)}
    else:
        raise ConstraintError(
            f"unknown setting {path!r}; a feature takes: {', '.join(_FEATURE_KEYS)}"
        )


# --------------------------------------------------------------------------------------------
# Model Monitor files


def _mm_type(kind: str) -> str:
    # Model Monitor knows no boolean type; booleans are strings there.
    return STRING if kind == BOOLEAN else kind


def export_statistics(statistics: Mapping[str, Any]) -> dict[str, Any]:
    """Statistics as Model Monitor's ``statistics.json``.

    The ``kll`` distribution holds the ten equal-width buckets; its ``sketch.data`` holds one
    level of items, the baseline's percentiles, which a reader can treat as a sketch of the
    distribution with equal weights.
    """
    features = []
    for f in statistics["features"]:
        common = {"num_present": f["num_present"], "num_missing": f["num_missing"]}
        entry: dict[str, Any] = {"name": f["name"], "inferred_type": _mm_type(f["inferred_type"])}
        if f["inferred_type"] in (INTEGRAL, FRACTIONAL):
            num: dict[str, Any] = {"common": common}
            if "mean" in f:
                hist = f["histogram"]
                edges, counts = hist["edges"], hist["counts"]
                num.update(
                    {
                        "mean": f["mean"],
                        "sum": f["sum"],
                        "std_dev": f["std_dev"],
                        "min": f["min"],
                        "max": f["max"],
                        "distribution": {
                            "kll": {
                                "buckets": [
                                    {"lower_bound": lo, "upper_bound": hi, "count": c}
                                    for lo, hi, c in zip(edges[:-1], edges[1:], counts)
                                ],
                                "sketch": {
                                    "parameters": {"c": None, "k": len(f["sketch"]["values"])},
                                    "data": [list(f["sketch"]["values"])],
                                },
                            }
                        },
                    }
                )
            entry["numerical_statistics"] = num
        else:
            cats = f.get("categories") or {"values": [], "counts": []}
            entry["string_statistics"] = {
                "common": common,
                "distinct_count": f.get("distinct_count", 0),
                "distribution": {
                    "categorical": {
                        "buckets": [
                            {"value": str(v), "count": c}
                            for v, c in zip(cats["values"], cats["counts"])
                        ]
                    }
                },
            }
        features.append(entry)
    return {
        "version": 0,
        "dataset": {"item_count": statistics["dataset"]["item_count"]},
        "features": features,
    }


def export_constraints(constraints: Mapping[str, Any]) -> dict[str, Any]:
    """Constraints as Model Monitor's ``constraints.json`` (wellml's extra keys kept)."""
    out = copy.deepcopy(dict(constraints))
    for f in out["features"]:
        if f.get("inferred_type") == BOOLEAN:
            f["inferred_type"] = STRING
            dom = f.get("string_constraints", {}).get("domains")
            if dom is not None:
                f["string_constraints"]["domains"] = [str(v).lower() for v in dom]
        f.setdefault("monitoringConfigOverrides", {})
    out.setdefault("monitoring_config", default_monitoring_config())
    out["version"] = 0
    return out
