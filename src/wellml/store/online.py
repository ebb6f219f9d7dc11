"""Online feature stores: the latest feature values per entity key, served at low latency.

Every backend implements two primitives, in the style of Feast online stores and fsspec:

* :meth:`OnlineStore.write_batch` applies ``(entity key, feature values, event time)`` rows;
  per key the row with the latest *event time* wins, whatever order rows arrive in (a late,
  older row never overwrites a newer one, so backfills and replays are safe);
* :meth:`OnlineStore.read_batch` returns the stored values for many keys in one round trip.

The single-item calls :meth:`OnlineStore.write` and :meth:`OnlineStore.read` are template
methods on the base class that delegate to the primitives, so a backend has two methods to get
right, and one contract suite (:class:`wellml.testing.online.OnlineStoreContract`) checks them.

A write replaces the whole feature row of a key (it does not merge feature by feature): a
feature view is materialised as a unit, and merging would mix values of different event times.

Values are JSON-able scalars (``int``, ``float``, ``str``, ``bool``, ``None``) and come back with
the same Python type; floats round-trip exactly, NaN and infinities included. NumPy scalars are
accepted and stored as the equivalent Python scalar.

Backends:

* ``sqlite:///path/to/online.db`` → :class:`SQLiteOnlineStore` (embedded, one host);
* ``redis://host:6379/0`` (or ``rediss://``) → :class:`RedisOnlineStore` (shared, networked).
"""

from __future__ import annotations

import abc
import json
import math
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from json.encoder import encode_basestring
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from wellml.errors import BackendUnavailable, InvalidInput
from wellml.names import check_name

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CAPABILITIES",
    "OnlineStore",
    "RedisOnlineStore",
    "Row",
    "SQLiteOnlineStore",
    "open_online_store",
]

Row = tuple[tuple[Any, ...], Mapping[str, Any], float]
"""One write: ``(entity key tuple, {feature: value}, event time in epoch seconds)``."""

# What a backend can promise; callers check ``"shared" in store.capabilities`` and so on.
CAPABILITIES: dict[str, str] = {
    "event_time": "last write by event time wins; older rows are ignored",
    "delete_view": "a whole feature view can be dropped",
    "persistent": "data outlives the process",
    "multi_process": "several processes on one host may read and write at the same time",
    "shared": "several hosts may read and write at the same time (networked server)",
}

# Feature names starting with this are reserved for the store (Redis keeps ``__ts`` in the hash).
_RESERVED_PREFIX = "__"
_TS_FIELD = "__ts"
_EXACT_SCALARS = frozenset({str, int, float, bool, type(None)})


# --------------------------------------------------------------------------------------------
# validation shared by every backend (done once, before any backend-specific work)


def _scalar(value: Any, what: str) -> Any:
    """Return ``value`` as an exact JSON-able Python scalar, or raise ``InvalidInput``."""
    # The exact-type check is the fast path; subclasses (numpy.float64, IntEnum, str enums) are
    # normalised so that the stored type is the plain Python one the reader gets back.
    if type(value) in _EXACT_SCALARS:
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    item = getattr(value, "item", None)  # NumPy scalars: .item() gives the Python scalar
    if callable(item) and getattr(value, "shape", None) == ():
        plain = item()
        if type(plain) in _EXACT_SCALARS:
            return plain
    raise InvalidInput(
        f"{what} must be an int, float, str, bool or None, got {type(value).__name__}: "
        f"{value!r:.80}"
    )


def _check_view(view: str) -> str:
    # View names become part of Redis keys and glob patterns: the name rules keep ':', '*',
    # '?', '[' and spaces out, so one view's keys can never match another view's pattern.
    return check_name(view, "feature view name")


# Keys are the compact JSON of the key tuple. One prebuilt encoder for the general case
# (json.dumps with options builds a new encoder per call), and a hand-rolled path for the
# common int/str parts that gives the same text 4-6x faster, since every read encodes keys.
_dumps_key = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_json_str = encode_basestring  # the escaper JSONEncoder(ensure_ascii=False) uses
_int_text = int.__repr__  # what JSONEncoder writes for an int (and not a subclass's repr)


