"""Offline feature store: point-in-time correct historical joins on DuckDB.

:func:`get_historical_features` builds a training set the way Feast's ``get_historical_features``
does, but without a warehouse: for every *entity row* (join keys, an event timestamp, and any
extra columns such as labels) and every :class:`FeatureSource`, it attaches the feature values of
the latest source row that has the same join keys and was observed at or before the entity row's
timestamp. Nothing from the future of an entity row ever leaks into it.

The promises, pinned by ``tests/features/test_offline.py``:

* **One output row per entity row, in input order.** The entity columns come back unchanged
  (types, time zones and extra columns included) followed by the feature columns. An entity row
  with no usable feature row keeps NULL features; it is never dropped (Feast drops it).
* **Point in time.** A source row is used only if ``source_ts <= entity_ts``. With
  ``ttl_seconds`` it must also satisfy ``entity_ts - source_ts <= ttl_seconds`` (inclusive); an
  older latest row means NULL features, never an even older one.
* **Ties** (several source rows with the same join keys and timestamp) are broken
  deterministically: the greatest ``created_timestamp`` wins when the source has one (a NULL
  created timestamp loses to any value); remaining ties go to the row that comes last in the
  source's order. That order is the row order of an Arrow table or DataFrame, and for Parquet
  the files in sorted path order (as DuckDB expands a glob), then row order within a file.
* **NULLs.** NULL feature values are returned as NULL (the row still counts as the latest one; it
  is not skipped in favour of an older non-NULL value). Source rows with a NULL timestamp are
  ignored; entity rows with a NULL timestamp or NULL join key get NULL features.
* **Time zones.** Timestamps with a time zone are compared as UTC instants; timestamps without
  one are taken to be UTC already. Comparisons are exact to the nanosecond when both sides are
  stored with nanoseconds, otherwise to the microsecond (DuckDB's ``TIMESTAMP``); so are TTLs.
  ``created_timestamp`` is compared to the microsecond. Only the entity rows are converted when
  that keeps these rules: a microsecond source column is compared in its own type (an aware
  entity timestamp is taken to UTC for a naive source, a naive one read as UTC for an aware
  source); a source stored in seconds, milliseconds or nanoseconds is converted row by row.

The join runs in two steps. One DuckDB query matches: one ``ASOF LEFT JOIN`` per source,
chained off the entity rows, keeping only the identity of each matched source row (file and row
number for Parquet, the row number of an in-memory table). Then one query per source reads the
features of the matched rows by that identity. The ASOF operator holds every source row it may
match, sorted; without the feature columns that is a fraction of the memory, and each query's
memory is free for the next. Every part is put back in entity-row order by the rows' numbers.
Arrow tables and DataFrames are scanned in place through ``con.register``; Parquet paths and
globs are read with ``read_parquet``, so only the needed columns are read (each once: the keys
and timestamp by the match, the features by the lookup) and, with ``memory_limit`` and
``temp_directory``, DuckDB spills to disk on data larger than memory. The result (entity rows
plus features) is an in-memory Arrow table, so it must fit in memory.

Breaking ties costs: the ASOF match then compares a (timestamp, created, file, row) struct per
source row instead of the timestamp. So a Parquet source is first checked for ties
(:func:`source_has_ties`, once per content of its files, remembered in a :class:`TieChecks`);
one without ties is matched on its timestamp alone, which picks the same row. In-memory
sources and files that are not local always get the full order, and so does a join during
which a checked file changed (it runs again).

Reading Parquet relies on DuckDB's ``file_index`` and ``file_row_number`` virtual columns
(DuckDB 1.3 or later) for the tie-break order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wellml.errors import InvalidInput

if TYPE_CHECKING:
    # pandas is imported by callers that pass DataFrames; a join of Parquet or Arrow data
    # never loads it (it is a good part of a process's fixed memory).
    import pandas as pd

__all__ = [
    "FeatureSource",
    "TieChecks",
    "describe_source",
    "get_historical_features",
    "is_dataframe",
    "latest_rows",
    "source_has_ties",
]

#: What a caller may pass as entity rows or source data.
TableLike: TypeAlias = "str | Path | pa.Table | pd.DataFrame"

# Every helper column and relation the join adds starts with this prefix; user columns with it
# are rejected so that they can never be confused with ours.
_PREFIX = "__wellml_"
_ROW = f"{_PREFIX}row"
_INT64_MAX = 2**63 - 1

_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"}
    | {"UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})
# Naive timestamps, taken to be UTC. Their stored precision decides the comparison precision.
_NAIVE_TIMESTAMPS = frozenset({"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"})
_AWARE_TIMESTAMPS = frozenset({"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMPTZ_NS"})
_NANOSECOND_TIMESTAMPS = frozenset({"TIMESTAMP_NS", "TIMESTAMPTZ_NS"})
_AWARE_MICROSECONDS = frozenset({"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"})


def is_dataframe(value: Any) -> TypeGuard[pd.DataFrame]:
    """Whether ``value`` is a pandas DataFrame, without importing pandas: an object can only be
    a DataFrame if pandas was imported already."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


