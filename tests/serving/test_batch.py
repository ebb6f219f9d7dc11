"""Batch transform: chunked, parallel, resumable after the process is killed, with lineage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from wellml.errors import Conflict, InvalidInput, SchemaMismatch
from wellml.store import serving as sql
from wellml.workspace import Workspace


@pytest.fixture
def scored(workspace: Workspace, tmp_path: Path) -> tuple[Workspace, pd.DataFrame, Path]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({f"f{i}": rng.normal(size=60_000) for i in range(4)})
    y = (X["f0"] + X["f1"] > 0).astype(int)
    workspace.registry.register(
        "m", LogisticRegression().fit(X.head(2000), y.head(2000)), X=X.head(2000), y=y.head(2000)
    )
    src = tmp_path / "input.csv"
    X.to_csv(src, index=False)
    return workspace, X, src


def _output(out: Path) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))], ignore_index=True
    )


def test_a_killed_job_resumes_without_redoing_finished_chunks(
    scored: tuple[Workspace, pd.DataFrame, Path], tmp_path: Path
) -> None:
    ws, X, src = scored
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wellml",
            "--workspace",
            str(ws.root),
            "endpoints",
            "batch",
            "m@1",
            str(src),
            str(out),
            "--chunk-rows",
            "500",
            "--workers",
            "1",
            "-f",
            "json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    done: list[dict[str, object]] = []
    while time.monotonic() < deadline and proc.poll() is None:
        with ws.metadata.read() as conn:
            jobs = sql.batch_jobs_for(conn, str(out))
            done = sql.batch_chunks_of(conn, jobs[0]["id"]) if jobs else []
        if len(done) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 5 <= len(done) < 120, "the job should have been killed part-way"
    first = Path(str(done[0]["uri"])).stat().st_mtime_ns
    with ws.metadata.read() as conn:
        assert sql.batch_jobs_for(conn, str(out))[0]["status"] == "running"

    seen: list[tuple[int, int | None]] = []
    job = ws.endpoints.batch_transform(
        "m@1", src, out, chunk_rows=500, workers=2, progress=lambda d, t: seen.append((d, t))
    )
    assert job.resumed and job.status == "completed"
    assert job.rows == len(X) and job.chunks_total == 120 and job.chunks_done == 120
    assert seen[0][0] >= 5 and seen[-1] == (120, 120)
    assert Path(str(done[0]["uri"])).stat().st_mtime_ns == first  # not computed again
    result = _output(out)
    assert len(result) == len(X)
    model = ws.registry.load("m@1")
    assert result["prediction"].tolist() == model.predict(X).tolist()
    assert np.allclose(result[["f0", "f1"]], X[["f0", "f1"]])
    up = ws.lineage.upstream(f"file:{out}#{job.id}").refs()
    assert "model:m@1" in up and any(r.startswith(f"file:{src}@") for r in up)


def test_bad_inputs_fail_clearly_and_can_be_resumed(
    scored: tuple[Workspace, pd.DataFrame, Path], tmp_path: Path
) -> None:
    ws, X, _ = scored
    (tmp_path / "input.json").write_text("[]")
    with pytest.raises(InvalidInput, match=r"reads \.csv or \.parquet"):
        ws.endpoints.batch_transform("m@1", tmp_path / "input.json", tmp_path / "o")
    bad = tmp_path / "bad.parquet"
    X.head(1000).drop(columns=["f3"]).to_parquet(bad)
    with pytest.raises(SchemaMismatch, match="f3"):
        ws.endpoints.batch_transform("m@1", bad, tmp_path / "o2", chunk_rows=300, workers=1)
    good = tmp_path / "good.parquet"
    X.head(1000).to_parquet(good)
    job = ws.endpoints.batch_transform("m@1", good, tmp_path / "o3", chunk_rows=300, workers=1)
    assert job.rows == 1000 and job.chunks_total == 4 and not job.resumed
    with pytest.raises(Conflict, match="another job"):
        ws.endpoints.batch_transform("m@1", good, tmp_path / "o3", chunk_rows=500)
