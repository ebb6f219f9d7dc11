"""Human review of low-confidence predictions (``ws.monitoring.reviews``).

An endpoint's **review queue** collects the captured rows whose confidence is below a
threshold: the confidence of a row is the probability of its predicted class, as data capture
records it (``probability``), so only classifiers' endpoints have queues. :meth:`ReviewQueue.fill`
scans the capture versions made since its last scan (it first turns newly captured files into a
capture version) and queues each low-confidence row once, with its inputs, prediction and
model version. Reviewers read the queue least confident first, label items or skip them; a
label becomes ground truth for the endpoint through
:meth:`~wellml.monitoring.service.Monitoring.ingest_ground_truth`, keyed by the row's inference
id and position, so model-quality and bias-drift monitors use it like any other label.

Labelling is two-phase so that nothing is lost or sent twice: the items are first claimed as
``labelled`` in one transaction (a concurrent reviewer's claim of the same item fails with
:class:`~wellml.errors.Conflict`), then the labels are stored as ground truth and the items
record the ground-truth version they went to. When storing fails the claim is undone; when
the process dies between the two steps, the items stay ``labelled`` without a ground-truth
version and :meth:`ReviewQueue.resend` stores them.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wellml.errors import Conflict, InvalidInput, NotFound, WellmlError
from wellml.store import monitoring as sql
from wellml.store.metadata import new_id, now

if TYPE_CHECKING:
    from wellml.serving.service import EndpointRecord
    from wellml.workspace import Workspace

REVIEW_STATUSES = ("pending", "labelled", "skipped")
DEFAULT_REVIEW_THRESHOLD = 0.6


@dataclass(frozen=True)
class ReviewItem:
    """One captured row waiting for, or given, a reviewer's label."""

    id: str
    endpoint: str
    inference_id: str
    row: int
    model_version: str
    inputs: dict[str, Any]
    prediction: Any
    confidence: float
    status: str
    label: Any
    reviewer: str | None
    note: str | None
    ground_truth: str | None
    created_at: float
    reviewed_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return asdict(self)


@dataclass(frozen=True)
class ReviewScan:
    """What one scan of an endpoint's captured traffic queued."""

    endpoint: str
    threshold: float
    versions: list[str]
    scanned_rows: int
    queued: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return asdict(self)


