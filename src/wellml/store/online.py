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
from dataclasses import dataclass
from itertools import repeat
from json.encoder import encode_basestring
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from wellml.errors import BackendUnavailable, InvalidInput
from wellml.names import check_name
from wellml.store.metadata import redact_url

if TYPE_CHECKING:
    import numpy as np
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


# --------------------------------------------------------------------------------------------
# bulk writes from Arrow tables: validation, key encoding and the winning row per key, done
# with Arrow and NumPy for the whole table, shared by every backend's ``write_table``

# Epoch ticks per second of each Arrow timestamp unit.
_TICKS_PER_SECOND = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
_CONTROL = r"[\x00-\x1f]"  # the characters JSON must escape besides '"' and '\'


def _check_table(
    table: Any,
    key_columns: Sequence[str],
    timestamp_column: str,
    feature_columns: Sequence[str],
) -> tuple[list[str], list[str]]:
    """Validate a table for :meth:`OnlineStore.write_table`; return its key and feature names."""
    import pyarrow as pa

    if not isinstance(table, pa.Table):
        raise InvalidInput(f"write_table needs an Arrow table, got {type(table).__name__}")
    keys = _check_features(key_columns) or []
    if not keys:
        raise InvalidInput("write_table needs at least one key column")
    names = _check_features(feature_columns) or []
    _check_values(dict.fromkeys(names))
    if len(set(names)) != len(names):
        raise InvalidInput(f"write_table: feature columns repeat a name: {names}")
    if type(timestamp_column) is not str:
        raise InvalidInput(
            f"write_table: the timestamp column must be a name, got {timestamp_column!r:.80}"
        )
    for column in (*keys, timestamp_column, *names):
        if column not in table.column_names:
            raise InvalidInput(f"write_table: column {column!r} is missing")
    for column in (*keys, *names):
        t = table.schema.field(column).type
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
    return keys, names


def _epoch_seconds(column: Any) -> np.ndarray:
    """An Arrow timestamp column (any unit; a zone only labels it) as float epoch seconds.

    Arrow stores UTC ticks whatever the zone, so ticks divided by the unit are epoch seconds;
    for seconds to microseconds that is the very double ``datetime.timestamp()`` gives.
    Nanosecond ticks are split first, since they exceed the integers a double holds exactly.
    Like every event time in the store, the result is a double: about a microsecond apart at
    today's dates, so rows closer than that compare as equal times.
    """
    import numpy as np
    import pyarrow as pa

    ticks = column.cast(pa.int64()).to_numpy()
    per_second = _TICKS_PER_SECOND[column.type.unit]
    if per_second == 1e9:
        whole, rest = np.divmod(ticks, 10**9)
        seconds: np.ndarray = whole.astype(np.float64) + rest / per_second
    else:
        seconds = ticks.astype(np.float64) / per_second
    return seconds