def _encode_key(key: Any) -> str:
    """Encode an entity key tuple deterministically (compact JSON of the list)."""
    if type(key) is not tuple:
        if not isinstance(key, tuple | list):
            raise InvalidInput(f"an entity key must be a non-empty tuple, got {key!r:.80}")
        key = tuple(key)
    if not key:
        raise InvalidInput("an entity key must be a non-empty tuple, got ()")
    parts = []
    for part in key:
        kind = type(part)
        if kind is int:
            parts.append(_int_text(part))
        elif kind is str:
            parts.append(_json_str(part))
        else:
            # floats, bools, None, NumPy scalars: validate, then let JSON spell them.
            # JSON keeps 1, 1.0, True and "1" apart, so distinct keys never collide.
            return _dumps_key(tuple(_scalar(p, "an entity key part") for p in key))
    return "[" + ",".join(parts) + "]"


def _check_values(values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise InvalidInput(f"feature values must be a mapping, got {type(values).__name__}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if type(name) is not str or not name or name.startswith(_RESERVED_PREFIX):
            raise InvalidInput(
                f"invalid feature name {name!r}: use a non-empty string not starting with "
                f"{_RESERVED_PREFIX!r}"
            )
        out[name] = value if type(value) in _EXACT_SCALARS else _scalar(value, f"feature {name}")
    return out


def _check_ts(ts: Any) -> float:
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise InvalidInput(f"an event time must be epoch seconds (int or float), got {ts!r:.80}")
    ts = float(ts)
    if not math.isfinite(ts):  # NaN would make every "newer than" comparison false
        raise InvalidInput(f"an event time must be finite, got {ts!r}")
    return ts


def _check_rows(rows: Sequence[Any]) -> list[tuple[str, dict[str, Any], float]]:
    """Validate every row before writing any, so a bad row never leaves a half-written batch."""
    checked = []
    for i, row in enumerate(rows):
        if not isinstance(row, tuple | list) or len(row) != 3:
            raise InvalidInput(f"row {i} must be (key tuple, values mapping, event time)")
        key, values, ts = row
        checked.append((_encode_key(key), _check_values(values), _check_ts(ts)))
    return checked


def _check_features(features: Sequence[str] | None) -> list[str] | None:
    if features is None:
        return None
    if isinstance(features, str):  # a str is a Sequence[str]; "abc" meaning 3 features is a bug
        raise InvalidInput("features must be a list of names, not one string")
    names = list(features)
    for name in names:
        if type(name) is not str:
            raise InvalidInput(f"a feature name must be a string, got {name!r:.80}")
    return names


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _table_times(
    table: Any,
    key_columns: Sequence[str],
    timestamp_column: str,
    feature_columns: Sequence[str],
) -> list[float]:
    """Validate a table for :meth:`OnlineStore.write_table`; return its event times."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(table, pa.Table):
        raise InvalidInput(f"write_table needs an Arrow table, got {type(table).__name__}")
    keys = _check_features(key_columns) or []
    if not keys:
        raise InvalidInput("write_table needs at least one key column")
    names = _check_features(feature_columns) or []
    for column in (*keys, timestamp_column, *names):
        if column not in table.column_names:
            raise InvalidInput(f"write_table: column {column!r} is missing")
    for column in (*keys, *names):
        t = table.column(column).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if not (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_boolean(t)
            or (pa.types.is_null(t) and column in names)
        ):
            what = "key" if column in keys else "feature"
            raise InvalidInput(f"write_table: {what} column {column!r} has unsupported type {t}")
    for key in keys:
        if table.column(key).null_count:
            raise InvalidInput(f"write_table: key column {key!r} has NULLs")
    ts = table.column(timestamp_column)
    if not pa.types.is_timestamp(ts.type):
        raise InvalidInput(
            f"write_table: timestamp column {timestamp_column!r} must be a timestamp, got {ts.type}"
        )
    if ts.null_count:
        raise InvalidInput(f"write_table: timestamp column {timestamp_column!r} has NULLs")
    micros = ts.cast(pa.timestamp("us", tz=ts.type.tz)).cast(pa.int64())
    times: list[float] = pc.divide(micros.cast(pa.float64()), 1e6).to_pylist()
    return times


def _decoded(column: Any) -> Any:
    import pyarrow as pa

    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


_CONTROL = r"[\x00-\x1f]"


def _json_column(column: Any) -> Any:
    """A column's values as JSON texts (an Arrow string array), computed in bulk.

    The texts decode to exactly the values :data:`_dumps_row` writes: floats keep a fraction
    or exponent so they read back as floats (a shortest round-trip form, so the same double),
    NaN and the infinities use the tokens Python's JSON codec reads, and NULL is ``null``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    column = _decoded(column)
    t = column.type
    if pa.types.is_floating(t):
        text = column.cast(pa.float64()).cast(pa.string())
        whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
        text = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
        for token, json_token in (("nan", "NaN"), ("inf", "Infinity"), ("-inf", "-Infinity")):
            text = pc.if_else(pc.equal(text, token), json_token, text)
    elif pa.types.is_integer(t):
        text = column.cast(pa.string())
    elif pa.types.is_boolean(t):
        text = pc.if_else(column, "true", "false")
    elif pa.types.is_null(t):
        text = pa.nulls(len(column), pa.string())
    else:
        strings = column.cast(pa.string())
        if pc.any(pc.match_substring_regex(strings, _CONTROL)).as_py():
            return pa.array(
                [_json_str(v) if v is not None else "null" for v in strings.to_pylist()]
            )
        escaped = pc.replace_substring(strings, "\\", "\\\\")
        escaped = pc.replace_substring(escaped, '"', '\\"')
        text = pc.binary_join_element_wise('"', escaped, '"', "")
    return pc.fill_null(text, "null")


def _encode_table_rows(
    table: Any, keys: Sequence[str], names: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Encoded keys and JSON value rows of a whole table, as write_batch would store them."""
    import pyarrow.compute as pc

    parts: list[Any] = ["["]
    for i, key in enumerate(keys):
        if i:
            parts.append(",")
        parts.append(_json_column(table.column(key)))
    parts.append("]")
    encoded_keys = pc.binary_join_element_wise(*parts, "").to_pylist()
    if not names:
        return encoded_keys, ["{}"] * len(encoded_keys)
    parts = []
    for i, name in enumerate(names):
        parts.append(("{" if i == 0 else ",") + _json_str(name) + ":")
        parts.append(_json_column(table.column(name)))
    parts.append("}")
    return encoded_keys, pc.binary_join_element_wise(*parts, "").to_pylist()


# --------------------------------------------------------------------------------------------
# the protocol


class OnlineStore(abc.ABC):
    """The latest feature values per (feature view, entity key).

    Subclasses implement :meth:`write_batch`, :meth:`read_batch`, :meth:`delete_view` and
    :meth:`close`; the single-item calls delegate to the batch primitives. A store may be used
    from several threads at once. It is also a context manager that closes itself.
    """

    #: Names from :data:`CAPABILITIES` the backend promises.
    capabilities: frozenset[str] = frozenset()

    @abc.abstractmethod
    def write_batch(
        self, view: str, rows: Sequence[tuple[tuple[Any, ...], Mapping[str, Any], float]]
    ) -> int:
        """Apply rows to a feature view; per key, the latest event time wins.

        A row whose event time is older than the one stored for its key is ignored; an equal
        event time overwrites (so a re-run of the same materialisation is idempotent). Rows of
        one batch are applied in order, so the later of two equal-time rows for a key wins. A
        row replaces the whole feature row of its key.

        Args:
            view: The feature view name (letters, digits, ``_``, ``.``, ``-``).
            rows: ``(entity key tuple, {feature: value}, event time in epoch seconds)``.

        Returns:
            How many rows were applied (rows not ignored as older).

        Raises:
            InvalidInput: a bad view name, key, feature name, value or event time; nothing of
                the batch is written.
            BackendUnavailable: the backend cannot be reached.
        """

    @abc.abstractmethod
    def read_batch(
        self, view: str, keys: Sequence[tuple[Any, ...]], features: Sequence[str] | None = None
    ) -> list[dict[str, Any] | None]:
        """Return the stored feature values for many keys, in key order.

        Args:
            view: The feature view name.
            keys: Entity key tuples; duplicates are allowed.
            features: The features to return; ``None`` returns every stored feature. A
                requested feature the row does not have comes back as ``None``.

        Returns:
            One fresh dict per key, or ``None`` where the key has never been written.

        Raises:
            InvalidInput: a bad view name, key or feature list.
            BackendUnavailable: the backend cannot be reached.
        """

    @abc.abstractmethod
    def read_batch_with_times(
        self, view: str, keys: Sequence[tuple[Any, ...]], features: Sequence[str] | None = None
    ) -> list[tuple[dict[str, Any], float] | None]:
        """As :meth:`read_batch`, with the event time of each row found, in one round trip.

        Returns:
            ``(values, event time in epoch seconds)`` per key, or ``None`` where the key has
            never been written. Callers use the time to apply a freshness limit (a TTL).

        Raises:
            InvalidInput: a bad view name, key or feature list.
            BackendUnavailable: the backend cannot be reached.
        """

    @abc.abstractmethod
    def delete_view(self, view: str) -> None:
        """Delete every row of a feature view (a no-op for an unknown view).

        Raises:
            InvalidInput: a bad view name.
            BackendUnavailable: the backend cannot be reached.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store must not be used afterwards. Idempotent."""

    def write_table(
        self,
        view: str,
        table: pa.Table,
        *,
        key_columns: Sequence[str],
        timestamp_column: str,
        feature_columns: Sequence[str],
        chunk_rows: int = 50_000,
    ) -> int:
        """Apply every row of an Arrow table, as :meth:`write_batch` would.

        Keys come from ``key_columns``, the event time from ``timestamp_column`` (an Arrow
        timestamp of any unit; without a time zone it is taken as UTC) and the values from
        ``feature_columns``. The columns are converted in bulk and written in chunks of
        ``chunk_rows`` rows, each chunk one :meth:`write_batch`.

        Returns:
            How many rows were applied (rows not ignored as older).

        Raises:
            InvalidInput: a missing column, a key or value column of a type other than
                integer, float, string or boolean, a non-timestamp or NULL event time, or a
                bad view name; nothing is written.
            BackendUnavailable: the backend cannot be reached.
        """
        _check_view(view)
        times = _table_times(table, key_columns, timestamp_column, feature_columns)
        keys = [_decoded(table.column(k)).to_pylist() for k in key_columns]
        names = list(feature_columns)
        values = [_decoded(table.column(f)).to_pylist() for f in names]
        applied = 0
        for start in range(0, table.num_rows, chunk_rows):
            stop = min(start + chunk_rows, table.num_rows)
            rows = [
                (
                    tuple(k[i] for k in keys),
                    {name: vals[i] for name, vals in zip(names, values)},
                    times[i],
                )
                for i in range(start, stop)
            ]
            applied += self.write_batch(view, rows)
        return applied

    def write(self, view: str, key: tuple[Any, ...], values: Mapping[str, Any], ts: float) -> bool:
        """Write one row; return whether it was applied (False: older than the stored one).

        Raises:
            InvalidInput, BackendUnavailable: as :meth:`write_batch`.
        """
        return self.write_batch(view, [(key, values, ts)]) == 1

    def read(
        self, view: str, key: tuple[Any, ...], features: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """Return the feature values of one key, or ``None`` if it was never written.

        Raises:
            InvalidInput, BackendUnavailable: as :meth:`read_batch`.
        """
        return self.read_batch(view, [key], features)[0]

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# SQLite

# Encoding: one compact JSON object per row (stdlib C codec). JSON keeps int, float, bool, str
# and null apart; Python writes floats with the shortest repr that round-trips exactly, and
# its non-standard NaN/Infinity tokens are read back by the same codec.
_dumps_row = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode
_loads_row = json.JSONDecoder().decode

# Well below SQLite's bound-parameter limit (32766 since 3.32, 999 before) on every build.
_SQLITE_IN_CHUNK = 500

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_features (
    view TEXT NOT NULL,
    key TEXT NOT NULL,
    vals TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (view, key)
) WITHOUT ROWID
"""

# ``WHERE excluded.ts >= ts`` makes the conflict update a no-op for an older row, atomically
# inside SQLite, so concurrent writers (threads or processes) can never regress a key.
_SQLITE_UPSERT = """
INSERT INTO online_features (view, key, vals, ts) VALUES (?, ?, ?, ?)
ON CONFLICT (view, key) DO UPDATE SET vals = excluded.vals, ts = excluded.ts
WHERE excluded.ts >= online_features.ts
"""


class SQLiteOnlineStore(OnlineStore):
    """An online store in one SQLite file: embedded, no server, for one host.

    One table holds every view, keyed by (view, encoded entity key) — ``WITHOUT ROWID`` so a
    lookup is one B-tree descent. WAL mode lets readers run while a writer commits, and
    several processes may share the file.
    """

    capabilities = frozenset({"event_time", "delete_view", "persistent", "multi_process"})

    def __init__(self, path: str | Path) -> None:
        """Open (creating if needed) the database file at ``path``.

        Raises:
            BackendUnavailable: the file cannot be opened or created.
        """
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # One connection guarded by a lock: the serving path is short, single-statement
            # reads, and a shared connection keeps SQLite's page cache warm for every thread.
            # Autocommit mode (isolation_level=None) so transactions are explicit below.
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is safe in WAL (no corruption; a power cut may lose the last commits),
            # which is the right trade for a cache that is rebuilt by materialisation.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SQLITE_SCHEMA)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"cannot open SQLite online store {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteOnlineStore({self.path!r})"

    def write_batch(
        self, view: str, rows: Sequence[tuple[tuple[Any, ...], Mapping[str, Any], float]]
    ) -> int:
        _check_view(view)
        return self._upsert(
            [(view, key, _dumps_row(vals), ts) for key, vals, ts in _check_rows(rows)]
        )

    def write_table(
        self,
        view: str,
        table: pa.Table,
        *,
        key_columns: Sequence[str],
        timestamp_column: str,
        feature_columns: Sequence[str],
        chunk_rows: int = 50_000,
    ) -> int:
        _check_view(view)
        times = _table_times(table, key_columns, timestamp_column, feature_columns)
        for name in feature_columns:
            _check_values({name: None})
        encoded_keys, rows = _encode_table_rows(table, list(key_columns), list(feature_columns))
        applied = 0
        for start in range(0, len(rows), chunk_rows):
            stop = start + chunk_rows
            params = [
                (view, k, v, t)
                for k, v, t in zip(encoded_keys[start:stop], rows[start:stop], times[start:stop])
            ]
            applied += self._upsert(params)
        return applied

    def _upsert(self, params: list[tuple[str, str, str, float]]) -> int:
        """Apply encoded rows in one transaction; return how many were applied."""
        if not params:
            return 0
        with self._lock:
            conn = self._connection()
            try:
                # IMMEDIATE takes the write lock up front, so a busy file waits on `timeout`
                # instead of failing half way through the batch.
                conn.execute("BEGIN IMMEDIATE")
                cur = conn.executemany(_SQLITE_UPSERT, params)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise BackendUnavailable(f"SQLite online store {self.path}: {exc}") from exc
            # rowcount sums changes over executemany; a skipped (older) upsert changes nothing.
            return cur.rowcount

    def _fetch(
        self, view: str, keys: Sequence[tuple[Any, ...]]
    ) -> tuple[list[str], dict[str, tuple[str, float]]]:
        _check_view(view)
        encoded = [_encode_key(key) for key in keys]
        unique = list(dict.fromkeys(encoded))
        found: dict[str, tuple[str, float]] = {}
        with self._lock:
            conn = self._connection()
            try:
                for chunk in _chunks(unique, _SQLITE_IN_CHUNK):
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT key, vals, ts FROM online_features "
                        f"WHERE view = ? AND key IN ({marks})",
                        (view, *chunk),
                    ).fetchall()
                    for key, vals, ts in rows:
                        found[key] = (vals, ts)
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"SQLite online store {self.path}: {exc}") from exc
        return encoded, found

    def read_batch(
        self, view: str, keys: Sequence[tuple[Any, ...]], features: Sequence[str] | None = None
    ) -> list[dict[str, Any] | None]:
        names = _check_features(features)
        encoded, found = self._fetch(view, keys)
        out: list[dict[str, Any] | None] = []
        for key in encoded:
            hit = found.get(key)
            if hit is None:
                out.append(None)
                continue
            # Decode per position, not per unique key, so duplicate keys get separate dicts.
            values = _loads_row(hit[0])
            out.append(values if names is None else {n: values.get(n) for n in names})
        return out

    def read_batch_with_times(
        self, view: str, keys: Sequence[tuple[Any, ...]], features: Sequence[str] | None = None
    ) -> list[tuple[dict[str, Any], float] | None]:
        names = _check_features(features)
        encoded, found = self._fetch(view, keys)
        out: list[tuple[dict[str, Any], float] | None] = []
        for key in encoded:
            hit = found.get(key)
            if hit is None:
                out.append(None)
                continue
            values = _loads_row(hit[0])
            out.append((values if names is None else {n: values.get(n) for n in names}, hit[1]))
        return out

    def delete_view(self, view: str) -> None:
        _check_view(view)
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("DELETE FROM online_features WHERE view = ?", (view,))
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"SQLite online store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise BackendUnavailable(f"{self!r} is closed")
        return self._conn


# --------------------------------------------------------------------------------------------
# Redis

# Encoding of one hash field: a one-character type tag plus text — ``N`` None, ``T``/``F``
# bool, ``i<int>``, ``d<float repr>``, ``s<str>``. It is compact and decodes with one dict
# lookup and one int()/float() call, several times faster than a JSON parse per field; floats
# use repr (the shortest exact round-trip, ``nan``/``inf`` included).
_BOOL_TEXT = {True: "T", False: "F"}


def _encode_field(value: Any) -> str:
    kind = type(value)
    if kind is float:
        return "d" + repr(value)
    if kind is str:
        return "s" + value
    if kind is bool:
        return _BOOL_TEXT[value]
    if kind is int:
        return "i" + str(value)
    return "N"  # None: values were validated by _check_values


def _field_column(column: Any) -> list[str]:
    """A column's values as :func:`_encode_field` texts, computed in bulk."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = _decoded(column)
    t = column.type
    if pa.types.is_floating(t):
        # Any round-trip text of a double parses back to the same double.
        text = pc.binary_join_element_wise("d", column.cast(pa.float64()).cast(pa.string()), "")
    elif pa.types.is_integer(t):
        text = pc.binary_join_element_wise("i", column.cast(pa.string()), "")
    elif pa.types.is_boolean(t):
        text = pc.if_else(column, "T", "F")
    elif pa.types.is_null(t):
        text = pa.nulls(len(column), pa.string())
    else:
        text = pc.binary_join_element_wise("s", column.cast(pa.string()), "")
    values: list[str] = pc.fill_null(text, "N").to_pylist()
    return values


def _decode_field(text: str | None) -> Any:
    if text is None:
        return None
    tag = text[0]
    if tag == "d":
        return float(text[1:])
    if tag == "s":
        return text[1:]
    if tag == "i":
        return int(text[1:])
    if tag == "T":
        return True
    if tag == "F":
        return False
    return None


# Why a Lua script: "keep the newer event time" is a read-compare-write, which must be atomic
# against other writers. A script runs atomically on the server in one round trip per chunk,
# with no WATCH/retry loop that would thrash under contention. One call handles many keys
# (fine on a standalone server or Sentinel; a Redis Cluster would need keys of one hash slot).
#
# ARGV layout per key: event time, number of fields n, then n (field, value) pairs. A key is
# replaced (DEL + HSET) when it has no __ts yet or the stored __ts <= the new one.
_WRITE_SCRIPT = """
local applied = 0
local i = 1
for k = 1, #KEYS do
    local ts = ARGV[i]
    local n = tonumber(ARGV[i + 1])
    local cur = redis.call('HGET', KEYS[k], '__ts')
    if (not cur) or tonumber(cur) <= tonumber(ts) then
        redis.call('DEL', KEYS[k])
        redis.call('HSET', KEYS[k], '__ts', ts)
        local j = i + 2
        local last = i + 1 + 2 * n
        while j <= last do
            -- HSET in slices: unpack() of a very wide row would overflow Lua's C stack
            local stop = math.min(j + 399, last)
            redis.call('HSET', KEYS[k], unpack(ARGV, j, stop))
            j = stop + 1
        end
        applied = applied + 1
    end
    i = i + 2 + 2 * n
end
return applied
"""

# Rows per script call: big enough to amortise the call, small enough that one call keeps the
# single-threaded server busy for about a millisecond at most (other clients wait meanwhile).
_REDIS_WRITE_CHUNK = 256
_REDIS_DELETE_CHUNK = 500


def _redact(url: str) -> str:
    """Return the URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class RedisOnlineStore(OnlineStore):
    """An online store on a Redis server, shared by every host that can reach it.

    One hash per (view, entity key) at ``{prefix}:{view}:{encoded key}``: a field per feature
    plus ``__ts``, the event time of the stored row. Writes go through a server-side Lua script
    (atomic keep-the-newer, see ``_WRITE_SCRIPT``); reads are one pipeline of HMGET/HGETALL.
    """

    capabilities = frozenset({"event_time", "delete_view", "persistent", "multi_process", "shared"})

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "wellml") -> None:
        """Connect to the Redis server at ``url`` and check that it answers.

        Args:
            url: A redis-py URL (``redis://``, ``rediss://``, ``unix://``), database included.
            prefix: Namespace of every key this store writes; stores with different prefixes
                on one database do not see each other.

        Raises:
            BackendUnavailable: redis-py is not installed, or the server cannot be reached.
            InvalidInput: an empty prefix or one with glob characters.
        """
        try:
            import redis
        except ImportError as exc:
            raise BackendUnavailable(
                "the Redis online store needs redis-py: pip install 'wellml[redis]'"
            ) from exc
        if not prefix or any(c in prefix for c in "*?[]\\ "):
            raise InvalidInput(f"invalid Redis key prefix {prefix!r}: no glob characters")
        self.url = url
        self.prefix = prefix
        self._redis_errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        try:
            self._client = redis.Redis.from_url(
                url, decode_responses=True, socket_connect_timeout=5, health_check_interval=30
            )
        except ValueError as exc:
            raise InvalidInput(f"invalid Redis URL {_redact(url)}: {exc}") from exc
        try:
            self._client.ping()
        except self._redis_errors as exc:
            self._client.close()
            raise BackendUnavailable(
                f"cannot reach Redis at {_redact(url)}: {exc}; is the server running?"
            ) from exc
        self._write_script = self._client.register_script(_WRITE_SCRIPT)

    def __repr__(self) -> str:
        return f"RedisOnlineStore({_redact(self.url)!r}, prefix={self.prefix!r})"

    def _key(self, view: str, encoded: str) -> str:
        return f"{self.prefix}:{view}:{encoded}"

    def write_batch(
        self, view: str, rows: Sequence[tuple[tuple[Any, ...], Mapping[str, Any], float]]
    ) -> int:
        _check_view(view)
        checked = _check_rows(rows)
        if not checked:
            return 0
        try:
            pipe = self._client.pipeline(transaction=False)
            for chunk in _chunks(checked, _REDIS_WRITE_CHUNK):
                keys: list[str] = []
                args: list[str] = []
                for encoded, values, ts in chunk:
                    keys.append(self._key(view, encoded))
                    args.append(repr(ts))  # repr: the exact double, which Lua compares exactly
                    args.append(str(len(values)))
                    for name, value in values.items():
                        args.append(name)
                        args.append(_encode_field(value))
                self._write_script(keys=keys, args=args, client=pipe)
            return sum(int(n) for n in pipe.execute())
        except self._redis_errors as exc:
            raise BackendUnavailable(f"Redis at {_redact(self.url)}: {exc}") from exc

    def write_table(
        self,
        view: str,
        table: pa.Table,
        *,
        key_columns: Sequence[str],
        timestamp_column: str,
        feature_columns: Sequence[str],
        chunk_rows: int = 50_000,
    ) -> int:
        _check_view(view)
        times = _table_times(table, key_columns, timestamp_column, feature_columns)
        names = list(feature_columns)
        for name in names:
            _check_values({name: None})
        encoded_keys, _rows = _encode_table_rows(table, list(key_columns), [])
        fields = [_field_column(table.column(name)) for name in names]
        count = str(len(names))
        applied = 0
        try:
            for start in range(0, len(encoded_keys), chunk_rows):
                stop = min(start + chunk_rows, len(encoded_keys))
                pipe = self._client.pipeline(transaction=False)
                for lo in range(start, stop, _REDIS_WRITE_CHUNK):
                    hi = min(lo + _REDIS_WRITE_CHUNK, stop)
                    keys = [self._key(view, k) for k in encoded_keys[lo:hi]]
                    args: list[str] = []
                    for i in range(lo, hi):
                        args.append(repr(times[i]))
                        args.append(count)
                        for name, column in zip(names, fields):
                            args.append(name)
                            args.append(column[i])
                    self._write_script(keys=keys, args=args, client=pipe)
                applied += sum(int(n) for n in pipe.execute())
        except self._redis_errors as exc:
            raise BackendUnavailable(f"Redis at {_redact(self.url)}: {exc}") from exc
        return applied

    def _fetch(
        self, view: str, keys: Sequence[tuple[Any, ...]], names: list[str] | None
    ) -> list[tuple[dict[str, Any], float] | None]:
        _check_view(view)
        redis_keys = [self._key(view, _encode_key(key)) for key in keys]
        if not redis_keys:
            return []
        try:
            pipe = self._client.pipeline(transaction=False)
            if names is None:
                for key in redis_keys:
                    pipe.hgetall(key)
            else:
                fields = [_TS_FIELD, *names]  # __ts first: it tells "unknown key" apart
                for key in redis_keys:
                    pipe.hmget(key, fields)
            replies = pipe.execute()
        except self._redis_errors as exc:
            raise BackendUnavailable(f"Redis at {_redact(self.url)}: {exc}") from exc
        out: list[tuple[dict[str, Any], float] | None] = []
        if names is None:
            for reply in replies:
                if not reply:  # every written key has __ts, so an empty hash is no key
                    out.append(None)
                    continue
                values = {f: _decode_field(v) for f, v in reply.items() if f != _TS_FIELD}
                out.append((values, float(reply[_TS_FIELD])))
        else:
            for reply in replies:
                if reply[0] is None:
                    out.append(None)
                    continue
                values = {n: _decode_field(v) for n, v in zip(names, reply[1:])}
                out.append((values, float(reply[0])))
        return out

    def read_batch(
        self, view: str, keys: Sequence[tuple[Any, ...]], features: Sequence[str] | None = None
    ) -> list[dict[str, Any] | None]:
        names = _check_features(features)
        return [hit[0] if hit is not None else None for hit in self._fetch(view, keys, names)]

    def read_batch_with_times(
        self, view: str, keys: Sequence[tuple[Any, ...]], features: Sequence[str] | None = None
    ) -> list[tuple[dict[str, Any], float] | None]:
        return self._fetch(view, keys, _check_features(features))

    def delete_view(self, view: str) -> None:
        _check_view(view)
        # SCAN, not KEYS: it does not block the server on a big database. The prefix and view
        # name have no glob characters (checked), so the pattern matches exactly this view.
        pattern = f"{self.prefix}:{view}:*"
        try:
            batch: list[str] = []
            for key in self._client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= _REDIS_DELETE_CHUNK:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
        except self._redis_errors as exc:
            raise BackendUnavailable(f"Redis at {_redact(self.url)}: {exc}") from exc

    def close(self) -> None:
        self._client.close()


