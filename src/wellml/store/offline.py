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
* **Time zones.** Timestamps with a time zone are converted to UTC; timestamps without one are
  taken to be UTC already. Comparisons are exact to the nanosecond when both sides are stored
  with nanoseconds, otherwise to the microsecond (DuckDB's ``TIMESTAMP``); so are TTLs.
  ``created_timestamp`` is compared to the microsecond.

The join runs in one DuckDB query: one ``ASOF LEFT JOIN`` per source, chained off the entity
rows. Arrow tables and DataFrames are scanned in place through ``con.register``; Parquet paths and
globs are read with ``read_parquet``, so only the needed columns are read and, with
``memory_limit`` and ``temp_directory``, DuckDB spills to disk on data larger than memory. The
result (entity rows plus features) is an in-memory Arrow table, so it must fit in memory.

Reading Parquet relies on DuckDB's ``file_index`` and ``file_row_number`` virtual columns
(DuckDB 1.3 or later) for the tie-break order.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from wellml.errors import InvalidInput

__all__ = ["FeatureSource", "describe_source", "get_historical_features", "latest_rows"]

#: What a caller may pass as entity rows or source data.
TableLike: TypeAlias = str | Path | pa.Table | pd.DataFrame

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
        if not isinstance(self.data, str | Path | pa.Table | pd.DataFrame):
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
            ``__wellml_`` prefix, or ``memory_limit``/``temp_directory`` is rejected by DuckDB.
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
        # From here on, order comes from explicit row numbers and the final ORDER BY; not
        # keeping insertion order lets DuckDB stream and spill with less memory.
        con.execute("SET preserve_insertion_order = false")
        entity_types = _register_entity(con, entity_table)
        _check_timestamp("entity", entity_timestamp, entity_types)
        plans = [
            _plan_source(con, index, source, entity_types, entity_timestamp)
            for index, source in enumerate(sources)
        ]
        output_names = _output_names(sources, entity_table.column_names, full_feature_names)
        result = con.sql(_join_sql(plans, entity_types, entity_timestamp, output_names))
        joined = result.to_arrow_table()
    finally:
        con.close()

    if joined.num_rows != entity_table.num_rows:
        # ASOF LEFT JOIN yields exactly one row per probe row; anything else is a bug, and
        # gluing misaligned columns together would silently corrupt the training set.
        raise RuntimeError(
            f"point-in-time join returned {joined.num_rows} rows for {entity_table.num_rows}"
        )
    # The entity columns are taken from the caller's table rather than from DuckDB, so that
    # their types (time zones, nanoseconds, dictionaries) come back exactly as given.
    fields = list(entity_table.schema) + list(joined.schema)[1:]
    columns = list(entity_table.columns) + list(joined.columns)[1:]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


@dataclass(frozen=True)
class _SourcePlan:
    """The SQL pieces of one source, validated against the entity."""

    source: FeatureSource
    alias: str
    cte: str
    keys: tuple[str, ...]
    nanoseconds: bool
    with_created: bool


def _quote(name: str) -> str:
    """Quote an SQL identifier, so any column name (spaces, quotes, keywords) is safe."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    """Quote an SQL string literal (table functions such as read_parquet take no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _connect(memory_limit: str | None, temp_directory: str | None) -> duckdb.DuckDBPyConnection:
    # Extensions are never downloaded behind the caller's back: this platform is self-hosted
    # and may be offline; everything the join uses is built into DuckDB.
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False
    }
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
    if isinstance(entity, pd.DataFrame):
        return _from_pandas(entity, "entity")
    if isinstance(entity, str | Path):
        try:
            # The output holds every entity row anyway, so loading them costs nothing extra;
            # DuckDB keeps file order (sorted paths, then rows) for a query without ORDER BY.
            table = con.sql(f"SELECT * FROM read_parquet({_literal(str(entity))})")
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


def _check_reserved(what: str, columns: Sequence[str]) -> None:
    reserved = [column for column in columns if column.startswith(_PREFIX)]
    if reserved:
        raise InvalidInput(
            f"{what}: column names starting with {_PREFIX!r} are reserved: {reserved}"
        )


def _register_entity(con: duckdb.DuckDBPyConnection, table: pa.Table) -> dict[str, str]:
    _check_reserved("entity", table.column_names)
    # The row number restores the input order after the joins, which do not keep it.
    numbered = table.append_column(_ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
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
    if isinstance(table, pd.DataFrame):
        table = _from_pandas(table, f"feature source {source.name!r}")
    _check_reserved(f"feature source {source.name!r}", table.column_names)
    # Arrow scans run in parallel, so row_number() OVER () would not be the table's order;
    # an explicit row number is (appending a column copies no data).
    table = table.append_column(_ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    name = f"{_PREFIX}data_{index}"
    con.register(name, table)
    return name


def _plan_source(
    con: duckdb.DuckDBPyConnection,
    index: int,
    source: FeatureSource,
    entity_types: dict[str, str],
    entity_timestamp: str,
) -> _SourcePlan:
    """Validate one source against the entity and build its common table expression."""
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

    # Nanoseconds only when both sides have them: casting a microsecond timestamp to
    # nanoseconds could overflow (the nanosecond range ends in 2262).
    nanoseconds = (
        types[source.timestamp] in _NANOSECOND_TIMESTAMPS
        and entity_types[entity_timestamp] in _NANOSECOND_TIMESTAMPS
    )
    timestamp = _utc(source.timestamp, types[source.timestamp], nanoseconds)

    # The ASOF inequality compares (timestamp, created, file, row) structs, so the latest row
    # wins and ties resolve in one pass, with no separate deduplication (which costs a window
    # over the whole source).
    order = _order_struct(source, relation, types, timestamp)

    alias = f"{_PREFIX}s{index}"
    columns = [
        f"{_quote(key)} AS {_quote(f'{_PREFIX}k{i}')}" for i, key in enumerate(source.join_keys)
    ]
    columns.append(f"{timestamp} AS {_quote(f'{_PREFIX}t')}")
    columns.append(f"{{{', '.join(order)}}} AS {_quote(f'{_PREFIX}o')}")
    columns += [
        f"{_quote(feature)} AS {_quote(f'{_PREFIX}f{i}')}"
        for i, feature in enumerate(source.features)
    ]
    cte = (
        f"{alias} AS (SELECT {', '.join(columns)} FROM {relation} "
        f"WHERE {_quote(source.timestamp)} IS NOT NULL)"
    )
    return _SourcePlan(
        source=source,
        alias=alias,
        cte=cte,
        keys=source.join_keys,
        nanoseconds=nanoseconds,
        with_created=source.created_timestamp is not None,
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
    if relation.startswith("read_parquet("):
        order.append("'f': CAST(file_index AS BIGINT)")
        order.append("'r': CAST(file_row_number AS BIGINT)")
    else:
        order.append(f"'r': {_quote(_ROW)}")
    return order


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


def _join_sql(
    plans: Sequence[_SourcePlan],
    entity_types: dict[str, str],
    entity_timestamp: str,
    output_names: Sequence[Sequence[str]],
) -> str:
    """One query: the entity rows, ASOF LEFT JOINed to each source in turn."""
    entity_type = entity_types[entity_timestamp]
    keys = sorted({key for plan in plans for key in plan.keys})
    entity_columns = [_quote(_ROW), *(_quote(key) for key in keys)]
    entity_columns.append(
        f"{_utc(entity_timestamp, entity_type, False)} AS {_quote(f'{_PREFIX}t')}"
    )
    if any(plan.nanoseconds for plan in plans):
        entity_columns.append(
            f"{_utc(entity_timestamp, entity_type, True)} AS {_quote(f'{_PREFIX}t_ns')}"
        )
    ctes = [f"{_PREFIX}e AS (SELECT {', '.join(entity_columns)} FROM {_PREFIX}entity)"]
    ctes += [plan.cte for plan in plans]

    selected = [f"e.{_quote(_ROW)}"]
    joins = []
    for plan, names in zip(plans, output_names, strict=True):
        s = plan.alias
        entity_ts = f"e.{_quote(f'{_PREFIX}t_ns' if plan.nanoseconds else f'{_PREFIX}t')}"
        # The probe struct is at least every source struct with the same timestamp, so the
        # ASOF match is the greatest (timestamp, created, file, row) not after the entity time.
        probe = [f"'t': {entity_ts}"]
        if plan.with_created:
            probe.append("'c': 'infinity'::TIMESTAMP")
        if isinstance(plan.source.data, str | Path):
            probe.append(f"'f': CAST({_INT64_MAX} AS BIGINT)")
        probe.append(f"'r': CAST({_INT64_MAX} AS BIGINT)")
        # A NULL field inside a struct compares as the greatest value, which would match the
        # latest row; a NULL entity time must match nothing, so the whole struct is NULL.
        condition = [
            f"(CASE WHEN {entity_ts} IS NULL THEN NULL ELSE {{{', '.join(probe)}}} END) "
            f">= {s}.{_quote(f'{_PREFIX}o')}"
        ]
        condition = [
            f"e.{_quote(key)} = {s}.{_quote(f'{_PREFIX}k{i}')}" for i, key in enumerate(plan.keys)
        ] + condition
        joins.append(f"ASOF LEFT JOIN {s} ON {' AND '.join(condition)}")

        ttl = plan.source.ttl_seconds
        fresh = None
        if ttl is not None:
            # The ASOF match is the latest eligible row, so if it is too old every other row is
            # too; the TTL can therefore be applied after the join, on the match alone.
            unit, scale = ("ns", 1e9) if plan.nanoseconds else ("us", 1e6)
            limit = round(ttl * scale)
            fresh = (
                f"epoch_{unit}({entity_ts}) - epoch_{unit}({s}.{_quote(f'{_PREFIX}t')}) <= {limit}"
            )
        for i, name in enumerate(names):
            value = f"{s}.{_quote(f'{_PREFIX}f{i}')}"
            if fresh is not None:
                value = f"CASE WHEN {fresh} THEN {value} END"
            selected.append(f"{value} AS {_quote(name)}")

    return (
        f"WITH {', '.join(ctes)} "
        f"SELECT {', '.join(selected)} FROM {_PREFIX}e AS e {' '.join(joins)} "
        f"ORDER BY e.{_quote(_ROW)}"
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
        table = _from_pandas(data, "source") if isinstance(data, pd.DataFrame) else data
        con.register(f"{_PREFIX}describe", table)
        return _describe(con, f"{_PREFIX}describe")
    finally:
        con.close()


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
    con = _connect(memory_limit, temp_directory)
    try:
        con.execute("SET preserve_insertion_order = false")
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
