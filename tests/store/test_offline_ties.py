"""The tie check of Parquet sources and the join paths it chooses (wellml.store.offline).

A Parquet source known to have no two rows with the same join keys and event time is joined on
its event time alone; one with ties, an in-memory source, or one whose files changed since the
check uses the full (event time, created time, file, row) order. Both must give the same rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wellml.errors import InvalidInput
from wellml.store import offline
from wellml.store.offline import (
    FeatureSource,
    TieChecks,
    get_historical_features,
    source_has_ties,
)


def utc(*values: str) -> pa.Array:
    return pa.array(
        pd.to_datetime(list(values), utc=True, format="ISO8601"), pa.timestamp("us", tz="UTC")
    )


def naive(*values: str, unit: str = "us") -> pa.Array:
    return pa.array(pd.to_datetime(list(values), format="ISO8601"), pa.timestamp(unit))


def source_table(ids: list[int], times: pa.Array, rates: list[float | None]) -> pa.Table:
    return pa.table({"driver_id": ids, "ts": times, "rate": pa.array(rates, pa.float64())})


def write(path: Path, table: pa.Table) -> str:
    # Plain, uncompressed and without statistics: files of the same shape have the same size.
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)
    return str(path)


def rates(table: pa.Table) -> list[Any]:
    return table.column("rate").to_pylist()


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The timestamp expressions of every tie check actually run (not answered from cache)."""
    ran: list[str] = []
    real = offline._has_ties

    def counting(con: Any, relation: str, source: FeatureSource, timestamp: str) -> bool:
        ran.append(timestamp)
        return real(con, relation, source, timestamp)

    monkeypatch.setattr(offline, "_has_ties", counting)
    return ran


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[list[bool]]:
    """For every join query built: whether each source used the full tie-break order."""
    built: list[list[bool]] = []
    real = offline._match_sql

    def recording(source_plans: Any, *args: Any) -> str:
        built.append([plan.tie_break for plan in source_plans])
        return real(source_plans, *args)

    monkeypatch.setattr(offline, "_match_sql", recording)
    return built


# --- the check ---------------------------------------------------------------------------------


def test_tie_check_finds_rows_sharing_key_and_time(tmp_path: Path) -> None:
    times = utc("2024-01-01", "2024-01-02", "2024-01-01")
    without = write(tmp_path / "a.parquet", source_table([1, 1, 2], times, [0.1, 0.2, 0.3]))
    with_ties = write(tmp_path / "b.parquet", source_table([1, 2, 1], times, [0.1, 0.2, 0.3]))
    assert source_has_ties(FeatureSource("a", without, ("driver_id",), "ts", ("rate",))) is False
    assert source_has_ties(FeatureSource("b", with_ties, ("driver_id",), "ts", ("rate",))) is True
    # Without join keys every row is one series: equal times tie whatever the ids.
    assert source_has_ties(FeatureSource("g", without, (), "ts", ("rate",))) is True


def test_rows_with_null_key_or_time_never_tie(tmp_path: Path) -> None:
    table = pa.table(
        {
            "driver_id": pa.array([None, None, 1, 1], pa.int64()),
            "ts": pa.array(
                [*pd.to_datetime(["2024-01-01", "2024-01-01"]), None, None], pa.timestamp("us")
            ),
            "rate": [0.1, 0.2, 0.3, 0.4],
        }
    )
    path = write(tmp_path / "s.parquet", table)
    assert source_has_ties(FeatureSource("s", path, ("driver_id",), "ts", ("rate",))) is False


def test_ties_across_files_of_a_glob_are_found(tmp_path: Path) -> None:
    times = utc("2024-01-01")
    write(tmp_path / "a.parquet", source_table([1], times, [0.1]))
    write(tmp_path / "b.parquet", source_table([1], times, [0.2]))
    src = FeatureSource("s", str(tmp_path / "*.parquet"), ("driver_id",), "ts", ("rate",))
    assert source_has_ties(src) is True


def test_in_memory_sources_are_not_checked(checks: list[str]) -> None:
    table = source_table([1], utc("2024-01-01"), [0.1])
    assert source_has_ties(FeatureSource("s", table, ("driver_id",), "ts", ("rate",))) is None
    frame = table.to_pandas()
    assert source_has_ties(FeatureSource("s", frame, ("driver_id",), "ts", ("rate",))) is None
    assert checks == []


