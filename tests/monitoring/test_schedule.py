"""Scheduled runs: each due cron slot runs once, also after a restart and with two callers."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from croniter import croniter

from wellml.errors import InvalidInput
from wellml.workspace import Workspace


def _data(seed: int) -> pd.DataFrame:
    return pd.DataFrame({"x": np.random.default_rng(seed).normal(size=500)})


@pytest.fixture
def scheduled(workspace: Workspace) -> tuple[Workspace, float]:
    """An hourly drift monitor of dataset ``live``; returns the first slot after creation."""
    base = workspace.monitoring.baseline(workspace.data.register("ref", _data(0)))
    workspace.data.register("live", _data(1))
    mon = workspace.monitoring.create_monitor(dataset="live", baseline=base, schedule="0 * * * *")
    first_slot = float(croniter("0 * * * *", mon["created_at"]).get_next(float))
    return workspace, first_slot


def test_a_slot_runs_once_and_not_again_after_a_restart(
    scheduled: tuple[Workspace, float],
) -> None:
    ws, slot = scheduled
    # Before the first slot after creation nothing is due.
    assert ws.monitoring.run_due(at=slot - 60) == []
    (ran,) = ws.monitoring.run_due(at=slot + 300)
    assert (ran["monitor"], ran["slot"], ran["outcome"]) == ("live-drift", slot, "ran")
    assert ws.monitoring.run_due(at=slot + 600) == []

    # A new process (the loop restarted) sees the slot recorded.
    again = Workspace.open(ws.root)
    try:
        assert again.monitoring.run_due(at=slot + 900) == []
        # The next hour is due; no new data since the last run, so it is skipped, once.
        (skipped,) = again.monitoring.run_due(at=slot + 3600 + 5)
        assert (skipped["slot"], skipped["outcome"]) == (slot + 3600, "skipped")
        assert "no new version" in skipped["message"]
        assert again.monitoring.run_due(at=slot + 3600 + 50) == []
        again.data.register("live", _data(2))
        (third,) = again.monitoring.run_due(at=slot + 7200 + 5)
        assert third["outcome"] == "ran"
    finally:
        again.close()
    history = ws.monitoring.executions("live-drift")
    assert [(h["trigger"], h["slot"]) for h in history] == [
        ("schedule", slot + 7200),
        ("schedule", slot),
    ]


def test_missed_slots_are_not_caught_up(scheduled: tuple[Workspace, float]) -> None:
    ws, slot = scheduled
    (ran,) = ws.monitoring.run_due(at=slot + 5 * 3600 + 10)
    assert ran["slot"] == slot + 5 * 3600


def test_two_callers_run_a_slot_once(scheduled: tuple[Workspace, float]) -> None:
    ws, slot = scheduled
    results: list[list[dict]] = []
    errors: list[BaseException] = []

    def call() -> None:
        other = Workspace.open(ws.root)
        try:
            results.append(other.monitoring.run_due(at=slot + 60))
        except BaseException as exc:
            errors.append(exc)
        finally:
            other.close()

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 1]
    assert len(ws.monitoring.executions("live-drift")) == 1


def test_monitors_without_a_schedule_never_run_and_bad_schedules_are_refused(
    workspace: Workspace,
) -> None:
    base = workspace.monitoring.baseline(workspace.data.register("ref", _data(0)))
    workspace.data.register("live", _data(1))
    workspace.monitoring.create_monitor(dataset="live", baseline=base)
    assert workspace.monitoring.run_due(at=4_000_000_000) == []
    with pytest.raises(InvalidInput, match="cron"):
        workspace.monitoring.create_monitor(dataset="live", baseline=base, schedule="hourly-ish")
