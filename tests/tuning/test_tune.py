"""Tuning: trials as child runs, pruning, budgets, warm starts, failures, Ray."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from wellml.errors import InvalidInput, NotFound, UserCodeError
from wellml.tuning import Trial
from wellml.workspace import Workspace


def _data(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    return X, (X["a"] + 0.7 * rng.normal(size=n) > 0).astype(int)


def stepped(params: dict[str, Any], trial: Trial) -> float:
    """Reports x at steps 1..3 (a ThresholdPruner(lower=0.5) stops x < 0.5 at step 1)."""
    for step in (1, 2, 3):
        trial.report(params["x"], step)
    return float(params["x"])


def slow_with_pid(params: dict[str, Any], trial: Trial) -> float:
    """Reports x, sleeps, and logs the process that ran it."""
    trial.log_metric("pid", os.getpid())
    trial.report(params["x"], 1)
    time.sleep(0.5)
    return float(params["x"])


def test_trials_are_child_runs_with_params_metric_and_duration(workspace: Workspace) -> None:
    X, y = _data()
    result = workspace.tuning.tune(
        LogisticRegression(), {"C": (1e-3, 10.0, "log")}, X=X, y=y, n_trials=4, seed=0,
        pruner="none", metric="accuracy",
    )  # fmt: skip
    assert result.status == "completed" and result.counts() == {"complete": 4}
    assert result.direction == "maximize" and result.settings["cv_folds"] == 3
    values = [t.value for t in result.trials]
    assert result.best_value == max(v for v in values if v is not None)
    parent = workspace.tracking.get_run(result.parent_run_id or "")
    assert parent.kind == "tuning" and parent.metrics["best_accuracy"] == result.best_value
    assert parent.metrics["trials_complete"] == 4 and "model.skops" in parent.artifacts
    for t in result.trials:
        run = workspace.tracking.get_run(t.run_id or "")
        assert run.parent_run_id == parent.id and run.kind == "trial"
        assert float(run.params["C"]) == pytest.approx(t.params["C"])
        assert run.metrics["accuracy"] == t.value and run.metrics["duration_s"] > 0
        assert run.tags["trial.state"] == "complete" and "system.cpu_time_s" in run.tags
        assert [s for s, _ in t.intermediate] == [1, 2, 3]  # the mean after each fold
        assert t.intermediate[-1][1] == pytest.approx(t.value)
    assert result.best_estimator.get_params()["C"] == result.best_params["C"]
    assert workspace.tuning.get(result.id).best_params == result.best_params
    assert workspace.tuning.get(result.name).id == result.id
    assert [s.id for s in workspace.tuning.list()] == [result.id]


def test_a_seeded_local_study_is_reproducible(workspace: Workspace) -> None:
    def run() -> list[float]:
        r = workspace.tuning.tune(
            lambda p: (p["x"] - 1) ** 2, {"x": (-3.0, 3.0)}, direction="minimize",
            n_trials=8, seed=7,
        )  # fmt: skip
        return [t.params["x"] for t in r.trials]

    assert run() == run()


def test_bad_trials_are_pruned_after_their_first_step(workspace: Workspace) -> None:
    result = workspace.tuning.tune(
        stepped, {"x": (0.0, 1.0)}, direction="maximize", n_trials=10, seed=0,
        pruner=optuna.pruners.ThresholdPruner(lower=0.5),
    )  # fmt: skip
    pruned = [t for t in result.trials if t.state == "pruned"]
    complete = [t for t in result.trials if t.state == "complete"]
    assert pruned and complete
    assert all(t.params["x"] < 0.5 and len(t.intermediate) == 1 for t in pruned)
    assert all(t.params["x"] >= 0.5 and len(t.intermediate) == 3 for t in complete)
    run = workspace.tracking.get_run(pruned[0].run_id or "")
    assert run.status == "finished" and run.tags["trial.state"] == "pruned"
    assert "objective" not in run.metrics  # a pruned trial has no final value


def test_the_estimator_objective_prunes_on_cross_validation_folds(workspace: Workspace) -> None:
    X, y = _data(150)
    X = X.assign(noise=np.random.default_rng(1).normal(size=150))
    result = workspace.tuning.tune(
        make_pipeline(StandardScaler(), LogisticRegression()),
        {"logisticregression__C": (1e-5, 10.0, "log")},
        X=X, y=y, n_trials=12, seed=3, pruner="halving", cv=4,
    )  # fmt: skip
    pruned = [t for t in result.trials if t.state == "pruned"]
    assert pruned and all(len(t.intermediate) < 4 for t in pruned)
    assert result.metric == "roc_auc"


def test_a_budget_in_seconds_stops_new_trials(workspace: Workspace) -> None:
    def slow(p: dict[str, Any]) -> float:
        time.sleep(0.2)
        return float(p["x"])

    started = time.monotonic()
    result = workspace.tuning.tune(slow, {"x": (0.0, 1.0)}, direction="maximize", timeout=0.7)
    took = time.monotonic() - started
    assert 2 <= len(result.trials) <= 5
    assert took < 0.7 + 0.2 + 1.5  # no trial starts after the deadline
    assert all(t.state == "complete" for t in result.trials[:-1])


def test_warm_start_from_a_study_tries_its_best_trials_first(workspace: Workspace) -> None:
    first = workspace.tuning.tune(
        lambda p: -((p["x"] - 0.3) ** 2), {"x": (0.0, 1.0), "k": [1, 2]},
        direction="maximize", n_trials=6, seed=1, name="warm",
    )  # fmt: skip
    ranked = sorted(first.trials, key=lambda t: t.value or 0.0, reverse=True)
    second = workspace.tuning.tune(
        lambda p: -((p["x"] - 0.3) ** 2), {"x": (0.0, 1.0), "k": [1, 2]},
        direction="maximize", n_trials=3, seed=2, warm_start_from="warm", warm_start_top=2,
    )  # fmt: skip
    assert [t.params for t in second.trials[:2]] == [t.params for t in ranked[:2]]
    assert second.settings["warm_start"]["from"] == "warm"
    assert second.best_value is not None and second.best_value >= ranked[0].value


def test_warm_start_from_a_registered_model_version(workspace: Workspace) -> None:
    X, y = _data()
    workspace.registry.register("m", LogisticRegression(C=0.37).fit(X, y), X=X)
    result = workspace.tuning.tune(
        make_pipeline(StandardScaler(), LogisticRegression()),
        {"logisticregression__C": (1e-3, 10.0, "log")},
        X=X, y=y, n_trials=2, seed=0, warm_start_from="m@1",
    )  # fmt: skip
    assert result.trials[0].params == {"logisticregression__C": 0.37}
    workspace.registry.register("far", LogisticRegression(C=500.0).fit(X, y), X=X)
    with pytest.raises(InvalidInput, match="none of the searched parameters"):
        workspace.tuning.tune(
            LogisticRegression(), {"C": (1e-3, 10.0, "log")}, X=X, y=y, n_trials=1,
            warm_start_from="far",
        )  # fmt: skip
    with pytest.raises(NotFound, match="to warm start from"):
        workspace.tuning.tune(
            LogisticRegression(), {"C": (1e-3, 10.0)}, X=X, y=y, n_trials=1,
            warm_start_from="nothing-here",
        )  # fmt: skip


def test_failed_trials_are_recorded_and_a_study_without_success_raises(
    workspace: Workspace,
) -> None:
    def flaky(p: dict[str, Any]) -> float:
        if p["x"] > 0.5:
            raise ValueError("too big")
        return float(p["x"])

    result = workspace.tuning.tune(flaky, {"x": (0.0, 1.0)}, direction="maximize", n_trials=8,
                                   seed=0)  # fmt: skip
    failed = [t for t in result.trials if t.state == "failed"]
    assert failed and "ValueError: too big" in (failed[0].error or "")
    assert workspace.tracking.get_run(failed[0].run_id or "").status == "failed"

    def nan(p: dict[str, Any]) -> float:
        return float("nan")

    with pytest.raises(UserCodeError, match=r"no trial of study .* completed") as info:
        workspace.tuning.tune(nan, {"x": (0.0, 1.0)}, direction="maximize", n_trials=2,
                              name="hopeless")  # fmt: skip
    assert "not a finite number" in str(info.value)
    study = workspace.tuning.get("hopeless")
    assert study.status == "failed" and study.counts() == {"failed": 2}
    assert workspace.tracking.get_run(study.parent_run_id or "").status == "failed"


def test_tuning_reads_a_dataset_version_and_records_its_lineage(workspace: Workspace) -> None:
    X, y = _data()
    version = workspace.data.register("d", X.assign(label=y))
    result = workspace.tuning.tune(
        LogisticRegression(), {"C": (0.01, 1.0)}, dataset="d", target="label", n_trials=2
    )
    assert result.settings["dataset"] == version.ref and result.settings["rows"] == 120
    run = workspace.tracking.get_run(result.parent_run_id or "")
    assert "dataset:d@1" in workspace.lineage.upstream(run.lineage_ref).refs()


def test_bad_input_is_refused_before_anything_runs(workspace: Workspace) -> None:
    X, y = _data()
    lr = LogisticRegression()
    tune = workspace.tuning.tune
    with pytest.raises(InvalidInput, match="budget"):
        tune(lr, {"C": (0.1, 1.0)}, X=X, y=y)
    with pytest.raises(InvalidInput, match="n_trials"):
        tune(lr, {"C": (0.1, 1.0)}, X=X, y=y, n_trials=0)
    with pytest.raises(InvalidInput, match="low <= high"):
        tune(lr, {"C": (1.0, 0.1)}, X=X, y=y, n_trials=1)
    with pytest.raises(InvalidInput, match="log range"):
        tune(lr, {"C": (0.0, 1.0, "log")}, X=X, y=y, n_trials=1)
    with pytest.raises(InvalidInput, match="has no parameter"):
        tune(lr, {"alpha": (0.1, 1.0)}, X=X, y=y, n_trials=1)
    with pytest.raises(InvalidInput, match="unknown metric"):
        tune(lr, {"C": (0.1, 1.0)}, X=X, y=y, n_trials=1, metric="goodness")
    with pytest.raises(InvalidInput, match="is to maximize"):
        tune(lr, {"C": (0.1, 1.0)}, X=X, y=y, n_trials=1, metric="accuracy",
             direction="minimize")  # fmt: skip
    with pytest.raises(InvalidInput, match="direction"):
        tune(lambda p: 1.0, {"x": (0.0, 1.0)}, n_trials=1)
    with pytest.raises(InvalidInput, match="reads its own"):
        tune(lambda p: 1.0, {"x": (0.0, 1.0)}, X=X, direction="maximize", n_trials=1)
    with pytest.raises(InvalidInput, match="unknown pruner"):
        tune(lr, {"C": (0.1, 1.0)}, X=X, y=y, n_trials=1, pruner="sometimes")
    with pytest.raises(InvalidInput, match="executor"):
        tune(lr, {"C": (0.1, 1.0)}, X=X, y=y, n_trials=1, executor="threads")
    with pytest.raises(InvalidInput, match="needs data"):
        tune(lr, {"C": (0.1, 1.0)}, n_trials=1)
    workspace.data.register("d", X.assign(label=y))
    with pytest.raises(NotFound, match="no column 'target'"):
        tune(lr, {"C": (0.1, 1.0)}, dataset="d", target="target", n_trials=1)
    assert workspace.tracking.search_runs() == [] and workspace.tuning.list() == []


@pytest.mark.ray
def test_trials_run_in_parallel_on_ray_and_report_to_one_study(
    workspace: Workspace, ray_local: Any
) -> None:
    started = time.monotonic()
    result = workspace.tuning.tune(
        slow_with_pid, {"x": (0.0, 1.0)}, direction="maximize", n_trials=6, seed=0,
        executor="ray", pruner=optuna.pruners.ThresholdPruner(lower=0.3),
    )  # fmt: skip
    took = time.monotonic() - started
    assert len(result.trials) == 6 and result.settings["executor"] == "ray"
    pids = {workspace.tracking.get_run(t.run_id or "").metrics.get("pid") for t in result.trials}
    assert len(pids) == 2 and float(os.getpid()) not in pids  # both Ray workers, never here
    assert all(t.state == ("pruned" if t.params["x"] < 0.3 else "complete") for t in result.trials)
    complete = [t for t in result.trials if t.state == "complete"]
    assert took < 0.5 * len(complete) + 10  # two at a time, plus Ray's start-up
    assert result.best_value == max(t.value or 0.0 for t in complete)


@pytest.mark.ray
def test_an_estimator_tunes_on_ray_like_it_does_here(workspace: Workspace, ray_local: Any) -> None:
    X, y = _data()
    space = {"C": (1e-3, 10.0, "log")}
    local = workspace.tuning.tune(LogisticRegression(), space, X=X, y=y, n_trials=4, seed=0,
                                  pruner="none")  # fmt: skip
    remote = workspace.tuning.tune(LogisticRegression(), space, X=X, y=y, n_trials=4, seed=0,
                                   pruner="none", executor="ray", n_jobs=1)  # fmt: skip
    assert [t.params for t in remote.trials] == [t.params for t in local.trials]
    assert [t.value for t in remote.trials] == pytest.approx([t.value for t in local.trials])