def _plain(column: Any) -> Any:
    """One Arrow array (chunks combined, dictionary decoded) of a column."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _escaped(strings: Any, open_quote: str) -> Any:
    """Strings as JSON string texts: ``open_quote`` + escaped text + ``"``; NULL stays NULL."""
    import pyarrow as pa
    import pyarrow.compute as pc

    strings = strings.cast(pa.string())
    if pc.any(pc.match_substring_regex(strings, _CONTROL)).as_py():
        # Rare: let the stdlib escaper spell control characters, value by value.
        return pa.array(
            [None if v is None else open_quote + _json_str(v)[1:] for v in strings.to_pylist()],
            pa.string(),
        )
    escaped = pc.replace_substring(strings, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    return pc.binary_join_element_wise(open_quote, escaped, '"', "")


def _float_texts(column: Any) -> Any:
    """Float64 values as texts that parse back to the same double (Arrow's shortest form)."""
    import pyarrow as pa

    return column.cast(pa.float64()).cast(pa.string())


def _json_values(column: Any) -> Any:
    """A column's values as the JSON texts :data:`_dumps_row` would write, computed in bulk.

    Floats keep a fraction or an exponent so that they read back as floats (Arrow's shortest
    round-trip digits, so the same double), NaN and the infinities use the tokens Python's
    JSON codec reads, and NULL is ``null``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    column = _plain(column)
    t = column.type
    if pa.types.is_floating(t):
        text = _float_texts(column)
        numbers = column.cast(pa.float64())
        whole = pc.and_(pc.is_finite(numbers), pc.equal(pc.floor(numbers), numbers))
        if pc.any(whole).as_py():  # "3" would read back as an int: spell it "3.0"
            digits = pc.match_substring_regex(text, r"^-?[0-9]+$")
            text = pc.if_else(digits, pc.binary_join_element_wise(text, ".0", ""), text)
        if not pc.all(pc.is_finite(numbers)).as_py():
            for token, json_token in (("nan", "NaN"), ("inf", "Infinity"), ("-inf", "-Infinity")):
                text = pc.if_else(pc.equal(text, token), json_token, text)
    elif pa.types.is_integer(t):
        text = column.cast(pa.string())
    elif pa.types.is_boolean(t):
        text = pc.if_else(column, "true", "false")
    elif pa.types.is_null(t):
        text = pa.nulls(len(column), pa.string())
    else:
        text = _escaped(column, '"')
    return pc.fill_null(text, "null")


def _key_texts(table: Any, keys: Sequence[str]) -> Any:
    """Every row's entity key, spelt exactly as :func:`_encode_key` spells it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts: list[Any] = ["["]
    for i, name in enumerate(keys):
        if i:
            parts.append(",")
        column = _plain(table.column(name))
        if pa.types.is_floating(column.type):
            # A key must match its read-side spelling byte for byte, and Arrow's float text
            # differs from repr in form (1e-07 vs 1e-7): float keys take the stdlib path.
            parts.append(pa.array([_dumps_key(v) for v in column.to_pylist()], pa.string()))
        else:
            parts.append(_json_values(column))
    parts.append("]")
    return pc.binary_join_element_wise(*parts, "")


def _json_rows(table: Any) -> list[str]:
    """Every row of a table as the JSON object :data:`_dumps_row` writes for its values."""
    import pyarrow.compute as pc

    if not table.num_columns:
        return ["{}"] * table.num_rows
    parts: list[Any] = []
    for i, name in enumerate(table.column_names):
        parts.append(("{" if i == 0 else ",") + _json_str(name) + ":")
        parts.append(_json_values(table.column(name)))
    parts.append("}")
    rows: list[str] = pc.binary_join_element_wise(*parts, "").to_pylist()
    return rows


@dataclass(frozen=True)
class _TableBatch:
    """What a table does to the store: per key, the row that ends up stored.

    Applying a table's rows one by one (as :meth:`OnlineStore.write_batch` does) leaves, per
    key, its row of the newest event time, the later one among equal times: the *winner*.
    Only winners are written. The rows of a key a one-by-one apply would have written before
    its winner (each at least as new as every row of that key before it) are its *chain*; they
    are needed only to count applied rows exactly, since whether each counts depends on the
    event time already stored.
    """

    keys: list[str]
    """Encoded entity keys of the winners."""
    rows: Any
    """The winners' feature columns (an Arrow table), in the order of ``keys``."""
    times: np.ndarray
    """The winners' event times, epoch seconds."""
    chain_of: np.ndarray
    """For each chain row, the position (in ``keys``) of its key's winner; ascending."""
    chain_times: np.ndarray
    """For each chain row, its event time."""

    def chained(self, lo: int, hi: int) -> tuple[list[str], list[float]]:
        """The encoded keys and event times of the chain rows of winners ``lo:hi``."""
        import numpy as np

        start, stop = np.searchsorted(self.chain_of, [lo, hi])
        keys = [self.keys[i] for i in self.chain_of[start:stop].tolist()]
        return keys, self.chain_times[start:stop].tolist()


def _table_batch(
    table: Any,
    key_columns: Sequence[str],
    timestamp_column: str,
    feature_columns: Sequence[str],
    *,
    key_order: bool,
) -> _TableBatch:
    """Validate a table and reduce it to one winning row per key (see :class:`_TableBatch`).

    Args:
        key_order: Put the winners in the byte order of their encoded keys (a B-tree writes
            sorted keys many times faster than random ones); otherwise in any order.

    Raises:
        InvalidInput: as :meth:`OnlineStore.write_table`.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    keys, names = _check_table(table, key_columns, timestamp_column, feature_columns)
    times = _epoch_seconds(table.column(timestamp_column))
    texts = _key_texts(table, keys)
    coded = pc.dictionary_encode(texts)
    codes = coded.indices.to_numpy().astype(np.int64)
    unique = coded.dictionary
    if key_order:
        # Renumber keys by their sorted position, so that grouping by code sorts by key.
        rank = np.empty(len(unique), np.int64)
        rank[pc.sort_indices(unique).to_numpy()] = np.arange(len(unique))
        codes = rank[codes]
    n = len(codes)
    empty = np.empty(0, np.int64)
    if len(unique) == n:  # every key once: every row wins, no chains
        order = np.argsort(codes, kind="stable") if key_order else np.arange(n)
        winners = order
        chain_of, chain_times = empty, np.empty(0, np.float64)
    else:
        order = np.argsort(codes, kind="stable")  # stable: table order within a key
        grouped = codes[order]
        first = np.ones(n, bool)
        np.not_equal(grouped[1:], grouped[:-1], out=first[1:])
        group = np.cumsum(first) - 1
        # Running maximum of the event time within each key, on integer ranks so that one
        # accumulate over the whole table works: group * span + rank only grows across groups.
        _, ranks = np.unique(times[order], return_inverse=True)
        span = int(ranks.max()) + 1
        combined = group * span + ranks.reshape(-1)
        before = np.empty(n, np.int64)
        before[0] = -1
        before[1:] = np.maximum.accumulate(combined)[:-1]
        before[first] = -1
        written = np.flatnonzero(combined >= before)  # applied if nothing were stored
        written_group = group[written]
        last = np.ones(len(written), bool)
        np.not_equal(written_group[1:], written_group[:-1], out=last[:-1])
        winners = order[written[last]]
        chain_of = written_group[~last]
        chain_times = times[order[written[~last]]]
    return _TableBatch(
        keys=texts.take(pa.array(winners)).to_pylist(),
        rows=table.select(names).take(pa.array(winners)),
        times=times[winners],
        chain_of=chain_of,
        chain_times=chain_times,
    )


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
        chunk_rows: int = 100_000,
    ) -> int:
        """Apply every row of an Arrow table, as :meth:`write_batch` would apply them in order.

        Keys come from ``key_columns`` (encoded as :meth:`write_batch` encodes key tuples, so
        :meth:`read_batch` finds them), the event time from ``timestamp_column`` (an Arrow
        timestamp of any unit, with or without a time zone, as epoch seconds; without a zone
        the values are taken as UTC) and the values from ``feature_columns``, each row replacing
        its key's whole feature row. Per key the row of the newest event time wins, the later
        one among equal times; rows older than the stored row are ignored. Values come back as
        :meth:`write_batch` stores them: integers as ``int``, floats (NaN and infinities too)
        as ``float``, strings, booleans, and NULL as ``None``.

        This default converts the table to rows and calls :meth:`write_batch` once per
        ``chunk_rows`` rows; backends override it with a bulk path that gives the same result.

        Args:
            view: The feature view name.
            table: The rows.
            key_columns: The entity key columns, in key-tuple order (integer, string, boolean
                or float; no NULLs).
            timestamp_column: The event time column (no NULLs).
            feature_columns: The value columns (integer, float, string, boolean or all-NULL,
                dictionary-encoded or not).
            chunk_rows: Rows per write (a transaction or a round trip of the backend).

        Returns:
            How many rows were applied (rows not ignored as older), counted as a row-by-row
            :meth:`write_batch` of the whole table would count them.

        Raises:
            InvalidInput: a bad view name, a missing column, a column of another type (lists,
                structs, dates, decimals, ...), NULL keys or event times, or a repeated or
                reserved feature name; nothing is written.
            BackendUnavailable: the backend cannot be reached.
        """
        _check_view(view)
        keys, names = _check_table(table, key_columns, timestamp_column, feature_columns)
        times = _epoch_seconds(table.column(timestamp_column)).tolist()
        key_values = [_plain(table.column(k)).to_pylist() for k in keys]
        values = [_plain(table.column(f)).to_pylist() for f in names]
        applied = 0
        for start in range(0, table.num_rows, chunk_rows):
            stop = min(start + chunk_rows, table.num_rows)
            rows = [
                (
                    tuple(k[i] for k in key_values),
                    {name: column[i] for name, column in zip(names, values)},
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


def _selected(values: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
    """The requested features of a freshly decoded row (``None``: all of them)."""
    if names is None or list(values) == names:  # the usual case: asked as written
        return values
    return {n: values.get(n) for n in names}


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
            # A page cache of up to 64 MiB (the default is 2 MiB): a lookup of random keys
            # in a view of a few hundred thousand rows then reads pages from memory, not
            # through a system call each.
            self._conn.execute("PRAGMA cache_size=-65536")
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
        chunk_rows: int = 100_000,
    ) -> int:
        """As :meth:`OnlineStore.write_table`; one transaction per ``chunk_rows`` keys.

        Only each key's winning row is written, in key order (a B-tree takes sorted keys many
        times faster than random ones), its JSON built for the whole table at once.
        """
        _check_view(view)
        batch = _table_batch(table, key_columns, timestamp_column, feature_columns, key_order=True)
        values = _json_rows(batch.rows)
        times = batch.times.tolist()
        applied = 0
        for lo in range(0, len(batch.keys), chunk_rows):
            hi = min(lo + chunk_rows, len(batch.keys))
            params = list(zip(repeat(view), batch.keys[lo:hi], values[lo:hi], times[lo:hi]))
            applied += self._upsert(params, chained=batch.chained(lo, hi))
        return applied

    def _upsert(
        self,
        params: list[tuple[str, str, str, float]],
        chained: tuple[list[str], list[float]] = ([], []),
    ) -> int:
        """Apply encoded rows in one transaction; return how many were applied.

        Args:
            params: ``(view, encoded key, value JSON, event time)``, one view.
            chained: Encoded keys and event times of rows a row-by-row write would have applied
                before the given rows of the same keys (see :class:`_TableBatch`); they are
                counted against the event times stored before this write, not written.
        """
        if not params:
            return 0
        with self._lock:
            conn = self._connection()
            try:
                # IMMEDIATE takes the write lock up front, so a busy file waits on `timeout`
                # instead of failing half way through the batch, and no other writer comes
                # between reading the stored times and the upsert.
                conn.execute("BEGIN IMMEDIATE")
                extra = self._count_chained(conn, params[0][0], *chained)
                cur = conn.executemany(_SQLITE_UPSERT, params)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise BackendUnavailable(f"SQLite online store {self.path}: {exc}") from exc
            # rowcount sums changes over executemany; a skipped (older) upsert changes nothing.
            return cur.rowcount + extra

    @staticmethod
    def _count_chained(
        conn: sqlite3.Connection, view: str, keys: list[str], times: list[float]
    ) -> int:
        """How many chained rows are at least as new as their key's stored event time."""
        if not keys:
            return 0
        stored: dict[str, float] = {}
        for chunk in _chunks(list(dict.fromkeys(keys)), _SQLITE_IN_CHUNK):
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, ts FROM online_features WHERE view = ? AND key IN ({marks})"
            stored.update(conn.execute(query, (view, *chunk)).fetchall())
        return sum(1 for key, ts in zip(keys, times) if ts >= stored.get(key, -math.inf))

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
            out.append(_selected(_loads_row(hit[0]), names))
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
            out.append((_selected(_loads_row(hit[0]), names), hit[1]))
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


