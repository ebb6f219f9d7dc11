"""An endpoint wired to a feature service: requests carry entity keys, features come online."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.features.conftest import activity_frame
from tests.features.test_service import spend_ratio
from wellml.errors import InvalidInput
from wellml.features import Entity, FeatureService, FeatureView, Field, Source
from wellml.workspace import Workspace


@pytest.fixture
def served(workspace: Workspace) -> Workspace:
    activity = activity_frame(customers=40)
    workspace.data.register("activity", activity)
    view = FeatureView(
        "activity",
        entities=("customer",),
        source=Source(dataset="activity"),
        timestamp_field="event_timestamp",
        features=(Field("spend", "float64"), Field("calls", "int64")),
    )
    workspace.features.apply(
        [
            Entity("customer", join_keys=("customer_id",)),
            view,
            spend_ratio,
            FeatureService("model-inputs", features=("activity:*", "spend_ratio:spend_per_call")),
        ]
    )
    labels = activity[["customer_id", "event_timestamp"]].assign(
        order_value=50.0, churned=(activity.calls > 4).astype(int)
    )
    training = workspace.features.create_training_dataset("train", labels, "model-inputs")
    frame = workspace.data.load(training)
    X = frame[["spend", "calls", "spend_per_call"]]
    with workspace.tracking.start_run("churn") as run:
        run.log_input(training, "train")
        model = LogisticRegression(max_iter=500).fit(X, frame["churned"])
        workspace.registry.register("churn", model, X=X, run=run)
    workspace.registry.approve("churn@1", by="lead")
    workspace.features.materialize("activity")
    return workspace


def test_requests_with_entity_keys_are_enriched_from_the_online_store(served: Workspace) -> None:
    online = served.features.get_online_features(
        [{"customer_id": c, "order_value": 10.0} for c in (1, 2, 3)], "model-inputs"
    ).to_pandas()
    model = served.registry.load("churn@1")
    expected = model.predict(online[["spend", "calls", "spend_per_call"]]).tolist()
    with served.endpoints.start(
        "churn@1", name="churn", feature_service="model-inputs", auth=False
    ):
        ids_only = [{"customer_id": c, "order_value": 10.0} for c in (1, 2, 3)]
        assert served.endpoints.invoke("churn", ids_only)["predictions"] == expected
        # Values sent with the request win over the online store's.
        sent = [
            {"customer_id": 1, "order_value": 10.0, "spend": 0.0, "calls": 9, "spend_per_call": 0.0}
        ]
        assert (
            served.endpoints.invoke("churn", sent)["predictions"]
            == model.predict(
                pd.DataFrame([{"spend": 0.0, "calls": 9, "spend_per_call": 0.0}])
            ).tolist()
        )
        with pytest.raises(InvalidInput, match=r"400.*join key 'customer_id'"):
            served.endpoints.invoke("churn", [{"order_value": 1.0}])
        with pytest.raises(InvalidInput, match="422"):
            served.endpoints.invoke("churn", [{"customer_id": 99_999, "order_value": 1.0}])
    ep = served.endpoints.get("churn")
    assert ep.config["feature_service"] == "model-inputs@1"
    upstream = served.lineage.upstream(ep.lineage_ref).refs()
    assert {"feature_service:model-inputs@1", "feature_view:activity@1"} <= upstream
    captured = served.endpoints.capture_dataset("churn")
    assert captured is not None and {"spend", "calls", "spend_per_call"} <= set(captured.columns)


def test_a_service_that_provides_none_of_the_inputs_is_refused(served: Workspace) -> None:
    served.features.apply([FeatureService("other", features=("activity:calls",))])
    served.features.apply([FeatureService("unrelated", features=("spend_ratio:big_order",))])
    with pytest.raises(InvalidInput, match="provides none of churn@1's inputs"):
        served.endpoints.deploy("churn@1", name="x", feature_service="unrelated", port=1)
    ep = served.endpoints.deploy("churn@1", name="x", feature_service="other", port=1)
    assert ep.config["feature_service"] == "other@1"