def test_tie_check_of_bad_source_raises_invalid_input(tmp_path: Path) -> None:
    path = write(tmp_path / "s.parquet", source_table([1], utc("2024-01-01"), [0.1]))
    with pytest.raises(InvalidInput, match="join key column 'customer_id' is missing"):
        source_has_ties(FeatureSource("s", path, ("customer_id",), "ts", ("rate",)))
    with pytest.raises(InvalidInput, match="'rate' must be a timestamp, got DOUBLE"):
        source_has_ties(FeatureSource("s", path, ("driver_id",), "rate", ("rate",)))
    with pytest.raises(InvalidInput, match="cannot read Parquet"):
        source_has_ties(
            FeatureSource("s", str(tmp_path / "missing.parquet"), ("driver_id",), "ts", ("rate",))
        )
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InvalidInput, match="cannot read Parquet"):
        source_has_ties(
            FeatureSource("s", str(tmp_path / "bad.parquet"), ("driver_id",), "ts", ("rate",))
        )


# --- caching by content ------------------------------------------------------------------------


def test_check_runs_once_per_content(tmp_path: Path, checks: list[str]) -> None:
    path = write(
        tmp_path / "s.parquet", source_table([1, 2], utc("2024-01-01", "2024-01-01"), [1, 2])
    )
    src = FeatureSource("s", path, ("driver_id",), "ts", ("rate",))
    rows = pa.table({"driver_id": [1, 2], "event_timestamp": utc("2024-01-02", "2024-01-02")})
    assert source_has_ties(src) is False
    assert rates(get_historical_features(rows, [src])) == [1.0, 2.0]
    assert rates(get_historical_features(rows, [src])) == [1.0, 2.0]
    assert checks == ['"ts"']


def test_source_rewritten_with_ties_is_checked_again_never_served_stale(
    tmp_path: Path, checks: list[str], plans: list[list[bool]]
) -> None:
    path = tmp_path / "s.parquet"
    write(path, source_table([1, 1], utc("2024-01-01", "2024-01-02"), [0.1, 0.2]))
    before = os.stat(path)
    src = FeatureSource("s", str(path), ("driver_id",), "ts", ("rate",))
    rows = pa.table({"driver_id": [1], "event_timestamp": utc("2024-01-03")})
    assert rates(get_historical_features(rows, [src])) == [0.2]
    assert plans[-1] == [False]

    # Same size and modification time as before: only the inode or change time tells.
    write(path, source_table([1, 1], utc("2024-01-02", "2024-01-02"), [0.7, 0.9]))
    assert os.stat(path).st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert rates(get_historical_features(rows, [src])) == [0.9]
    assert plans[-1] == [True]
    assert len(checks) == 2
    assert source_has_ties(src) is True
    assert len(checks) == 2


def test_file_added_to_a_glob_is_checked_again(tmp_path: Path, checks: list[str]) -> None:
    write(tmp_path / "a.parquet", source_table([1], utc("2024-01-01"), [0.1]))
    src = FeatureSource("s", str(tmp_path / "*.parquet"), ("driver_id",), "ts", ("rate",))
    assert source_has_ties(src) is False
    write(tmp_path / "b.parquet", source_table([1], utc("2024-01-01"), [0.2]))
    assert source_has_ties(src) is True
    rows = pa.table({"driver_id": [1], "event_timestamp": utc("2024-01-02")})
    # The tie goes to the last row of the last file in path order.
    assert rates(get_historical_features(rows, [src])) == [0.2]
    assert len(checks) == 2


def test_source_changed_during_join_is_joined_again_with_full_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plans: list[list[bool]]
) -> None:
    path = write(
        tmp_path / "s.parquet", source_table([1, 1], utc("2024-01-01", "2024-01-02"), [1, 2])
    )
    src = FeatureSource("s", path, ("driver_id",), "ts", ("rate",))
    assert source_has_ties(src) is False
    real = offline._fingerprint
    calls = {"n": 0}

    def moving(con: Any, data: str) -> str | None:
        # The first fingerprint is the one checked; the one taken after the join differs.
        calls["n"] += 1
        found = real(con, data)
        return found if calls["n"] == 1 else f"changed-{found}"

    monkeypatch.setattr(offline, "_fingerprint", moving)
    rows = pa.table({"driver_id": [1], "event_timestamp": utc("2024-01-03")})
    assert rates(get_historical_features(rows, [src])) == [2.0]
    assert plans == [[False], [True]]


