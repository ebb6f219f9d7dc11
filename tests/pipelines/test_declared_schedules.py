"""Schedules and triggers declared in ``wellml.yaml``: applied idempotently, checked before
anything is written, and applied by the scheduler at its start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.pipelines.conftest import executions
from tests.pipelines.test_cli import cli
from wellml.errors import InvalidInput, NotFound
from wellml.pipelines.schedules import next_slot, slot_key
from wellml.store.metadata import now
from wellml.workspace import Workspace

ON_DATA = "tests.pipelines.sample_steps:on_data"
CRON = "0 3 * * *"


def _workspace(tmp_path: Path, markers: Path, **sections: Any) -> Workspace:
    spec = {
        "name": "declared",
        "pipelines": {"nightly": {"function": ON_DATA, "params": {"marker_dir": str(markers)}}},
        **sections,
    }
    return Workspace.init(tmp_path / "ws", spec=spec)


def _rewrite(ws: Workspace, **sections: Any) -> Workspace:
    """Change the workspace's wellml.yaml and open it again."""
    path = ws.root / "wellml.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(sections)
    path.write_text(yaml.safe_dump(data))
    ws.close()
    return Workspace.open(ws.root)


def test_declared_schedules_are_applied_once_and_keep_their_cursor(
    tmp_path: Path, markers: Path
) -> None:
    ws = _workspace(
        tmp_path,
        markers,
        schedules={
            "nightly-3am": {"pipeline": "nightly", "cron": CRON, "params": {"dataset": "x"}}
        },
    )
    try:
        ws.data.register("events", pd.DataFrame({"a": [1]}))
        ws = _rewrite(
            ws,
            triggers={
                "on-events": {
                    "pipeline": ON_DATA,
                    "dataset": "events",
                    "dataset_param": "dataset",
                    "params": {"marker_dir": str(markers)},
                }
            },
        )
        applied = ws.pipelines.apply_schedules()
        assert [(a.name, a.action) for a in applied] == [
            ("nightly-3am", "created"),
            ("on-events", "created"),
        ]
        sched = ws.pipelines.get_schedule("nightly-3am")
        assert (sched.kind, sched.cron, sched.params) == ("cron", CRON, {"dataset": "x"})
        trig = ws.pipelines.get_schedule("on-events")
        assert (trig.kind, trig.dataset, trig.dataset_param, trig.cursor) == (
            "dataset",
            "events",
            "dataset",
            1.0,
        )

        # A slot runs; applying the same file again changes nothing, the claimed slot included.
        due = next_slot(CRON, now()) + 60
        fired = ws.pipelines.scheduler().tick(due)
        assert [f.key for f in fired] == [slot_key(next_slot(CRON, now()))]
        before = ws.pipelines.get_schedule("nightly-3am")
        again = ws.pipelines.apply_schedules()
        assert [a.action for a in again] == ["unchanged", "unchanged"]
        after = ws.pipelines.get_schedule("nightly-3am")
        assert (after.cursor, after.updated_at) == (before.cursor, before.updated_at)
        assert ws.pipelines.scheduler().tick(due) == []
        assert executions(markers, "dataset-x") == 1

        # A changed entry is updated, a disabled one enabled again; others are not touched.
        ws.pipelines.unschedule("on-events")
        ws.pipelines.schedule("nightly", cron="0 5 * * *", name="by-hand")
        ws = _rewrite(
            ws,
            schedules={"nightly-3am": {"pipeline": "nightly", "cron": "0 4 * * *"}},
        )
        applied = ws.pipelines.apply_schedules()
        assert [(a.name, a.action) for a in applied] == [
            ("nightly-3am", "updated"),
            ("on-events", "updated"),
        ]
        assert ws.pipelines.get_schedule("nightly-3am").cron == "0 4 * * *"
        assert ws.pipelines.get_schedule("nightly-3am").params == {}
        assert ws.pipelines.get_schedule("on-events").enabled
        assert ws.pipelines.get_schedule("by-hand").cron == "0 5 * * *"
    finally:
        ws.close()