class TieChecks:
    """Answers of the tie check (:func:`source_has_ties`), so that each content of a source is
    checked once.

    Keyed by the content fingerprint of the files, the join keys and the timestamp compared;
    beyond ``size`` answers the least recently used are dropped. Kept in memory and, with a
    ``path``, in that JSON file too, so that other processes on this machine reuse them (a
    workspace keeps one under ``.wellml/``). The file is written to a temporary name and moved
    into place; a missing or unreadable file counts as empty, and an answer lost to a
    concurrent writer only means one more check.

    Args:
        path: The JSON file, or None for memory only.
        size: How many answers to keep.
    """

    def __init__(self, path: str | Path | None = None, *, size: int = 1024) -> None:
        self._path = Path(path) if path is not None else None
        self._size = size
        self._answers: OrderedDict[str, bool] = OrderedDict()
        self._lock = threading.Lock()
        self._loaded: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read

    def get(self, key: str) -> bool | None:
        """The answer for ``key``, or None when it was never checked."""
        with self._lock:
            if key not in self._answers:
                self._load()
            known = self._answers.get(key)
            if known is not None:
                self._answers.move_to_end(key)
            return known

    def put(self, key: str, has_ties: bool) -> None:
        """Remember an answer (and write the file, if there is one)."""
        with self._lock:
            self._load()
            self._answers[key] = has_ties
            self._answers.move_to_end(key)
            while len(self._answers) > self._size:
                self._answers.popitem(last=False)
            if self._path is not None:
                self._save(self._path)

    def _load(self) -> None:
        """Merge in the file's answers if it changed since it was last read."""
        if self._path is None:
            return
        try:
            st = self._path.stat()
            if self._loaded == (st.st_mtime_ns, st.st_size):
                return
            stored = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return
        self._loaded = (st.st_mtime_ns, st.st_size)
        if not isinstance(stored, dict):
            return
        for key, value in stored.items():
            if isinstance(value, bool) and key not in self._answers:
                self._answers[key] = value
                self._answers.move_to_end(key, last=False)
        while len(self._answers) > self._size:
            self._answers.popitem(last=False)

    def _save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(dict(self._answers)))
            os.replace(tmp, path)
            st = path.stat()
            self._loaded = (st.st_mtime_ns, st.st_size)
        except OSError:
            # Only a cache: without the file every process checks once on its own.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


# The answers of processes that pass no TieChecks of their own.
_PROCESS_TIES = TieChecks()


