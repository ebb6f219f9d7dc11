"""Training sets from Parquet and dataset sources with and without ties: ``apply`` checks a
source for ties ahead of the first join, and either way the rows are the documented ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wellml.errors import InvalidInput
from wellml.features import Entity, FeatureService, FeatureView, Field, Source
from wellml.store import offline
from wellml.workspace import Workspace

CUSTOMER = Entity("customer", join_keys=("customer_id",))


def _rows(times: list[str], spend: list[float], customers: list[int]) -> pa.Table:
    return pa.table(
        {
            "customer_id": customers,
            "event_timestamp": pa.array(
                pd.to_datetime(times, utc=True, format="ISO8601"), pa.timestamp("us", tz="UTC")
            ),
            "spend": spend,
        }
    )


def _view(name: str, source: Source) -> FeatureView:
    return FeatureView(
        name,
        entities=("customer",),
        source=source,
        timestamp_field="event_timestamp",
        features=(Field("spend", "float64"),),
    )


def _labels() -> pd.DataFrame:
    # Naive timestamps are UTC; the source's are aware.
    return pd.DataFrame(
        {
            "customer_id": [2, 1, 1, 3],
            "event_timestamp": pd.to_datetime(
                ["2024-01-03", "2024-01-01T23:59:59", "2024-01-02", "2024-01-05"],
                format="ISO8601",
            ),
            "label": [1, 0, 1, 0],
        }
    )


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every tie check actually run (not answered from the cache)."""
    ran: list[str] = []
    real = offline._has_ties

    def counting(con: Any, relation: str, source: Any, timestamp: str) -> bool:
        ran.append(source.name)
        return real(con, relation, source, timestamp)

    monkeypatch.setattr(offline, "_has_ties", counting)
    return ran


def test_apply_checks_parquet_and_dataset_sources_so_the_join_does_not(
    workspace: Workspace, tmp_path: Path, checks: list[str]
) -> None:
    table = _rows(["2024-01-01", "2024-01-02", "2024-01-02"], [1.0, 2.0, 3.0], [1, 1, 2])
    path = tmp_path / "spend.parquet"
    pq.write_table(table, path)
    workspace.data.register("spend", table.to_pandas())
    workspace.features.apply(
        [
            CUSTOMER,
            _view("by_path", Source(path=str(path))),
            _view("by_dataset", Source(dataset="spend")),
            _view("by_query", Source(query="SELECT * FROM {spend}")),
            FeatureService("svc", features=("by_path:*", "by_dataset:*", "by_query:*")),
        ]
    )
    # The query source is an in-memory table at join time: never checked.
    assert sorted(checks) == ["by_dataset", "by_path"]
    out = workspace.features.get_historical_features(_labels(), "svc", full_feature_names=True)
    assert sorted(checks) == ["by_dataset", "by_path"]
    expected = [3.0, 1.0, 2.0, None]
    for view in ("by_path", "by_dataset", "by_query"):
        assert out.column(f"{view}__spend").to_pylist() == expected
    assert out.column("label").to_pylist() == [1, 0, 1, 0]


def test_ties_present_or_absent_give_the_documented_rows(
    workspace: Workspace, tmp_path: Path
) -> None:
    # Customer 1 has two rows at 2024-01-02: the later one in the file (5.0) wins.
    tied = _rows(
        ["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-02"], [1.0, 2.0, 5.0, 3.0], [1, 1, 1, 2]
    )
    untied = _rows(["2024-01-01", "2024-01-02", "2024-01-02"], [1.0, 5.0, 3.0], [1, 1, 2])
    pq.write_table(tied, tmp_path / "tied.parquet")
    pq.write_table(untied, tmp_path / "untied.parquet")
    workspace.features.apply(
        [
            CUSTOMER,
            _view("tied", Source(path=str(tmp_path / "tied.parquet"))),
            _view("untied", Source(path=str(tmp_path / "untied.parquet"))),
        ]
    )
    out = workspace.features.get_historical_features(
        _labels(), ["tied:spend", "untied:spend"], full_feature_names=True
    )
    assert out.column("tied__spend").to_pylist() == [3.0, 1.0, 5.0, None]
    assert out.column("untied__spend").to_pylist() == [3.0, 1.0, 5.0, None]


def test_source_file_replaced_after_apply_is_checked_again(
    workspace: Workspace, tmp_path: Path, checks: list[str]
) -> None:
    path = tmp_path / "spend.parquet"
    pq.write_table(_rows(["2024-01-01", "2024-01-02"], [1.0, 2.0], [1, 1]), path)
    workspace.features.apply([CUSTOMER, _view("spend", Source(path=str(path)))])
    assert checks == ["spend"]
    # Replaced by a file with a tie at 2024-01-02 for customer 1: the last row wins.
    replacement = tmp_path / "next.parquet"
    pq.write_table(_rows(["2024-01-02", "2024-01-02"], [7.0, 9.0], [1, 1]), replacement)
    replacement.replace(path)
    out = workspace.features.get_historical_features(_labels(), ["spend:spend"])
    assert checks == ["spend", "spend"]
    assert out.column("spend").to_pylist() == [None, None, 9.0, None]


def test_a_failing_tie_check_does_not_undo_apply(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wellml.features import service

    path = tmp_path / "spend.parquet"
    pq.write_table(_rows(["2024-01-01"], [1.0], [1]), path)

    def unreadable(source: Any, checks: Any) -> bool:
        raise InvalidInput(f"feature source {source.name!r}: cannot read Parquet")

    monkeypatch.setattr(service, "source_has_ties", unreadable)
    plan = workspace.features.apply([CUSTOMER, _view("spend", Source(path=str(path)))])
    assert plan.applied
    assert workspace.features.get("spend").version == 1
    monkeypatch.undo()
    out = workspace.features.get_historical_features(_labels(), ["spend:spend"])
    assert out.column("spend").to_pylist() == [None, 1.0, 1.0, None]


def test_source_unreadable_after_apply_fails_the_join_with_a_clear_error(
    workspace: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "spend.parquet"
    pq.write_table(_rows(["2024-01-01"], [1.0], [1]), path)
    workspace.features.apply([CUSTOMER, _view("spend", Source(path=str(path)))])
    path.write_text("no longer parquet")
    with pytest.raises(InvalidInput, match="feature source 'spend': cannot read Parquet"):
        workspace.features.get_historical_features(_labels(), ["spend:spend"])


def test_answers_are_shared_by_every_process_of_the_workspace(
    workspace: Workspace, tmp_path: Path, checks: list[str]
) -> None:
    path = tmp_path / "spend.parquet"
    pq.write_table(_rows(["2024-01-01", "2024-01-02"], [1.0, 2.0], [1, 1]), path)
    workspace.features.apply([CUSTOMER, _view("spend", Source(path=str(path)))])
    assert checks == ["spend"]
    assert (workspace.state_dir / "offline-tie-checks.json").exists()
    # Another handle on the same workspace, as another process would open it.
    other = Workspace.open(workspace.root)
    try:
        out = other.features.get_historical_features(_labels(), ["spend:spend"])
    finally:
        other.close()
    assert checks == ["spend"]
    assert out.column("spend").to_pylist() == [None, 1.0, 2.0, None]