def test_source_with_ties_changed_during_join_is_joined_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plans: list[list[bool]]
) -> None:
    # The match and the lookup of the features read the file separately, so a change between
    # them is caught for a source with ties too, and the join runs again.
    times = utc("2024-01-01", "2024-01-01")
    path = write(tmp_path / "s.parquet", source_table([1, 1], times, [1, 2]))
    src = FeatureSource("s", path, ("driver_id",), "ts", ("rate",))
    assert source_has_ties(src) is True
    real = offline._fingerprint
    calls = {"n": 0}

    def moving(con: Any, data: str) -> str | None:
        calls["n"] += 1
        found = real(con, data)
        return found if calls["n"] == 1 else f"changed-{found}"

    monkeypatch.setattr(offline, "_fingerprint", moving)
    rows = pa.table({"driver_id": [1], "event_timestamp": utc("2024-01-02")})
    assert rates(get_historical_features(rows, [src])) == [2.0]
    assert plans == [[True], [True]]


def test_changed_file_is_not_cached_when_it_moves_during_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checks: list[str]
) -> None:
    path = write(tmp_path / "s.parquet", source_table([1], utc("2024-01-01"), [1.0]))
    src = FeatureSource("s", path, ("driver_id",), "ts", ("rate",))
    real = offline._fingerprint
    answers = iter(["first", "second"])
    monkeypatch.setattr(
        offline, "_fingerprint", lambda con, data: next(answers, None) or real(con, data)
    )
    assert source_has_ties(src) is False
    monkeypatch.setattr(offline, "_fingerprint", lambda con, data: "first")
    assert source_has_ties(src) is False
    # Not remembered for "first", so checked again.
    assert len(checks) == 2


def test_tie_checks_kept_in_a_file_are_found_by_another_instance(
    tmp_path: Path, checks: list[str]
) -> None:
    path = write(tmp_path / "s.parquet", source_table([1], utc("2024-01-01"), [1.0]))
    src = FeatureSource("s", path, ("driver_id",), "ts", ("rate",))
    store = tmp_path / "state" / "ties.json"
    assert source_has_ties(src, TieChecks(store)) is False
    assert store.exists()
    assert source_has_ties(src, TieChecks(store)) is False
    assert len(checks) == 1
    # Memory-only answers are not shared.
    assert source_has_ties(src, TieChecks()) is False
    assert len(checks) == 2


def test_unreadable_tie_check_file_counts_as_empty_and_is_rewritten(
    tmp_path: Path, checks: list[str]
) -> None:
    path = write(
        tmp_path / "s.parquet", source_table([1, 1], utc("2024-01-01", "2024-01-01"), [1, 2])
    )
    src = FeatureSource("s", path, ("driver_id",), "ts", ("rate",))
    store = tmp_path / "ties.json"
    for garbage in ("{not json", "[1, 2]", '{"key": "yes"}'):
        store.write_text(garbage)
        assert source_has_ties(src, TieChecks(store)) is True
    assert len(checks) == 3
    assert source_has_ties(src, TieChecks(store)) is True
    assert len(checks) == 3


def test_tie_checks_keep_the_most_recently_used_answers(tmp_path: Path) -> None:
    store = tmp_path / "ties.json"
    checks = TieChecks(store, size=2)
    checks.put("a", True)
    checks.put("b", False)
    assert checks.get("a") is True  # now the most recently used
    checks.put("c", False)
    assert (checks.get("a"), checks.get("b"), checks.get("c")) == (True, None, False)
    again = TieChecks(store, size=2)
    assert (again.get("a"), again.get("b"), again.get("c")) == (True, None, False)


