"""The CLI: thin commands, stable JSON, one-line errors with a non-zero exit."""

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


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    state.workspace = None
    state.debug = False
    state._ws = None


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    state._ws = None
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_init_then_register_list_and_show(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "init", "proj", "--owner", "ana")
    assert code == 0 and "created workspace" in err
    monkeypatch.chdir(tmp_path / "proj")
    csv = tmp_path / "d.csv"
    pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_csv(csv, index=False)
    code, out, _ = run(capsys, "data", "register", "d", str(csv), "--format", "json")
    assert code == 0 and json.loads(out)["ref"] == "d@1"
    code, out, _ = run(capsys, "data", "list", "--format", "json")
    assert [d["name"] for d in json.loads(out)] == ["d"]
    code, out, _ = run(capsys, "data", "show", "d@1", "-f", "json")
    assert json.loads(out)["num_rows"] == 3
    code, out, _ = run(capsys, "data", "list")
    assert code == 0 and "d" in out


def test_errors_are_one_line_and_exit_1(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "data", "list")
    assert code == 1 and "no wellml.yaml" in err and "Traceback" not in err
    Workspace.init(tmp_path, name="x").close()
    code, _, err = run(capsys, "data", "show", "missing@1")
    assert code == 1 and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "data", "register", "d", str(tmp_path / "nope.csv"))
    assert code == 1 and "no such file" in err
    code, _, _ = run(capsys, "data", "frobnicate")
    assert code == 2


def test_debug_shows_the_traceback(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    from wellml.errors import NotFound

    with pytest.raises(NotFound):
        main(["--debug", "data", "list"])


def test_quality_check_command(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.init(tmp_path, name="x")
    ws.data.register("d", pd.DataFrame({"age": [10, 200, 30]}))
    monkeypatch.chdir(tmp_path)
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {rule: range, column: age, min: 0, max: 120}\n")
    code, out, _ = run(capsys, "data", "check", "d@1", "--rules", str(rules), "-f", "json")
    assert code == 1
    assert json.loads(out)["results"][0]["failing_rows"] == 1
    rules.write_text("- {rule: nonsense}\n")
    code, _, err = run(capsys, "data", "check", "d@1", "--rules", str(rules))
    assert code == 1 and "error:" in err


def test_runs_models_and_lineage_commands(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.init(tmp_path, name="x")
    X = pd.DataFrame({"f": np.arange(40.0)})
    y = (X["f"] > 20).astype(int)
    dv = ws.data.register("train", X.assign(y=y))
    with ws.tracking.start_run("exp", name="lr", params={"C": 1}) as run_:
        run_.log_input(dv, "train")
        run_.log_metric("auc", 0.9)
        ws.registry.register("m", LogisticRegression().fit(X, y), X=X, run=run_)
    ws.close()
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "runs", "list", "-f", "json", "--filter", "metrics.auc > 0.5")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["lr"]
    code, out, _ = run(capsys, "runs", "show", run_.id[:10], "-f", "json")
    assert json.loads(out)["params"] == {"C": "1"}
    code, out, _ = run(capsys, "models", "approve", "m@1", "--reason", "good", "-f", "json")
    assert json.loads(out)["status"] == "approved"
    code, out, _ = run(capsys, "models", "alias", "m", "production", "1")
    assert code == 0
    code, out, _ = run(capsys, "models", "show", "m@production", "-f", "json")
    data = json.loads(out)
    assert data["version"] == 1 and [h["action"] for h in data["history"]] == [
        "registered",
        "approved",
        "alias:production",
    ]
    code, out, _ = run(capsys, "lineage", "show", "model:m@production", "--upstream", "-f", "json")
    refs = {n["ref"] for n in json.loads(out)["nodes"]}
    assert {"model:m@1", f"run:{run_.id}", "dataset:train@1"} <= refs
    code, out, _ = run(capsys, "lineage", "path", "dataset:train@1", "model:m@1", "-f", "json")
    assert [n["ref"] for n in json.loads(out)][-1] == "model:m@1"
    code, _, err = run(capsys, "lineage", "show", "train")
    assert code == 1 and "KIND:NAME" in err
    code, _, err = run(capsys, "models", "reject", "m@1")
    assert code == 1 and "reason" in err
