"""Schedules and triggers: cron slots run once (across restarts and concurrent schedulers),
dataset triggers once per new version, monitors' retrain triggers once each."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import insert, select

from tests.pipelines.conftest import REPO_ROOT, executions
from wellml.errors import Conflict, InvalidInput, NotFound
from wellml.pipelines.schedules import latest_slot, next_slot, slot_key
from wellml.store.metadata import new_id, now
from wellml.store.tables import (
    monitor_executions,
    monitors,
    pipeline_firings,
    retrain_triggers,
)
from wellml.workspace import Workspace

ON_DATA = "tests.pipelines.sample_steps:on_data"
CRON = "0 3 * * *"
DAY = 86400.0


@pytest.fixture
def declared(tmp_path: Path, markers: Path) -> Any:
    """A workspace declaring ``nightly`` (on_data with its marker folder as a default)."""
    spec = {
        "name": "sched",
        "pipelines": {"nightly": {"function": ON_DATA, "params": {"marker_dir": str(markers)}}},
    }
    ws = Workspace.init(tmp_path / "declared", spec=spec)
    yield ws
    ws.close()


def _first_due(cron: str = CRON) -> float:
    """A moment shortly after the first slot that follows now."""
    return next_slot(cron, now()) + 60


def test_slots_are_computed_in_utc() -> None:
    at = 1767236400.0  # 2026-01-01T03:00:00Z, a slot itself
    assert latest_slot(CRON, at) == at
    assert latest_slot(CRON, at + 59) == at
    assert latest_slot(CRON, at - 1) == at - DAY
    assert next_slot(CRON, at) == at + DAY
    assert slot_key(at) == "2026-01-01T03:00:00Z"


def test_a_cron_schedule_fires_once_per_slot_and_not_again_after_a_restart(
    declared: Workspace, markers: Path
) -> None:
    sched = declared.pipelines.schedule("nightly", cron=CRON, params={"dataset": "x"})
    assert sched.name == "nightly" and sched.next_at() == next_slot(CRON, now())
    scheduler = declared.pipelines.scheduler()
    assert scheduler.tick() == []  # created after the latest slot: nothing is due yet

    due = _first_due()
    fired = scheduler.tick(due)
    assert [(f.source, f.key, f.status) for f in fired] == [
        ("cron", slot_key(latest_slot(CRON, due)), "completed")
    ]
    run = declared.pipelines.get(fired[0].pipeline_run_id or "")
    assert run.params == {"marker_dir": str(markers), "dataset": "x"}
    assert scheduler.tick(due + 3600) == []

    # A new process: the claimed slot is on record, so it does not run again.
    reopened = Workspace.open(declared.root)
    try:
        again = reopened.pipelines.scheduler()
        assert again.tick(due) == []
        later = again.tick(due + DAY)
        assert [f.key for f in later] == [slot_key(latest_slot(CRON, due + DAY))]
        assert [f.key for f in reopened.pipelines.firings("nightly")] == [
            later[0].key,
            fired[0].key,
        ]
    finally:
        reopened.close()
    assert executions(markers, "dataset-x") == 2
    assert len(declared.pipelines.list("on_data")) == 2


def test_missed_slots_run_once_when_the_scheduler_comes_back(
    declared: Workspace, markers: Path
) -> None:
    declared.pipelines.schedule("nightly", cron=CRON)
    fired = declared.pipelines.scheduler().tick(_first_due() + 5 * DAY)
    assert len(fired) == 1
    assert executions(markers, "dataset-none") == 1


_RACER = """
import sys, time
from wellml.workspace import Workspace
root, start, at = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ws = Workspace.open(root)
sched = ws.pipelines.scheduler()
time.sleep(max(0.0, start - time.time()))
for f in sched.tick(at):
    print(f.schedule, f.key, f.status, flush=True)
