"""``wellml pipelines``: run, list, show and resume, with stable JSON and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipelines.conftest import executions
from wellml.cli import output
from wellml.cli.app import main
from wellml.cli.context import state
from wellml.workspace import Workspace

ARITHMETIC = "tests.pipelines.sample_steps:arithmetic"


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output.console, "width", 200)
    state.workspace = None
    state.debug = False
    state._ws = None


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    state._ws = None
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_list_and_show(
    workspace: Workspace, markers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(workspace.root)
    code, out, _ = cli(
        capsys, "-w", ws, "pipelines", "run", ARITHMETIC, "-p", f"marker_dir={markers}",
        "-p", "n=4", "--format", "json",
    )  # fmt: skip
    assert code == 0
    run = json.loads(out)
    assert run["status"] == "completed" and run["params"]["n"] == 4
    assert [st["status"] for st in run["steps"]] == ["completed"] * 3
    assert run["counts"] == {"completed": 3}

    code, _, err = cli(
        capsys, "-w", ws, "pipelines", "run", ARITHMETIC, "-p", f"marker_dir={markers}",
        "-p", "n=4",
    )  # fmt: skip
    assert code == 0
    assert err.count("cached") == 3 and "cache hit" in err
    assert executions(markers, "make_numbers") == 1

    code, out, _ = cli(capsys, "-w", ws, "pipelines", "list", "-f", "json")
    listed = json.loads(out)
    assert [r["status"] for r in listed] == ["completed", "completed"]
    assert listed[1]["id"] == run["id"]
    code, out, _ = cli(capsys, "-w", ws, "pipelines", "list")
    assert code == 0 and "arithmetic" in out and "3 cached" in out

    code, out, _ = cli(capsys, "-w", ws, "pipelines", "show", run["id"][:8], "-f", "json")
    shown = json.loads(out)
    assert shown["id"] == run["id"]
    assert set(shown["steps"][0]) >= {"name", "status", "attempts", "duration", "outputs"}
    code, out, _ = cli(capsys, "-w", ws, "pipelines", "show", run["id"])
    assert code == 0 and "make_numbers" in out and "completed" in out


def test_a_failing_run_exits_1_and_shows_the_steps(
    workspace: Workspace, markers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys, "-w", str(workspace.root), "pipelines", "run",
        "tests.pipelines.sample_steps:exploding", "-p", f"marker_dir={markers}",
    )  # fmt: skip
    assert code == 1
    assert "explode" in out and "failed" in out and "blocked" in out
    assert "ValueError: boom" in err and "Traceback" not in err


def test_a_blocked_run_exits_0_with_the_gate_reason(
    workspace: Workspace, markers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(
        capsys, "-w", str(workspace.root), "pipelines", "run",
        "tests.pipelines.sample_steps:promote", "-p", f"marker_dir={markers}",
        "-p", "candidate=0.5", "-f", "json",
    )  # fmt: skip
    assert code == 0
    run = json.loads(out)
    assert run["status"] == "blocked" and "does not beat" in run["error"]


def test_errors_are_one_line(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(workspace.root)
    code, _, err = cli(capsys, "-w", ws, "pipelines", "run", "nowhere_module:p")
    assert code == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "-w", ws, "pipelines", "run", ARITHMETIC)
    assert code == 1 and "parameter 'marker_dir' is required" in err
    code, _, err = cli(
        capsys, "-w", ws, "pipelines", "run", "tests.pipelines.sample_steps:mistyped"
    )
    assert code == 1 and "step 'wants_text'" in err
    code, _, err = cli(capsys, "-w", ws, "pipelines", "show", "ffffffffff")
    assert code == 1 and "no pipeline run" in err
    code, _, _ = cli(capsys, "-w", ws, "pipelines", "run", ARITHMETIC, "--executor", "cloud")
    assert code == 2


def test_resume_continues_a_run(
    workspace: Workspace, markers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = workspace.pipelines.run(
        "tests.pipelines.sample_steps:resumable", {"marker_dir": str(markers)}
    )
    code, out, _ = cli(
        capsys, "-w", str(workspace.root), "pipelines", "resume", first.id, "-f", "json"
    )
    assert code == 0
    resumed = json.loads(out)
    assert resumed["resumed_from"] == first.id
    assert [st["status"] for st in resumed["steps"]] == ["cached"] * 3


def test_schedule_trigger_scheduler_and_unschedule(
    workspace: Workspace, markers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    ws = str(workspace.root)
    on_data = "tests.pipelines.sample_steps:on_data"
    workspace.data.register("events", pd.DataFrame({"a": [1]}))
    code, out, _ = cli(
        capsys, "-w", ws, "pipelines", "schedule", on_data, "--cron", "0 3 * * *",
        "-p", f"marker_dir={markers}", "--name", "nightly", "-f", "json",
    )  # fmt: skip
    assert code == 0
    made = json.loads(out)
    assert made["kind"] == "cron" and made["params"] == {"marker_dir": str(markers)}
    assert made["next_at"] > 0
    code, _, err = cli(
        capsys, "-w", ws, "pipelines", "trigger", on_data, "--on-dataset", "events",
        "--dataset-param", "dataset", "-p", f"marker_dir={markers}", "--name", "on-events",
    )  # fmt: skip
    assert code == 0 and "each new version of dataset 'events'" in " ".join(err.split())

    code, out, _ = cli(capsys, "-w", ws, "pipelines", "list", "--schedules", "-f", "json")
    assert [s["name"] for s in json.loads(out)] == ["nightly", "on-events"]
    code, out, _ = cli(capsys, "-w", ws, "pipelines", "list", "--schedules")
    assert code == 0 and "0 3 * * *" in out and "on-events" in out

    code, _, err = cli(capsys, "-w", ws, "pipelines", "scheduler", "--once")
    assert code == 0 and "nothing was due" in err
    workspace.data.register("events", pd.DataFrame({"a": [2]}))
    code, out, _ = cli(capsys, "-w", ws, "pipelines", "scheduler", "--once", "-f", "json")
    fired = json.loads(out)
    assert [(f["schedule"], f["key"], f["status"]) for f in fired] == [
        ("on-events", "events@2", "completed")
    ]
    assert executions(markers, "dataset-events@2") == 1

    code, out, _ = cli(capsys, "-w", ws, "pipelines", "show", "on-events", "-f", "json")
    shown = json.loads(out)
    assert (
        shown["cursor"] == 2
        and shown["firings"][0]["pipeline_run_id"] == fired[0]["pipeline_run_id"]
    )
    code, out, _ = cli(capsys, "-w", ws, "pipelines", "show", "on-events")
    assert code == 0 and "events@2" in out

    code, _, err = cli(capsys, "-w", ws, "pipelines", "unschedule", "on-events")
    assert code == 0 and "disabled" in err
    code, _, err = cli(capsys, "-w", ws, "pipelines", "schedule", on_data, "--cron", "soon")
    assert code == 1 and "invalid cron expression" in " ".join(err.split())
    assert "Traceback" not in err
