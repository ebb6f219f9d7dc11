"""``wellml endpoints`` from the shell: create, list, show, update, history, rollback, delete,
with stable JSON output and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from wellml.cli.app import main
from wellml.cli.context import state
from wellml.workspace import Workspace


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    state._ws = None
    state.workspace = None
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = Workspace.init(tmp_path / "proj", name="proj")
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=100)})
    y = (X["x"] > 0).astype(int)
    for c in (1.0, 0.1):
        ws.registry.register("m", LogisticRegression(C=c).fit(X, y), X=X, y=y)
    ws.registry.approve("m@1", by="lead")
    ws.close()
    monkeypatch.chdir(tmp_path / "proj")
    return tmp_path / "proj"


def test_create_update_rollback_and_delete(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "endpoints", "create", "ep", "--model", "m@2", "--port", "1")
    assert code != 0 and "approve it first" in err and "Traceback" not in err
    code, out, _ = run(
        capsys,
        "endpoints",
        "create",
        "ep",
        "--variant",
        "a=m@1,weight=2,replicas=2",
        "--strategy",
        "canary",
        "--alarm",
        "error_rate=0.02",
        "--alarm",
        "p99_ms=100",
        "--bake",
        "30",
        "--rate",
        "50",
        "--burst",
        "100",
        "--port",
        "1",
        "--format",
        "json",
    )
    assert code == 0, out
    created = json.loads(out)
    assert created["config_version"] == 1
    assert created["config"]["auto_rollback"] is True
    assert created["config"]["rate_limit"] == {"rate": 50.0, "burst": 100}
    assert created["config"]["variants"][0]["replicas"] == 2

    code, out, _ = run(capsys, "endpoints", "list", "--format", "json")
    assert [e["name"] for e in json.loads(out)] == ["ep"]

    run(capsys, "models", "approve", "m@2")
    code, out, err = run(
        capsys,
        "endpoints",
        "update",
        "ep",
        "--variant",
        "a=m@1,weight=1",
        "--variant",
        "b=m@2,weight=1",
        "--format",
        "json",
    )
    assert code == 0, err
    dep = json.loads(out)
    assert dep["outcome"] == "completed" and dep["to_version"] == 2
    assert dep["strategy"] == "canary"  # the endpoint's own policy

    code, out, _ = run(capsys, "endpoints", "show", "ep", "--format", "json")
    shown = json.loads(out)
    assert [v["name"] for v in shown["config"]["variants"]] == ["a", "b"]
    assert [d["to_version"] for d in shown["deployments"]] == [1, 2]

    code, out, _ = run(capsys, "endpoints", "rollback", "ep", "--format", "json")
    assert code == 0
    back = json.loads(out)
    assert back[0]["origin"] == "rollback" and back[0]["to_version"] == 3

    code, out, _ = run(capsys, "endpoints", "history", "ep", "--format", "json")
    history = json.loads(out)
    assert [c["version"] for c in history["configs"]] == [1, 2, 3]
    assert (
        history["configs"][2]["config"]["variants"] == history["configs"][0]["config"]["variants"]
    )

    code, _, err = run(capsys, "endpoints", "update", "ep", "--weight", "zz=1")
    assert code != 0 and "no production variant" in err
    code, _, err = run(capsys, "endpoints", "update", "ep", "--alarm", "nonsense")
    assert code != 0 and "cannot read alarm" in err

    code, out, _ = run(capsys, "endpoints", "delete", "ep")
    assert code == 0
    code, out, _ = run(capsys, "endpoints", "list", "--format", "json")
    assert json.loads(out) == []
    code, _, err = run(capsys, "endpoints", "show", "ep")
    assert code != 0 and "no endpoint named 'ep'" in err