ws.close()
"""


def test_two_concurrent_schedulers_never_run_the_same_slot(
    declared: Workspace, markers: Path, tmp_path: Path
) -> None:
    for i in range(3):
        declared.pipelines.schedule(
            "nightly", cron=CRON, name=f"nightly-{i}", params={"dataset": f"d{i}"}
        )
    script = tmp_path / "racer.py"
    script.write_text(_RACER)
    start, due = time.time() + 4.0, _first_due()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(declared.root), str(start), str(due)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    lines = sorted(line for out, _ in outputs for line in out.splitlines())
    key = slot_key(latest_slot(CRON, due))
    assert lines == [f"nightly-{i} {key} completed" for i in range(3)]
    for i in range(3):
        assert executions(markers, f"dataset-d{i}") == 1
    with declared.metadata.read() as conn:
        claimed_by = {r.claimed_by for r in conn.execute(select(pipeline_firings))}
    assert len(declared.pipelines.firings()) == 3 and claimed_by  # claimed, each once


def test_a_dataset_trigger_fires_once_per_new_version(workspace: Workspace, markers: Path) -> None:
    ws = workspace
    ws.data.register("events", pd.DataFrame({"a": [1, 2]}))
    trig = ws.pipelines.trigger(
        ON_DATA,
        on_dataset="events",
        dataset_param="dataset",
        params={"marker_dir": str(markers)},
    )
    assert trig.name == "tests.pipelines.sample_steps.on_data-on-events"
    scheduler = ws.pipelines.scheduler()
    assert scheduler.tick() == []  # version 1 was there before the trigger

    ws.data.register("events", pd.DataFrame({"a": [1, 2, 3]}))
    fired = scheduler.tick()
    assert [(f.source, f.key, f.params["dataset"]) for f in fired] == [
        ("dataset", "events@2", "events@2")
    ]
    assert scheduler.tick() == []
    ws.data.register("events", pd.DataFrame({"a": [1, 2, 3]}))  # same data: no new version
    assert scheduler.tick() == []

    ws.data.register("events", pd.DataFrame({"a": [4]}))
    ws.data.register("events", pd.DataFrame({"a": [5]}))
    ws.data.register("other", pd.DataFrame({"a": [5]}))
    assert [f.key for f in scheduler.tick()] == ["events@3", "events@4"]
    assert scheduler.tick() == []
    for v in (2, 3, 4):
        assert executions(markers, f"dataset-events@{v}") == 1
    assert executions(markers, "dataset-events@1") == 0


def _retrain_trigger(ws: Workspace, pipeline: str, params: dict[str, Any]) -> str:
    """A pending retrain trigger as a monitor leaves one (with the rows it points at)."""
    version = ws.data.register(f"capture-{new_id()[:6]}", pd.DataFrame({"x": [1.0]}))
    ids = {k: new_id() for k in ("monitor", "execution", "trigger")}
    at = now()
    with ws.metadata.write() as conn:
        exec_id = ws.lineage.record_execution(
            conn, kind="monitor", ref=f"monitor-report:{ids['execution']}"
        )
        conn.execute(
            insert(monitors).values(
                id=ids["monitor"],
                name=f"m-{ids['monitor'][:8]}",
                kind="data_drift",
                target_dataset=version.name,
                config={},
                created_at=at,
            )
        )
        conn.execute(
            insert(monitor_executions).values(
                id=ids["execution"],
                monitor_id=ids["monitor"],
                kind="data_drift",
                dataset_version_id=version.id,
                status="completed-with-violations",
                trigger="manual",
                report={},
                violations=[],
                started_at=at,
                ended_at=at,
                lineage_execution_id=exec_id,
            )
        )
        conn.execute(
            insert(retrain_triggers).values(
                id=ids["trigger"],
                monitor_id=ids["monitor"],
                execution_id=ids["execution"],
                pipeline=pipeline,
                params=params,
                reason="drift",
                status="pending",
                created_at=at,
                updated_at=at,
            )
        )
    return ids["trigger"]


def _trigger_row(ws: Workspace, trigger_id: str) -> dict[str, Any]:
    with ws.metadata.read() as conn:
        row = conn.execute(
            select(retrain_triggers).where(retrain_triggers.c.id == trigger_id)
        ).first()
    assert row is not None
    return dict(row._mapping)


def test_retrain_triggers_are_claimed_and_run_once(workspace: Workspace, markers: Path) -> None:
    ws = workspace
    good = _retrain_trigger(ws, ON_DATA, {"marker_dir": str(markers), "dataset": "drifted"})
    unknown = _retrain_trigger(ws, "no_such_module:pipe", {})
    scheduler = ws.pipelines.scheduler()
    fired = {f.retrain_trigger_id: f for f in scheduler.tick()}
    assert set(fired) == {good, unknown}
    assert fired[good].status == "completed" and fired[good].source == "retrain"
    assert fired[unknown].status == "failed" and "no_such_module" in (fired[unknown].error or "")
    assert scheduler.tick() == []

    row = _trigger_row(ws, good)
    assert row["status"] == "completed" and row["claimed_by"] == scheduler.identity
    assert ws.pipelines.get(row["pipeline_run_id"]).status == "completed"
    assert _trigger_row(ws, unknown)["status"] == "failed"
    assert executions(markers, "dataset-drifted") == 1


def test_a_firing_of_a_dead_scheduler_is_marked_interrupted(workspace: Workspace) -> None:
    ws = workspace
    trig = _retrain_trigger(ws, ON_DATA, {"marker_dir": "/nonexistent"})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    scheduler = ws.pipelines.scheduler()
    row = scheduler._firing_row("retrain", trig, ON_DATA, {}, retrain_trigger_id=trig)
    row["pid"] = int(dead.stdout)
    with ws.metadata.write() as conn:
        conn.execute(insert(pipeline_firings).values(row))
        conn.execute(
            retrain_triggers.update().where(retrain_triggers.c.id == trig).values(status="claimed")
        )
    assert scheduler.reap() == 1
    (firing,) = ws.pipelines.firings()
    assert firing.status == "interrupted" and "exited before the run ended" in (firing.error or "")
    assert _trigger_row(ws, trig)["status"] == "failed"
    assert scheduler.tick() == []  # a claimed trigger is not run again


def test_schedules_are_checked_when_made(declared: Workspace) -> None:
    pipes = declared.pipelines
    with pytest.raises(InvalidInput, match="cron"):
        pipes.schedule("nightly", cron="every day")
    with pytest.raises(InvalidInput, match="cron"):
        pipes.schedule("nightly", cron="0 3 * * * *")
    with pytest.raises(InvalidInput, match="neither a declared pipeline"):
        pipes.schedule("nope", cron=CRON)
    with pytest.raises(InvalidInput, match="no parameter"):
        pipes.schedule("nightly", cron=CRON, params={"rows": 3})
    with pytest.raises(InvalidInput, match="executor"):
        pipes.schedule("nightly", cron=CRON, executor="threads")
    with pytest.raises(NotFound, match="no dataset"):
        pipes.trigger("nightly", on_dataset="missing")
    declared.data.register("d", pd.DataFrame({"a": [1]}))
    with pytest.raises(InvalidInput, match="no parameter 'version'"):
        pipes.trigger("nightly", on_dataset="d", dataset_param="version")
    assert pipes.schedules() == []  # nothing was recorded

    pipes.schedule("nightly", cron=CRON)
    with pytest.raises(Conflict, match="exists"):
        pipes.schedule("nightly", cron="0 4 * * *")
    assert pipes.schedule("nightly", cron="0 4 * * *", replace=True).cron == "0 4 * * *"
    assert not pipes.unschedule("nightly").enabled
    assert pipes.scheduler().tick(_first_due("0 4 * * *")) == []
    with pytest.raises(NotFound):
        pipes.unschedule("nope")
    again = pipes.schedule("nightly", cron=CRON)  # a disabled name can be used again
    assert again.enabled and again.cron == CRON


def test_a_schedule_whose_pipeline_fails_records_the_failure(
    workspace: Workspace, markers: Path
) -> None:
    ws = workspace
    ws.pipelines.schedule(
        "tests.pipelines.sample_steps:exploding",
        cron=CRON,
        params={"marker_dir": str(markers)},
        name="boom",
    )
    (fired,) = ws.pipelines.scheduler().tick(_first_due())
    assert fired.status == "failed" and "boom" in (fired.error or "")
    assert ws.pipelines.get(fired.pipeline_run_id or "").status == "failed"


def test_an_earlier_slot_passed_to_tick_runs_nothing(declared: Workspace) -> None:
    declared.pipelines.schedule("nightly", cron=CRON)
    scheduler = declared.pipelines.scheduler()
    due = _first_due()
    assert len(scheduler.tick(due)) == 1
    assert scheduler.tick(due - DAY) == []  # a clock that went back runs nothing again


def test_the_scheduler_loop_runs_a_trigger_and_stops_when_asked(
    workspace: Workspace, markers: Path
) -> None:
    import threading

    ws = workspace
    ws.data.register("feed", pd.DataFrame({"a": [1]}))
    ws.pipelines.trigger(ON_DATA, on_dataset="feed", dataset_param="dataset",
                         params={"marker_dir": str(markers)})  # fmt: skip
    seen: list[str] = []
    scheduler = ws.pipelines.scheduler(on_firing=lambda f: seen.append(f.status))
    stop = threading.Event()
    loop = threading.Thread(target=scheduler.run_forever, kwargs={"interval": 0.1, "stop": stop})
    loop.start()
    try:
        ws.data.register("feed", pd.DataFrame({"a": [2]}))
        deadline = time.monotonic() + 30
        while executions(markers, "dataset-feed@2") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(10)
    assert not loop.is_alive()
    assert executions(markers, "dataset-feed@2") == 1 and seen[:2] == ["running", "completed"]
    with pytest.raises(InvalidInput, match="interval"):
        scheduler.run_forever(interval=0)


@pytest.mark.postgres
def test_concurrent_schedulers_claim_once_on_postgresql(
    tmp_path: Path, markers: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.setenv("WELLML_DB_URL", postgres_url)
    spec = {"name": "pg", "pipelines": {"nightly": {"function": ON_DATA}}}
    ws = Workspace.init(tmp_path / "pg", spec=spec)
    for i in range(3):
        ws.pipelines.schedule("nightly", cron=CRON, name=f"n{i}",
                              params={"marker_dir": str(markers), "dataset": f"p{i}"})  # fmt: skip
    due, barrier = _first_due(), threading.Barrier(3)
    fired: list[str] = []

    def race() -> None:
        mine = Workspace.open(ws.root)
        try:
            sched = mine.pipelines.scheduler()
            barrier.wait()
            fired.extend(f.schedule or "" for f in sched.tick(due))
        finally:
            mine.close()

    threads = [threading.Thread(target=race) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(fired) == ["n0", "n1", "n2"]
    for i in range(3):
        assert executions(markers, f"dataset-p{i}") == 1
    ws.close()
