"""Every run records its wall and CPU time, peak memory and estimated energy as tags."""

from __future__ import annotations

import time

import numpy as np
import pytest

from wellml.errors import InvalidInput
from wellml.tracking.resources import ResourceMeter, ResourceUsage, _rss_bytes, energy_wh
from wellml.workspace import Workspace


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def test_a_run_records_time_memory_and_energy_as_tags(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WELLML_CPU_WATTS", "36")
    before_mb = _rss_bytes() / 2**20
    with workspace.tracking.start_run("e") as run:
        block = np.ones(80 * 2**20 // 8)  # 80 MB, touched
        assert block.sum() > 0
        del block
        _burn(0.3)
        time.sleep(0.2)
    rec = workspace.tracking.get_run(run.id)
    usage = ResourceUsage.from_tags(rec.tags)
    assert usage is not None
    assert usage.wall_time_s >= 0.5
    assert 0.25 <= usage.cpu_time_s < usage.wall_time_s
    assert usage.peak_memory_mb >= before_mb + 70
    assert usage.cpu_watts == 36.0
    assert float(rec.tags["system.energy_wh"]) == pytest.approx(
        usage.cpu_time_s * 36 / 3600, rel=1e-3
    )
    assert rec.metrics == {}  # the figures do not mix with what the user logged


def test_a_bad_power_figure_is_refused_before_anything_is_written(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WELLML_CPU_WATTS", "lots")
    with pytest.raises(InvalidInput, match="WELLML_CPU_WATTS"):
        workspace.tracking.start_run("e")
    monkeypatch.setenv("WELLML_CPU_WATTS", "-3")
    with pytest.raises(InvalidInput, match="WELLML_CPU_WATTS"):
        workspace.tracking.start_run("e")
    assert workspace.tracking.search_runs() == []


def test_a_failed_run_is_metered_too(workspace: Workspace) -> None:
    with pytest.raises(RuntimeError):
        with workspace.tracking.start_run("e") as run:
            raise RuntimeError("no")
    rec = workspace.tracking.get_run(run.id)
    assert rec.status == "failed" and "system.cpu_time_s" in rec.tags


def test_the_meter_sees_a_peak_that_is_gone_by_the_end() -> None:
    before = _rss_bytes() / 2**20
    with ResourceMeter(watts=10) as meter:
        block = np.ones(60 * 2**20 // 8)
        assert block.sum() > 0
        time.sleep(0.15)
        del block
        time.sleep(0.15)
    usage = meter.stop()
    assert usage.peak_memory_mb >= before + 50
    assert meter.stop() is usage
    assert energy_wh(3600, 10) == 10.0
