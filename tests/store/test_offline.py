"""Point-in-time joins of the offline feature store (wellml.store.offline)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wellml.errors import InvalidInput
from wellml.store.offline import FeatureSource, get_historical_features, source_has_ties


def ts(*values: str | None, tz: str | None = None) -> pd.Series:
    """Timestamps from strings (None -> NaT); with tz, the strings are wall times in tz."""
    series = pd.Series(pd.to_datetime(list(values), format="ISO8601"))
    return series.dt.tz_localize(tz) if tz else series


def entity(ids: list[Any], times: pd.Series, **extra: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"driver_id": ids, "event_timestamp": times, **extra})


def column(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist()


# --- point in time ----------------------------------------------------------------------------


def test_latest_row_at_or_before_entity_time_is_used() -> None:
    source = pd.DataFrame(
        {
            "driver_id": [1, 1, 1, 2],
            "ts": ts("2024-01-01", "2024-01-03", "2024-01-05", "2024-01-02"),
            "rate": [0.1, 0.3, 0.5, 0.2],
        }
    )
    rows = entity([1, 1, 1, 2], ts("2024-01-02", "2024-01-03", "2024-01-09", "2024-01-02"))
    out = get_historical_features(
        rows, [FeatureSource("stats", source, ("driver_id",), "ts", ("rate",))]
    )
    # An equal timestamp counts as "at or before".
    assert column(out, "rate") == [0.1, 0.3, 0.5, 0.2]


def test_late_arriving_row_after_entity_time_is_never_used() -> None:
    # The 2024-01-10 row arrives first in the data and has the oldest created time; it is still
    # in the entity row's future and must not leak into it.
    source = pd.DataFrame(
        {
            "driver_id": [1, 1],
            "ts": ts("2024-01-10", "2024-01-01"),
            "created": ts("2023-01-01", "2024-01-01"),
            "rate": [9.9, 1.0],
        }
    )
    rows = entity([1, 1], ts("2024-01-09T23:59:59.999999", "2024-01-10"))
    src = FeatureSource("s", source, ("driver_id",), "ts", ("rate",), created_timestamp="created")
    assert column(get_historical_features(rows, [src]), "rate") == [1.0, 9.9]


def test_entity_before_first_feature_row_keeps_row_with_nulls() -> None:
    source = pd.DataFrame({"driver_id": [1], "ts": ts("2024-01-05"), "rate": [0.5], "n": [3]})
    rows = entity(
        [1, 1, 7], ts("2024-01-04", "2024-01-06", "2024-01-06"), label=[True, False, True]
    )
    out = get_historical_features(
        rows, [FeatureSource("s", source, ("driver_id",), "ts", ("rate", "n"))]
    )
    assert out.num_rows == 3
    assert column(out, "label") == [True, False, True]
    assert column(out, "rate") == [None, 0.5, None]
    assert column(out, "n") == [None, 3, None]


def test_null_feature_value_of_latest_row_stays_null() -> None:
    # The latest row's NULL is the value as of then; an older non-NULL value must not replace it.
    source = pa.table(
        {
            "driver_id": [1, 1],
            "ts": pa.array(ts("2024-01-01", "2024-01-02")),
            "rate": pa.array([0.5, None], pa.float64()),
            "city": pa.array(["paris", None]),
        }
    )
    rows = entity([1, 1], ts("2024-01-01", "2024-01-03"))
    out = get_historical_features(
        rows, [FeatureSource("s", source, ("driver_id",), "ts", ("rate", "city"))]
    )
    assert column(out, "rate") == [0.5, None]
    assert column(out, "city") == ["paris", None]


def test_null_entity_timestamp_or_key_gets_nulls_and_is_kept() -> None:
    source = pd.DataFrame({"driver_id": [1], "ts": ts("2024-01-01"), "rate": [0.5]})
    rows = pa.table(
        {
            "driver_id": pa.array([1, None, 1], pa.int64()),
            "event_timestamp": pa.array(ts("2024-01-02", "2024-01-02", None)),
        }
    )
    out = get_historical_features(
        rows, [FeatureSource("s", source, ("driver_id",), "ts", ("rate",))]
    )
    assert column(out, "rate") == [0.5, None, None]


def test_source_rows_with_null_timestamp_are_ignored() -> None:
    source = pd.DataFrame({"driver_id": [1, 1], "ts": ts("2024-01-01", None), "rate": [0.5, 0.9]})
    rows = entity([1], ts("2024-01-02"))
    out = get_historical_features(
        rows, [FeatureSource("s", source, ("driver_id",), "ts", ("rate",))]
    )
    assert column(out, "rate") == [0.5]


# --- ties -------------------------------------------------------------------------------------


def test_tie_goes_to_last_row_in_source_order() -> None:
    source = pd.DataFrame(
        {
            "driver_id": [1, 1, 1, 2, 2],
            "ts": ts("2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01"),
            "rate": [0.1, 0.2, 0.3, 0.9, 0.8],
        }
    )
    rows = entity([1, 2], ts("2024-01-02", "2024-01-02"))
    out = get_historical_features(
        rows, [FeatureSource("s", source, ("driver_id",), "ts", ("rate",))]
    )
    assert column(out, "rate") == [0.3, 0.8]


def test_tie_goes_to_greatest_created_timestamp_and_null_created_loses() -> None:
    source = pd.DataFrame(
        {
            "driver_id": [1, 1, 1, 2, 2],
            "ts": ts("2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01"),
            "created": ts("2024-01-03", "2024-01-05", "2024-01-04", "2024-01-02", None),
            "rate": [0.1, 0.2, 0.3, 0.9, 0.8],
        }
    )
    rows = entity([1, 2], ts("2024-01-02", "2024-01-02"))
    src = FeatureSource("s", source, ("driver_id",), "ts", ("rate",), created_timestamp="created")
    assert column(get_historical_features(rows, [src]), "rate") == [0.2, 0.9]


def test_parquet_tie_goes_to_last_row_of_last_file_in_path_order(tmp_path: Path) -> None:
    def part(rate: list[float]) -> pa.Table:
        times = pa.array(ts(*["2024-01-01"] * len(rate)))
        return pa.table({"driver_id": [1] * len(rate), "ts": times, "rate": rate})

    pq.write_table(part([0.1, 0.2]), tmp_path / "b.parquet")
    pq.write_table(part([0.3, 0.4, 0.5]), tmp_path / "a.parquet")
    rows = entity([1], ts("2024-01-02"))
    src = FeatureSource("s", str(tmp_path / "*.parquet"), ("driver_id",), "ts", ("rate",))
    assert column(get_historical_features(rows, [src]), "rate") == [0.2]


@pytest.mark.parametrize("with_ties", [False, True])
def test_rows_of_a_parquet_glob_are_told_apart_by_file(tmp_path: Path, with_ties: bool) -> None:
    # The features of a matched row are read by (file, row number) after the match; row 0 of
    # a.parquet and row 0 of b.parquet must not be confused. A third file with a tie (another
    # driver) makes the join use the full tie-break order instead of the event time alone.
    def write(name: str, ids: list[int], times: pd.Series, rates: list[float]) -> None:
        frame = pd.DataFrame({"driver_id": ids, "ts": times, "rate": rates})
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / name)

    write("a.parquet", [1, 1], ts("2024-01-01", "2024-01-03"), [0.1, 0.3])
    write("b.parquet", [2, 2], ts("2024-01-02", "2024-01-04"), [0.2, 0.4])
    if with_ties:
        write("c.parquet", [9, 9], ts("2024-01-01", "2024-01-01"), [9.1, 9.2])
    src = FeatureSource("s", str(tmp_path / "*.parquet"), ("driver_id",), "ts", ("rate",))
    assert source_has_ties(src) is with_ties
    rows = entity(
        [1, 2, 1, 2, 3, 1, 9],
        ts(
            "2024-01-02",
            "2024-01-03",
            "2024-01-05",
            "2024-01-05",
            "2024-01-05",
            "2024-01-02",
            "2024-01-02",
        ),
    )
    out = get_historical_features(rows, [src])
    nine = 9.2 if with_ties else None
    assert column(out, "rate") == [0.1, 0.2, 0.3, 0.4, None, 0.1, nine]


def test_ttl_and_two_parquet_sources_read_each_matched_row(tmp_path: Path) -> None:
    stats = pd.DataFrame(
        {"driver_id": [1, 2], "ts": ts("2024-01-01T00:00", "2024-01-01T09:00"), "rate": [1.0, 2.0]}
    )
    trips = pd.DataFrame(
        {"driver_id": [2, 1], "ts": ts("2024-01-01T00:00", "2024-01-01T09:00"), "n": [20, 10]}
    )
    for name, frame in (("stats", stats), ("trips", trips)):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / f"{name}.pq")
    sources = [
        FeatureSource("st", str(tmp_path / "stats.pq"), ("driver_id",), "ts", ("rate",), 3600),
        FeatureSource("tr", str(tmp_path / "trips.pq"), ("driver_id",), "ts", ("n",)),
    ]
    rows = entity([1, 2, 1], ts("2024-01-01T00:30", "2024-01-01T09:30", "2024-01-01T09:30"))
    out = get_historical_features(rows, sources)
    # The third row's stats match is 9.5 hours old, beyond the one-hour TTL.
    assert column(out, "rate") == [1.0, 2.0, None]
    assert column(out, "n") == [None, 20, 10]
    assert out.column_names == ["driver_id", "event_timestamp", "rate", "n"]


# --- TTL --------------------------------------------------------------------------------------


def test_ttl_expired_latest_row_gives_nulls_not_an_older_row() -> None:
    source = pd.DataFrame(
        {"driver_id": [1, 1], "ts": ts("2024-01-01T00:00", "2024-01-01T10:00"), "rate": [0.1, 0.2]}
    )
    rows = entity(
        [1, 1, 1, 1],
        ts(
            "2024-01-01T10:30", "2024-01-01T11:00", "2024-01-01T11:00:00.000001", "2024-01-01T00:30"
        ),
    )
    src = FeatureSource("s", source, ("driver_id",), "ts", ("rate",), ttl_seconds=3600)
    # Age exactly the TTL is still fresh; one microsecond more is expired.
    assert column(get_historical_features(rows, [src]), "rate") == [0.2, 0.2, None, 0.1]


def test_fractional_ttl_is_honoured() -> None:
    source = pd.DataFrame({"driver_id": [1], "ts": ts("2024-01-01T00:00:00"), "rate": [0.1]})
    rows = entity([1, 1], ts("2024-01-01T00:00:00.25", "2024-01-01T00:00:00.75"))
    src = FeatureSource("s", source, ("driver_id",), "ts", ("rate",), ttl_seconds=0.5)
    assert column(get_historical_features(rows, [src]), "rate") == [0.1, None]


# --- time zones and precision -----------------------------------------------------------------


def test_mixed_time_zones_compare_as_utc_instants() -> None:
    # Naive source timestamps are UTC: 14:00 UTC. New York 09:30 is 14:30 UTC (after it),
    # Tokyo 22:59 is 13:59 UTC (before it).
    source = pd.DataFrame(
        {"driver_id": [1, 1], "ts": ts("2024-01-01T00:00", "2024-01-15T14:00"), "rate": [1.0, 2.0]}
    )
    new_york = entity([1, 1], ts("2024-01-15T09:30", "2024-01-15T08:59", tz="America/New_York"))
    tokyo = entity([1, 1], ts("2024-01-15T22:59", "2024-01-15T23:00", tz="Asia/Tokyo"))
    src = FeatureSource("s", source, ("driver_id",), "ts", ("rate",))
    assert column(get_historical_features(new_york, [src]), "rate") == [2.0, 1.0]
    assert column(get_historical_features(tokyo, [src]), "rate") == [1.0, 2.0]

    aware = source.assign(ts=source["ts"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"))
    naive_entity = entity([1, 1], ts("2024-01-15T13:59:59", "2024-01-15T14:00"))
    src = FeatureSource("s", aware, ("driver_id",), "ts", ("rate",))
    assert column(get_historical_features(naive_entity, [src]), "rate") == [1.0, 2.0]


def test_entity_columns_come_back_unchanged() -> None:
    times = ts("2024-01-03", "2024-01-01", "2024-01-02", tz="America/New_York").astype(
        "datetime64[ns, America/New_York]"
    )
    rows = pd.DataFrame(
        {
            "label": [0.5, 1.5, 2.5],
            "driver_id": [3, 1, 2],
            "event_timestamp": times,
            "note": pd.Categorical(["a", "b", "a"]),
        }
    )
    source = pd.DataFrame(
        {
            "driver_id": [1, 2, 3],
            "ts": ts("2023-12-31", "2023-12-31", "2023-12-31"),
            "rate": [1.0, 2.0, 3.0],
        }
    )
    out = get_historical_features(
        rows, [FeatureSource("s", source, ("driver_id",), "ts", ("rate",))]
    )
    assert out.column_names == ["label", "driver_id", "event_timestamp", "note", "rate"]
    expected = pa.Table.from_pandas(rows, preserve_index=False)
    assert out.select(expected.column_names).cast(expected.schema).equals(expected)
    assert out.schema.field("event_timestamp").type == pa.timestamp("ns", tz="America/New_York")
    assert column(out, "rate") == [3.0, 1.0, 2.0]


def test_nanosecond_timestamps_compare_to_the_nanosecond() -> None:
    base = pd.Timestamp("2024-01-01")
    source = pd.DataFrame(
        {
            "driver_id": [1, 1],
            "ts": pd.Series([base, base + pd.Timedelta(900, "ns")]).astype("datetime64[ns]"),
            "rate": [1.0, 2.0],
        }
    )
    rows = entity(
        [1, 1],
        pd.Series([base + pd.Timedelta(500, "ns"), base + pd.Timedelta(900, "ns")]).astype(
            "datetime64[ns]"
        ),
    )
    out = get_historical_features(
        rows, [FeatureSource("s", source, ("driver_id",), "ts", ("rate",))]
    )
    assert column(out, "rate") == [1.0, 2.0]


# --- several sources and names ----------------------------------------------------------------


def test_two_sources_with_different_keys_are_joined_independently() -> None:
    drivers = pd.DataFrame(
        {"driver_id": [1, 2], "ts": ts("2024-01-01", "2024-01-01"), "rate": [0.1, 0.2]}
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "created": ts("2024-01-01", "2024-01-03", "2024-01-05"),
            "spend": [10, 30, 50],
        }
    )
    rows = entity(
        [1, 2, 2], ts("2024-01-02", "2024-01-05", "2024-01-06"), customer_id=["a", "a", "b"]
    )
    out = get_historical_features(
        rows,
        [
            FeatureSource("drivers", drivers, ("driver_id",), "ts", ("rate",)),
            FeatureSource(
                "customers", customers, ("customer_id",), "created", ("spend",), ttl_seconds=86400
            ),
        ],
    )
    assert out.column_names == ["driver_id", "event_timestamp", "customer_id", "rate", "spend"]
    assert column(out, "rate") == [0.1, 0.2, 0.2]
    assert column(out, "spend") == [10, None, 50]


def test_source_without_join_keys_is_a_global_time_series() -> None:
    rates = pd.DataFrame({"ts": ts("2024-01-01", "2024-01-03"), "eur_usd": [1.1, 1.2]})
    rows = entity([1, 2, 3], ts("2024-01-02", "2024-01-03", "2023-12-31"))
    out = get_historical_features(rows, [FeatureSource("fx", rates, (), "ts", ("eur_usd",))])
    assert column(out, "eur_usd") == [1.1, 1.2, None]


def test_feature_name_collision_across_sources_raises() -> None:
    a = pd.DataFrame({"driver_id": [1], "ts": ts("2024-01-01"), "rate": [0.1]})
    b = pd.DataFrame({"driver_id": [1], "ts": ts("2024-01-01"), "rate": [0.9]})
    rows = entity([1], ts("2024-01-02"))
    sources = [
        FeatureSource("a", a, ("driver_id",), "ts", ("rate",)),
        FeatureSource("b", b, ("driver_id",), "ts", ("rate",)),
    ]
    with pytest.raises(InvalidInput, match=r"'rate'.*'a'.*full_feature_names"):
        get_historical_features(rows, sources)


def test_full_feature_names_prefix_source_name() -> None:
    a = pd.DataFrame({"driver_id": [1], "ts": ts("2024-01-01"), "rate": [0.1]})
    b = pd.DataFrame({"driver_id": [1], "ts": ts("2024-01-01"), "rate": [0.9]})
    rows = entity([1], ts("2024-01-02"))
    sources = [
        FeatureSource("a", a, ("driver_id",), "ts", ("rate",)),
        FeatureSource("b", b, ("driver_id",), "ts", ("rate",)),
    ]
    out = get_historical_features(rows, sources, full_feature_names=True)
    assert out.column_names == ["driver_id", "event_timestamp", "a__rate", "b__rate"]
    assert column(out, "a__rate") == [0.1]
    assert column(out, "b__rate") == [0.9]


# --- inputs -----------------------------------------------------------------------------------


def test_parquet_entity_and_source_with_spill_settings(tmp_path: Path) -> None:
    source = pa.table(
        {"driver_id": [1, 2], "ts": pa.array(ts("2024-01-01", "2024-01-01")), "rate": [0.1, 0.2]}
    )
    pq.write_table(source, tmp_path / "source.parquet")
    rows = pa.Table.from_pandas(
        entity([2, 1, 3], ts("2024-01-02", "2024-01-02", "2024-01-02")), preserve_index=False
    )
    pq.write_table(rows, tmp_path / "entity.parquet")
    out = get_historical_features(
        tmp_path / "entity.parquet",
        [FeatureSource("s", tmp_path / "source.parquet", ("driver_id",), "ts", ("rate",))],
        memory_limit="256MB",
        temp_directory=str(tmp_path / "spill"),
    )
    assert column(out, "driver_id") == [2, 1, 3]
    assert column(out, "rate") == [0.2, 0.1, None]


def test_empty_source_gives_nulls_and_empty_entity_gives_empty_table() -> None:
    source = pd.DataFrame({"driver_id": [1], "ts": ts("2024-01-01"), "rate": [0.5]})
    rows = entity([1, 2], ts("2024-01-02", "2024-01-02"))
    src = FeatureSource("s", source.iloc[:0], ("driver_id",), "ts", ("rate",))
    assert column(get_historical_features(rows, [src]), "rate") == [None, None]
    src = FeatureSource("s", source, ("driver_id",), "ts", ("rate",))
    out = get_historical_features(rows.iloc[:0], [src])
    assert out.num_rows == 0
    assert out.column_names == ["driver_id", "event_timestamp", "rate"]


def test_categorical_join_key_matches_string_key() -> None:
    source = pd.DataFrame(
        {"city": ["lyon", "nice"], "ts": ts("2024-01-01", "2024-01-01"), "temp": [7, 9]}
    )
    rows = pd.DataFrame(
        {
            "city": pd.Categorical(["nice", "lyon", "metz"]),
            "event_timestamp": ts("2024-01-02", "2024-01-02", "2024-01-02"),
        }
    )
    out = get_historical_features(
        rows, [FeatureSource("weather", source, ("city",), "ts", ("temp",))]
    )
    assert column(out, "temp") == [9, 7, None]


def test_entity_and_source_timestamp_names_are_configurable() -> None:
    source = pa.table({"k": ["x"], "t": pa.array(ts("2024-01-01")), "v": [1]})
    rows = pa.table({"k": ["x"], "when": pa.array(ts("2024-01-02"))})
    out = get_historical_features(
        rows, [FeatureSource("s", source, ["k"], "t", ["v"])], entity_timestamp="when"
    )  # type: ignore[arg-type]
    assert column(out, "v") == [1]


def _good_source(**changes: Any) -> dict[str, Any]:
    data = pd.DataFrame(
        {
            "driver_id": [1],
            "ts": ts("2024-01-01"),
            "created": ts("2024-01-01"),
            "rate": [0.1],
            "day": ["x"],
        }
    )
    kwargs: dict[str, Any] = {
        "name": "stats",
        "data": data,
        "join_keys": ("driver_id",),
        "timestamp": "ts",
        "features": ("rate",),
    }
    kwargs.update(changes)
    return kwargs


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"join_keys": ("nope",)}, r"'stats'.*join key column 'nope' is missing"),
        ({"timestamp": "nope"}, r"'stats'.*timestamp column 'nope' is missing"),
        ({"features": ("rate", "nope")}, r"'stats'.*feature columns \['nope'\] are missing"),
        ({"timestamp": "day"}, r"'stats'.*column 'day' must be a timestamp, got VARCHAR"),
        ({"timestamp": "rate"}, r"'stats'.*column 'rate' must be a timestamp, got DOUBLE"),
        ({"created_timestamp": "day"}, r"'stats'.*column 'day' must be a timestamp"),
        ({"created_timestamp": "nope"}, r"'stats'.*column 'nope' is missing"),
        (
            {"data": pd.DataFrame({"driver_id": ["1"], "ts": ts("2024-01-01"), "rate": [0.1]})},
            r"'stats'.*join key column 'driver_id' is VARCHAR in the source but BIGINT",
        ),
        ({"data": "/definitely/not/here/*.parquet"}, r"'stats'.*cannot read Parquet"),
        ({"features": ("driver_id",)}, r"'stats'.*'driver_id' collides with an entity column"),
        (
            {
                "data": pd.DataFrame(
                    {"driver_id": [1], "ts": ts("2024-01-01"), "__wellml_row": [1], "rate": [0.1]}
                )
            },
            r"'stats'.*reserved",
        ),
    ],
)
def test_bad_source_raises_invalid_input_naming_source_and_column(
    changes: dict[str, Any], message: str
) -> None:
    rows = entity([1], ts("2024-01-02"))
    with pytest.raises(InvalidInput, match=message):
        get_historical_features(rows, [FeatureSource(**_good_source(**changes))])


def test_entity_join_key_missing_raises() -> None:
    rows = pd.DataFrame({"event_timestamp": ts("2024-01-02")})
    with pytest.raises(
        InvalidInput, match=r"'stats'.*join key column 'driver_id' is missing from the entity"
    ):
        get_historical_features(rows, [FeatureSource(**_good_source())])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            pd.DataFrame({"driver_id": [1]}),
            r"entity: timestamp column 'event_timestamp' is missing",
        ),
        (
            pd.DataFrame({"driver_id": [1], "event_timestamp": ["2024-01-02"]}),
            r"entity: column 'event_timestamp' must be a timestamp",
        ),
        (
            pd.DataFrame(
                {"driver_id": [1], "event_timestamp": pd.to_datetime(["2024-01-02"]).date}
            ),
            r"entity: column 'event_timestamp' must be a timestamp, got DATE",
        ),
        (
            pd.DataFrame(
                {"driver_id": [1], "event_timestamp": ts("2024-01-02"), "__wellml_t": [1]}
            ),
            r"entity: .*reserved",
        ),
        ({"driver_id": [1]}, r"entity must be a Parquet path"),
    ],
)
def test_bad_entity_raises_invalid_input(rows: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        get_historical_features(rows, [FeatureSource(**_good_source())])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, r"name must be a non-empty string"),
        ({"join_keys": "driver_id"}, r"join_keys must be a tuple of column names"),
        ({"features": ()}, r"features must not be empty"),
        ({"features": ("rate", "rate")}, r"duplicate features"),
        ({"ttl_seconds": -1}, r"ttl_seconds must be a finite number >= 0"),
        ({"ttl_seconds": math.inf}, r"ttl_seconds must be a finite number >= 0"),
        ({"data": {"driver_id": [1]}}, r"data must be a Parquet path"),
    ],
)
def test_bad_feature_source_definition_raises_invalid_input(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        FeatureSource(**_good_source(**changes))


def test_duplicate_source_names_and_bad_settings_raise_invalid_input() -> None:
    rows = entity([1], ts("2024-01-02"))
    source = FeatureSource(**_good_source())
    with pytest.raises(InvalidInput, match=r"unique.*'stats'"):
        get_historical_features(rows, [source, source], full_feature_names=True)
    with pytest.raises(InvalidInput, match=r"memory_limit"):
        get_historical_features(rows, [source], memory_limit="lots")


# --- randomized comparison with a pandas reference ----------------------------------------------


def reference_join(
    rows: pd.DataFrame, source: pd.DataFrame, keys: list[str], ttl: float | None, created: bool
) -> dict[str, list[Any]]:
    """The definition, written plainly: scan every candidate row of every entity row."""
    src = source.assign(
        _t=pd.to_datetime(source["ts"], utc=True),
        _c=pd.to_datetime(source["created"], utc=True) if created else pd.NaT,
        _pos=np.arange(len(source)),
    )
    src = src[src["_t"].notna()]
    when = pd.to_datetime(rows["event_timestamp"], utc=True)
    out: dict[str, list[Any]] = {"f_num": [], "f_str": []}
    for i in range(len(rows)):
        match = src["_t"] <= when.iloc[i]
        for key in keys:
            value = rows[key].iloc[i]
            match &= src[key] == value if not pd.isna(value) else False
        if ttl is not None:
            match &= (when.iloc[i] - src["_t"]) <= pd.Timedelta(seconds=ttl)
        candidates = src[match]
        if pd.isna(when.iloc[i]) or candidates.empty:
            out["f_num"].append(None)
            out["f_str"].append(None)
            continue
        # Greatest timestamp, then greatest created (missing lowest), then last position.
        order = candidates.assign(_c=candidates["_c"].fillna(pd.Timestamp.min.tz_localize("UTC")))
        best = order.sort_values(["_t", "_c", "_pos"]).iloc[-1]
        out["f_num"].append(None if pd.isna(best["f_num"]) else best["f_num"])
        out["f_str"].append(None if pd.isna(best["f_str"]) else best["f_str"])
    return out


def random_times(rng: np.random.Generator, n: int, tz: str | None, null_share: float) -> pd.Series:
    seconds = rng.integers(0, 40, n) * 60  # few distinct values, so ties and equal times abound
    times = pd.Series(
        pd.Timestamp("2024-03-10T06:00", tz="UTC") + pd.to_timedelta(seconds, unit="s")
    )
    times[rng.random(n) < null_share] = pd.NaT
    return times.dt.tz_convert(tz) if tz else times.dt.tz_localize(None)


@pytest.mark.parametrize("layout", ["frame", "parquet", "parquet-without-ties"])
@pytest.mark.parametrize("seed", range(20))
def test_matches_pandas_reference_on_random_data(seed: int, layout: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(seed)
    zones = [None, "UTC", "America/New_York", "Asia/Kolkata"]
    n_source, n_rows = int(rng.integers(50, 400)), int(rng.integers(50, 300))
    two_keys = bool(rng.integers(0, 2))
    created = bool(rng.integers(0, 2))
    ttl = [None, 0.0, 600.0, 1234.5][int(rng.integers(0, 4))]

    def keys(n: int) -> dict[str, Any]:
        ids = pd.array(rng.integers(0, 6, n), dtype="Int64")
        ids[rng.random(n) < 0.05] = pd.NA
        cols: dict[str, Any] = {"k1": ids}
        if two_keys:
            cols["k2"] = rng.choice(["a", "b"], n)
        return cols

    source = pd.DataFrame(
        {
            **keys(n_source),
            "ts": random_times(rng, n_source, zones[int(rng.integers(0, 4))], 0.05),
            "created": random_times(rng, n_source, zones[int(rng.integers(0, 4))], 0.2),
            "f_num": np.where(rng.random(n_source) < 0.1, np.nan, rng.random(n_source)),
            "f_str": [None if r < 0.1 else f"s{j}" for j, r in enumerate(rng.random(n_source))],
        }
    )
    rows = pd.DataFrame(
        {
            **keys(n_rows),
            "event_timestamp": random_times(rng, n_rows, zones[int(rng.integers(0, 4))], 0.05),
            "row_id": np.arange(n_rows),
        }
    )
    join_keys = ["k1", "k2"] if two_keys else ["k1"]
    data: Any = source
    if layout == "parquet-without-ties":
        # Without ties the join compares event times alone (see test_offline_ties.py).
        source = source.drop_duplicates([*join_keys, "ts"]).reset_index(drop=True)
    if layout != "frame":
        # Microseconds are compared in the source's own type; pandas' nanoseconds are kept.
        unit = "us" if seed % 2 else None
        data = str(tmp_path / "source.parquet")
        pq.write_table(
            pa.Table.from_pandas(source, preserve_index=False), data, coerce_timestamps=unit
        )
    src = FeatureSource(
        "s",
        data,
        tuple(join_keys),
        "ts",
        ("f_num", "f_str"),
        ttl_seconds=ttl,
        created_timestamp="created" if created else None,
    )
    out = get_historical_features(rows, [src])
    expected = reference_join(rows, source, join_keys, ttl, created)
    assert column(out, "row_id") == list(range(n_rows))
    assert column(out, "f_num") == expected["f_num"]
    assert column(out, "f_str") == expected["f_str"]