def _field_values(column: Any) -> Any:
    """A column's values as JSON string texts of their :func:`_encode_field` form, in bulk."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = _plain(column)
    t = column.type
    if pa.types.is_floating(t):
        # Any round-trip text of a double parses back to the same double.
        text = pc.binary_join_element_wise('"d', _float_texts(column), '"', "")
    elif pa.types.is_integer(t):
        text = pc.binary_join_element_wise('"i', column.cast(pa.string()), '"', "")
    elif pa.types.is_boolean(t):
        text = pc.if_else(column, '"T"', '"F"')
    elif pa.types.is_null(t):
        text = pa.nulls(len(column), pa.string())
    else:
        text = _escaped(column, '"s')
    return pc.fill_null(text, '"N"')


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
# ARGV[1] is one JSON array with a row per key: [event time, [chained event times], field,
# value, field, value, ...], all strings; one argument per call, decoded by the server's C JSON
# codec, costs far less to send and to parse than an argument per field. A key is replaced
# (DEL + HSET) when it has no __ts yet or the stored __ts <= the new one. The chained times are
# rows of the same key that a row-by-row write would have applied first (see _TableBatch):
# they are counted, against the stored time, and not written.
_WRITE_SCRIPT = """
local rows = cjson.decode(ARGV[1])
local applied = 0
for k = 1, #KEYS do
    local row = rows[k]
    local ts = tonumber(row[1])
    local cur = redis.call('HGET', KEYS[k], '__ts')
    if cur then cur = tonumber(cur) end
    if (not cur) or cur <= ts then
        if cur then redis.call('DEL', KEYS[k]) end
        local n = #row
        -- HSET in slices: unpack() of a very wide row would overflow Lua's C stack
        local stop = math.min(n, 402)
        redis.call('HSET', KEYS[k], '__ts', row[1], unpack(row, 3, stop))
        while stop < n do
            local first = stop + 1
            stop = math.min(n, stop + 400)
            redis.call('HSET', KEYS[k], unpack(row, first, stop))
        end
        applied = applied + 1
        for _, earlier in ipairs(row[2]) do
            if (not cur) or cur <= tonumber(earlier) then applied = applied + 1 end
        end
    end
