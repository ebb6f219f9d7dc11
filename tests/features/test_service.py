"""The feature store service: definitions, versions, retrieval, materialization, serving."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from wellml.errors import Conflict, InvalidInput, NotFound, UserCodeError
from wellml.features import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    OnDemandFeatureView,
    Source,
    on_demand_feature_view,
)
from wellml.workspace import Workspace

CUSTOMER = Entity("customer", join_keys=("customer_id",), owner="growth")


def _view(**changes: object) -> FeatureView:
    spec: dict[str, object] = {
        "name": "activity",
        "entities": ("customer",),
        "source": Source(dataset="activity"),
        "timestamp_field": "event_timestamp",
        "ttl": "45d",
        "features": (Field("spend", "float64"), Field("calls", "int64"), Field("plan", "string")),
    }
    spec.update(changes)
    return FeatureView(**spec)  # type: ignore[arg-type]


@on_demand_feature_view(
    features=[Field("spend_per_call", "float64"), Field("big_order", "bool")],
    inputs=["activity:spend", "activity:calls"],
    request=[Field("order_value", "float64")],
)
def spend_ratio(frame: pd.DataFrame) -> pd.DataFrame:
    """Spend per support call, and whether the order in the request is large."""
    return pd.DataFrame(
        {
            "spend_per_call": frame["spend"] / (frame["calls"] + 1),
            "big_order": frame["order_value"] > 100,
        }
    )


def failing_transform(frame: pd.DataFrame) -> pd.DataFrame:
    raise ZeroDivisionError("boom")


def _labels() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 999],
            "event_timestamp": pd.to_datetime(
                ["2024-03-15", "2024-06-20", "2023-12-01", "2024-09-01", "2024-03-01"]
            ),
            "order_value": [50.0, 150.0, 10.0, 500.0, 1.0],
            "churned": [0, 1, 0, 1, 0],
        }
    )


def _expected(
    activity: pd.DataFrame, customer: int, at: str, ttl_days: float = 45
) -> pd.Series | None:
    rows = activity[
        (activity.customer_id == customer) & (activity.event_timestamp <= pd.Timestamp(at))
    ]
    if rows.empty:
        return None
    last = rows.sort_values("event_timestamp").iloc[-1]
    if pd.Timestamp(at) - last.event_timestamp > pd.Timedelta(days=ttl_days):
        return None
    return last


# -- definitions, plan and apply --------------------------------------------------------------


def test_apply_creates_versions_and_reapply_is_a_no_op(ws: Workspace) -> None:
    plan = ws.features.plan([CUSTOMER, _view()])
    assert [(i.kind, i.action, i.new_version) for i in plan.items] == [
        ("entity", "create", 1),
        ("feature_view", "create", 1),
    ]
    assert ws.features.list() == []  # planning changes nothing
    ws.features.apply([CUSTOMER, _view()])
    again = ws.features.apply([CUSTOMER, _view()])
    assert [i.action for i in again.items] == ["unchanged", "unchanged"]
    listed = {d["name"]: d for d in ws.features.list()}
    assert listed["activity"]["version"] == 1 and listed["activity"]["versions"] == 1
    assert listed["activity"]["features"] == ["spend", "calls", "plan"]
    view = ws.features.get("activity")
    assert view.spec["source"] == {"dataset": "activity@1"}
    assert view.spec["ttl_seconds"] == 45 * 86400
    assert view.spec["key_types"] == {"customer_id": "integer"}


def test_a_changed_definition_becomes_a_new_version_and_the_old_one_stays(ws: Workspace) -> None:
    ws.features.apply([CUSTOMER, _view(), FeatureService("churn", features=("activity:*",))])
    plan = ws.features.plan([_view(ttl="90d", features=(Field("spend", "float64"),))])
    (item,) = plan.items
    assert item.action == "update" and (item.current_version, item.new_version) == (1, 2)
    assert any("ttl_seconds" in c for c in item.changes)
    assert any("removed calls, plan" in c for c in item.changes)
    ws.features.apply([_view(ttl="90d", features=(Field("spend", "float64"),))])
    assert ws.features.get("activity").version == 2
    assert ws.features.get("activity@1").feature_names == ["spend", "calls", "plan"]
    # The service still pins the version it was applied with, until it is applied again.
    assert ws.features.get("churn").spec["features"][0]["version"] == 1
    plan = ws.features.apply([FeatureService("churn", features=("activity:*",))])
    assert plan.items[0].action == "update"
    assert ws.features.get("churn").spec["features"][0] == {
        "view": "activity",
        "kind": "feature_view",
        "version": 2,
        "features": ["spend"],
    }
    assert [v.version for v in ws.features.versions("churn")] == [2, 1]


def test_a_new_dataset_version_is_a_change_of_the_view(
    ws: Workspace, activity: pd.DataFrame
) -> None:
    ws.features.apply([CUSTOMER, _view()])
    ws.data.register("activity", activity.assign(spend=activity.spend + 1))
    (item,) = ws.features.plan([_view()]).items
    assert item.action == "update"
    assert item.changes == ('spec.source.dataset: "activity@1" -> "activity@2"',)


def test_features_are_inferred_from_the_source_when_not_declared(ws: Workspace) -> None:
    ws.features.apply([CUSTOMER, _view(features=())])
    spec = ws.features.get("activity").spec
    assert [(f["name"], f["dtype"]) for f in spec["features"]] == [
        ("spend", "float64"),
        ("calls", "int64"),
        ("plan", "string"),
        ("active", "bool"),
    ]


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (_view(entities=("nobody",)), "unknown entity 'nobody'"),
        (_view(timestamp_field="when"), "timestamp_field column 'when' is missing"),
        (_view(timestamp_field="spend"), "must be a timestamp"),
        (
            _view(features=(Field("spend", "string"),)),
            "declared string but the source column is DOUBLE",
        ),
        (_view(features=(Field("plan", "int64"),)), "declared int64"),
        (_view(features=(Field("nope", "float64"),)), "feature column 'nope' is missing"),
        (_view(source=Source(dataset="missing")), "no dataset named 'missing'"),
        (_view(source=Source(path="/nonexistent/*.parquet")), "cannot read Parquet"),
        (_view(source=Source(query="SELECT 1 AS x")), "reads no dataset"),
        (FeatureService("svc", features=("activity:nope",)), "unknown feature view 'activity'"),
    ],
)
def test_bad_definitions_are_rejected_and_nothing_is_applied(
    ws: Workspace, definition: object, message: str
) -> None:
    with pytest.raises((InvalidInput, NotFound), match=message):
        ws.features.apply([CUSTOMER, definition])  # type: ignore[list-item]
    assert ws.features.list() == []


def test_definition_objects_reject_bad_fields() -> None:
    with pytest.raises(InvalidInput, match="unknown dtype"):
        Field("x", "decimal")
    with pytest.raises(InvalidInput, match="exactly one of dataset, path or query"):
        Source(dataset="a", path="b")
    with pytest.raises(InvalidInput, match="invalid ttl"):
        _view(ttl="soon")
    with pytest.raises(InvalidInput, match="needs at least one entity"):
        _view(entities=())
    with pytest.raises(InvalidInput, match="invalid feature reference"):
        FeatureService("s", features=("activity.spend",))
    with pytest.raises(InvalidInput, match="module-level function"):
        _ = OnDemandFeatureView(
            "od",
            function=lambda f: f,
            features=(Field("a", "float64"),),
            request=(Field("b", "float64"),),
        ).function_path


def test_names_must_be_unique_in_one_apply_and_across_view_kinds(ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="defined twice"):
        ws.features.apply([CUSTOMER, _view(), _view(ttl=None)])
    ws.features.apply([CUSTOMER, _view()])
    clash = OnDemandFeatureView(
        "activity",
        function=spend_ratio.function,
        features=spend_ratio.features,
        inputs=spend_ratio.inputs,
        request=spend_ratio.request,
    )
    with pytest.raises(InvalidInput, match="already names a feature view"):
        ws.features.apply([clash])


def test_key_type_must_be_integer_or_string(workspace: Workspace) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": [1.5, 2.5],
            "event_timestamp": pd.to_datetime(["2024-01-01"] * 2),
            "x": [1.0, 2.0],
        }
    )
    workspace.data.register("floaty", frame)
    with pytest.raises(InvalidInput, match="must be an integer or string column"):
        workspace.features.apply([CUSTOMER, _view(source=Source(dataset="floaty"), features=())])


def test_definitions_from_the_project_spec(tmp_path: Path, activity: pd.DataFrame) -> None:
    spec = {
        "name": "p",
        "features": {
            "entities": [{"name": "customer", "join_keys": ["customer_id"]}],
            "feature_views": [
                {
                    "name": "activity",
                    "entities": ["customer"],
                    "source": {"dataset": "activity"},
                    "timestamp_field": "event_timestamp",
                    "ttl": "45d",
                    "features": [{"name": "spend", "dtype": "float64"}],
                }
            ],
            "on_demand_features": [
                {
                    "name": "ratio",
                    "function": "tests.features.test_service:spend_ratio",
                    "inputs": ["activity:spend", "activity:calls"],
                    "request": [{"name": "order_value", "dtype": "float64"}],
                    "features": [{"name": "spend_per_call", "dtype": "float64"}],
                }
            ],
            "feature_services": [{"name": "churn", "features": ["activity:spend", "ratio:*"]}],
        },
    }
    ws = Workspace.init(tmp_path / "spec-ws", spec=spec)
    try:
        ws.data.register("activity", activity)
        # The on-demand view reads activity:calls, which the view does not declare.
        with pytest.raises(InvalidInput, match="has no feature 'calls'"):
            ws.features.apply()
        assert ws.features.list() == []
    finally:
        ws.close()


# -- historical retrieval -----------------------------------------------------------------------


def test_historical_features_are_point_in_time_correct_with_ttl(
    ws: Workspace, activity: pd.DataFrame
) -> None:
    ws.features.apply([CUSTOMER, _view(), FeatureService("churn", features=("activity:*",))])
    labels = _labels()
    out = ws.features.get_historical_features(labels, "churn").to_pandas()
    assert list(out.columns) == [*labels.columns, "spend", "calls", "plan"]
    assert len(out) == len(labels)
    for i, row in labels.iterrows():
        expected = _expected(activity, row.customer_id, str(row.event_timestamp))
        if expected is None:
            assert out.loc[i, ["spend", "calls", "plan"]].isna().all()
        else:
            assert out.loc[i, "spend"] == expected.spend
            assert out.loc[i, "calls"] == expected.calls
            assert out.loc[i, "plan"] == expected.plan
    # customer 2 on 2024-06-20: last row 2024-06-01 (19 days); customer 4 on 2024-09-01: the
    # last row (2024-06-01) is past the 45-day TTL; customer 3 asks before any row.
    assert out.loc[1, "spend"] == pytest.approx(activity.query("customer_id == 2").spend.iloc[-1])
    assert out.loc[[2, 3, 4], "spend"].isna().all()
    table = ws.features.get_historical_features(labels, ["activity:calls"])
    assert table.schema.field("calls").type == pa.int64()


def test_full_feature_names_and_collisions(ws: Workspace, activity: pd.DataFrame) -> None:
    ws.data.register("activity2", activity.assign(spend=activity.spend * 2))
    second = _view(name="activity2", source=Source(dataset="activity2"))
    ws.features.apply([CUSTOMER, _view(), second])
    with pytest.raises(InvalidInput, match="full_feature_names=True"):
        ws.features.get_historical_features(_labels(), ["activity:spend", "activity2:spend"])
    out = ws.features.get_historical_features(
        _labels(), ["activity:spend", "activity2:spend"], full_feature_names=True
    ).to_pandas()
    assert (out["activity2__spend"].dropna() == out["activity__spend"].dropna() * 2).all()


def test_entity_rows_from_a_dataset_version_and_errors(ws: Workspace) -> None:
    ws.features.apply([CUSTOMER, _view()])
    ws.data.register("labels", _labels())
    out = ws.features.get_historical_features("labels@1", ["activity:spend"])
    assert out.num_rows == 5
    with pytest.raises(InvalidInput, match="timestamp column 'ts' is missing"):
        ws.features.get_historical_features(_labels(), ["activity:spend"], timestamp_field="ts")
    with pytest.raises(
        InvalidInput, match="join key column 'customer_id' is missing from the entity"
    ):
        ws.features.get_historical_features(
            _labels().rename(columns={"customer_id": "cid"}), ["activity:spend"]
        )
    with pytest.raises(NotFound, match="no feature 'nope'"):
        ws.features.get_historical_features(_labels(), ["activity:nope"])
    with pytest.raises(NotFound, match="no feature view 'ghost'"):
        ws.features.get_historical_features(_labels(), ["ghost:x"])


def test_parquet_path_and_query_sources(
    ws: Workspace, activity: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "activity.parquet"
    activity.to_parquet(path)
    by_path = _view(name="by_path", source=Source(path=str(path)))
    by_query = _view(
        name="by_query",
        source=Source(query="SELECT * FROM {activity} WHERE plan = 'pro'"),
        features=(Field("spend", "float64"),),
    )
    ws.features.apply([CUSTOMER, _view(), by_path, by_query])
    assert ws.features.get("by_query").spec["source"]["datasets"] == {"activity": "activity@1"}
    out = ws.features.get_historical_features(
        _labels(), ["activity:spend", "by_path:spend", "by_query:spend"], full_feature_names=True
    ).to_pandas()
    pd.testing.assert_series_equal(out["activity__spend"], out["by_path__spend"], check_names=False)
    pro = activity[activity.plan == "pro"]
    for i, row in _labels().iterrows():
        expected = _expected(pro, row.customer_id, str(row.event_timestamp))
        got = out.loc[i, "by_query__spend"]
        assert pd.isna(got) if expected is None else got == expected.spend


def test_training_dataset_has_lineage_to_views_service_and_labels(ws: Workspace) -> None:
    ws.features.apply([CUSTOMER, _view(), FeatureService("churn", features=("activity:*",))])
    labels = ws.data.register("labels", _labels())
    dv = ws.features.create_training_dataset("churn-train", labels, "churn")
    assert dv.properties["features"] == ["activity@1:spend", "activity@1:calls", "activity@1:plan"]
    assert dv.properties["feature_service"] == "churn@1"
    upstream = ws.lineage.upstream(dv.lineage_ref).refs()
    assert {
        "feature_view:activity@1",
        "feature_service:churn@1",
        "dataset:labels@1",
        "dataset:activity@1",
        "entity:customer@1",
    } <= upstream
    with ws.tracking.start_run("churn") as run:
        run.log_input(dv, "train")
    downstream = ws.lineage.downstream("feature_view:activity@1").refs()
    assert dv.lineage_ref in downstream and run.lineage_ref in downstream


# -- on-demand features -------------------------------------------------------------------------


def test_on_demand_features_are_the_same_offline_and_online(ws: Workspace) -> None:
    service = FeatureService("churn", features=("activity:spend", "spend_ratio:*"))
    ws.features.apply([CUSTOMER, _view(ttl=None), spend_ratio, service])
    assert ws.features.get("spend_ratio").spec["function"] == (
        "tests.features.test_service:spend_ratio"
    )
    ws.features.materialize("activity", end="2024-06-30")
    offline = ws.features.get_historical_features(
        pd.DataFrame(
            {
                "customer_id": [1, 2],
                "event_timestamp": pd.to_datetime(["2024-06-30", "2024-06-30"]),
                "order_value": [20.0, 200.0],
            }
        ),
        "churn",
    ).to_pandas()
    online = ws.features.get_online_features(
        [{"customer_id": 1, "order_value": 20.0}, {"customer_id": 2, "order_value": 200.0}],
        "churn",
    ).to_pandas()
    for column in ("spend", "spend_per_call", "big_order"):
        assert offline[column].tolist() == online[column].tolist()
    assert online["big_order"].tolist() == [False, True]
    with pytest.raises(InvalidInput, match="request field 'order_value' is missing"):
        ws.features.get_online_features([{"customer_id": 1}], "churn")


def test_on_demand_code_changes_are_detected(ws: Workspace, tmp_path: Path) -> None:
    module = tmp_path / "odfv_mod.py"
    body = """
        import pandas as pd

        def double(frame: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame({"double_spend": frame["spend"] * {factor}})
    """
    module.write_text(textwrap.dedent(body).replace("{factor}", "2"))
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module("odfv_mod")
        odfv = OnDemandFeatureView(
            "double",
            function=mod.double,
            features=(Field("double_spend", "float64"),),
            inputs=("activity:spend",),
        )
        ws.features.apply([CUSTOMER, _view(), odfv])
        out = ws.features.get_historical_features(
            _labels(), ["double:double_spend", "activity:spend"]
        )
        assert out.column("double_spend").to_pylist()[0] == out.column("spend").to_pylist()[0] * 2
        module.write_text(textwrap.dedent(body).replace("{factor}", "3"))
        importlib.reload(mod)
        fresh = Workspace.open(ws.root)
        try:
            with pytest.raises(Conflict, match="has changed since it was applied"):
                fresh.features.get_historical_features(_labels(), ["double:double_spend"])
            changed = OnDemandFeatureView(
                "double",
                function=mod.double,
                features=(Field("double_spend", "float64"),),
                inputs=("activity:spend",),
            )
            assert fresh.features.apply([changed]).items[0].action == "update"
            out = fresh.features.get_historical_features(
                _labels(), ["double:double_spend", "activity:spend"]
            )
            assert (
                out.column("double_spend").to_pylist()[0] == out.column("spend").to_pylist()[0] * 3
            )
        finally:
            fresh.close()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("odfv_mod", None)


def test_on_demand_errors_are_user_code_errors(ws: Workspace) -> None:
    broken = OnDemandFeatureView(
        "broken",
        function=failing_transform,
        features=(Field("x", "float64"),),
        inputs=("activity:spend",),
    )
    ws.features.apply([CUSTOMER, _view(), broken])
    with pytest.raises(UserCodeError, match="ZeroDivisionError: boom") as info:
        ws.features.get_historical_features(_labels(), ["broken:x"])
    assert isinstance(info.value.__cause__, ZeroDivisionError)


# -- materialization and online serving ---------------------------------------------------------


def test_materialize_then_serve_the_latest_values(ws: Workspace, activity: pd.DataFrame) -> None:
    ws.features.apply(
        [CUSTOMER, _view(ttl=None), FeatureService("churn", features=("activity:*",))]
    )
    seen: list[tuple[int, int]] = []
    m = ws.features.materialize("activity", progress=lambda done, total: seen.append((done, total)))
    assert m.status == "completed"
    assert (m.rows_read, m.rows_written) == (len(activity), activity.customer_id.nunique())
    assert seen[-1] == (20, 20)
    stats = ws.features.statistics("activity")
    assert {c["name"] for c in stats["columns"]} == {"spend", "calls", "plan"}
    assert stats["event_time"]["max"].startswith("2024-06-01")
    latest = activity.sort_values("event_timestamp").groupby("customer_id").last()
    got = ws.features.get_online_features({"customer_id": [3, 1, 12345, None]}, "churn").to_dict()
    assert got["customer_id"] == [3, 1, 12345, None]
    assert got["spend"][:2] == [latest.loc[3].spend, latest.loc[1].spend]
    assert got["calls"][:2] == [int(latest.loc[3].calls), int(latest.loc[1].calls)]
    assert got["plan"][2:] == [None, None]
    # Keys from JSON or CSV arrive as text or floats; they find the same rows.
    assert (
        ws.features.get_online_features(
            [{"customer_id": "3"}, {"customer_id": 3.0}], "churn"
        ).to_dict()["spend"]
        == [latest.loc[3].spend] * 2
    )
    with pytest.raises(InvalidInput, match="must be an integer"):
        ws.features.get_online_features([{"customer_id": "three"}], "churn")
    with pytest.raises(InvalidInput, match="join key 'customer_id'"):
        ws.features.get_online_features([{"id": 3}], "churn")


def test_incremental_materialization_moves_the_window(
    ws: Workspace, activity: pd.DataFrame
) -> None:
    ws.features.apply([CUSTOMER, _view(ttl=None)])
    first = ws.features.materialize("activity", end="2024-03-15")
    assert first.rows_read == activity[activity.event_timestamp <= "2024-03-15"].shape[0]
    spend = ws.features.get_online_features([{"customer_id": 1}], ["activity:spend"]).to_dict()
    march = activity.query("customer_id == 1").set_index("event_timestamp").spend
    assert spend["spend"] == [march.loc["2024-03-01"]]
    second = ws.features.materialize("activity", end="2024-12-31", incremental=True)
    assert second.start_time == first.end_time
    assert second.rows_read == activity[activity.event_timestamp >= "2024-03-15"].shape[0]
    spend = ws.features.get_online_features([{"customer_id": 1}], ["activity:spend"]).to_dict()
    assert spend["spend"] == [march.iloc[-1]]
    # Replaying an old window never overwrites newer values.
    ws.features.materialize("activity", end="2024-02-01")
    assert (
        ws.features.get_online_features([{"customer_id": 1}], ["activity:spend"]).to_dict() == spend
    )
    history = ws.features.materializations("activity")
    assert [h.status for h in history] == ["completed"] * 3
    with pytest.raises(InvalidInput, match="starts after it ends"):
        ws.features.materialize("activity", start="2025-01-01", end="2024-01-01")


def test_a_new_view_version_is_served_only_once_materialized(ws: Workspace) -> None:
    ws.features.apply([CUSTOMER, _view(ttl=None)])
    ws.features.materialize("activity")
    ws.features.apply([_view(ttl=None, features=(Field("spend", "float64"),))])
    got = ws.features.get_online_features([{"customer_id": 1}], ["activity:spend"]).to_dict()
    assert got["spend"] == [None]
    old = ws.features.get_online_features([{"customer_id": 1}], ["activity@1:spend"]).to_dict()
    assert old["spend"] != [None]
    ws.features.materialize("activity")
    assert (
        ws.features.get_online_features([{"customer_id": 1}], ["activity:spend"]).to_dict() == old
    )


def test_offline_only_views_cannot_be_materialized(ws: Workspace) -> None:
    ws.features.apply([CUSTOMER, _view(online=False)])
    with pytest.raises(InvalidInput, match="not an online view"):
        ws.features.materialize("activity")


def test_a_failed_materialization_is_recorded(
    ws: Workspace, activity: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "a.parquet"
    activity.to_parquet(path)
    ws.features.apply([CUSTOMER, _view(source=Source(path=str(path)))])
    path.write_bytes(b"not parquet any more")
    with pytest.raises(InvalidInput):
        ws.features.materialize("activity")
    (record,) = ws.features.materializations("activity")
    assert record.status == "failed" and record.error


@pytest.mark.redis
def test_redis_online_store_end_to_end(
    ws: Workspace, activity: pd.DataFrame, redis_online_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WELLML_ONLINE_URL", redis_online_url)
    fresh = Workspace.open(ws.root)
    try:
        assert type(fresh.features.online_store).__name__ == "RedisOnlineStore"
        fresh.features.apply([CUSTOMER, _view(ttl=None), spend_ratio])
        fresh.features.materialize("activity")
        latest = activity.sort_values("event_timestamp").groupby("customer_id").last()
        got = fresh.features.get_online_features(
            [{"customer_id": c, "order_value": 150.0} for c in (1, 2, 20)],
            ["activity:spend", "activity:plan", "spend_ratio:big_order"],
        ).to_dict()
        assert got["spend"] == [latest.loc[c].spend for c in (1, 2, 20)]
        assert got["plan"] == [latest.loc[c].plan for c in (1, 2, 20)]
        assert got["big_order"] == [True, True, True]
    finally:
        fresh.close()


def test_online_results_as_rows_and_frame(ws: Workspace) -> None:
    ws.features.apply([CUSTOMER, _view(ttl=None)])
    ws.features.materialize("activity")
    result = ws.features.get_online_features(
        [{"customer_id": 1}, {"customer_id": 2}], ["activity:calls"]
    )
    rows = result.rows()
    assert [r["customer_id"] for r in rows] == [1, 2]
    assert list(result.to_pandas().columns) == ["customer_id", "calls"]
    assert all(isinstance(r["calls"], int) for r in rows)
    assert np.isfinite([r["calls"] for r in rows]).all()


def test_parity_check_finds_an_online_store_that_drifted_from_its_source(
    ws: Workspace, activity: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "a.parquet"
    activity.to_parquet(path)
    ws.features.apply([CUSTOMER, _view(ttl=None, source=Source(path=str(path)))])
    with pytest.raises(NotFound, match="has not been materialized"):
        ws.features.check_parity("activity")
    ws.features.materialize("activity")
    report = ws.features.check_parity("activity", sample=50)
    assert (report.sampled, report.mismatched) == (20, 0)
    # The source is rewritten in place after materialization: the online copy is now stale.
    changed = activity.copy()
    changed.loc[changed.customer_id <= 5, "spend"] += 1
    changed.to_parquet(path)
    report = ws.features.check_parity("activity", sample=20)
    assert report.mismatched == 5 and report.mismatch_rate == 0.25
    example = report.examples[0]["features"]["spend"]
    assert example["offline"] == example["online"] + 1
    recorded = [
        n
        for n in ws.lineage.downstream("feature_view:activity@1").nodes
        if n.kind == "feature_parity"
    ]
    assert len(recorded) == 2
    with pytest.raises(InvalidInput, match="at least 1"):
        ws.features.check_parity("activity", sample=0)


def test_timestamp_features_round_trip_online(workspace: Workspace) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "last_login": pd.to_datetime(["2023-12-30 10:00", "2023-12-31 11:30"], utc=True),
        }
    )
    workspace.data.register("logins", frame)
    view = FeatureView(
        "logins",
        entities=("customer",),
        source=Source(dataset="logins"),
        timestamp_field="event_timestamp",
    )
    workspace.features.apply([CUSTOMER, view])
    assert workspace.features.get("logins").spec["key_types"] == {"customer_id": "string"}
    workspace.features.materialize("logins")
    got = workspace.features.get_online_features({"customer_id": ["b", "a"]}, ["logins:last_login"])
    assert got.to_dict()["last_login"] == [ts.to_pydatetime() for ts in frame.last_login[::-1]]
    assert workspace.features.check_parity("logins").mismatched == 0


def test_online_values_older_than_the_ttl_are_not_served(workspace: Workspace) -> None:
    now = pd.Timestamp.now(tz="UTC").floor("s")
    frame = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "event_timestamp": [now - pd.Timedelta(hours=2), now - pd.Timedelta(days=3)],
            "spend": [10.0, 20.0],
        }
    )
    workspace.data.register("recent", frame)
    view = FeatureView(
        "recent",
        entities=("customer",),
        source=Source(dataset="recent"),
        timestamp_field="event_timestamp",
        ttl="1d",
    )
    workspace.features.apply([CUSTOMER, view])
    workspace.features.materialize("recent")
    got = workspace.features.get_online_features({"customer_id": [1, 2]}, ["recent:spend"])
    assert got.to_dict()["spend"] == [10.0, None]
    # The same rule as a point-in-time join at this moment.
    offline = workspace.features.get_historical_features(
        pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [now, now]}), ["recent:spend"]
    )
    assert offline.column("spend").to_pylist() == [10.0, None]


def test_memory_settings_reach_the_join(ws: Workspace, tmp_path: Path) -> None:
    ws.features.apply([CUSTOMER, _view()])
    out = ws.features.get_historical_features(
        _labels(), ["activity:spend"], memory_limit="256MB", temp_directory=str(tmp_path / "spill")
    )
    assert out.num_rows == len(_labels())
    with pytest.raises(InvalidInput, match="memory_limit"):
        ws.features.get_historical_features(_labels(), ["activity:spend"], memory_limit="lots")
