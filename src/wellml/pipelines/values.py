"""How step outputs are stored: each as one content-addressed blob in a format that loads
without unpickling.

- None, bool, int, float, str, and lists and str-keyed dicts of those: ``json`` (tuples come
  back as lists; numpy scalars as Python numbers)
- :class:`~wellml.pipelines.definition.GateResult`: ``gate`` (JSON)
- bytes: ``bytes``, as they are
- pandas DataFrame (string column names): ``pandas``, Parquet
- pandas Series: ``pandas-series``, Parquet with one column
- Arrow table: ``arrow``, Parquet
- numpy array (not of Python objects): ``numpy``, ``.npy`` written and read without pickle
- scikit-learn estimator: ``skops``, loaded only from an allowlist of trusted modules

Anything else is refused with :class:`~wellml.errors.InvalidInput` naming the step.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from typing import Any

from wellml.errors import InvalidInput
from wellml.pipelines.definition import GateResult, canonical_json
from wellml.store.artifacts import ArtifactStore

SUPPORTED = (
    "None, bool, int, float, str, lists and str-keyed dicts of those (JSON), bytes, "
    "pandas DataFrame or Series and Arrow tables (Parquet), numpy arrays (.npy), "
    "scikit-learn estimators (skops) and GateResult"
)


@dataclass(frozen=True)
class StoredValue:
    """A step output in the artifact store."""

    digest: str
    format: str
    type: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {"digest": self.digest, "format": self.format, "type": self.type, "size": self.size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredValue:
        """Rebuild from :meth:`to_dict` output."""
        return cls(data["digest"], data["format"], data["type"], int(data["size"]))


def encode(value: Any, what: str) -> tuple[str, bytes]:
    """Serialise a value: its format name and bytes.

    Raises:
        InvalidInput: the type is not supported, or the value cannot be written in its format
            (e.g. a DataFrame with mixed-type columns), naming ``what``.
    """
    if isinstance(value, GateResult):
        return "gate", _json_bytes(value.to_dict(), what)
    if value is None or isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return "json", _json_bytes(value, what)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes", bytes(value)
    module = type(value).__module__.split(".", 1)[0]
    if module == "pandas":
        return _encode_pandas(value, what)
    if module == "pyarrow":
        import pyarrow as pa

        if isinstance(value, pa.Table):
            return "arrow", _parquet(value, what)
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            buf = io.BytesIO()
            try:
                np.save(buf, value, allow_pickle=False)
            except ValueError as exc:
                raise InvalidInput(f"{what}: cannot store the numpy array: {exc}") from None
            return "numpy", buf.getvalue()
        if isinstance(value, np.generic):
            return "json", _json_bytes(value.item(), what)
    if "sklearn.base" in sys.modules:
        from sklearn.base import BaseEstimator

        if isinstance(value, BaseEstimator):
            from wellml.registry.packaging import save_model

            try:
                return "skops", save_model(value)
            except InvalidInput as exc:
                raise InvalidInput(f"{what}: {exc}") from None
    raise InvalidInput(f"{what} returned a {type(value).__name__}; supported outputs: {SUPPORTED}")


def decode(fmt: str, data: bytes) -> Any:
    """Rebuild a value from its format name and bytes (never by unpickling).

    Raises:
        InvalidInput: an unknown format or unreadable bytes.
        PermissionDenied: a skops file naming a type outside the trusted modules.
    """
    if fmt == "json":
        return json.loads(data)
    if fmt == "gate":
        return GateResult.from_dict(json.loads(data))
    if fmt == "bytes":
        return data
    if fmt in ("pandas", "pandas-series", "arrow"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        if fmt == "arrow":
            return table
        frame = table.to_pandas()
        if fmt == "pandas-series":
            series = frame.iloc[:, 0]
            name = (table.schema.metadata or {}).get(b"wellml.series_name")
            series.name = None if name is None else json.loads(name)
            return series
        return frame
    if fmt == "numpy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "skops":
        from wellml.registry.packaging import load_model

        return load_model(data)
    raise InvalidInput(f"unknown stored output format {fmt!r}")


def store_value(store: ArtifactStore, value: Any, what: str) -> StoredValue:
    """Encode ``value`` and put it in the artifact store.

    Raises:
        InvalidInput: see :func:`encode`.
    """
    fmt, data = encode(value, what)
    digest = store.put_bytes(data)
    return StoredValue(digest, fmt, _type_name(value), len(data))


def load_value(store: ArtifactStore, stored: StoredValue) -> Any:
    """Read a stored output back.

    Raises:
        NotFound: the blob is missing.
        IntegrityError: the blob no longer matches its digest.
    """
    return decode(stored.format, store.get_bytes(stored.digest))


def _type_name(value: Any) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _json_bytes(value: Any, what: str) -> bytes:
    plain = canonical_json(value, f"{what} output")
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _encode_pandas(value: Any, what: str) -> tuple[str, bytes]:
    import pandas as pd
    import pyarrow as pa

    if isinstance(value, pd.Series):
        frame = value.to_frame(name="__series__" if value.name is None else str(value.name))
        try:
            table = pa.Table.from_pandas(frame)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise InvalidInput(f"{what}: cannot store the Series as Parquet: {exc}") from None
        meta = dict(table.schema.metadata or {})
        meta[b"wellml.series_name"] = json.dumps(value.name).encode()
        return "pandas-series", _parquet(table.replace_schema_metadata(meta), what)
    if isinstance(value, pd.DataFrame):
        if not all(isinstance(c, str) for c in value.columns):
            raise InvalidInput(f"{what}: DataFrame column names must be strings to store them")
        try:
            table = pa.Table.from_pandas(value)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise InvalidInput(f"{what}: cannot store the DataFrame as Parquet: {exc}") from None
        return "pandas", _parquet(table, what)
    raise InvalidInput(f"{what} returned a {type(value).__name__}; supported outputs: {SUPPORTED}")


def _parquet(table: Any, what: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    try:
        pq.write_table(table, buf)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(f"{what}: cannot write Parquet: {exc}") from None
    return buf.getvalue()
