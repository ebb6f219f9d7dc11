"""The human review queue: low-confidence predictions queued from captured traffic, and
reviewers' labels returned as ground truth for model-quality monitoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.monitoring.conftest import capture, customers
from wellml.errors import Conflict, InvalidInput, NotFound
from wellml.serving.capture import CaptureWriter
from wellml.workspace import Workspace


def _confidence(ws: Workspace, frame: pd.DataFrame) -> np.ndarray:
    model = ws.registry.load("m@1")
    return model.predict_proba(frame[["x", "plan"]]).max(axis=1)


def test_low_confidence_rows_are_queued_once_least_confident_first(served: Workspace) -> None:
    reviews = served.monitoring.reviews
    assert reviews.configure("ep", threshold=0.7)["counts"] == {
        "pending": 0,
        "labelled": 0,
        "skipped": 0,
    }
    first = customers(300, 1)
    capture(served, first, batch=4)
    (scan,) = reviews.fill("ep")
    expected = int((_confidence(served, first) < 0.7).sum())
    assert 0 < expected < 300
    assert (scan.scanned_rows, scan.queued, scan.threshold) == (300, expected, 0.7)

    items = reviews.items("ep", limit=None)
    assert len(items) == expected
    assert [i.confidence for i in items] == sorted(i.confidence for i in items)
    assert all(i.confidence < 0.7 and i.status == "pending" for i in items)
    # Each item is the captured row it names: its inputs, and its position in the request.
    for item in items[:10]:
        position = int(item.inference_id.split("-")[1]) + item.row
        assert item.inputs["x"] == pytest.approx(first["x"].iloc[position])
        assert item.inputs["plan"] == first["plan"].iloc[position]
        assert item.model_version == "m@1"

    # Nothing new: nothing queued again. New traffic: only its rows.
    assert reviews.fill("ep")[0].queued == 0
    later = customers(100, 2)
    capture(served, later)
    (scan,) = reviews.fill()
    assert scan.queued == int((_confidence(served, later) < 0.7).sum())
    assert reviews.summary("ep")["counts"]["pending"] == expected + scan.queued


def test_reviewers_labels_become_ground_truth_for_model_quality(served: Workspace) -> None:
    reviews = served.monitoring.reviews
    reviews.configure("ep", threshold=0.8)
    traffic = customers(400, 3)
    capture(served, traffic)
    reviews.fill("ep")
    items = reviews.items("ep", limit=6)
    truth = {i.id: int(traffic["y"].iloc[int(i.inference_id.split("-")[1])]) for i in items}
    # Text labels from a command line are read as the model's classes.
    given = {k: str(v) for k, v in truth.items()}
    result = reviews.label("ep", given, reviewer="ana", note="checked by hand")
    assert result["labelled"] == 6
    assert result["ground_truth"]["matched"] == 6

    done = {i.id: i for i in reviews.items("ep", status="labelled")}
    assert set(done) == set(truth)
    assert all(done[k].label == truth[k] and done[k].reviewer == "ana" for k in truth)
    assert all(i.ground_truth == result["ground_truth"]["dataset"] for i in done.values())

    summary = reviews.summary("ep", at=done[next(iter(truth))].created_at + 3600)
    predicted = {i.id: i.prediction for i in done.values()}
    assert summary["disagreement_rate"] == pytest.approx(
        sum(truth[k] != predicted[k] for k in truth) / 6
    )
    assert summary["pending_age_p95_s"] == pytest.approx(3600, abs=5)
    assert summary["review_time_p95_s"] is not None and summary["review_time_p95_s"] >= 0

    served.monitoring.create_monitor("ep", kind="model_quality")
    quality = served.monitoring.run_monitor("ep-model-quality")
    assert quality.report["metrics"]["n"] == 6

    with pytest.raises(Conflict, match="already labelled by ana"):
        reviews.label("ep", {next(iter(truth)): 1})


def test_labels_round_trip_through_the_exported_file(served: Workspace, tmp_path: Path) -> None:
    reviews = served.monitoring.reviews
    reviews.configure("ep", threshold=0.75)
    capture(served, customers(200, 4))
    reviews.fill("ep")
    pending = reviews.items("ep", limit=None)
    path = reviews.export("ep", tmp_path / "review.csv")
    sheet = pd.read_csv(path)
    assert list(sheet["item_id"]) == [i.id for i in pending]
    assert {"x", "plan", "confidence", "prediction", "label"} <= set(sheet.columns)
    sheet.loc[:2, "label"] = [1, 0, 1]  # a reviewer fills in three rows
    sheet.to_csv(path, index=False)
    assert reviews.label("ep", path)["labelled"] == 3
    assert len(reviews.items("ep", limit=None)) == len(pending) - 3

    skipped = reviews.skip("ep", [pending[5].id], note="unreadable")
    assert skipped == 1
    assert reviews.summary("ep")["counts"] == {
        "pending": len(pending) - 4,
        "labelled": 3,
        "skipped": 1,
    }


def test_bad_reviews_are_refused_and_change_nothing(served: Workspace, tmp_path: Path) -> None:
    reviews = served.monitoring.reviews
    with pytest.raises(NotFound, match="no review queue"):
        reviews.items("ep")
    for bad in (0, 1.5, -0.2, "high", True):
        with pytest.raises(InvalidInput, match="threshold"):
            reviews.configure("ep", threshold=bad)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        reviews.configure("no-such-endpoint")
    reviews.configure("ep", threshold=0.8)
    capture(served, customers(200, 5))
    reviews.fill("ep")
    first = reviews.items("ep", limit=2)
    with pytest.raises(InvalidInput, match="not a class of m@1"):
        reviews.label("ep", {first[0].id: 1, first[1].id: "maybe"})
    with pytest.raises(NotFound, match="no review item"):
        reviews.label("ep", {"nope": 1})
    with pytest.raises(InvalidInput, match="no labels"):
        reviews.label("ep", {first[0].id: None})
    with pytest.raises(InvalidInput, match="lack column"):
        reviews.label("ep", pd.DataFrame({"id": [first[0].id], "label": [1]}))
    with pytest.raises(InvalidInput, match="labelled twice"):
        reviews.label("ep", pd.DataFrame({"item_id": [first[0].id] * 2, "label": [1, 0]}))
    with pytest.raises(InvalidInput, match="status"):
        reviews.items("ep", status="done")
    with pytest.raises(InvalidInput, match="at least one"):
        reviews.skip("ep", [])
    with pytest.raises(NotFound, match="no such file"):
        reviews.label("ep", tmp_path / "missing.csv")
    (tmp_path / "labels.xlsx").write_bytes(b"PK\x03\x04 not a sheet")
    with pytest.raises(InvalidInput):
        reviews.label("ep", tmp_path / "labels.xlsx")
    # None of that labelled, skipped or stored anything.
    assert reviews.summary("ep")["counts"]["pending"] == len(reviews.items("ep", limit=None))
    assert reviews.summary("ep")["counts"]["labelled"] == 0
    assert served.data.versions("ep-ground-truth") == []


def test_a_failed_store_reopens_the_items_and_resend_recovers_a_crash(
    served: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviews = served.monitoring.reviews
    reviews.configure("ep", threshold=0.8)
    capture(served, customers(150, 6))
    reviews.fill("ep")
    items = reviews.items("ep", limit=3)
    labels = {i.id: 1 for i in items}

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(served.monitoring, "ingest_ground_truth", broken)
    with pytest.raises(OSError, match="disk full"):
        reviews.label("ep", labels)
    assert {i.id for i in reviews.items("ep", limit=3)} == set(labels)  # pending again

    # A process killed between the claim and the store leaves labelled items without ground
    # truth: the claim alone, as that process wrote it.
    from wellml.store import monitoring as sql

    with served.metadata.write() as conn:
        ep = served.endpoints.get("ep")
        sql.close_review_items(conn, ep.id, list(labels), {"status": "labelled"})
        sql.set_review_labels(conn, labels)
    monkeypatch.undo()
    sent = reviews.resend("ep")
    assert sent is not None and sent["matched"] == 3
    assert all(i.ground_truth for i in reviews.items("ep", status="labelled"))
    assert reviews.resend("ep") is None


def test_traffic_without_probabilities_cannot_be_reviewed(served: Workspace) -> None:
    served.monitoring.reviews.configure("ep")
    ep = served.endpoints.get("ep")
    writer = CaptureWriter(
        served.urls.capture,
        "ep",
        flush_seconds=60,
        on_file=lambda uri, rows, t0, t1: served.endpoints._record_capture(
            ep.id, uri, rows, t0, t1
        ),
    )
    writer.add("r1", "m@1", pd.DataFrame({"x": [0.1], "plan": ["a"]}), {"prediction": [1.5]})
    writer.close()
    with pytest.raises(InvalidInput, match="records no probability"):
        served.monitoring.reviews.fill("ep")
    # Filling every queue (as the scheduler does) reports the endpoint and carries on.
    (scan,) = served.monitoring.reviews.fill()
    assert scan.queued == 0 and "records no probability" in (scan.error or "")
    assert served.monitoring.reviews.summary("ep")["scanned_version"] == 0