end
return applied
"""

# One call reads many keys: ARGV is '__ts' and the features to read (HMGET), or empty for every
# field (HGETALL). One command instead of a pipeline of one per key saves most of the client's
# per-command work, which is what a batch read of small hashes mostly costs.
_READ_SCRIPT = """
local out = {}
local n = #ARGV
for k = 1, #KEYS do
    if n == 0 then
        out[k] = redis.call('HGETALL', KEYS[k])
    elseif n <= 400 then
        out[k] = redis.call('HMGET', KEYS[k], unpack(ARGV))
    else
        local got = {}
        for first = 1, n, 400 do
            local part = redis.call('HMGET', KEYS[k], unpack(ARGV, first, math.min(n, first + 399)))
            for i = 1, #part do got[#got + 1] = part[i] end
        end
        out[k] = got
    end
end
return out
"""

# Rows per script call: big enough to amortise the call, small enough that one call keeps the
# single-threaded server busy for about a millisecond (other clients wait meanwhile).
_REDIS_WRITE_CHUNK = 256
_REDIS_READ_CHUNK = 1000
_REDIS_DELETE_CHUNK = 500


class RedisOnlineStore(OnlineStore):
    """An online store on a Redis server, shared by every host that can reach it.

    One hash per (view, entity key) at ``{prefix}:{view}:{encoded key}``: a field per feature
    plus ``__ts``, the event time of the stored row. Writes go through a server-side Lua script
    (atomic keep-the-newer, see ``_WRITE_SCRIPT``); a read of up to a thousand keys is one
    script call of HMGET/HGETALL (``_READ_SCRIPT``).
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
            raise InvalidInput(f"invalid Redis URL {redact_url(url)}: {exc}") from exc
        try:
            self._client.ping()
        except self._redis_errors as exc:
            self._client.close()
            raise BackendUnavailable(
                f"cannot reach Redis at {redact_url(url)}: {exc}; is the server running?"
            ) from exc
        self._write_script = self._client.register_script(_WRITE_SCRIPT)
        self._read_script = self._client.register_script(_READ_SCRIPT)

    def __repr__(self) -> str:
        return f"RedisOnlineStore({redact_url(self.url)!r}, prefix={self.prefix!r})"

    def _key(self, view: str, encoded: str) -> str:
        return f"{self.prefix}:{view}:{encoded}"

    def write_batch(
        self, view: str, rows: Sequence[tuple[tuple[Any, ...], Mapping[str, Any], float]]
    ) -> int:
        _check_view(view)
        checked = _check_rows(rows)
        keys = [self._key(view, encoded) for encoded, _, _ in checked]
        payload: list[list[Any]] = []
        for _, values, ts in checked:
            # repr: the exact double, which Lua reads back and compares exactly
            row: list[Any] = [repr(ts), []]
            for name, value in values.items():
                row.append(name)
                row.append(_encode_field(value))
            payload.append(row)
        texts = [_dumps_row(row) for row in payload]
        return self._run_writes(keys, texts, _REDIS_WRITE_CHUNK)

    def write_table(
        self,
        view: str,
        table: pa.Table,
        *,
        key_columns: Sequence[str],
        timestamp_column: str,
        feature_columns: Sequence[str],
        chunk_rows: int = 100_000,
    ) -> int:
        """As :meth:`OnlineStore.write_table`; one pipeline per ``chunk_rows`` keys.

        Only each key's winning row is written; the script arguments are built for the whole
        table at once with Arrow string kernels.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        _check_view(view)
        batch = _table_batch(table, key_columns, timestamp_column, feature_columns, key_order=False)
        n = len(batch.keys)
        prefix = f"{self.prefix}:{view}:"
        keys = [prefix + key for key in batch.keys]
        # Each winner's chained event times, as the text of a JSON array's items.
        if len(batch.chain_of):
            counts = np.bincount(batch.chain_of, minlength=n)
            offsets = np.zeros(n + 1, np.int32)
            np.cumsum(counts, out=offsets[1:])
            quoted = pc.binary_join_element_wise(
                '"', _float_texts(pa.array(batch.chain_times)), '"', ""
            )
            chains: Any = pc.binary_join(pa.ListArray.from_arrays(offsets, quoted), ",")
        else:
            chains = ""
        parts: list[Any] = ['["', _float_texts(pa.array(batch.times)), '",[', chains, "]"]
        for name in batch.rows.column_names:
            parts.append("," + _json_str(name) + ",")
            parts.append(_field_values(batch.rows.column(name)))
        parts.append("]")
        texts: list[str] = pc.binary_join_element_wise(*parts, "").to_pylist()
        return self._run_writes(keys, texts, chunk_rows)

    def _run_writes(self, keys: list[str], rows: list[str], per_pipeline: int) -> int:
        """Send rows (JSON texts, see ``_WRITE_SCRIPT``) in script calls, pipelined."""
        applied = 0
        try:
            for start in range(0, len(keys), per_pipeline):
                stop = min(start + per_pipeline, len(keys))
                pipe = self._client.pipeline(transaction=False)
                for lo in range(start, stop, _REDIS_WRITE_CHUNK):
                    hi = min(lo + _REDIS_WRITE_CHUNK, stop)
                    payload = "[" + ",".join(rows[lo:hi]) + "]"
                    self._write_script(keys=keys[lo:hi], args=[payload], client=pipe)
                applied += sum(int(n) for n in pipe.execute())
        except self._redis_errors as exc:
            raise BackendUnavailable(f"Redis at {redact_url(self.url)}: {exc}") from exc
        return applied

    def _fetch(
        self, view: str, keys: Sequence[tuple[Any, ...]], names: list[str] | None
    ) -> list[tuple[dict[str, Any], float] | None]:
        _check_view(view)
        prefix = f"{self.prefix}:{view}:"
        redis_keys = [prefix + _encode_key(key) for key in keys]
        fields = [] if names is None else [_TS_FIELD, *names]  # __ts first: "unknown key"
        replies: list[Any] = []
        try:
            if len(redis_keys) == 1:  # one plain command is the shortest path for one key
                if names is None:
                    got = self._client.hgetall(redis_keys[0])
                    replies.append([item for pair in got.items() for item in pair])
                else:
                    replies.append(self._client.hmget(redis_keys[0], fields))
            else:
                for start in range(0, len(redis_keys), _REDIS_READ_CHUNK):
                    chunk = redis_keys[start : start + _REDIS_READ_CHUNK]
                    replies.extend(self._read_script(keys=chunk, args=fields, client=self._client))
        except self._redis_errors as exc:
            raise BackendUnavailable(f"Redis at {redact_url(self.url)}: {exc}") from exc
        out: list[tuple[dict[str, Any], float] | None] = []
        if names is None:
            for reply in replies:
                if not reply:  # every written key has __ts, so an empty hash is no key
                    out.append(None)
                    continue
                pairs = dict(zip(reply[::2], reply[1::2]))
                ts = float(pairs.pop(_TS_FIELD))
                out.append(({f: _decode_field(v) for f, v in pairs.items()}, ts))
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
            raise BackendUnavailable(f"Redis at {redact_url(self.url)}: {exc}") from exc

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
        f"unknown online store URL {redact_url(url)!r}: use one of {', '.join(_SCHEMES)}"
    )
