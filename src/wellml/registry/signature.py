"""Model signatures: the input columns and types a model expects, inferred from training data,
and the validation that holds every request to them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from wellml.errors import SchemaMismatch

LOGICAL_TYPES = ("integer", "float", "boolean", "string", "datetime")


@dataclass(frozen=True)
class ColumnSpec:
    """One input column: its name, logical type and whether training data had missing values."""

    name: str
    type: str
    nullable: bool = True
    categories: tuple[str, ...] | None = None  # the values seen in training, for strings


@dataclass(frozen=True)
class Signature:
    """What a model takes and returns."""

    inputs: tuple[ColumnSpec, ...]
    output: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Input column names in order."""
        return [c.name for c in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for storage and JSON."""
        return {
            "inputs": [
                {
                    "name": c.name,
                    "type": c.type,
                    "nullable": c.nullable,
                    **({"categories": list(c.categories)} if c.categories is not None else {}),
                }
                for c in self.inputs
            ],
            "output": self.output,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        """Inverse of :meth:`to_dict`."""
        return cls(
            inputs=tuple(
                ColumnSpec(
                    c["name"],
                    c["type"],
                    bool(c.get("nullable", True)),
                    tuple(c["categories"]) if c.get("categories") is not None else None,
                )
                for c in data.get("inputs", [])
            ),
            output=dict(data.get("output", {})),
        )


def logical_type(series: pd.Series) -> str:
    """The logical type of a column."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


def infer_signature(X: pd.DataFrame, y: Any = None, *, model: Any = None) -> Signature:
    """Infer a signature from training inputs (and optionally the target and fitted model).

    Raises:
        SchemaMismatch: ``X`` is not a DataFrame with string column names.
    """
    if not isinstance(X, pd.DataFrame):
        raise SchemaMismatch("a signature needs the training inputs as a pandas DataFrame")
    inputs = []
    for name in X.columns:
        if not isinstance(name, str):
            raise SchemaMismatch(f"column names must be strings, got {name!r}")
        col = X[name]
        kind = logical_type(col)
        cats = None
        if kind == "string":
            values = col.dropna().astype(str).unique()
            if len(values) <= 1000:
                cats = tuple(sorted(values))
        inputs.append(ColumnSpec(name, kind, bool(col.isna().any()), cats))
    output: dict[str, Any] = {}
    classes = getattr(model, "classes_", None)
    if classes is not None:
        output = {"type": "classification", "classes": [_plain(c) for c in classes]}
    elif y is not None:
        target = pd.Series(np.asarray(y))
        output = {"type": "regression" if logical_type(target) == "float" else "unknown"}
    return Signature(tuple(inputs), output)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def validate_frame(frame: pd.DataFrame, signature: Signature) -> pd.DataFrame:
    """Check request data against a signature and coerce it to the trained types.

    Extra columns are dropped; columns come back in signature order.

    Raises:
        SchemaMismatch: a required column is missing, a value cannot be read as its column's
            type, or a column that had no missing values in training has one now.
    """
    missing = [c.name for c in signature.inputs if c.name not in frame.columns]
    if missing:
        raise SchemaMismatch(f"missing input column(s): {', '.join(missing)}")
    out = {}
    problems = []
    for spec in signature.inputs:
        col = frame[spec.name]
        try:
            out[spec.name] = _coerce(col, spec.type)
        except (ValueError, TypeError):
            bad = _first_bad(col, spec.type)
            problems.append(f"{spec.name}: expected {spec.type}, got {bad!r}")
            continue
        if not spec.nullable and out[spec.name].isna().any():
            problems.append(f"{spec.name}: missing value in a column that never had one")
    if problems:
        raise SchemaMismatch("; ".join(problems))
    return pd.DataFrame(out, index=frame.index)


def _coerce(col: pd.Series, kind: str) -> pd.Series:
    if kind == "float":
        if col.dtype == object and col.map(lambda v: isinstance(v, bool)).any():
            raise ValueError("boolean in a numeric column")
        return pd.to_numeric(col, errors="raise").astype("float64")
    if kind == "integer":
        if col.dtype == object and col.map(lambda v: isinstance(v, bool)).any():
            raise ValueError("boolean in a numeric column")
        num = pd.to_numeric(col, errors="raise")
        if num.isna().any():
            return num.astype("float64")
        if not np.all(np.mod(num.to_numpy(dtype="float64"), 1) == 0):
            raise ValueError("not an integer")
        return num.astype("int64")
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(col):
            return col
        mapped = col.map(
            lambda v: (
                v
                if isinstance(v, bool)
                else {"true": True, "false": False, "1": True, "0": False}.get(str(v).lower())
            )
        )
        if mapped.isna().any() and not col.isna().equals(mapped.isna()):
            raise ValueError("not a boolean")
        return mapped
    if kind == "datetime":
        return pd.to_datetime(col, errors="raise")
    # Strings: numbers sent for a categorical column are read as their text.
    if col.map(lambda v: isinstance(v, (dict, list))).any():
        raise ValueError("nested value")
    return col.map(
        lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
    ).astype(object)


def _first_bad(col: pd.Series, kind: str) -> Any:
    for v in col:
        try:
            _coerce(pd.Series([v]), kind)
        except (ValueError, TypeError):
            return v
    return None
