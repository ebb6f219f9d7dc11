"""The contract every metadata database passes (SQLite, PostgreSQL, ...)."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select, text

from wellml.errors import Conflict, NotFound
from wellml.store.metadata import MetadataStore, current_revision, head_revision
from wellml.store.tables import experiments
from wellml.workspace import Workspace


class MetadataStoreContract:
    """Subclass and provide a ``store_url`` fixture naming an empty database."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def ws(self, store_url: str, tmp_path: Path) -> Any:
        ws = Workspace.init(
            tmp_path / "ws", name="contract", spec={"stores": {"metadata": store_url}}
        )
        yield ws
        ws.close()

    def test_opening_applies_every_migration(self, store_url: str) -> None:
        store = MetadataStore(store_url)
        with store.read() as conn:
            assert current_revision(conn) == head_revision()
        store.dispose()
        again = MetadataStore(store_url)  # a second open finds nothing to do
        with again.read() as conn:
            assert current_revision(conn) == head_revision()
        again.dispose()

    def test_write_rolls_back_when_the_block_raises(self, store_url: str) -> None:
        store = MetadataStore(store_url)
        with pytest.raises(RuntimeError), store.write() as conn:
            conn.execute(
                experiments.insert().values(
                    id="x" * 32, name="gone", description="", created_at=1.0
                )
            )
            raise RuntimeError("boom")
        with store.read() as conn:
            assert conn.execute(select(experiments)).first() is None
        store.dispose()

    def test_run_metrics_params_and_search_round_trip(self, ws: Workspace) -> None:
        with ws.tracking.start_run("exp", name="a", params={"lr": 0.1}) as run:
            for step in range(5):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
            run.log_metric("nan_metric", math.nan)
            run.set_tag("team", "x")
        rec = ws.tracking.get_run(run.id)
        assert rec.status == "finished"
        assert rec.params == {"lr": "0.1"}
        assert rec.metrics["loss"] == pytest.approx(0.2)
        nan = rec.metrics["nan_metric"]
        assert nan is not None and math.isnan(nan)
        assert [p["step"] for p in ws.tracking.metric_history(run.id, "loss")] == list(range(5))
        found = ws.tracking.search_runs("exp", filter="metrics.loss < 0.5 and tags.team = 'x'")
        assert [r.id for r in found] == [run.id]
        assert ws.tracking.search_runs("exp", filter="metrics.loss > 0.5") == []

    def test_params_are_immutable(self, ws: Workspace) -> None:
        with ws.tracking.start_run("exp") as run:
            run.log_param("k", 1)
            run.log_param("k", 1)  # the same value again is fine
            with pytest.raises(Conflict):
                run.log_param("k", 2)

    def test_dataset_versions_and_lineage(self, ws: Workspace) -> None:
        df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
        v1 = ws.data.register("d", df)
        assert ws.data.register("d", df).id == v1.id
        v2 = ws.data.register("d", df.assign(a=[4, 5, 6]))
        assert (v1.version, v2.version) == (1, 2)
        assert ws.data.get("d").id == v2.id
        with ws.tracking.start_run("exp") as run:
            run.log_input(v2, "train")
        up = ws.lineage.upstream(run.lineage_ref)
        assert "dataset:d@2" in up.refs()
        with pytest.raises(NotFound):
            ws.data.get("d@9")

    def test_registry_versions_approval_and_aliases(self, ws: Workspace) -> None:
        from sklearn.linear_model import LogisticRegression

        X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
        y = [0, 0, 1, 1]
        model = LogisticRegression().fit(X, y)
        with ws.tracking.start_run("exp") as run:
            first = ws.registry.register("m", model, X=X, run=run)
        second = ws.registry.register("m", model, X=X)
        assert (first.version, second.version) == (1, 2)
        ws.registry.approve("m@2", reason="ok", by="lead")
        ws.registry.set_alias("m", "production", 2)
        got = ws.registry.get("m@production")
        assert (got.version, got.status, got.status_by) == (2, "approved", "lead")
        assert [m["name"] for m in ws.registry.list()] == ["m"]
        assert f"run:{run.id}" in ws.lineage.upstream("model:m@1").refs()

    def test_endpoint_capture_monitor_and_review(self, ws: Workspace) -> None:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        from wellml.serving.capture import CaptureWriter

        rng = np.random.default_rng(0)
        X = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(["a", "b"], 500)})
        y = (X["x"] > 0).astype(int)
        train = ws.data.register("train", X.assign(y=y))
        with ws.tracking.start_run("exp") as run:
            run.log_input(train, "train")
            ws.registry.register("m", LogisticRegression().fit(X[["x"]], y), X=X, run=run)
        ws.registry.approve("m@1", by="lead")
        ep = ws.endpoints.deploy("m@1", name="ep", port=1)
        token = ws.endpoints.issue_token("ep", "app")
        assert token.scopes == ("invoke:ep",)
        writer = CaptureWriter(
            ws.urls.capture,
            "ep",
            flush_seconds=60,
            on_file=lambda uri, rows, t0, t1: ws.endpoints._record_capture(
                ep.id, uri, rows, t0, t1
            ),
        )
        shifted = pd.DataFrame({"x": rng.normal(2, 1, 300), "c": ["a"] * 300})
        writer.add("i1", "m@1", shifted, {"prediction": [1] * 300})
        writer.close()
        result = ws.monitoring.run("ep")
        assert set(result.drifted_features) == {"x", "c"}
        assert {"endpoint:ep", "dataset:train@1"} <= ws.lineage.upstream(
            f"monitor-report:{result.id}"
        ).refs()
        review = {r.id: r for r in ws.lens.review().results}
        assert len(review) == 105
        assert "endpoint:ep" in review["MLOE-07"].evidence

    def test_concurrent_writers_lose_nothing(self, ws: Workspace) -> None:
        errors: list[BaseException] = []

        def writer(i: int) -> None:
            try:
                with ws.tracking.start_run("exp", name=f"t{i}") as run:
                    for step in range(50):
                        run.log_metric("m", step, step=step)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], errors
        with ws.metadata.read() as conn:
            n = conn.execute(text("SELECT count(*) FROM run_metrics")).scalar()
        assert n == 200