# --------------------------------------------------------------------------------------------
# URLs

_SCHEMES = ("sqlite:///path", "redis://host:port/db", "rediss://host:port/db")


def open_online_store(url: str) -> OnlineStore:
    """Open the online store a URL names.

    ``sqlite:///relative.db`` and ``sqlite:////absolute/path.db`` open a
    :class:`SQLiteOnlineStore` (the SQLAlchemy convention); ``redis://`` and ``rediss://`` open
    a :class:`RedisOnlineStore`, with an optional ``prefix`` query parameter
    (``redis://host:6379/0?prefix=team-a``).

    Raises:
        InvalidInput: the scheme is unknown or the URL has no path.
        BackendUnavailable: as the backend's constructor.
    """
    if not isinstance(url, str):
        raise InvalidInput(f"an online store URL must be a string, got {url!r:.80}")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise InvalidInput(f"invalid SQLite online store URL {url!r}: use sqlite:///path")
        return SQLiteOnlineStore(url[len("sqlite:///") :])
    if scheme in ("redis", "rediss"):
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((v for k, v in query if k == "prefix"), "wellml")
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        return RedisOnlineStore(urlunsplit(parts._replace(query=rest)), prefix=prefix)
    raise InvalidInput(
        f"unknown online store URL {_redact(url)!r}: use one of {', '.join(_SCHEMES)}"
    )