def test_a_bad_declared_entry_writes_nothing(tmp_path: Path, markers: Path) -> None:
    ws = _workspace(
        tmp_path,
        markers,
        schedules={"good": {"pipeline": "nightly", "cron": CRON}},
        triggers={"t": {"pipeline": "nightly", "dataset": "missing"}},
    )
    try:
        with pytest.raises(NotFound, match=r"wellml.yaml: triggers.t: no dataset named 'missing'"):
            ws.pipelines.apply_schedules()
        assert ws.pipelines.schedules() == []
        ws = _rewrite(
            ws,
            triggers={},
            schedules={
                "good": {"pipeline": "nightly", "cron": CRON},
                "bad": {"pipeline": "nightly", "cron": CRON, "params": {"rows": 3}},
            },
        )
        with pytest.raises(InvalidInput, match=r"schedules.bad: .*no parameter"):
            ws.pipelines.apply_schedules()
        ws = _rewrite(
            ws, schedules={"gone": {"pipeline": "tests.pipelines.no_such:fn", "cron": CRON}}
        )
        with pytest.raises(NotFound, match=r"schedules.gone: no module"):
            ws.pipelines.apply_schedules()
        assert ws.pipelines.schedules() == []
    finally:
        ws.close()


def test_no_declared_schedules_applies_nothing(workspace: Workspace) -> None:
    assert workspace.pipelines.apply_schedules() == []
    assert workspace.pipelines.schedules() == []


def test_cli_applies_the_file_and_the_scheduler_does_so_at_start(
    tmp_path: Path, markers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = _workspace(tmp_path, markers, schedules={"n": {"pipeline": "nightly", "cron": CRON}})
    root = str(ws.root)
    ws.close()
    code, out, _ = cli(capsys, "-w", root, "pipelines", "schedule", "--from-config", "-f", "json")
    assert code == 0 and json.loads(out) == [{"name": "n", "action": "created"}]
    code, _, err = cli(capsys, "-w", root, "pipelines", "schedule", "--from-config")
    assert code == 0 and "schedule 'n' unchanged" in err

    code, _, err = cli(capsys, "-w", root, "pipelines", "schedule", "--from-config", "nightly")
    assert code != 0 and "--from-config takes no pipeline" in err
    code, _, err = cli(capsys, "-w", root, "pipelines", "schedule", "nightly")
    assert code != 0 and "give --cron, or pass --from-config" in err

    reopened = Workspace.open(root)
    try:
        reopened = _rewrite(reopened, schedules={"m": {"pipeline": "nightly", "cron": CRON}})
    finally:
        reopened.close()
    code, out, _ = cli(capsys, "-w", root, "pipelines", "scheduler", "--once", "-f", "json")
    assert code == 0 and json.loads(out) == []  # applied, and nothing was due yet
    code, out, _ = cli(capsys, "-w", root, "pipelines", "list", "--schedules", "-f", "json")
    assert sorted(s["name"] for s in json.loads(out)) == ["m", "n"]
    code, out, _ = cli(
        capsys, "-w", root, "pipelines", "scheduler", "--once", "--no-config", "-f", "json"
    )
    assert code == 0


def test_the_scheduler_refuses_to_start_on_a_bad_declared_entry(
    tmp_path: Path, markers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = _workspace(
        tmp_path, markers, triggers={"t": {"pipeline": "nightly", "dataset": "missing"}}
    )
    root = str(ws.root)
    ws.close()
    code, out, err = cli(capsys, "-w", root, "pipelines", "scheduler", "--once")
    assert code != 0 and out == ""
    assert "wellml.yaml: triggers.t: no dataset named 'missing'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "-w", root, "pipelines", "scheduler", "--once", "--no-config")
    assert code == 0 and "nothing was due" in err