def test_tie_check_file_that_cannot_be_written_leaves_the_answer_in_memory(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    checks = TieChecks(blocker / "ties.json")
    checks.put("a", False)
    assert checks.get("a") is False
    assert list(tmp_path.iterdir()) == [blocker]


# --- the two paths give the same rows ----------------------------------------------------------


def test_join_without_ties_equals_join_with_full_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 2000
    ids = rng.integers(0, 50, n)
    # Distinct microsecond times: no ties anywhere.
    micros = rng.choice(10**9, n, replace=False) + 1_704_067_200_000_000
    values = np.where(rng.random(n) < 0.1, np.nan, rng.random(n))
    table = pa.table(
        {
            "driver_id": ids,
            "ts": pa.array(micros, pa.timestamp("us", tz="UTC")),
            "rate": pa.array(values, from_pandas=True),
        }
    )
    path = write(tmp_path / "s.parquet", table)
    probe = rng.integers(0, 55, 500)
    when = rng.integers(1_704_067_200_000_000 - 10**7, 1_704_067_200_000_000 + 10**9, 500)
    rows = pa.table(
        {"driver_id": probe, "event_timestamp": pa.array(when, pa.timestamp("us", tz="UTC"))}
    )
    fast = FeatureSource("s", path, ("driver_id",), "ts", ("rate",), ttl_seconds=300.0)
    full = FeatureSource("s", table, ("driver_id",), "ts", ("rate",), ttl_seconds=300.0)
    assert source_has_ties(fast) is False
    a = get_historical_features(rows, [fast])
    b = get_historical_features(rows, [full])
    assert a.equals(b)
    assert a.column("rate").null_count < a.num_rows  # some rows matched within the TTL


def test_ties_give_the_same_answer_on_every_run(tmp_path: Path) -> None:
    n = 5000
    table = pa.table(
        {
            "driver_id": np.arange(n) % 10,
            "ts": pa.array(np.repeat(1_704_067_200_000_000, n), pa.timestamp("us")),
            "rate": np.arange(n, dtype=np.float64),
        }
    )
    path = write(tmp_path / "s.parquet", table)
    src = FeatureSource("s", path, ("driver_id",), "ts", ("rate",))
    rows = pa.table({"driver_id": np.arange(10), "event_timestamp": naive(*["2024-01-02"] * 10)})
    expected = [float(n - 10 + k) for k in range(10)]  # the last row of each driver
    for _ in range(3):
        assert rates(get_historical_features(rows, [src])) == expected


# --- time zones and precisions of Parquet sources -------------------------------------------------


@pytest.mark.parametrize("source_zone", [None, "UTC"])
@pytest.mark.parametrize("entity_zone", [None, "UTC", "America/New_York", "Asia/Kolkata"])
def test_aware_and_naive_parquet_timestamps_compare_in_utc(
    tmp_path: Path, source_zone: str | None, entity_zone: str | None
) -> None:
    # Source rows at 14:00 and 15:00 UTC (naive means UTC).
    times = pd.to_datetime(["2024-01-15T14:00", "2024-01-15T15:00"])
    stamps = pa.array(
        times.tz_localize(source_zone) if source_zone else times, pa.timestamp("us", tz=source_zone)
    )
    path = write(tmp_path / "s.parquet", source_table([1, 1], stamps, [1.0, 2.0]))
    # Entity rows just before, at, and after 14:00 UTC, and at 15:00 UTC.
    utc_times = pd.to_datetime(
        ["2024-01-15T13:59:59.999999", "2024-01-15T14:00", "2024-01-15T14:30", "2024-01-15T15:00"],
        utc=True,
        format="ISO8601",
    )
    when = utc_times.tz_convert(entity_zone) if entity_zone else utc_times.tz_localize(None)
    rows = pd.DataFrame({"driver_id": [1, 1, 1, 1], "event_timestamp": when})
    src = FeatureSource("s", path, ("driver_id",), "ts", ("rate",), ttl_seconds=1800)
    out = get_historical_features(rows, [src])
    assert rates(out) == [None, 1.0, 1.0, 2.0]
    # The entity timestamps come back exactly as given.
    assert out.column("event_timestamp").to_pandas().tolist() == list(when)


@pytest.mark.parametrize("unit", ["s", "ms", "ns"])
def test_coarse_and_fine_parquet_timestamps(tmp_path: Path, unit: str) -> None:
    times = naive("2024-01-01T00:00:00", "2024-01-01T00:00:01", unit=unit)
    path = tmp_path / "s.parquet"
    pq.write_table(source_table([1, 1], times, [1.0, 2.0]), path, coerce_timestamps=None)
    rows = pa.table(
        {
            "driver_id": [1, 1, 1],
            "event_timestamp": naive(
                "2024-01-01T00:00:00.999999", "2024-01-01T00:00:01", "2024-01-01T00:00:02"
            ),
        }
    )
    src = FeatureSource("s", str(path), ("driver_id",), "ts", ("rate",))
    assert rates(get_historical_features(rows, [src])) == [1.0, 2.0, 2.0]


def test_nanosecond_parquet_ties_at_microsecond_precision_are_found(tmp_path: Path) -> None:
    # Distinct nanoseconds, but the same microsecond: with microsecond entity rows the two rows
    # tie, and the later one in the file wins.
    base = pd.Timestamp("2024-01-01")
    times = pa.array(
        [base + pd.Timedelta(100, "ns"), base + pd.Timedelta(200, "ns")], pa.timestamp("ns")
    )
    path = tmp_path / "s.parquet"
    pq.write_table(source_table([1, 1], times, [1.0, 2.0]), path, coerce_timestamps=None)
    src = FeatureSource("s", str(path), ("driver_id",), "ts", ("rate",))
    assert source_has_ties(src) is False  # as stored, to the nanosecond
    rows = pa.table({"driver_id": [1], "event_timestamp": naive("2024-01-01T00:00:00.000001")})
    assert rates(get_historical_features(rows, [src])) == [2.0]
    ns_rows = pa.table(
        {
            "driver_id": [1],
            "event_timestamp": pa.array([base + pd.Timedelta(150, "ns")], pa.timestamp("ns")),
        }
    )
    assert rates(get_historical_features(ns_rows, [src])) == [1.0]


# --- fixed cost --------------------------------------------------------------------------------


def test_join_of_parquet_and_arrow_does_not_import_pandas(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.parquet", source_table([1, 2], utc("2024-01-01", "2024-01-01"), [1, 2])
    )
    entities = tmp_path / "e.parquet"
    pq.write_table(
        pa.table({"driver_id": [2, 1], "event_timestamp": utc("2024-01-02", "2024-01-02")}),
        entities,
    )
    script = (
        "import sys\n"
        "from wellml.store.offline import FeatureSource, get_historical_features\n"
        f"src = FeatureSource('s', {path!r}, ('driver_id',), 'ts', ('rate',))\n"
        f"out = get_historical_features({str(entities)!r}, [src])\n"
        "assert out.column('rate').to_pylist() == [2.0, 1.0], out\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


# --- the shared database -----------------------------------------------------------------------


def test_parquet_entity_rows_keep_file_order_across_files_and_row_groups(tmp_path: Path) -> None:
    n = 30_000
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 100, n)
    when = pa.array(
        rng.integers(1_704_067_200_000_000, 1_704_067_200_000_000 + 10**10, n),
        pa.timestamp("us", tz="UTC"),
    )
    rows = pa.table({"row_id": np.arange(n), "driver_id": ids, "event_timestamp": when})
    folder = tmp_path / "entities"
    folder.mkdir()
    # Two files (b sorts after a), several row groups each.
    pq.write_table(rows.slice(0, n // 2), folder / "a.parquet", row_group_size=1000)
    pq.write_table(rows.slice(n // 2), folder / "b.parquet", row_group_size=1000)
    source = pa.table(
        {
            "driver_id": np.arange(100),
            "ts": utc(*["2023-12-31"] * 100),
            "rate": np.arange(100, dtype=np.float64),
        }
    )
    path = write(tmp_path / "s.parquet", source)
    src = FeatureSource("s", path, ("driver_id",), "ts", ("rate",))
    out = get_historical_features(str(folder / "*.parquet"), [src])
    assert out.column("row_id").to_pylist() == list(range(n))
    assert out.column("rate").to_pylist() == [float(i) for i in ids]


def test_parquet_entity_with_virtual_column_names_is_rejected(tmp_path: Path) -> None:
    rows = pa.table(
        {"driver_id": [1], "event_timestamp": utc("2024-01-02"), "file_row_number": [7]}
    )
    pq.write_table(rows, tmp_path / "e.parquet")
    src = FeatureSource(
        "s", source_table([1], utc("2024-01-01"), [1.0]), ("driver_id",), "ts", ("rate",)
    )
    with pytest.raises(InvalidInput, match=r"entity: Parquet columns \['file_row_number'\] clash"):
        get_historical_features(str(tmp_path / "e.parquet"), [src])


def test_concurrent_joins_on_the_shared_database_do_not_mix(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(k: int) -> list[Any]:
        # Every call registers tables under the same internal names.
        source = source_table([1, 2], utc("2024-01-01", "2024-01-01"), [float(k), float(-k)])
        rows = pa.table({"driver_id": [2, 1], "event_timestamp": utc("2024-01-02", "2024-01-02")})
        src = FeatureSource("s", source, ("driver_id",), "ts", ("rate",))
        return rates(get_historical_features(rows, [src]))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(1, 41)))
    assert results == [[float(-k), float(k)] for k in range(1, 41)]
