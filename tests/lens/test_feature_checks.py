"""Lens checks of the feature store: statistics (MLPER-08), reuse (MLCOST-08) and
training/serving consistency (MLREL-07), computed from the records alone."""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression

from tests.features.conftest import activity_frame
from wellml.features import Entity, FeatureService, FeatureView, Field, Source
from wellml.workspace import Workspace


def _results(ws: Workspace) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r.id: r.to_dict() for r in ws.lens.review().results}


def _feature_model(
    ws: Workspace, *, describe: bool = True, service_on_endpoint: bool = True
) -> None:
    activity = activity_frame(customers=60)
    ws.data.register("activity", activity)
    view = FeatureView(
        "activity",
        entities=("customer",),
        source=Source(dataset="activity"),
        timestamp_field="event_timestamp",
        features=(Field("spend", "float64"), Field("calls", "int64")),
        owner="growth" if describe else "",
        description="Monthly spend and calls" if describe else "",
    )
    ws.features.apply(
        [
            Entity("customer", join_keys=("customer_id",)),
            view,
            FeatureService("churn", features=("activity:*",)),
        ]
    )
    labels = activity[["customer_id", "event_timestamp"]].assign(
        churned=(activity.spend > activity.spend.median()).astype(int)
    )
    training = ws.features.create_training_dataset("train", labels, "churn")
    frame = ws.data.load(training)
    X, y = frame[["spend", "calls"]], frame["churned"]
    with ws.tracking.start_run("churn", params={"C": 1.0}) as run:
        run.log_input(training, "train")
        model = LogisticRegression().fit(X, y)
        ws.registry.register("churn", model, X=X, run=run)
    ws.registry.approve("churn@1", by="lead")
    ws.features.materialize("activity")
    ws.endpoints.deploy(
        "churn@1", name="churn", port=1, feature_service="churn" if service_on_endpoint else None
    )


def test_feature_checks_pass_when_the_records_are_complete(workspace: Workspace) -> None:
    _feature_model(workspace)
    r = _results(workspace)
    assert r["MLPER-08"]["status"] == "pass", r["MLPER-08"]["reason"]
    assert r["MLCOST-08"]["status"] == "pass", r["MLCOST-08"]["reason"]
    # No parity check has run yet.
    assert r["MLREL-07"]["status"] == "fail"
    assert "no online/offline parity check" in r["MLREL-07"]["reason"]
    workspace.features.check_parity("activity")
    r = _results(workspace)
    assert r["MLREL-07"]["status"] == "pass", r["MLREL-07"]["reason"]
    assert "endpoint:churn" in r["MLREL-07"]["evidence"]


def test_feature_checks_name_what_is_missing(workspace: Workspace) -> None:
    _feature_model(workspace, describe=False, service_on_endpoint=False)
    workspace.features.check_parity("activity")
    r = _results(workspace)
    assert r["MLCOST-08"]["status"] == "fail"
    assert "missing owner, description" in r["MLCOST-08"]["reason"]
    assert r["MLREL-07"]["status"] == "fail"
    assert "no feature service" in r["MLREL-07"]["reason"]


def test_feature_checks_are_not_evaluated_without_feature_models(workspace: Workspace) -> None:
    r = _results(workspace)
    for practice in ("MLPER-08", "MLREL-07"):
        assert r[practice]["status"] == "not-evaluated"