@dataclass(frozen=True, eq=False)
class FeatureSource:
    """A table of timestamped feature values, keyed by entity join keys.

    ``eq=False`` keeps identity equality and hashing: ``data`` may be a DataFrame or Arrow table,
    which can be neither hashed nor compared to a single bool.

    Attributes:
        name: Names the source in error messages and, with ``full_feature_names``, prefixes its
            output columns (``name__feature``).
        data: A Parquet file path or glob, a :class:`pyarrow.Table` or a
            :class:`pandas.DataFrame` (its index is ignored).
        join_keys: Columns that must equal the entity row's columns of the same names. Empty
            means a global feature (one time series for every entity row).
        timestamp: The event-time column of the source.
        features: The columns to attach to the entity rows.
        ttl_seconds: If set, a source row older than this many seconds before the entity row's
            timestamp is not used (the age limit is inclusive).
        created_timestamp: If set, the column that breaks ties between rows with the same join
            keys and timestamp: the greatest value wins.

    Raises:
        InvalidInput: On an empty name, join keys or features that are not sequences of column
            names, duplicated columns, a negative or non-finite TTL, or data of another type.
    """

    name: str
    data: TableLike
    join_keys: tuple[str, ...]
    timestamp: str
    features: tuple[str, ...]
    ttl_seconds: float | None = None
    created_timestamp: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInput(f"feature source name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.data, str | Path | pa.Table) and not is_dataframe(self.data):
            raise InvalidInput(
                f"feature source {self.name!r}: data must be a Parquet path, an Arrow table or a "
                f"DataFrame, got {type(self.data).__name__}"
            )
        for attr in ("join_keys", "features"):
            value = getattr(self, attr)
            # A bare string is a sequence too; tuple("id") would silently become ("i", "d").
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise InvalidInput(
                    f"feature source {self.name!r}: {attr} must be a tuple of column names, "
                    f"got {value!r}"
                )
            if not all(isinstance(column, str) and column for column in value):
                raise InvalidInput(
                    f"feature source {self.name!r}: {attr} must hold non-empty column names, "
                    f"got {value!r}"
                )
            if len(set(value)) != len(value):
                raise InvalidInput(f"feature source {self.name!r}: duplicate {attr} in {value!r}")
            # Lists are accepted for convenience and frozen here, so the source stays immutable.
            object.__setattr__(self, attr, tuple(value))
        if not self.features:
            raise InvalidInput(f"feature source {self.name!r}: features must not be empty")
        for attr in ("timestamp", "created_timestamp"):
            value = getattr(self, attr)
            if value is None and attr == "created_timestamp":
                continue
            if not isinstance(value, str) or not value:
                raise InvalidInput(
                    f"feature source {self.name!r}: {attr} must be a column name, got {value!r}"
                )
        ttl = self.ttl_seconds
        if ttl is not None and (
            isinstance(ttl, bool)
            or not isinstance(ttl, numbers.Real)
            or not math.isfinite(ttl)
            or ttl < 0
        ):
            raise InvalidInput(
                f"feature source {self.name!r}: ttl_seconds must be a finite number >= 0, "
                f"got {ttl!r}"
            )


def get_historical_features(
    entity: TableLike,
    sources: Sequence[FeatureSource],
    *,
    entity_timestamp: str = "event_timestamp",
    full_feature_names: bool = False,
    memory_limit: str | None = None,
    temp_directory: str | None = None,
    tie_checks: TieChecks | None = None,
) -> pa.Table:
    """Attach point-in-time correct feature values to every entity row.

    For each entity row and each source, the feature values come from the latest source row
    with equal join keys whose timestamp is at or before the entity row's timestamp (and, with a
    TTL, not older than the TTL). See the module docstring for ties, NULLs and time zones.

    Args:
        entity: The entity rows: a Parquet path or glob, an Arrow table or a DataFrame (its index
            is ignored). It needs every source's join keys and ``entity_timestamp``; all other
            columns (labels, ids) are passed through unchanged.
        sources: The feature sources, joined in this order.
        entity_timestamp: The event-time column of the entity rows.
        full_feature_names: Name output columns ``source__feature`` instead of ``feature``.
        memory_limit: DuckDB memory limit such as ``"2GB"``; beyond it DuckDB spills to disk.
        temp_directory: Where DuckDB spills; defaults to DuckDB's own choice.
        tie_checks: Where the tie checks of Parquet sources are remembered; by default in
            this process.

    Returns:
        An Arrow table with exactly one row per entity row, in the entity's order: the entity
        columns as given, then each source's features in source order. Feature columns of rows
        without a usable source row are NULL.

    Raises:
        InvalidInput: Before any join runs, if a Parquet path cannot be read, a join key,
            timestamp, created-timestamp or feature column is missing, a timestamp column is not
            a timestamp, a join key has an incompatible type on the two sides, two sources share
            a name, an output column name collides with another (without
            ``full_feature_names``) or with an entity column, a column uses the reserved
            ``__wellml_`` prefix, a Parquet file has a column named ``file_index`` or
            ``file_row_number`` (DuckDB's virtual columns that give the rows' order), or
            ``memory_limit``/``temp_directory`` is rejected by DuckDB.
        duckdb.OutOfMemoryException: If ``memory_limit`` is too small even for spilling; DuckDB's
            ASOF operator needs a block about the size of its largest right-side partition.
    """
    if isinstance(sources, FeatureSource) or not isinstance(sources, Sequence):
        raise InvalidInput("sources must be a sequence of FeatureSource")
    sources = list(sources)
    for source in sources:
        if not isinstance(source, FeatureSource):
            raise InvalidInput(f"sources must hold FeatureSource objects, got {source!r}")
    names = [source.name for source in sources]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InvalidInput(f"feature source names must be unique, repeated: {duplicated}")

    con = _connect(memory_limit, temp_directory)
    try:
        entity_table = _entity_table(con, entity)
        entity_types = _register_entity(con, entity_table)
        _check_timestamp("entity", entity_timestamp, entity_types)
        output_names = _output_names(sources, entity_table.column_names, full_feature_names)
        checks = tie_checks if tie_checks is not None else _PROCESS_TIES

        def join(tie_break: bool) -> tuple[list[pa.Table], list[_SourcePlan]]:
            plans = [
                _plan_source(con, index, source, entity_types, entity_timestamp, checks, tie_break)
                for index, source in enumerate(sources)
            ]
            # Two steps, each query's memory given back to the database before the next: the
            # ASOF match carries only the matched rows' identities, then each source's
            # features are read for those rows alone.
            matches = con.sql(_match_sql(plans, entity_types)).to_arrow_table()
            con.register(f"{_PREFIX}m", matches)
            try:
                parts = [
                    con.sql(_lookup_sql(index, plan, names)).to_arrow_table()
                    for index, (plan, names) in enumerate(zip(plans, output_names, strict=True))
                ]
            finally:
                con.unregister(f"{_PREFIX}m")
            return parts, plans

        parts, plans = join(tie_break=False)
        if any(_changed(con, plan) for plan in plans):
            # A file changed after its tie check, so the check may not hold for what the join
            # read, and the match and the lookup may have read different contents; the full
            # tie-break order is right whatever the content.
            parts, plans = join(tie_break=True)
    finally:
        con.close()

    # The entity columns are taken from the caller's table rather than from DuckDB, so that
    # their types (time zones, nanoseconds, dictionaries) come back exactly as given.
    fields = list(entity_table.schema)
    columns = list(entity_table.columns)
    for part in parts:
        part = _in_entity_order(part, entity_table.num_rows)
        fields += list(part.schema)[1:]
        columns += list(part.columns)[1:]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


@dataclass(frozen=True)
class _SourcePlan:
    """The SQL pieces of one source, validated against the entity.

    Attributes:
        entity_ts: SQL of the entity rows' timestamp, as compared with this source's.
        unit: ``"us"`` or ``"ns"``, the precision of the comparison and of the TTL.
        tie_break: Whether the ASOF match orders rows by the full (event time, created time,
            file, row) struct; False when the source is known to have no ties.
        fingerprint: The content fingerprint the tie check was made for, if one was used.
        cte: The rows the ASOF join matches: join keys, timestamp, order and row identity.
        values: A query of the source's features by row identity, read after the match.
        identity: SQL of the matched row's identity columns, on ``alias``.
    """

    source: FeatureSource
    alias: str
    cte: str
    values: str
    identity: tuple[str, ...]
    keys: tuple[str, ...]
    entity_ts: str
    unit: str
    tie_break: bool
    fingerprint: str | None


def _quote(name: str) -> str:
    """Quote an SQL identifier, so any column name (spaces, quotes, keywords) is safe."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    """Quote an SQL string literal (table functions such as read_parquet take no parameters)."""
    return "'" + text.replace("'", "''") + "'"


# The in-memory database that calls without memory settings share (each through a connection of
# its own), with the id of the process that opened it: a forked child opens its own.
_SHARED: tuple[int, duckdb.DuckDBPyConnection] | None = None
_SHARED_LOCK = threading.Lock()


def _connect(
    memory_limit: str | None, temp_directory: str | None, *, shared: bool = True
) -> duckdb.DuckDBPyConnection:
    """A connection for one call: to the shared database, or with ``memory_limit`` or
    ``temp_directory`` (settings of a whole database) or ``shared=False`` to a database of its
    own, whose memory is given back when it is closed.

    Opening a database starts its threads and closing it frees everything, which cost a good
    part of a small join; a connection (a cursor) costs next to nothing, and the tables each
    call registers are visible to its own connection only.
    """
    # Extensions are never downloaded behind the caller's back: this platform is self-hosted
    # and may be offline; everything the join uses is built into DuckDB.
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        # Order comes from explicit row numbers; not keeping insertion order lets DuckDB
        # stream and spill with less memory.
        "preserve_insertion_order": False,
        # Caching the bytes of the Parquet files read would add their size to the memory held.
        "enable_external_file_cache": False,
    }
    if shared and memory_limit is None and temp_directory is None:
        global _SHARED
        with _SHARED_LOCK:
            if _SHARED is None or _SHARED[0] != os.getpid():
                _SHARED = (os.getpid(), duckdb.connect(":memory:", config=config))
            return _SHARED[1].cursor()
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    if temp_directory is not None:
        config["temp_directory"] = temp_directory
    try:
        return duckdb.connect(":memory:", config=config)
    except duckdb.Error as exc:
        raise InvalidInput(
            f"invalid DuckDB settings memory_limit={memory_limit!r}, "
            f"temp_directory={temp_directory!r}: {exc}"
        ) from exc


def _entity_table(con: duckdb.DuckDBPyConnection, entity: TableLike) -> pa.Table:
    """Load the entity rows into Arrow, keeping their order."""
    if isinstance(entity, pa.Table):
        return entity
    if is_dataframe(entity):
        return _from_pandas(entity, "entity")
    if isinstance(entity, str | Path):
        relation = f"read_parquet({_literal(str(entity))})"
        try:
            types = _describe(con, relation)
        except duckdb.Error as exc:
            raise InvalidInput(f"entity: cannot read Parquet {str(entity)!r}: {exc}") from exc
        # A real column with a virtual column's name hides it and would scramble the order.
        hidden = sorted({"file_index", "file_row_number"} & types.keys())
        if hidden:
            raise InvalidInput(
                f"entity: Parquet columns {hidden} clash with DuckDB's virtual columns used to "
                "keep the rows' order; rename them"
            )
        # The output holds every entity row anyway, so loading them costs nothing extra. File
        # order (sorted paths, then rows) is the entity-row order.
        try:
            table = con.sql(f"SELECT * FROM {relation} ORDER BY file_index, file_row_number")
            return table.to_arrow_table()
        except duckdb.Error as exc:
            raise InvalidInput(f"entity: cannot read Parquet {str(entity)!r}: {exc}") from exc
    raise InvalidInput(
        f"entity must be a Parquet path, an Arrow table or a DataFrame, got {type(entity).__name__}"
    )


def _from_pandas(frame: pd.DataFrame, what: str) -> pa.Table:
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(f"{what}: cannot convert DataFrame to Arrow: {exc}") from exc


def _describe(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """Column name -> DuckDB type name of a relation, read from metadata only."""
    rows = con.sql(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {str(row[0]): str(row[1]) for row in rows}


def _int64(values: np.ndarray) -> pa.Array:
    """An Arrow int64 array over a NumPy int64 array's memory, without copying.

    ``pa.array`` would first probe for pandas objects, importing pandas.
    """
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _check_reserved(what: str, columns: Sequence[str]) -> None:
    reserved = [column for column in columns if column.startswith(_PREFIX)]
    if reserved:
        raise InvalidInput(
            f"{what}: column names starting with {_PREFIX!r} are reserved: {reserved}"
        )


def _register_entity(con: duckdb.DuckDBPyConnection, table: pa.Table) -> dict[str, str]:
    _check_reserved("entity", table.column_names)
    # The row number restores the input order after the joins, which do not keep it.
    numbered = table.append_column(_ROW, _int64(np.arange(table.num_rows, dtype=np.int64)))
    con.register(f"{_PREFIX}entity", numbered)
    types = _describe(con, f"{_PREFIX}entity")
    del types[_ROW]
    return types


def _check_timestamp(what: str, column: str, types: dict[str, str]) -> None:
    if column not in types:
        raise InvalidInput(f"{what}: timestamp column {column!r} is missing")
    if types[column] not in _NAIVE_TIMESTAMPS | _AWARE_TIMESTAMPS:
        raise InvalidInput(
            f"{what}: column {column!r} must be a timestamp, got {types[column]} "
            "(convert it, e.g. with pandas.to_datetime)"
        )


def _utc(column: str, duck_type: str, nanoseconds: bool) -> str:
    """SQL for a timestamp column as a naive UTC timestamp, at the chosen precision."""
    expression = _quote(column)
    target = "TIMESTAMP_NS" if nanoseconds else "TIMESTAMP"
    if duck_type == target:
        # Already naive UTC at the chosen precision: a cast per row would only cost time.
        return expression
    if duck_type in _AWARE_TIMESTAMPS:
        expression = f"timezone('UTC', {expression})"
    return f"CAST({expression} AS {target})"


def _comparison(
    source_column: str, source_type: str, entity_column: str, entity_type: str
) -> tuple[str, str, str]:
    """SQL of the source's and the entity's timestamps as compared, and the unit of the
    comparison (``"us"`` or ``"ns"``).

    A source usually has many more rows than the entity, so its timestamp is left as stored
    whenever that keeps the rule "aware in UTC, naive taken as UTC": a microsecond source,
    naive or aware, is compared in its own type and the entity's timestamp is brought to it.
    Other sources (seconds, milliseconds, nanoseconds) are converted to naive UTC at the
    precision both sides have, as the module docstring describes.
    """
    # Nanoseconds only when both sides have them: casting a microsecond timestamp to
    # nanoseconds could overflow (the nanosecond range ends in 2262).
    if source_type in _NANOSECOND_TIMESTAMPS and entity_type in _NANOSECOND_TIMESTAMPS:
        return _utc(source_column, source_type, True), _utc(entity_column, entity_type, True), "ns"
    entity = _utc(entity_column, entity_type, False)
    if source_type == "TIMESTAMP":
        return _quote(source_column), entity, "us"
    if source_type in _AWARE_MICROSECONDS:
        if entity_type not in _AWARE_MICROSECONDS:
            # timezone() of a naive timestamp reads it as a wall time in UTC: the same instant.
            entity = f"timezone('UTC', {entity})"
        else:
            entity = _quote(entity_column)
        return _quote(source_column), entity, "us"
    return _utc(source_column, source_type, False), entity, "us"


def _fingerprint(con: duckdb.DuckDBPyConnection, path: str) -> str | None:
    """What identifies the content of a local Parquet path or glob, cheaply.

    For every file DuckDB would read: its absolute path, device, inode, size, and modification
    and status-change times (a rewrite changes at least the inode or the change time, which
    no program can set back). None when the files are not local or there are none: such a
    source is never cached.
    """
    try:
        rows = con.sql(f"SELECT file FROM glob({_literal(path)})").fetchall()
    except duckdb.Error:
        return None
    parts = []
    for file in sorted(str(row[0]) for row in rows):
        try:
            st = os.stat(file)
        except OSError:
            return None
        stat = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        parts.append([os.path.abspath(file), *stat])
    if not parts:
        return None
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _has_ties(
    con: duckdb.DuckDBPyConnection, relation: str, source: FeatureSource, timestamp: str
) -> bool:
    """Whether two source rows share their join keys and compared timestamp.

    Rows with a NULL timestamp or join key never match an entity row, so they cannot tie.
    """
    keys = [_quote(key) for key in source.join_keys]
    where = " AND ".join(f"{column} IS NOT NULL" for column in [timestamp, *keys])
    group = ", ".join([*keys, timestamp])
    rows = con.sql(
        f"SELECT EXISTS (SELECT 1 FROM {relation} WHERE {where} GROUP BY {group} "
        "HAVING count(*) > 1)"
    ).fetchall()
    return bool(rows[0][0])


def _cached_ties(
    con: duckdb.DuckDBPyConnection,
    source: FeatureSource,
    relation: str,
    timestamp: str,
    checks: TieChecks,
) -> tuple[bool, str | None]:
    """Whether the source may have ties, and the content fingerprint that answer is for.

    A Parquet source is checked once per content (see :func:`_fingerprint`) and the answer
    remembered in ``checks``; anything without a fingerprint is taken to have ties.
    """
    if not isinstance(source.data, str | Path):
        return True, None
    fingerprint = _fingerprint(con, str(source.data))
    if fingerprint is None:
        return True, None
    key = hashlib.sha256(json.dumps([fingerprint, source.join_keys, timestamp]).encode())
    known = checks.get(key.hexdigest())
    if known is None:
        known = _has_ties(con, relation, source, timestamp)
        # An answer about files that changed while they were read is not kept.
        if _fingerprint(con, str(source.data)) == fingerprint:
            checks.put(key.hexdigest(), known)
    return known, fingerprint


def _changed(con: duckdb.DuckDBPyConnection, plan: _SourcePlan) -> bool:
    """Whether a source with a fingerprint changed since its tie check (the match and the
    lookup of its features may then have read different contents)."""
    if plan.fingerprint is None:
        return False
    return _fingerprint(con, str(plan.source.data)) != plan.fingerprint


def _in_entity_order(joined: pa.Table, rows: int) -> pa.Table:
    """The joined rows put back in entity-row order by their row numbers (the first column).

    Scattering the row numbers into their positions costs one pass, where an ``ORDER BY`` in
    the query would sort.
    """
    if joined.num_rows != rows:
        # ASOF LEFT JOIN yields exactly one row per probe row; anything else is a bug, and
        # gluing misaligned columns together would silently corrupt the training set.
        raise RuntimeError(f"point-in-time join returned {joined.num_rows} rows for {rows}")
    # The row numbers have no NULLs, so their data buffers are the values (to_numpy would
    # import pandas).
    chunks = joined.column(0).chunks
    numbers = np.concatenate(
        [np.empty(0, dtype=np.int64)]
        + [
            np.frombuffer(
                chunk.buffers()[1], dtype=np.int64, count=len(chunk), offset=8 * chunk.offset
            )
            for chunk in chunks
        ]
    )
    position = np.full(rows, -1, dtype=np.int64)
    position[numbers] = np.arange(rows, dtype=np.int64)
    if rows and int(position.min()) < 0:
        raise RuntimeError("point-in-time join returned an entity row twice")
    return joined.take(_int64(position))


def _key_family(duck_type: str) -> str:
    """Types whose values can be compared for equality without surprises share a family."""
    if duck_type in _INTEGER_TYPES:
        return "integer"
    if duck_type in _FLOAT_TYPES:
        return "floating point"
    if duck_type.startswith("DECIMAL"):
        return "decimal"
    if duck_type == "VARCHAR" or duck_type.startswith("ENUM"):
        # Pandas categoricals and Arrow dictionaries arrive as ENUM; they compare as strings.
        return "string"
    if duck_type in _NAIVE_TIMESTAMPS | _AWARE_TIMESTAMPS:
        return "timestamp"
    return duck_type


def _source_relation(con: duckdb.DuckDBPyConnection, index: int, source: FeatureSource) -> str:
    """Make the source queryable and return the SQL that reads it."""
    if isinstance(source.data, str | Path):
        relation = f"read_parquet({_literal(str(source.data))})"
        try:
            types = _describe(con, relation)
        except duckdb.Error as exc:
            raise InvalidInput(
                f"feature source {source.name!r}: cannot read Parquet {str(source.data)!r}: {exc}"
            ) from exc
        # A real column with a virtual column's name hides it and would corrupt the tie-break.
        hidden = sorted({"file_index", "file_row_number"} & types.keys())
        if hidden:
            raise InvalidInput(
                f"feature source {source.name!r}: Parquet columns {hidden} clash with DuckDB's "
                "virtual columns used to order rows; rename them"
            )
        return relation
    table = source.data
    if is_dataframe(table):
        table = _from_pandas(table, f"feature source {source.name!r}")
    _check_reserved(f"feature source {source.name!r}", table.column_names)
    # Arrow scans run in parallel, so row_number() OVER () would not be the table's order;
    # an explicit row number is (appending a column copies no data).
    table = table.append_column(_ROW, _int64(np.arange(table.num_rows, dtype=np.int64)))
    name = f"{_PREFIX}data_{index}"
    con.register(name, table)
    return name


def _plan_source(
    con: duckdb.DuckDBPyConnection,
    index: int,
    source: FeatureSource,
    entity_types: dict[str, str],
    entity_timestamp: str,
    checks: TieChecks,
    tie_break: bool,
) -> _SourcePlan:
    """Validate one source against the entity and build its common table expression.

    With ``tie_break`` False the tie check decides whether the full tie-break order is needed;
    with True it is used whatever the source holds.
    """
    relation = _source_relation(con, index, source)
    types = _describe(con, relation)
    what = f"feature source {source.name!r}"
    for key in source.join_keys:
        if key not in types:
            raise InvalidInput(f"{what}: join key column {key!r} is missing")
        if key not in entity_types:
            raise InvalidInput(f"{what}: join key column {key!r} is missing from the entity")
        if _key_family(types[key]) != _key_family(entity_types[key]):
            raise InvalidInput(
                f"{what}: join key column {key!r} is {types[key]} in the source but "
                f"{entity_types[key]} in the entity"
            )
    _check_timestamp(what, source.timestamp, types)
    if source.created_timestamp is not None:
        _check_timestamp(what, source.created_timestamp, types)
    missing = [feature for feature in source.features if feature not in types]
    if missing:
        raise InvalidInput(f"{what}: feature columns {missing} are missing")

    timestamp, entity_ts, unit = _comparison(
        source.timestamp,
        types[source.timestamp],
        entity_timestamp,
        entity_types[entity_timestamp],
    )
    fingerprint = None
    if not tie_break:
        tie_break, fingerprint = _cached_ties(con, source, relation, timestamp, checks)

    alias = f"{_PREFIX}s{index}"
    columns = [
        f"{_quote(key)} AS {_quote(f'{_PREFIX}k{i}')}" for i, key in enumerate(source.join_keys)
    ]
    columns.append(f"{timestamp} AS {_quote(f'{_PREFIX}t')}")
    # The ASOF join holds every source row it may match, sorted, so it carries only what the
    # match needs and the row's identity; the features of the matched rows are looked up by
    # that identity afterwards, in a query of its own, which keeps the source's feature
    # columns out of the ASOF join's memory.
    row_identity = _row_identity(relation)
    identity_names = [_quote(f"{_PREFIX}i{i}") for i in range(len(row_identity))]
    if tie_break:
        # The ASOF inequality compares (timestamp, created, file, row) structs, so the latest
        # row wins and ties resolve in one pass, with no separate deduplication (which costs a
        # window over the whole source). Without ties the timestamp alone decides, cheaper.
        # The struct ends with the row's identity, so it is not carried twice.
        order = _order_struct(source, relation, types, timestamp)
        columns.append(f"{{{', '.join(order)}}} AS {_quote(f'{_PREFIX}o')}")
        fields = ("f", "r")[-len(row_identity) :]
        identity = tuple(
            f"struct_extract({alias}.{_quote(f'{_PREFIX}o')}, {_literal(field)})"
            for field in fields
        )
    else:
        columns += [
            f"{sql} AS {name}" for sql, name in zip(row_identity, identity_names, strict=True)
        ]
        identity = tuple(f"{alias}.{name}" for name in identity_names)
    cte = (
        f"{alias} AS (SELECT {', '.join(columns)} FROM {relation} "
        f"WHERE {_quote(source.timestamp)} IS NOT NULL)"
    )
    values = [f"{sql} AS {name}" for sql, name in zip(row_identity, identity_names, strict=True)]
    values += [
        f"{_quote(feature)} AS {_quote(f'{_PREFIX}f{i}')}"
        for i, feature in enumerate(source.features)
    ]
    return _SourcePlan(
        source=source,
        alias=alias,
        cte=cte,
        values=f"SELECT {', '.join(values)} FROM {relation}",
        identity=identity,
        keys=source.join_keys,
        entity_ts=entity_ts,
        unit=unit,
        tie_break=tie_break,
        fingerprint=fingerprint,
    )


def _order_struct(
    source: FeatureSource, relation: str, types: dict[str, str], timestamp: str
) -> list[str]:
    """The fields of the struct that orders a source's rows: (event time, created time, file,
    row). The greatest is the latest row; a NULL created timestamp sorts below every real one.
    """
    order = [f"'t': {timestamp}"]
    if source.created_timestamp is not None:
        created = _utc(source.created_timestamp, types[source.created_timestamp], False)
        order.append(f"'c': coalesce({created}, '-infinity'::TIMESTAMP)")
    row_identity = _row_identity(relation)
    fields = ("f", "r")[-len(row_identity) :]
    order += [f"'{field}': {sql}" for field, sql in zip(fields, row_identity, strict=True)]
    return order


def _row_identity(relation: str) -> list[str]:
    """SQL of the columns that identify a source row and give the source's order: the file
    and the row within it for Parquet, the row number added to an in-memory table."""
    if relation.startswith("read_parquet("):
        return ["CAST(file_index AS BIGINT)", "CAST(file_row_number AS BIGINT)"]
    return [_quote(_ROW)]


def _output_names(
    sources: Sequence[FeatureSource], entity_columns: Sequence[str], full_feature_names: bool
) -> list[list[str]]:
    """Output column names per source; raise on any collision."""
    owners: dict[str, str] = {}
    names: list[list[str]] = []
    for source in sources:
        per_source = []
        for feature in source.features:
            name = f"{source.name}__{feature}" if full_feature_names else feature
            if name in entity_columns:
                raise InvalidInput(
                    f"feature source {source.name!r}: output column {name!r} collides with an "
                    "entity column"
                )
            if name in owners:
                hint = "" if full_feature_names else "; pass full_feature_names=True"
                raise InvalidInput(
                    f"feature source {source.name!r}: feature {feature!r} collides with feature "
                    f"source {owners[name]!r} (output column {name!r}){hint}"
                )
            owners[name] = source.name
            per_source.append(name)
        names.append(per_source)
    return names


def _match_sql(plans: Sequence[_SourcePlan], entity_types: dict[str, str]) -> str:
    """The first query: the entity rows, ASOF LEFT JOINed to each source in turn.

    Per entity row (its number first) and source, the identity of the matched source row
    (``__wellml_m{source}_{i}``), NULL when there is none or, with a TTL, when the match is too
    old. The rows come back in no particular order.
    """
    keys = sorted({key for plan in plans for key in plan.keys})
    entity_columns = [_quote(_ROW), *(_quote(key) for key in keys)]
    # One entity column per distinct form of its timestamp the sources compare with.
    aliases: dict[str, str] = {}
    for plan in plans:
        if plan.entity_ts not in aliases:
            aliases[plan.entity_ts] = _quote(f"{_PREFIX}t{len(aliases)}")
            entity_columns.append(f"{plan.entity_ts} AS {aliases[plan.entity_ts]}")
    ctes = [f"{_PREFIX}e AS (SELECT {', '.join(entity_columns)} FROM {_PREFIX}entity)"]
    ctes += [plan.cte for plan in plans]

    selected = [f"e.{_quote(_ROW)}"]
    joins = []
    for index, plan in enumerate(plans):
        s = plan.alias
        entity_ts = f"e.{aliases[plan.entity_ts]}"
        source_ts = f"{s}.{_quote(f'{_PREFIX}t')}"
        if plan.tie_break:
            # The probe struct is at least every source struct with the same timestamp, so the
            # ASOF match is the greatest (timestamp, created, file, row) not after the entity
            # time.
            probe = [f"'t': {entity_ts}"]
            if plan.source.created_timestamp is not None:
                probe.append("'c': 'infinity'::TIMESTAMP")
            if isinstance(plan.source.data, str | Path):
                probe.append(f"'f': CAST({_INT64_MAX} AS BIGINT)")
            probe.append(f"'r': CAST({_INT64_MAX} AS BIGINT)")
            # A NULL field inside a struct compares as the greatest value, which would match
            # the latest row; a NULL entity time must match nothing, so the whole struct is
            # NULL.
            inequality = (
                f"(CASE WHEN {entity_ts} IS NULL THEN NULL ELSE {{{', '.join(probe)}}} END) "
                f">= {s}.{_quote(f'{_PREFIX}o')}"
            )
        else:
            # No two rows share keys and timestamp, so the timestamp alone picks one row; a
            # NULL entity time matches nothing.
            inequality = f"{entity_ts} >= {source_ts}"
        condition = [
            f"e.{_quote(key)} = {s}.{_quote(f'{_PREFIX}k{i}')}" for i, key in enumerate(plan.keys)
        ]
        condition.append(inequality)
        joins.append(f"ASOF LEFT JOIN {s} ON {' AND '.join(condition)}")

        ttl = plan.source.ttl_seconds
        fresh = None
        if ttl is not None:
            # The ASOF match is the latest eligible row, so if it is too old every other row is
            # too; the TTL can therefore be applied after the join, on the match alone.
            unit = plan.unit
            limit = round(ttl * (1e9 if unit == "ns" else 1e6))
            fresh = f"epoch_{unit}({entity_ts}) - epoch_{unit}({source_ts}) <= {limit}"
        for i, sql in enumerate(plan.identity):
            value = sql if fresh is None else f"CASE WHEN {fresh} THEN {sql} END"
            selected.append(f"{value} AS {_quote(f'{_PREFIX}m{index}_{i}')}")

    return (
        f"WITH {', '.join(ctes)} "
        f"SELECT {', '.join(selected)} FROM {_PREFIX}e AS e {' '.join(joins)}"
    )


def _lookup_sql(index: int, plan: _SourcePlan, names: Sequence[str]) -> str:
    """The query that reads one source's features for the matched rows (the first query's
    result, registered as ``__wellml_m``): the entity row number, then the features named
    ``names``, NULL where nothing matched. The rows come back in no particular order.
    """
    # A NULL identity (no match) equals nothing, so the row keeps NULL features.
    condition = [
        f"m.{_quote(f'{_PREFIX}m{index}_{i}')} = v.{_quote(f'{_PREFIX}i{i}')}"
        for i in range(len(plan.identity))
    ]
    selected = [f"m.{_quote(_ROW)}"]
    selected += [f"v.{_quote(f'{_PREFIX}f{i}')} AS {_quote(name)}" for i, name in enumerate(names)]
    return (
        f"SELECT {', '.join(selected)} FROM {_PREFIX}m AS m "
        f"LEFT JOIN ({plan.values}) AS v ON {' AND '.join(condition)}"
    )


def describe_source(data: TableLike) -> dict[str, str]:
    """Column name -> DuckDB type name of a Parquet path or glob, Arrow table or DataFrame.

    Raises:
        InvalidInput: the Parquet path cannot be read or the DataFrame cannot be converted.
    """
    con = _connect(None, None)
    try:
        if isinstance(data, str | Path):
            relation = f"read_parquet({_literal(str(data))})"
            try:
                return _describe(con, relation)
            except duckdb.Error as exc:
                raise InvalidInput(f"cannot read Parquet {str(data)!r}: {exc}") from exc
        table = _from_pandas(data, "source") if is_dataframe(data) else data
        con.register(f"{_PREFIX}describe", table)
        return _describe(con, f"{_PREFIX}describe")
    finally:
        con.close()


def source_has_ties(source: FeatureSource, tie_checks: TieChecks | None = None) -> bool | None:
    """Whether a Parquet source has several rows with the same join keys and event time.

    :func:`get_historical_features` asks this of every Parquet source: one without ties is
    joined on its event time alone, which is cheaper than the full tie-break order and gives
    the same rows. The answer is remembered per content of the files (path, inode, size,
    modification and change times of each), so a source that changes is checked again, never
    answered from a stale entry. Calling this ahead of a join (as
    ``FeatureStore.apply`` does) takes the check out of the join's time.

    The check compares the event time as stored; a join that compares at a coarser precision
    (a nanosecond source with microsecond entity rows) checks that form on its first use.

    Args:
        source: The feature source.
        tie_checks: Where answers are remembered; by default in this process.

    Returns:
        True or False; None for an Arrow table, a DataFrame or files that are not local, which
        are never checked (their joins always use the full tie-break order).

    Raises:
        InvalidInput: The Parquet path cannot be read, or a join key or the timestamp column
            is missing or the timestamp is not a timestamp.
    """
    if not isinstance(source.data, str | Path):
        return None
    # A check ahead of the joins runs in a database of its own: the memory of its
    # aggregate is given back rather than kept by the shared database.
    con = _connect(None, None, shared=False)
    try:
        relation = _source_relation(con, 0, source)
        types = _describe(con, relation)
        what = f"feature source {source.name!r}"
        for key in source.join_keys:
            if key not in types:
                raise InvalidInput(f"{what}: join key column {key!r} is missing")
        _check_timestamp(what, source.timestamp, types)
        checks = tie_checks if tie_checks is not None else _PROCESS_TIES
        timestamp = _quote(source.timestamp)
        has_ties, fingerprint = _cached_ties(con, source, relation, timestamp, checks)
    finally:
        con.close()
    return has_ties if fingerprint is not None else None


def latest_rows(
    source: FeatureSource,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    memory_limit: str | None = None,
    temp_directory: str | None = None,
) -> tuple[pa.Table, int]:
    """The latest row per join key among the source rows with ``start <= timestamp <= end``.

    "Latest" follows the same order as :func:`get_historical_features`: the greatest event
    timestamp, then the greatest created timestamp, then the row that comes last in the source.
    This is what a materialization writes to an online store: reading the result as of ``end``
    gives what a point-in-time join would give for an entity row at ``end`` (before the TTL).

    Args:
        source: The feature source (its TTL is not applied here).
        start: Inclusive lower bound of the event-time window (naive means UTC); None: no bound.
        end: Inclusive upper bound; None: no bound.
        memory_limit: DuckDB memory limit; beyond it DuckDB spills to disk.
        temp_directory: Where DuckDB spills.

    Returns:
        The rows (join keys, the timestamp as a UTC ``timestamp[us, tz=UTC]`` column named as
        the source's timestamp, then the features) and how many source rows were in the window.

    Raises:
        InvalidInput: a column is missing or of the wrong type, or a Parquet path cannot be read.
    """
    # A database of its own: what a materialization does next (writing to the online store)
    # should not find the memory of this aggregate still held by a shared database.
    con = _connect(memory_limit, temp_directory, shared=False)
    try:
        relation = _source_relation(con, 0, source)
        types = _describe(con, relation)
        what = f"feature source {source.name!r}"
        for column in (*source.join_keys, *source.features):
            if column not in types:
                raise InvalidInput(f"{what}: column {column!r} is missing")
        _check_timestamp(what, source.timestamp, types)
        if source.created_timestamp is not None:
            _check_timestamp(what, source.created_timestamp, types)
        timestamp = _utc(source.timestamp, types[source.timestamp], False)
        order = _order_struct(source, relation, types, timestamp)
        where = [f"{_quote(source.timestamp)} IS NOT NULL"]
        import pandas as pd

        for bound, op in ((start, ">="), (end, "<=")):
            if bound is not None:
                moment = pd.Timestamp(bound)
                if moment.tzinfo is not None:
                    moment = moment.tz_convert("UTC").tz_localize(None)
                where.append(f"{timestamp} {op} CAST({_literal(moment.isoformat())} AS TIMESTAMP)")
        keys = [
            f"{_quote(key)} AS {_quote(f'{_PREFIX}k{i}')}" for i, key in enumerate(source.join_keys)
        ]
        payload = [f"'t': {timestamp}"] + [
            f"{_literal(f'f{i}')}: {_quote(feature)}" for i, feature in enumerate(source.features)
        ]
        inner = (
            f"SELECT {', '.join(keys)}, {{{', '.join(payload)}}} AS {_quote(f'{_PREFIX}p')}, "
            f"{{{', '.join(order)}}} AS {_quote(f'{_PREFIX}o')} FROM {relation} "
            f"WHERE {' AND '.join(where)}"
        )
        key_aliases = [_quote(f"{_PREFIX}k{i}") for i in range(len(source.join_keys))]
        group = f"GROUP BY {', '.join(key_aliases)}" if key_aliases else ""
        outer = [f"{alias} AS {_quote(key)}" for alias, key in zip(key_aliases, source.join_keys)]
        outer.append(f"timezone('UTC', p.t) AS {_quote(source.timestamp)}")
        outer += [f"p.f{i} AS {_quote(feature)}" for i, feature in enumerate(source.features)]
        # arg_max keeps the payload of the row with the greatest order struct, per key.
        aggregates = [
            *key_aliases,
            f"arg_max({_quote(f'{_PREFIX}p')}, {_quote(f'{_PREFIX}o')}) AS p",
            f"count(*) AS {_quote(f'{_PREFIX}n')}",
        ]
        sql = (
            f"WITH w AS ({inner}), "
            f"l AS (SELECT {', '.join(aggregates)} FROM w {group}) "
            f"SELECT {', '.join([*outer, _quote(f'{_PREFIX}n')])} FROM l WHERE p IS NOT NULL"
        )
        table = con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise InvalidInput(f"feature source {source.name!r}: {exc}") from exc
    finally:
        con.close()
    counts = table.column(f"{_PREFIX}n")
    read = int(pc.sum(counts).as_py() or 0) if table.num_rows else 0
    return table.drop_columns([f"{_PREFIX}n"]), read
