"""The churn pipelines: ``develop`` tunes, trains and compares the candidates and registers the
best behind a quality gate; a second run comes from the cache."""

from __future__ import annotations

from typing import Any

import pytest

from wellml.errors import InvalidInput
from wellml.examples import churn
from wellml.examples.churn_pipeline import CANDIDATES, candidate_pipeline, develop
from wellml.workspace import Workspace


@pytest.fixture(scope="module")
def churn_ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A workspace with small churn training and validation splits."""
    ws = Workspace.init(tmp_path_factory.mktemp("churn") / "ws", name="churn")
    frame = churn.generate_churn(1200)
    train, validation = churn.split_train_holdout(frame, holdout_fraction=0.3, seed=2)
    ws.data.register("churn-train", train)
    ws.data.register("churn-validation", validation)
    yield ws
    ws.close()


def _params(ws: Workspace, **extra: Any) -> dict[str, Any]:
    return {
        "workspace": str(ws.root),
        "train_dataset": "churn-train@1",
        "validation_dataset": "churn-validation@1",
        "trials": 2,
        "sample_rows": 300,
        "target_auc": 0.6,
        **extra,
    }


def test_develop_registers_the_best_tuned_candidate_and_is_cached_the_second_time(
    churn_ws: Workspace,
) -> None:
    ws = churn_ws
    first = ws.pipelines.run(develop, params=_params(ws))
    assert first.status == "completed"
    assert first.counts() == {"completed": 8}
    comparison = ws.pipelines.load_output(first, "compare")
    scores = comparison["scores"]
    assert set(scores) == set(CANDIDATES)
    assert comparison["best"]["roc_auc"] == max(scores.values()) > 0.6

    # The tuned parameters reached the gradient-boosting candidate's run.
    tuned = ws.pipelines.load_output(first, "tune_candidate")
    assert set(tuned["params"]) == {
        "model__learning_rate",
        "model__max_leaf_nodes",
        "model__min_samples_leaf",
    }
    study = ws.tuning.get(tuned["study"])
    assert len(study.trials) == 2 and all(t.run_id for t in study.trials)
    boosting = ws.pipelines.load_output(first, "train_gradient_boosting")
    assert boosting["params"] == tuned["params"]
    run = ws.tracking.get_run(boosting["run_id"])
    assert run.tags["tuning.study"] == study.id and run.params["model__learning_rate"]

    # The registered version is the best candidate's model, from its run, with a card.
    ref = ws.pipelines.load_output(first, "register_best")
    mv = ws.registry.get(ref)
    assert ref == "churn@1" and mv.status == "pending"
    assert mv.run_id == comparison["best"]["run_id"]
    assert mv.card["metrics"]["roc_auc"] == pytest.approx(comparison["best"]["roc_auc"])
    assert "tuned with Optuna" in mv.card["selection"]
    model = ws.registry.load(ref)
    rows = ws.data.load("churn-validation@1").head(5)
    assert model.predict_proba(rows[list(churn.FEATURES)]).shape == (5, 2)

    second = ws.pipelines.run(develop, params=_params(ws))
    assert second.counts() == {"cached": 8}
    assert all("cache hit" in s.reason for s in second.steps)
    assert [v.ref for v in ws.registry.versions("churn")] == ["churn@1"]  # no new version


def test_develop_registers_nothing_when_the_best_misses_the_target(churn_ws: Workspace) -> None:
    ws = churn_ws
    run = ws.pipelines.run(develop, params=_params(ws, target_auc=0.999))
    assert run.status == "blocked"
    assert run.step("meets_target").status in ("completed", "cached")
    blocked = run.step("register_best")
    assert blocked.status == "blocked" and "does not beat baseline 0.999" in blocked.reason
    assert [v.ref for v in ws.registry.versions("churn")] == ["churn@1"]


def test_an_unknown_candidate_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown candidate 'svm'"):
        candidate_pipeline("svm")
    with pytest.raises(InvalidInput):
        develop.bind_params({"workspace": ".", "train_dataset": "t"})
