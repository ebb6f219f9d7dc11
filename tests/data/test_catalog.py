"""The data catalog: immutable, content-addressed dataset versions from files and frames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wellml.errors import IntegrityError, InvalidInput, NotFound
from wellml.workspace import Workspace

FRAME = pd.DataFrame({"id": [1, 2, 3], "city": ["a", "b", None], "x": [0.5, None, 2.0]})


def test_same_data_from_csv_parquet_and_frame_is_one_version(
    workspace: Workspace, tmp_path: Path
) -> None:
    csv = tmp_path / "d.csv"
    FRAME.to_csv(csv, index=False)
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pandas(FRAME, preserve_index=False), parquet)
    v1 = workspace.data.register("d", csv)
    assert v1.version == 1 and v1.num_rows == 3
    assert v1.columns == ["id", "city", "x"]
    assert v1.source == str(csv.resolve())
    assert workspace.data.register("d", parquet).id == v1.id
    assert workspace.data.register("d", FRAME).id == v1.id
    assert len(workspace.data.versions("d")) == 1


def test_changed_data_is_a_new_version_and_old_ones_stay(workspace: Workspace) -> None:
    v1 = workspace.data.register("d", FRAME)
    v2 = workspace.data.register("d", FRAME.assign(x=[1.0, 2.0, 3.0]))
    assert v2.version == 2 and v2.content_digest != v1.content_digest
    pd.testing.assert_frame_equal(workspace.data.load("d@1"), FRAME)
    assert workspace.data.get("d@latest").version == 2
    assert workspace.data.load("d@2", columns=["x"]).columns.tolist() == ["x"]


def test_jsonl_and_tsv_are_read(workspace: Workspace, tmp_path: Path) -> None:
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n')
    tsv = tmp_path / "d.tsv"
    tsv.write_text("a\tb\n1\tx\n")
    assert workspace.data.register("j", jl).num_rows == 2
    assert workspace.data.register("t", tsv).columns == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("a,b\n1,2\n3\n", ".csv", "cannot read"),
        ("", ".csv", "cannot read"),
        ("not parquet", ".parquet", "cannot read"),
        ("a,b", ".xlsx", "unsupported file type"),
        ("{broken json\n", ".jsonl", "cannot read"),
    ],
)
def test_malformed_files_are_refused_and_nothing_is_written(
    workspace: Workspace, tmp_path: Path, content: str, suffix: str, message: str
) -> None:
    f = tmp_path / f"bad{suffix}"
    f.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        workspace.data.register("bad", f)
    assert workspace.data.list() == []


def test_missing_file_empty_frame_and_duplicate_columns(
    workspace: Workspace, tmp_path: Path
) -> None:
    with pytest.raises(NotFound):
        workspace.data.register("d", tmp_path / "nope.csv")
    with pytest.raises(InvalidInput, match="no columns"):
        workspace.data.register("d", pd.DataFrame())
    dup = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(InvalidInput, match="duplicate column"):
        workspace.data.register("d", dup)
    with pytest.raises(InvalidInput):
        workspace.data.register("bad/name", FRAME)


def test_unknown_names_and_versions(workspace: Workspace) -> None:
    workspace.data.register("d", FRAME)
    with pytest.raises(NotFound, match="no dataset named"):
        workspace.data.get("other")
    with pytest.raises(NotFound, match="no version 5"):
        workspace.data.get("d@5")
    with pytest.raises(InvalidInput):
        workspace.data.get("d@prod")
    with pytest.raises(NotFound, match="no column"):
        workspace.data.load("d@1", columns=["zzz"])


def test_a_corrupted_version_is_never_read(workspace: Workspace) -> None:
    dv = workspace.data.register("d", FRAME)
    path = workspace.artifacts.path(dv.artifact_digest)
    with open(path, "r+b") as fh:
        fh.seek(10)
        fh.write(b"\x00\x00\x00")
    fresh = Workspace.open(workspace.root)  # nothing verified yet in this handle
    with pytest.raises(IntegrityError):
        fresh.data.load("d@1")
    fresh.close()


def test_derived_versions_record_their_parents(workspace: Workspace) -> None:
    raw = workspace.data.register("raw", FRAME)
    sub = workspace.data.register("sub", FRAME.head(2), parents=[raw])
    up = workspace.lineage.upstream(sub.lineage_ref)
    assert raw.lineage_ref in up.refs()
    assert [n.kind for n in up.nodes].count("ingest") == 2
