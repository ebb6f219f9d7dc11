"""AutoML: problem detection, column handling, start small and confirm, leaderboard, model
card, clear errors on tables it cannot learn from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wellml.cli import output
from wellml.cli.app import main
from wellml.cli.context import state
from wellml.errors import InvalidInput, NotFound
from wellml.tuning.automl import detect_problem, parse_budget, plan_columns
from wellml.workspace import Workspace


def _messy(n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    plan = rng.choice(["basic", "plus", "pro"], n)
    y = np.where(a + (plan == "pro") + 0.5 * rng.normal(size=n) > 0.3, "yes", "no")
    frame = pd.DataFrame(
        {
            "a": a,
            "plan": plan,
            "flag": rng.random(n) < 0.5,
            "note": [
                f"customer wrote a long message number {i} about the service" for i in range(n)
            ],
            "customer_id": np.arange(1000, 1000 + n),
            "region": "eu",
            "signup": pd.date_range("2024-01-01", periods=n, freq="D"),
            "churn": y,
        }
    )
    frame.loc[::7, "a"] = np.nan
    frame.loc[::11, "plan"] = None
    frame.loc[5, "churn"] = None
    return frame


def test_problem_types_are_detected_from_the_target() -> None:
    assert detect_problem(pd.Series([True, False, True])) == "binary"
    assert detect_problem(pd.Series(["a", "b", "c", "a"])) == "multiclass"
    assert detect_problem(pd.Series([0, 1, 1, 0])) == "binary"
    assert detect_problem(pd.Series([0, 1, 2, 3, 4] * 4)) == "multiclass"
    assert detect_problem(pd.Series(np.arange(50))) == "regression"
    assert detect_problem(pd.Series([0.5, 1.25, 2.0])) == "regression"
    with pytest.raises(InvalidInput, match="constant"):
        detect_problem(pd.Series(["x", "x", None], name="t"))


def test_columns_are_planned_with_a_note_for_each_one_left_out() -> None:
    plan = plan_columns(_messy().drop(columns=["churn"]))
    assert plan.numeric == ("a", "flag") and plan.categorical == ("plan",)
    assert set(plan.ignored) == {"note", "customer_id", "region", "signup"}
    assert "identifier" in plan.ignored["customer_id"]
    assert "free text" in plan.ignored["note"] and "dates" in plan.ignored["signup"]
    with pytest.raises(InvalidInput, match="no usable feature columns"):
        plan_columns(pd.DataFrame({"only": ["same"] * 5}))


def test_budgets_read_as_seconds() -> None:
    assert [parse_budget(b) for b in (90, "90", "90s", "10m", "1.5h")] == [
        90.0, 90.0, 90.0, 600.0, 5400.0,
    ]  # fmt: skip
    for bad in ("soon", "-1m", 0):
        with pytest.raises(InvalidInput, match="budget"):
            parse_budget(bad)


def test_automl_starts_small_confirms_on_all_rows_and_registers_a_card(
    workspace: Workspace,
) -> None:
    ws = workspace
    version = ws.data.register("customers", _messy())
    result = ws.tuning.automl(
        "customers", target="churn", budget=120, register="churn", sample_rows=80,
        candidates=["logistic", "random_forest"], max_trials=3, top_k=2, seed=0,
    )  # fmt: skip
    assert (result.problem, result.metric, result.direction) == ("binary", "roc_auc", "maximize")
    assert result.rows == 159 and result.sample_rows == 80
    assert [r.rank for r in result.leaderboard] == [1, 2]
    assert all(r.full_score is not None and r.confirm_run_id for r in result.leaderboard)
    best = result.best
    assert best.full_score == max(r.full_score or 0 for r in result.leaderboard)
    assert result.baseline_score == pytest.approx(0.5)
    assert best.full_score is not None and best.full_score > 0.7
    assert any("row(s) without a value of 'churn'" in n for n in result.notes)
    assert any("'customer_id' ignored" in n for n in result.notes)

    mv = result.model_version
    assert mv is not None and mv.ref == "churn@1" and mv.run_id == result.run_id
    card = mv.card["automl"]
    assert card["chosen"] == best.candidate and card["sample_rows"] == 80
    assert [r["candidate"] for r in card["leaderboard"]] == [
        r.candidate for r in result.leaderboard
    ]
    assert best.candidate in card["why"] and "roc_auc" in card["why"]
    assert card["budget_s"] == 120 and card["budget_used_s"] > 0
    assert mv.metrics["roc_auc"] == best.full_score
    assert [c.name for c in mv.signature.inputs] == ["a", "flag", "plan"]
    model = ws.registry.load(mv)
    frame = _messy().head(5)
    assert set(model.predict(frame[["a", "plan", "flag"]])) <= {"yes", "no"}

    runs = ws.tracking.search_runs("automl")
    kinds = sorted(r.kind for r in runs)
    assert kinds.count("automl") == 1 and kinds.count("tuning") == 2 and kinds.count("confirm") == 2
    assert kinds.count("trial") == sum(sum(r.trials.values()) for r in result.leaderboard)
    confirm = ws.tracking.get_run(best.confirm_run_id or "")
    assert "diagnostics.flags" in confirm.tags and confirm.parent_run_id == result.run_id
    assert f"dataset:{version.ref}" in ws.lineage.upstream(mv.lineage_ref).refs()


def test_a_tiny_regression_table_is_tuned_with_fewer_folds(workspace: Workspace) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=12)
    frame = pd.DataFrame({"x": x, "y": 3 * x + 0.1 * rng.normal(size=12)})
    result = workspace.tuning.automl(frame, target="y", budget=60, candidates=["ridge"],
                                     max_trials=2)  # fmt: skip
    assert (result.problem, result.metric, result.direction) == ("regression", "rmse", "minimize")
    assert result.best.full_score is not None and result.best.full_score < 1.0
    assert result.model_version is None and result.dataset is None


def test_multiclass_with_lightgbm_when_it_is_installed(workspace: Workspace) -> None:
    pytest.importorskip("lightgbm")
    rng = np.random.default_rng(5)
    x = rng.normal(size=300)
    frame = pd.DataFrame({"x": x, "z": rng.normal(size=300),
                          "y": np.digitize(x, [-0.5, 0.5]).astype(str)})  # fmt: skip
    result = workspace.tuning.automl(frame, target="y", budget=60, candidates=["lightgbm"],
                                     max_trials=2)  # fmt: skip
    assert result.problem == "multiclass" and result.metric == "f1_macro"
    assert result.best.candidate == "lightgbm" and (result.best.full_score or 0) > 0.7


def test_tables_automl_cannot_learn_from_get_a_clear_error(workspace: Workspace) -> None:
    automl = workspace.tuning.automl
    frame = pd.DataFrame({"x": range(10), "y": ["same"] * 10})
    with pytest.raises(InvalidInput, match="'y' is constant"):
        automl(frame, target="y", budget=10)
    with pytest.raises(NotFound, match="no column 'label'"):
        automl(frame, target="label", budget=10)
    with pytest.raises(InvalidInput, match="too few"):
        automl(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.5]}), target="y", budget=10)
    two = pd.DataFrame({"x": np.arange(20.0), "y": [0, 1] * 9 + [2, 0]})
    with pytest.raises(InvalidInput, match="single row"):
        automl(two, target="y", budget=10)
    reg = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20.0) * 1.5})
    with pytest.raises(InvalidInput, match="does not fit a regression"):
        automl(reg, target="y", metric="roc_auc", budget=10)
    with pytest.raises(NotFound, match="unknown candidate"):
        automl(reg, target="y", candidates=["magic"], budget=10)
    with pytest.raises(InvalidInput, match="no usable feature columns"):
        automl(pd.DataFrame({"c": ["k"] * 20, "y": np.arange(20.0)}), target="y", budget=10)
    with pytest.raises(NotFound):
        automl("no-such-dataset", target="y", budget=10)
    assert workspace.tracking.search_runs() == []


def test_the_cli_prints_the_leaderboard_and_registers(
    workspace: Workspace,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(output.console, "width", 200)
    state.workspace, state.debug, state._ws = None, False, None
    workspace.data.register("customers", _messy())
    code = main(["-w", str(workspace.root), "automl", "customers", "--target", "churn",
                 "--budget", "90s", "-c", "logistic", "--max-trials", "2", "--register", "m",
                 "-f", "json"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0
    data = json.loads(out.out)
    assert data["model_version"] == "m@1" and data["leaderboard"][0]["candidate"] == "logistic"
    state._ws = None
    code = main(["-w", str(workspace.root), "automl", "customers", "--target", "churn",
                 "--budget", "90s", "-c", "logistic", "--max-trials", "1"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0 and "leaderboard" in out.out and "logistic" in out.out
    assert "note: column 'note' ignored" in " ".join(out.err.split())
    state._ws = None
    code = main(["-w", str(workspace.root), "automl", "customers", "--target", "region",
                 "--budget", "1m"])  # fmt: skip
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "is constant" in err and "Traceback" not in err
