"""``wellml monitor`` from the shell: baseline, constraints, create, list, run, history, alerts,
run-due, triggers, report, ground-truth, poisoning and review, with ``--format json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.monitoring.conftest import capture, customers
from wellml.cli.app import main
from wellml.cli.context import state
from wellml.workspace import Workspace


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    state._ws = None
    state.workspace = None
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def js(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    code, out, err = run(capsys, *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "x": rng.normal(shift, 1, n),
            "plan": rng.choice(["a", "b"], n),
            "y": rng.integers(0, 2, n),
        }
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = Workspace.init(tmp_path / "proj", name="proj")
    ws.data.register("ref", _frame(3000, 0))
    ws.data.register("live", _frame(2000, 1))
    ws.close()
    monkeypatch.chdir(tmp_path / "proj")
    return tmp_path / "proj"


def test_baseline_constraints_monitor_run_history_alerts(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = js(capsys, "monitor", "baseline", "ref@1", "--features", "x,plan")
    assert base["ref"] == "ref@1" and base["features"] == ["x", "plan"]
    code, out, _ = run(capsys, "monitor", "baseline", "ref@1", "--features", "x,plan")
    assert code == 0 and "completeness" in out

    edited = js(
        capsys,
        "monitor",
        "constraints",
        "ref",
        "--set",
        "x.completeness=0.9",
        "--set",
        "monitoring_config.comparison_threshold=0.2",
        "--export",
        str(project / "mm"),
    )
    assert edited["ref"] == "ref@2"
    assert {c["name"]: c for c in edited["constraints"]["features"]}["x"]["completeness"] == 0.9
    exported = json.loads((project / "mm" / "constraints.json").read_text())
    assert exported["monitoring_config"]["distribution_constraints"]["comparison_threshold"] == 0.2
    code, _, err = run(capsys, "monitor", "constraints", "ref", "--set", "nope.min=1")
    assert code == 1 and "no feature 'nope'" in err

    mon = js(
        capsys,
        "monitor",
        "create",
        "--dataset",
        "live",
        "--baseline",
        "ref@2",
        "--schedule",
        "0 * * * *",
        "--threshold",
        "wasserstein=0.15",
        "--retrain",
        "flows:train",
        "--retrain-param",
        "c=0.5",
    )
    assert mon["name"] == "live-drift" and mon["config"]["thresholds"]["wasserstein"] == 0.15
    assert mon["config"]["alert_route"]["retrain"] == {
        "pipeline": "flows:train",
        "params": {"c": 0.5},
        "when": "drift",
    }
    assert [m["name"] for m in js(capsys, "monitor", "list")] == ["live-drift"]

    first = js(capsys, "monitor", "run", "live-drift")
    assert first["status"] == "completed" and first["dataset"] == "live@1"
    code, _, err = run(capsys, "monitor", "run", "live-drift")
    assert code == 1 and "no new version" in err

    ws = Workspace.open(project)
    ws.data.register("live", _frame(2000, 2, shift=1.0))
    ws.close()
    html = project / "report.html"
    second = js(capsys, "monitor", "run", "live-drift", "--html", str(html))
    assert second["drifted_features"] == ["x"] and html.exists()
    code, out, _ = run(capsys, "monitor", "run", "live-drift", "--all")
    assert code == 0 and "drift in 1 feature(s): x" in out

    history = js(capsys, "monitor", "history", "live-drift")
    assert [h["status"] for h in history] == [
        "completed-with-violations",
        "completed-with-violations",
        "completed",
    ]
    alerts = js(capsys, "monitor", "alerts", "live-drift")
    assert len(alerts) == 2 and alerts[0]["delivered"] is None
    triggers = js(capsys, "monitor", "triggers", "--status", "pending")
    assert len(triggers) == 2 and triggers[0]["pipeline"] == "flows:train"
    code, out, _ = run(capsys, "monitor", "report", second["id"], "--out", str(project / "x.html"))
    assert code == 0 and (project / "x.json").exists()

    due = js(capsys, "monitor", "run-due")
    assert due == {"runs": [], "retraining": [], "review": []}


def test_poisoning_exits_non_zero_when_blocked(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace.open(project)
    old = _frame(1000, 3)
    ws.data.register("train", old)
    ws.data.register("train", old.assign(y=1 - old["y"]))
    ws.close()
    code, out, _ = run(capsys, "monitor", "poisoning", "train@2", "--key", "id", "--label", "y")
    assert code == 1 and "BLOCKED" in out
    code, out, _ = run(
        capsys,
        "monitor",
        "poisoning",
        "train@2",
        "--previous",
        "train@2",
        "--key",
        "id",
        "--label",
        "y",
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out)["blocked"] is False


def test_ground_truth_from_a_csv_file(
    served: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traffic = customers(50, 1)
    ids = capture(served, traffic)
    path = tmp_path / "labels.csv"
    pd.DataFrame({"request": ids, "churned": traffic["y"]}).to_csv(path, index=False)
    got = js(
        capsys,
        "--workspace",
        str(served.root),
        "monitor",
        "ground-truth",
        "ep",
        str(path),
        "--label",
        "churned",
        "--id",
        "request",
    )
    assert (got["rows"], got["matched"], got["dataset"]) == (50, 50, "ep-ground-truth@1")


def test_ground_truth_from_an_unsupported_file_is_refused(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from wellml.cli.app import main
    from wellml.workspace import Workspace

    Workspace.init(tmp_path / "ws", name="gt").close()
    bad = tmp_path / "labels.xlsx"
    bad.write_text("inference_id,label\nabc,1\n")
    code = main(["--workspace", str(tmp_path / "ws"), "monitor", "ground-truth", "churn", str(bad)])
    err = capsys.readouterr().err
    assert code == 1 and "unsupported file type" in err


def test_review_queue_from_the_shell(
    served: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = ["--workspace", str(served.root)]
    traffic = customers(200, 7)
    capture(served, traffic)
    setup = js(capsys, *ws, "monitor", "review", "setup", "ep", "--threshold", "0.8")
    assert setup["threshold"] == 0.8 and setup["counts"]["pending"] == 0
    (scan,) = js(capsys, *ws, "monitor", "review", "fill")
    assert scan["endpoint"] == "ep" and scan["scanned_rows"] == 200 and scan["queued"] > 3
    items = js(capsys, *ws, "monitor", "review", "list", "ep", "--limit", "3")
    assert len(items) == 3 and items[0]["confidence"] <= items[1]["confidence"]
    code, out, _ = run(capsys, *ws, "monitor", "review", "list", "ep")
    assert code == 0 and "pending" in out

    first, second, third = (i["id"] for i in items)
    done = js(capsys, *ws, "monitor", "review", "label", "ep", f"{first}=1", "--reviewer", "bo")
    assert done["labelled"] == 1 and done["ground_truth"]["matched"] == 1
    sheet = tmp_path / "sheet.csv"
    code, _, err = run(capsys, *ws, "monitor", "review", "export", "ep", str(sheet))
    assert code == 0 and sheet.exists()
    frame = pd.read_csv(sheet)
    frame.loc[frame["item_id"] == second, "label"] = 0
    frame.to_csv(sheet, index=False)
    done = js(capsys, *ws, "monitor", "review", "label", "ep", "--file", str(sheet))
    assert done["items"] == [second]
    code, out, _ = run(capsys, *ws, "monitor", "review", "skip", "ep", third, "--note", "x")
    assert code == 0 and "1 item(s) skipped" in out
    assert js(capsys, *ws, "monitor", "review", "resend", "ep") is None

    # Bad input: one clear line and exit 1.
    code, _, err = run(capsys, *ws, "monitor", "review", "label", "ep", f"{first}=1")
    assert code == 1 and "already labelled" in err
    code, _, err = run(capsys, *ws, "monitor", "review", "label", "ep")
    assert code == 1 and "ITEM=LABEL pairs or --file" in err
    code, _, err = run(capsys, *ws, "monitor", "review", "label", "ep", "no-equals-sign")
    assert code == 1 and "is not KEY=VALUE" in err
    code, _, err = run(capsys, *ws, "monitor", "review", "setup", "ep", "--threshold", "2")
    assert code == 1 and "threshold must be in (0, 1]" in err
    code, _, err = run(capsys, *ws, "monitor", "review", "list", "ep", "--status", "odd")
    assert code == 1 and "status must be one of" in err


def test_attribution_monitor_from_the_shell(
    served: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = ["--workspace", str(served.root)]
    mon = js(
        capsys,
        *ws,
        "monitor",
        "create",
        "--endpoint",
        "ep",
        "--kind",
        "feature_attribution_drift",
        "-o",
        "max_rows=100",
        "-o",
        "n_samples=64",
        "-t",
        "ndcg=0.8",
    )
    assert mon["name"] == "ep-feature-attribution-drift"
    assert mon["config"]["options"]["max_rows"] == 100
    capture(served, customers(120, 8))
    code, out, _ = run(capsys, *ws, "monitor", "run", "ep-feature-attribution-drift")
    assert code == 0 and "NDCG" in out and "threshold 0.8" in out


def test_malformed_monitor_arguments_are_refused(
    project: Path, served: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "monitor", "baseline", "ref@1", "--features", "x,plan")
    assert code == 0
    code, _, err = run(capsys, "monitor", "constraints", "ref", "--set", "x.completeness")
    assert code == 1 and "--set 'x.completeness' is not KEY=VALUE" in err
    code, _, err = run(capsys, "monitor", "constraints", "ref", "--set", "=1")
    assert code == 1 and "is not KEY=VALUE" in err
    code, _, err = run(capsys, "monitor", "run-due", "--interval", "0")
    assert code == 1 and "--interval must be a positive number" in err
    code, _, err = run(capsys, "monitor", "run-due", "--loop", "--interval", "-5")
    assert code == 1 and "--interval must be a positive number" in err
    code, _, err = run(
        capsys, "monitor", "create", "--dataset", "live", "--baseline", "ref@1", "-t", "psi=high"
    )
    assert code == 1 and "threshold psi takes a number" in err

    # Ground truth without its label or id column names what is missing.
    ws = ["--workspace", str(served.root)]
    ids = capture(served, customers(10, 9))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"inference_id": ids, "churned": 1}).to_csv(labels, index=False)
    code, _, err = run(capsys, *ws, "monitor", "ground-truth", "ep", str(labels))
    assert code == 1 and "lacks column(s) label" in err
    code, _, err = run(
        capsys,
        *ws,
        "monitor",
        "ground-truth",
        "ep",
        str(labels),
        "--label",
        "churned",
        "--id",
        "rid",
    )
    assert code == 1 and "lacks column(s) rid" in err
    assert served.data.versions("ep-ground-truth") == []
