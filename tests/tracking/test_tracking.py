"""Experiment tracking: runs, metrics, search, concurrency across processes, killed runs."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wellml.errors import Conflict, InvalidInput, NotFound
from wellml.workspace import Workspace


def test_run_context_marks_failure_with_the_error(workspace: Workspace) -> None:
    with pytest.raises(ValueError), workspace.tracking.start_run("e", name="bad") as run:
        run.log_metric("x", 1)
        raise ValueError("training blew up")
    rec = workspace.tracking.get_run(run.id)
    assert rec.status == "failed"
    assert "training blew up" in (rec.error or "")
    assert workspace.lineage.node(rec.lineage_ref).status == "failed"


def test_logging_after_the_run_ended_is_refused(workspace: Workspace) -> None:
    with workspace.tracking.start_run("e") as run:
        pass
    with pytest.raises(Conflict):
        run.log_metric("late", 1.0)


def test_bad_metric_values_and_keys_are_rejected_without_writing(workspace: Workspace) -> None:
    with workspace.tracking.start_run("e") as run:
        with pytest.raises(InvalidInput):
            run.log_metric("acc", "high")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            run.log_batch(metrics={"ok": 1.0, "bad key!": 2.0})
    assert workspace.tracking.get_run(run.id).metrics == {}


def test_batch_with_explicit_steps_and_timestamps(workspace: Workspace) -> None:
    with workspace.tracking.start_run("e") as run:
        run.log_batch(
            metrics=[("loss", 3.0, 0, 10.0), ("loss", 2.0, 1, 11.0), ("loss", 1.0, 2, 12.0)]
        )
    hist = workspace.tracking.metric_history(run.id, "loss")
    assert [(p["step"], p["value"], p["timestamp"]) for p in hist] == [
        (0, 3.0, 10.0),
        (1, 2.0, 11.0),
        (2, 1.0, 12.0),
    ]
    assert workspace.tracking.get_run(run.id).metrics["loss"] == 1.0


def test_latest_metric_is_the_highest_step_not_the_last_written(workspace: Workspace) -> None:
    with workspace.tracking.start_run("e") as run:
        run.log_metric("acc", 0.9, step=5)
        run.log_metric("acc", 0.1, step=1)
    assert workspace.tracking.get_run(run.id).metrics["acc"] == 0.9
    assert [r.id for r in workspace.tracking.search_runs(filter="metrics.acc > 0.5")] == [run.id]


def test_search_filters_and_ordering(workspace: Workspace) -> None:
    ids = {}
    for name, auc, model in [("a", 0.7, "lr"), ("b", 0.9, "rf"), ("c", 0.8, "rf")]:
        with workspace.tracking.start_run("s", name=name, params={"model": model}) as run:
            run.log_metric("auc", auc)
        ids[name] = run.id
    got = workspace.tracking.search_runs(
        "s", filter="params.model = 'rf'", order_by=["metrics.auc desc"]
    )
    assert [r.name for r in got] == ["b", "c"]
    got = workspace.tracking.search_runs(
        "s",
        filter="metrics.auc >= 0.8 and attributes.status = 'finished'",
        order_by=["metrics.auc asc"],
    )
    assert [r.name for r in got] == ["c", "b"]
    assert len(workspace.tracking.search_runs("s", max_results=2)) == 2
    with pytest.raises(InvalidInput):
        workspace.tracking.search_runs("s", filter="auc > 0.5")
    with pytest.raises(InvalidInput):
        workspace.tracking.search_runs("s", filter="metrics.auc > 'high'")
    with pytest.raises(NotFound):
        workspace.tracking.search_runs("nope")


def test_compare_marks_differing_params(workspace: Workspace) -> None:
    runs = []
    for c in (1, 2):
        with workspace.tracking.start_run("cmp", params={"C": c, "solver": "lbfgs"}) as run:
            run.log_metric("auc", c / 10)
        runs.append(run.id)
    out = workspace.tracking.compare(runs)
    assert out["differing_params"] == ["C"]
    assert out["metrics"]["auc"] == [0.1, 0.2]


def test_parent_and_child_runs(workspace: Workspace) -> None:
    with workspace.tracking.start_run("hpo", name="study") as parent:
        with workspace.tracking.start_run("hpo", name="trial", parent=parent) as child:
            child.log_metric("x", 1)
    assert workspace.tracking.get_run(child.id).parent_run_id == parent.id
    with pytest.raises(NotFound):
        workspace.tracking.start_run("hpo", parent="f" * 32)


def test_nan_and_infinite_metrics_survive(workspace: Workspace) -> None:
    with workspace.tracking.start_run("e") as run:
        run.log_metrics({"nan": math.nan, "inf": math.inf})
    m = workspace.tracking.get_run(run.id).metrics
    assert math.isnan(m["nan"]) and m["inf"] == math.inf


_LOGGER = textwrap.dedent("""
    import sys
    from wellml.workspace import Workspace
    ws = Workspace.open(sys.argv[1])
    with ws.tracking.start_run("shared", name=sys.argv[2]) as run:
        for step in range(int(sys.argv[3])):
            run.log_metric("m", step, step=step)
            run.log_batch(metrics={"a": step, "b": step}, step=step)
""")


def test_two_processes_logging_to_one_workspace_lose_nothing(
    workspace: Workspace, tmp_path: Path
) -> None:
    script = tmp_path / "logger.py"
    script.write_text(_LOGGER)
    n = 300
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(workspace.root), f"p{i}", str(n)],
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    runs = workspace.tracking.search_runs("shared")
    assert sorted(r.name for r in runs) == ["p0", "p1"]
    for r in runs:
        assert r.status == "finished"
        assert len(workspace.tracking.metric_history(r.id, "m")) == n
        assert len(workspace.tracking.metric_history(r.id, "a")) == n


_KILLED = textwrap.dedent("""
    import sys, time
    from wellml.workspace import Workspace
    ws = Workspace.open(sys.argv[1])
    run = ws.tracking.start_run("k", name="victim")
    run.log_metric("m", 1.0)
    print(run.id, flush=True)
    time.sleep(60)
""")


def test_a_killed_run_is_marked_killed_and_keeps_what_it_logged(
    workspace: Workspace, tmp_path: Path
) -> None:
    script = tmp_path / "victim.py"
    script.write_text(_KILLED)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(workspace.root)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().decode().strip()
    assert workspace.tracking.get_run(run_id).status == "running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    rec = workspace.tracking.get_run(run_id)
    while rec.status == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        rec = workspace.tracking.get_run(run_id)
    assert rec.status == "killed"
    assert "exited without ending the run" in (rec.error or "")
    assert rec.metrics == {"m": 1.0}
