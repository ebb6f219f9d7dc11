"""Profiles of tabular data: per-column type, missing and distinct counts, range, moments,
quantiles, top values and a 10-bucket histogram (the bucket count Model Monitor uses)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

QUANTILES: dict[str, float] = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.5,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}
TOP_N = 10
BUCKETS = 10
# Integer columns with at most this many distinct values also get top values.
_LOW_CARDINALITY = 50


@dataclass(frozen=True)
class ColumnProfile:
    """What one column holds."""

    name: str
    logical_type: str  # integer | float | boolean | string | datetime | other
    arrow_type: str
    count: int
    missing: int
    missing_fraction: float
    distinct: int
    min: Any = None
    max: Any = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    top_values: tuple[tuple[Any, int], ...] = ()
    histogram: dict[str, list[float]] | None = None


@dataclass(frozen=True)
class DatasetProfile:
    """A profile of every column of a table."""

    num_rows: int
    num_columns: int
    columns: tuple[ColumnProfile, ...]

    def column(self, name: str) -> ColumnProfile:
        """One column's profile.

        Raises:
            KeyError: no such column.
        """
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (NaN and infinities become None, times ISO strings)."""
        columns = [_json_safe(asdict(c)) for c in self.columns]
        for c in columns:
            c["top_values"] = [list(t) for t in c["top_values"]]
        return {"num_rows": self.num_rows, "num_columns": self.num_columns, "columns": columns}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetProfile:
        """Inverse of :meth:`to_dict`."""
        cols = []
        for c in data["columns"]:
            c = dict(c)
            c["top_values"] = tuple(tuple(t) for t in c.get("top_values") or ())
            c["quantiles"] = dict(c.get("quantiles") or {})
            cols.append(ColumnProfile(**c))
        return cls(int(data["num_rows"]), int(data["num_columns"]), tuple(cols))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (dt.datetime, dt.date, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return value


def logical_type(t: pa.DataType) -> str:
    """The logical type of an Arrow type."""
    if pa.types.is_dictionary(t):
        return logical_type(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "datetime"
    return "other"


def profile_table(table: pa.Table | pd.DataFrame) -> DatasetProfile:
    """Profile every column of a table (vectorised with Arrow compute)."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    cols = tuple(_profile_column(name, table.column(name)) for name in table.column_names)
    return DatasetProfile(table.num_rows, table.num_columns, cols)


def _profile_column(name: str, col: pa.ChunkedArray) -> ColumnProfile:
    kind = logical_type(col.type)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    n = len(col)
    if kind == "float":
        col = col.cast(pa.float64())
        # NaN is a missing value for profiling, as pandas treats it.
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, pa.float64()), col)
    missing = col.null_count
    present = n - missing
    try:
        distinct = int(pc.count_distinct(col, mode="only_valid").as_py())
    except pa.ArrowNotImplementedError:
        distinct = 0
    base: dict[str, Any] = {
        "name": name,
        "logical_type": kind,
        "arrow_type": str(col.type),
        "count": n,
        "missing": missing,
        "missing_fraction": missing / n if n else 0.0,
        "distinct": distinct,
    }
    if present == 0 or kind == "other":
        return ColumnProfile(**base)
    if kind in ("integer", "float"):
        return ColumnProfile(**base, **_numeric(col, kind, distinct))
    if kind == "datetime":
        return ColumnProfile(**base, **_datetime(col))
    return ColumnProfile(**base, top_values=_top(col))


def _numeric(col: pa.ChunkedArray, kind: str, distinct: int) -> dict[str, Any]:
    values = col.cast(pa.float64())
    mm = pc.min_max(values).as_py()
    lo, hi = mm["min"], mm["max"]
    qs = pc.quantile(values, q=list(QUANTILES.values()), interpolation="linear").to_pylist()
    std = pc.stddev(values, ddof=1).as_py()
    out: dict[str, Any] = {
        "min": int(lo) if kind == "integer" else lo,
        "max": int(hi) if kind == "integer" else hi,
        "mean": pc.mean(values).as_py(),
        "std": std,
        "quantiles": dict(zip(QUANTILES, qs, strict=True)),
        "histogram": _histogram(values, lo, hi),
    }
    if kind == "integer" and distinct <= _LOW_CARDINALITY:
        out["top_values"] = _top(col)
    return out


def _datetime(col: pa.ChunkedArray) -> dict[str, Any]:
    if pa.types.is_date(col.type):
        col = col.cast(pa.timestamp("ms"))
    millis = col.cast(pa.timestamp("ms", tz=col.type.tz)).cast(pa.int64()).cast(pa.float64())
    mm = pc.min_max(col).as_py()
    lo_ms, hi_ms = pc.min_max(millis).as_py().values()
    return {"min": mm["min"], "max": mm["max"], "histogram": _histogram(millis, lo_ms, hi_ms)}


def _histogram(values: pa.ChunkedArray, lo: float, hi: float) -> dict[str, list[float]]:
    arr = values.drop_null().to_numpy()
    if lo == hi:
        edges = np.linspace(lo - 0.5, hi + 0.5, BUCKETS + 1)
    else:
        edges = np.linspace(lo, hi, BUCKETS + 1)
    counts, _ = np.histogram(arr, bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _top(col: pa.ChunkedArray) -> tuple[tuple[Any, int], ...]:
    counts = pc.value_counts(col.drop_null()).to_pylist()
    counts.sort(key=lambda vc: (-vc["counts"], str(vc["values"])))
    return tuple((_json_safe(vc["values"]), int(vc["counts"])) for vc in counts[:TOP_N])


def diff_profiles(old: DatasetProfile, new: DatasetProfile) -> dict[str, Any]:
    """What changed between two profiles: columns added or removed, type changes, and the
    change in missing fraction per common column."""
    a = {c.name: c for c in old.columns}
    b = {c.name: c for c in new.columns}
    common = [n for n in b if n in a]
    return {
        "added": [n for n in b if n not in a],
        "removed": [n for n in a if n not in b],
        "type_changed": {
            n: [a[n].logical_type, b[n].logical_type]
            for n in common
            if a[n].logical_type != b[n].logical_type
        },
        "missing_fraction_change": {
            n: b[n].missing_fraction - a[n].missing_fraction for n in common
        },
        "rows": [old.num_rows, new.num_rows],
    }