class ReviewQueue:
    """Review queues of a workspace's endpoints."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._store = ws.metadata
        self._class_cache: dict[str, list[Any] | None] = {}

    # -- set-up and filling ------------------------------------------------------------------

    def configure(
        self, endpoint: str, *, threshold: float = DEFAULT_REVIEW_THRESHOLD
    ) -> dict[str, Any]:
        """Create an endpoint's review queue, or change its threshold.

        Args:
            endpoint: The endpoint whose captured predictions are reviewed.
            threshold: Rows whose predicted-class probability is below it are queued; between
                0 (exclusive) and 1 (inclusive).

        Raises:
            NotFound: no such endpoint.
            InvalidInput: a threshold out of range.
        """
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise InvalidInput(f"threshold must be a number, not {threshold!r}")
        if not 0 < threshold <= 1:
            raise InvalidInput(f"threshold must be in (0, 1], not {threshold!r}")
        ep = self._ws.endpoints.get(endpoint)
        with self._store.write() as conn:
            sql.upsert_review_queue(conn, ep.id, float(threshold), now())
        return self.summary(ep.name)

    def summary(self, endpoint: str, *, at: float | None = None) -> dict[str, Any]:
        """The queue's threshold, scan mark, item counts by status, and how it is kept up:

        * ``pending_age_p95_s``: the 95th percentile age of the pending items (the backlog);
        * ``review_time_p95_s``: the 95th percentile time from queueing to a review;
        * ``disagreement_rate``: the share of labelled items whose label differs from the
          model's prediction (None before any label).

        Args:
            endpoint: The endpoint.
            at: The time ages are measured at (default now).

        Raises:
            NotFound: no such endpoint, or it has no review queue.
        """
        ep = self._ws.endpoints.get(endpoint)
        with self._store.read() as conn:
            queue = self._queue(conn, ep)
            rows = sql.review_timings(conn, ep.id)
        moment = now() if at is None else at
        counts = {s: sum(r["status"] == s for r in rows) for s in REVIEW_STATUSES}
        ages = [moment - r["created_at"] for r in rows if r["status"] == "pending"]
        waits = [r["reviewed_at"] - r["created_at"] for r in rows if r["reviewed_at"] is not None]
        labelled = [r for r in rows if r["status"] == "labelled"]
        differ = sum(str(r["label"]) != str(r["prediction"]) for r in labelled)
        return {
            "endpoint": ep.name,
            "threshold": queue["threshold"],
            "scanned_version": queue["scanned_version"],
            "counts": counts,
            "pending_age_p95_s": _p95(ages),
            "review_time_p95_s": _p95(waits),
            "disagreement_rate": differ / len(labelled) if labelled else None,
            "created_at": queue["created_at"],
            "updated_at": queue["updated_at"],
        }

    def fill(self, endpoint: str | None = None) -> builtins.list[ReviewScan]:
        """Queue the low-confidence rows captured since the last scan.

        Args:
            endpoint: One endpoint; default every endpoint with a review queue, where an
                endpoint that cannot be scanned gets a scan with its ``error`` and the others
                go on (a scheduler keeps running).

        Returns:
            One scan per endpoint (``queued`` 0 when nothing new was captured).

        Raises:
            NotFound: the endpoint has no review queue.
            InvalidInput: the captured traffic records no probability (not a classifier).
        """
        if endpoint is not None:
            return [self._fill(self._ws.endpoints.get(endpoint))]
        with self._store.read() as conn:
            ids = {q["endpoint_id"] for q in sql.review_queues_all(conn)}
        scans = []
        for ep in self._ws.endpoints.list():
            if ep.id not in ids:
                continue
            try:
                scans.append(self._fill(ep))
            except WellmlError as exc:
                scans.append(ReviewScan(ep.name, float("nan"), [], 0, 0, error=str(exc)))
        return scans

    def _fill(self, ep: EndpointRecord) -> ReviewScan:
        from wellml.monitoring.service import CAPTURE_EXTRA_COLUMNS

        with self._store.read() as conn:
            queue = self._queue(conn, ep)
        monitoring = self._ws.monitoring
        versions = monitoring._capture_versions(ep)
        seen = int(queue["scanned_version"])
        fresh = [v for v in versions if v.version > seen]
        threshold = float(queue["threshold"])
        if not fresh:
            return ReviewScan(ep.name, threshold, [], 0, 0)
        # A row's position within its request counts over every capture version, as the
        # ground-truth join counts it.
        positions = monitoring._captured_ids(ep, versions)["row"].to_numpy()
        start = sum(v.num_rows for v in versions if v.version <= seen)
        items: list[dict[str, Any]] = []
        scanned = 0
        stamp = now()
        for v in fresh:
            frame = self._ws.data.load(v)
            rows = positions[start : start + len(frame)]
            start += len(frame)
            scanned += len(frame)
            if "probability" not in frame.columns:
                raise InvalidInput(
                    f"the traffic captured at {ep.name!r} ({v.ref}) records no probability: "
                    "a review queue needs a classifier's predicted probabilities"
                )
            confidence = pd.to_numeric(frame["probability"], errors="coerce")
            low = (confidence < threshold).to_numpy()
            if not low.any():
                continue
            inputs = [c for c in frame.columns if c not in CAPTURE_EXTRA_COLUMNS]
            chosen = frame[low]
            records = json.loads(chosen[inputs].to_json(orient="records", date_format="iso"))
            predictions = (
                json.loads(chosen["prediction"].to_json(orient="values"))
                if "prediction" in chosen.columns
                else [None] * len(chosen)
            )
            versions_of = (
                chosen["model_version"].astype(str).tolist()
                if "model_version" in chosen.columns
                else [ep.model_version] * len(chosen)
            )
            for k, (rid, row, conf) in enumerate(
                zip(
                    chosen["inference_id"].astype(str),
                    rows[low],
                    confidence[low],
                    strict=True,
                )
            ):
                items.append(
                    {
                        "id": new_id(),
                        "endpoint_id": ep.id,
                        "inference_id": rid,
                        "row": int(row),
                        "model_version": versions_of[k],
                        "capture_version_id": v.id,
                        "inputs": records[k],
                        "prediction": predictions[k],
                        "confidence": float(conf),
                        "status": "pending",
                        "created_at": stamp,
                    }
                )
        with self._store.write() as conn:
            if not sql.advance_review_scan(conn, ep.id, seen, fresh[-1].version, stamp):
                # Another scan got there first and queued these rows.
                return ReviewScan(ep.name, threshold, [], 0, 0)
            sql.insert_review_items(conn, items)
        return ReviewScan(ep.name, threshold, [v.ref for v in fresh], scanned, len(items))

    # -- reading -----------------------------------------------------------------------------

    def items(
        self, endpoint: str, *, status: str | None = "pending", limit: int | None = 100
    ) -> builtins.list[ReviewItem]:
        """The queue's items, least confident first.

        Args:
            endpoint: The endpoint.
            status: ``pending``, ``labelled``, ``skipped``, or None for all.
            limit: At most this many (None for all).

        Raises:
            NotFound: no such endpoint, or it has no review queue.
            InvalidInput: an unknown status or a non-positive limit.
        """
        if status is not None and status not in REVIEW_STATUSES:
            raise InvalidInput(
                f"status must be one of {', '.join(REVIEW_STATUSES)}, not {status!r}"
            )
        if limit is not None and limit < 1:
            raise InvalidInput(f"limit must be positive, not {limit}")
        ep = self._ws.endpoints.get(endpoint)
        with self._store.read() as conn:
            self._queue(conn, ep)
            rows = sql.review_items_of(conn, ep.id, status=status, limit=limit)
        return [self._item(ep, r) for r in rows]

    def export(self, endpoint: str, path: str | os.PathLike[str]) -> Path:
        """Write the pending items as CSV for reviewers: ``item_id``, ``inference_id``,
        ``row``, ``model_version``, ``confidence``, ``prediction``, the inputs, and an empty
        ``label`` column to fill in and give back to :meth:`label`.

        Raises:
            NotFound: no such endpoint, or it has no review queue.
        """
        pending = self.items(endpoint, status="pending", limit=None)
        frame = pd.DataFrame(
            [
                {
                    "item_id": it.id,
                    "inference_id": it.inference_id,
                    "row": it.row,
                    "model_version": it.model_version,
                    "confidence": it.confidence,
                    "prediction": it.prediction,
                    **it.inputs,
                    "label": None,
                }
                for it in pending
            ],
            columns=None if pending else ["item_id", "label"],
        )
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            frame.to_csv(tmp, index=False)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    # -- reviewing ---------------------------------------------------------------------------

    def label(
        self,
        endpoint: str,
        labels: Mapping[str, Any] | pd.DataFrame | str | os.PathLike[str],
        *,
        reviewer: str | None = None,
        note: str | None = None,
        item_column: str = "item_id",
        label_column: str = "label",
    ) -> dict[str, Any]:
        """Label pending items; the labels become the endpoint's ground truth.

        Args:
            endpoint: The endpoint.
            labels: ``{item_id: label}``, or a data frame or file (CSV, Parquet, JSON lines;
                e.g. the one :meth:`export` wrote) with item ids and labels; rows without a
                label are left pending.
            reviewer: Who labelled; default the current user.
            note: A note kept on every item.
            item_column: The item id column of a frame or file.
            label_column: The label column of a frame or file.

        Returns:
            ``labelled`` (count), ``items`` (ids) and ``ground_truth`` (the ingest summary).

        Raises:
            NotFound: no such endpoint, no review queue, or an unknown item id.
            Conflict: an item is no longer pending (labelled or skipped by someone).
            InvalidInput: no labels, or a label the model cannot predict.
        """
        from wellml.config import current_user

        ep = self._ws.endpoints.get(endpoint)
        given = self._labels(labels, item_column, label_column)
        with self._store.read() as conn:
            self._queue(conn, ep)
            found = {r["id"]: r for r in sql.review_items_of(conn, ep.id, ids=list(given))}
        self._check_open(given, found)
        typed = {k: self._typed_label(found[k]["model_version"], v) for k, v in given.items()}
        who = reviewer or current_user()
        with self._store.write() as conn:
            claimed = sql.close_review_items(
                conn,
                ep.id,
                list(typed),
                {"status": "labelled", "reviewer": who, "note": note, "reviewed_at": now()},
            )
            if claimed != len(typed):
                raise Conflict("another reviewer closed some of these items meanwhile; reload")
            sql.set_review_labels(conn, typed)
        try:
            ingest = self._send(ep, [{**found[k], "label": typed[k]} for k in typed])
        except BaseException:
            with self._store.write() as conn:
                sql.reopen_review_items(conn, ep.id, list(typed))
            raise
        return {"labelled": len(typed), "items": list(typed), "ground_truth": ingest}

    def skip(
        self,
        endpoint: str,
        items: Sequence[str],
        *,
        reviewer: str | None = None,
        note: str | None = None,
    ) -> int:
        """Close pending items without a label (no ground truth is recorded).

        Raises:
            NotFound: no such endpoint, no review queue, or an unknown item id.
            Conflict: an item is no longer pending.
            InvalidInput: no items.
        """
        from wellml.config import current_user

        ids = list(dict.fromkeys(items))
        if not ids:
            raise InvalidInput("name at least one item to skip")
        ep = self._ws.endpoints.get(endpoint)
        with self._store.read() as conn:
            self._queue(conn, ep)
            found = {r["id"]: r for r in sql.review_items_of(conn, ep.id, ids=ids)}
        self._check_open(dict.fromkeys(ids), found)
        with self._store.write() as conn:
            closed = sql.close_review_items(
                conn,
                ep.id,
                ids,
                {
                    "status": "skipped",
                    "reviewer": reviewer or current_user(),
                    "note": note,
                    "reviewed_at": now(),
                },
            )
            if closed != len(ids):
                raise Conflict("another reviewer closed some of these items meanwhile; reload")
        return closed

    def resend(self, endpoint: str) -> dict[str, Any] | None:
        """Store as ground truth the labelled items that have none yet (after a crash between
        claiming and storing). Returns the ingest summary, or None when there were none.

        Raises:
            NotFound: no such endpoint, or it has no review queue.
        """
        ep = self._ws.endpoints.get(endpoint)
        with self._store.read() as conn:
            self._queue(conn, ep)
            waiting = [
                r
                for r in sql.review_items_of(conn, ep.id, status="labelled")
                if r["ground_truth"] is None
            ]
        return self._send(ep, waiting) if waiting else None

    # -- helpers -----------------------------------------------------------------------------

    def _send(self, ep: EndpointRecord, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        truth = pd.DataFrame(
            {
                "inference_id": [r["inference_id"] for r in rows],
                "row": [int(r["row"]) for r in rows],
                "label": [r["label"] for r in rows],
            }
        )
        ingest = self._ws.monitoring.ingest_ground_truth(ep.name, truth)
        with self._store.write() as conn:
            sql.mark_review_ground_truth(conn, [r["id"] for r in rows], ingest.dataset_ref)
        return ingest.to_dict()

    def _queue(self, conn: Any, ep: EndpointRecord) -> dict[str, Any]:
        queue = sql.review_queue(conn, ep.id)
        if queue is None:
            raise NotFound(
                f"endpoint {ep.name!r} has no review queue; create it with "
                "ws.monitoring.reviews.configure (wellml monitor review setup)"
            )
        return queue

    def _labels(self, labels: Any, item_column: str, label_column: str) -> dict[str, Any]:
        if isinstance(labels, Mapping):
            given = {str(k): v for k, v in labels.items()}
        else:
            if isinstance(labels, pd.DataFrame):
                frame = labels
            else:
                from wellml.data.catalog import read_source

                frame = read_source(Path(labels))[0].to_pandas()
            lacking = [c for c in (item_column, label_column) if c not in frame.columns]
            if lacking:
                raise InvalidInput(f"the labels lack column(s) {', '.join(lacking)}")
            frame = frame[frame[label_column].notna()]
            if frame[item_column].isna().any():
                raise InvalidInput("every labelled row needs an item id")
            doubled = frame[item_column].astype(str).duplicated()
            if doubled.any():
                raise InvalidInput(
                    f"item {frame[item_column][doubled].iloc[0]!r} is labelled twice"
                )
            given = dict(zip(frame[item_column].astype(str), frame[label_column], strict=True))
        given = {k: v for k, v in given.items() if not _missing(v)}
        if not given:
            raise InvalidInput("no labels given")
        return given

    @staticmethod
    def _check_open(given: Mapping[str, Any], found: Mapping[str, dict[str, Any]]) -> None:
        unknown = [k for k in given if k not in found]
        if unknown:
            raise NotFound(f"no review item {unknown[0]!r} in this queue ({len(unknown)} unknown)")
        closed = [found[k] for k in given if found[k]["status"] != "pending"]
        if closed:
            first = closed[0]
            raise Conflict(
                f"review item {first['id']!r} is already {first['status']}"
                + (f" by {first['reviewer']}" if first["reviewer"] else "")
            )

    def _typed_label(self, model_version: str, label: Any) -> Any:
        """The label as one of the model's classes (``"1"`` → 1 for integer classes)."""
        classes = self._classes(model_version)
        value = label.item() if hasattr(label, "item") else label
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if classes is None:
            return value
        by_text = {str(c): c for c in classes}
        if str(value) not in by_text:
            raise InvalidInput(
                f"label {label!r} is not a class of {model_version} ({', '.join(sorted(by_text))})"
            )
        return by_text[str(value)]

    def _classes(self, model_version: str) -> list[Any] | None:
        cache = self._class_cache
        if model_version not in cache:
            model = self._ws.registry.load(model_version)
            found = getattr(model, "classes_", None)
            cache[model_version] = (
                [c.item() if hasattr(c, "item") else c for c in found]
                if found is not None
                else None
            )
        return cache[model_version]

    @staticmethod
    def _item(ep: EndpointRecord, r: Mapping[str, Any]) -> ReviewItem:
        return ReviewItem(
            id=r["id"],
            endpoint=ep.name,
            inference_id=r["inference_id"],
            row=int(r["row"]),
            model_version=r["model_version"],
            inputs=dict(r["inputs"]),
            prediction=r["prediction"],
            confidence=float(r["confidence"]),
            status=r["status"],
            label=r["label"],
            reviewer=r["reviewer"],
            note=r["note"],
            ground_truth=r["ground_truth"],
            created_at=r["created_at"],
            reviewed_at=r["reviewed_at"],
        )


def _p95(values: Sequence[float]) -> float | None:
    return float(np.percentile(values, 95)) if values else None


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
