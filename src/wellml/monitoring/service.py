"""Model monitoring of a workspace: baselines, four kinds of monitor, alerts, schedules, ground
truth and the data-poisoning guard (``ws.monitoring``).

A **baseline** holds the statistics and suggested constraints of a dataset version; it is
immutable and versioned by name (an edit of its constraints is the next version). A
**monitor** watches an endpoint's captured traffic or a dataset, and is one of
:data:`MONITOR_KINDS`:

* ``data_drift``: every feature's distribution against the baseline's data, with the test
  chosen by kind and size (:class:`~wellml.monitoring.drift.AutoSelection`), and the share of
  drifted features;
* ``data_quality``: the baseline's constraints (:mod:`wellml.monitoring.quality`);
* ``model_quality``: predictions against ground truth (:mod:`wellml.monitoring.model_quality`);
* ``bias_drift``: post-training bias against a baseline (:mod:`wellml.monitoring.bias_drift`);
* ``feature_attribution_drift``: the ranking of features by global SHAP attribution on the
  current data against the baseline's, scored as NDCG
  (:func:`~wellml.monitoring.bias_drift.attribution_ndcg`).

Each run stores an execution with its report and Model Monitor-style violations, linked in
lineage from the baseline and the data it read. A run with violations raises an alert: always
in the alert event log, and through the monitor's :class:`~wellml.monitoring.alerts.AlertRoute`
to a webhook; drift can record a retrain trigger for a pipeline. Monitors with a cron schedule
run from :meth:`Monitoring.run_due`.
"""

from __future__ import annotations

import builtins
import functools
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from wellml.errors import Conflict, InvalidInput, NotFound, WellmlError
from wellml.monitoring.alerts import AlertRoute, deliver_webhook
from wellml.names import check_name, parse_ref
from wellml.store import monitoring as sql
from wellml.store.metadata import new_id, now

if TYPE_CHECKING:
    from wellml.data.catalog import DatasetVersion
    from wellml.monitoring.poisoning import PoisoningReport
    from wellml.monitoring.review import ReviewQueue
    from wellml.registry.service import ModelVersion
    from wellml.serving.service import EndpointRecord
    from wellml.workspace import Workspace

MONITOR_KINDS = (
    "data_drift",
    "data_quality",
    "model_quality",
    "bias_drift",
    "feature_attribution_drift",
)
# Kinds whose every violation is drift of the model's behaviour (there are no drifted
# features to name): a violation raises the alert and may trigger retraining.
_BEHAVIOUR_KINDS = ("model_quality", "bias_drift", "feature_attribution_drift")
DEFAULT_NDCG_THRESHOLD = 0.9

# Thresholds each kind accepts, with their defaults. Data quality and model quality start
# empty: their limits come from the baseline's constraints and the metric tolerances.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks_alpha": 0.05,
    "ks_min_statistic": 0.1,
    "chi2_alpha": 0.05,
    "chi2_min_effect": 0.1,
    "psi": 0.2,
    "wasserstein": 0.1,
    "jensen_shannon": 0.1,
    "dataset_drift_share": 0.5,
    "small_sample": 1000,
}
QUALITY_THRESHOLDS = (
    "datatype_check_threshold",
    "domain_content_threshold",
    "range_check_threshold",
    "completeness_tolerance",
    "comparison_threshold",
    "categorical_comparison_threshold",
)
MODEL_QUALITY_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "auc",
    "log_loss",
    "weighted_precision",
    "weighted_recall",
    "weighted_f1",
    "mae",
    "rmse",
    "r2",
)
DRIFT_TESTS = ("auto", "statistical", "distance")
# Columns of captured traffic that are bookkeeping or model output, not model input.
# What capture adds beside the model inputs (serving's optional columns included): never
# model inputs, so data-quality checks do not report them as extra columns.
CAPTURE_EXTRA_COLUMNS = (
    "inference_id",
    "event_time",
    "model_version",
    "prediction",
    "probability",
    "variant",
    "ood",
)
GROUND_TRUTH_COLUMNS = ("inference_id", "row", "label")


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Baseline:
    """Statistics and constraints of the reference data a monitor compares against.

    Attributes:
        ref: ``name@version`` in the baselines' own namespace.
        parent_id: The version this one was edited from, or None.
        changes: The edit that made it from its parent, or None.
    """

    id: str
    dataset_version_id: str
    dataset_ref: str
    features: list[str]
    statistics: dict[str, Any]
    constraints: dict[str, Any]
    created_at: float
    lineage_artifact_id: str
    name: str = ""
    version: int = 1
    parent_id: str | None = None
    changes: dict[str, Any] | None = None
    created_by: str = ""

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "dataset": self.dataset_ref,
            "features": self.features,
            "statistics": self.statistics,
            "constraints": self.constraints,
            "parent_id": self.parent_id,
            "changes": self.changes,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class MonitorExecution:
    """One run of a monitor: what it compared, and what it found."""

    id: str
    monitor: str
    endpoint: str | None
    dataset_ref: str
    baseline_ref: str
    status: str
    drifted_features: list[str]
    violations: list[dict[str, Any]]
    report: dict[str, Any]
    started_at: float
    ended_at: float
    kind: str = "data_drift"
    trigger: str = "manual"
    slot: float | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "monitor": self.monitor,
            "kind": self.kind,
            "endpoint": self.endpoint,
            "dataset": self.dataset_ref,
            "baseline": self.baseline_ref,
            "status": self.status,
            "trigger": self.trigger,
            "slot": self.slot,
            "drifted_features": self.drifted_features,
            "violations": self.violations,
            "report": self.report,
            "alerts": self.alerts,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


@dataclass(frozen=True)
class GroundTruthIngest:
    """Labels received for an endpoint, and how many of them match captured inferences."""

    dataset_ref: str
    rows: int
    matched: int
    unmatched: int
    unmatched_examples: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "dataset": self.dataset_ref,
            "rows": self.rows,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "unmatched_examples": self.unmatched_examples,
        }


# --------------------------------------------------------------------------------------------
# Per-kind options (validated where they come in)


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataDriftOptions(_Options):
    """Options of a data-drift monitor.

    ``tests``: ``auto`` (by kind and reference size), ``statistical`` (KS and chi-square, each
    with PSI) or ``distance`` (Wasserstein and Jensen–Shannon at any size).
    """

    tests: str = "auto"


class DataQualityOptions(_Options):
    """Options of a data-quality monitor (none yet; thresholds override the constraints)."""


class ModelQualityOptions(_Options):
    """Options of a model-quality monitor.

    ``label``/``prediction``/``score``: column names in a checked dataset (for an endpoint the
    ground truth is ``label`` and the captured outputs are ``prediction`` and
    ``probability``). ``baseline_metrics`` or ``baseline_dataset`` (labelled data; predicted
    with the endpoint's model when it has no ``prediction`` column) give the baseline; by
    default it is the deployed model version's recorded metrics.
    """

    problem_type: str = "BinaryClassification"
    positive_label: Any = 1
    label: str = "label"
    prediction: str = "prediction"
    score: str | None = None
    baseline_metrics: dict[str, float] | None = None
    baseline_dataset: str | None = None


class BiasDriftOptions(_Options):
    """Options of a bias-drift monitor.

    ``facet_values_or_threshold`` may be ``{"threshold": t}`` for a numeric facet.
    ``baseline_dataset`` holds labels (``label``), the facet and predictions (``prediction``,
    or predicted with the endpoint's model); by default the deployed model's training data.
    ``baseline`` gives the baseline values directly: facet group → metric → value.
    ``baseline_label`` names the label column of the baseline data when it is not ``label``
    (a training set keeps its own target name, ``churned`` say).
    """

    facet: str
    facet_values_or_threshold: Any = None
    label_values_or_threshold: Any = 1
    label: str = "label"
    prediction: str = "prediction"
    methods: list[str] | None = None
    baseline_dataset: str | None = None
    baseline_label: str | None = None
    baseline: dict[str, dict[str, float | None]] | None = None


class AttributionDriftOptions(_Options):
    """Options of a feature-attribution drift monitor.

    The global attribution of a feature is its mean absolute SHAP value
    (:class:`~wellml.clarify.ShapExplainer`) over at most ``max_rows`` rows, sampled with
    ``seed``. The baseline attributions are measured on ``baseline_dataset`` (default: the
    model's training data, found through lineage), or given directly as ``baseline``
    (feature → attribution). Both sides are explained relative to the same SHAP baseline
    rows, made once when the monitor is created, so that a change of ranking comes from the
    data, not from a new SHAP baseline. ``model`` names the model version of a dataset
    monitor; an endpoint monitor explains the model version the endpoint serves.
    """

    model: str | None = None
    baseline_dataset: str | None = None
    baseline: dict[str, float] | None = None
    max_rows: int = 300
    method: str = "auto"
    n_clusters: int = 10
    n_samples: int = 128
    target_class: Any = None
    seed: int = 0


_OPTION_MODELS: dict[str, type[_Options]] = {
    "data_drift": DataDriftOptions,
    "data_quality": DataQualityOptions,
    "model_quality": ModelQualityOptions,
    "bias_drift": BiasDriftOptions,
    "feature_attribution_drift": AttributionDriftOptions,
}


def _options(kind: str, given: Mapping[str, Any] | None) -> _Options:
    try:
        return _OPTION_MODELS[kind].model_validate(dict(given or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"invalid {kind} options: {problems}") from None


def _check_thresholds(kind: str, thresholds: Mapping[str, float] | None) -> dict[str, float]:
    given = dict(thresholds or {})
    if kind == "data_drift":
        known: Sequence[str] = list(DEFAULT_THRESHOLDS)
    elif kind == "data_quality":
        known = QUALITY_THRESHOLDS
    elif kind == "model_quality":
        known = MODEL_QUALITY_METRICS
    elif kind == "feature_attribution_drift":
        known = ["ndcg"]
    else:
        from wellml.clarify import POSTTRAINING_METHODS

        known = ["tolerance", *POSTTRAINING_METHODS]
    unknown = set(given) - set(known)
    if unknown:
        raise InvalidInput(
            f"unknown threshold(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}"
        )
    for key, value in given.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidInput(f"threshold {key!r} must be a number, not {value!r}")
        if value < 0:
            raise InvalidInput(f"threshold {key!r} must be >= 0, not {value!r}")
    if kind == "data_drift":
        return {**DEFAULT_THRESHOLDS, **given}
    if kind == "feature_attribution_drift":
        if given.get("ndcg", 0.0) > 1:
            raise InvalidInput(f"threshold 'ndcg' is at most 1, not {given['ndcg']!r}")
        return {"ndcg": DEFAULT_NDCG_THRESHOLD, **given}
    return given


def _facet_value(value: Any) -> Any:
    """A stored facet/label spec as wellml.clarify takes it (``{"threshold": t}`` → Threshold)."""
    from wellml.clarify import Threshold

    if isinstance(value, Mapping) and set(value) == {"threshold"}:
        return Threshold(value["threshold"])
    return value


# --------------------------------------------------------------------------------------------
# The service


class Monitoring:
    """Baselines, monitors, their executions, alerts and retrain triggers in a workspace."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._store = ws.metadata

    # -- baselines ---------------------------------------------------------------------------

    def baseline(
        self,
        dataset: str | DatasetVersion,
        *,
        features: builtins.list[str] | None = None,
        name: str | None = None,
    ) -> Baseline:
        """The baseline of a dataset version over ``features`` (all columns by default).

        The newest baseline of that version over exactly these features is reused (an edited
        one included); otherwise statistics and suggested constraints are computed and stored
        as the next version of ``name`` (default: the dataset's name).

        Raises:
            NotFound: no such dataset version or column.
            InvalidInput: a bad name.
        """
        from wellml.monitoring.baseline import feature_statistics, suggest_constraints

        dv = self._ws.data.get(dataset) if isinstance(dataset, str) else dataset
        feats = list(features) if features is not None else dv.columns
        missing = [f for f in feats if f not in dv.columns]
        if missing:
            raise NotFound(f"{dv.ref} has no column(s) {', '.join(missing)}")
        with self._store.read() as conn:
            row = sql.baseline_for_dataset(conn, dv.id, feats)
        if row is not None and (name is None or row["name"] == name):
            return self._baseline(row)
        name = check_name(name or dv.name, "baseline name")
        frame = self._ws.data.load(dv, columns=feats)
        stats = feature_statistics(frame, feats)
        stats["dataset"]["source"] = dv.ref
        return self._store_baseline(
            name=name,
            dataset=dv,
            features=feats,
            statistics=stats,
            constraints=suggest_constraints(stats),
            inputs=[(dv.lineage_artifact_id, "reference")],
            execution_name=f"baseline of {dv.ref}",
        )

    def _store_baseline(
        self,
        *,
        name: str,
        dataset: DatasetVersion,
        features: builtins.list[str],
        statistics: dict[str, Any],
        constraints: dict[str, Any],
        inputs: builtins.list[tuple[str, str]],
        execution_name: str,
        parent_id: str | None = None,
        changes: dict[str, Any] | None = None,
    ) -> Baseline:
        from wellml.config import current_user

        bid = new_id()
        with self._store.write() as conn:
            version = sql.next_baseline_version(conn, name)
            art = self._ws.lineage.add_artifact(
                conn,
                kind="baseline",
                ref=f"baseline:{bid}",
                properties={"name": name, "version": version, "dataset": dataset.ref},
            )
            self._ws.lineage.record_execution(
                conn,
                kind="baseline",
                ref=f"baseline-run:{bid}",
                name=execution_name,
                inputs=inputs,
                outputs=[(art, "baseline")],
            )
            row = {
                "id": bid,
                "name": name,
                "version": version,
                "dataset_version_id": dataset.id,
                "parent_id": parent_id,
                "features": features,
                "statistics": statistics,
                "constraints": constraints,
                "changes": changes,
                "created_at": now(),
                "created_by": current_user(),
                "lineage_artifact_id": art,
            }
            sql.insert_baseline(conn, row)
        return self._baseline(row)

    def _baseline(self, row: dict[str, Any]) -> Baseline:
        dv = self._ws.data.by_id(row["dataset_version_id"])
        return Baseline(
            id=row["id"],
            dataset_version_id=dv.id,
            dataset_ref=dv.ref,
            features=list(row["features"]),
            statistics=row["statistics"],
            constraints=row["constraints"],
            created_at=row["created_at"],
            lineage_artifact_id=row["lineage_artifact_id"],
            name=row.get("name") or "",
            version=int(row.get("version") or 1),
            parent_id=row.get("parent_id"),
            changes=row.get("changes"),
            created_by=row.get("created_by") or "",
        )

    def get_baseline(self, ref: str | Baseline) -> Baseline:
        """A baseline by ``name`` (newest version), ``name@N`` or id.

        Raises:
            NotFound: no such baseline.
        """
        if isinstance(ref, Baseline):
            return ref
        with self._store.read() as conn:
            row = sql.baseline_by_id(conn, ref) if len(ref) == 32 and "@" not in ref else None
            if row is None:
                parsed = parse_ref(ref, "baseline reference")
                if parsed.alias is not None:
                    raise InvalidInput(f"baselines have no aliases: {ref!r}; use name@N")
                row = sql.baseline_by_ref(conn, parsed.name, parsed.version)
        if row is None:
            raise NotFound(f"no baseline {ref!r}")
        return self._baseline(row)

    def baselines(self, name: str | None = None) -> builtins.list[dict[str, Any]]:
        """Baselines (of one name, or all): ref, dataset, features, parent and changes."""
        with self._store.read() as conn:
            rows = sql.list_baselines(conn, name)
        out = []
        for r in rows:
            out.append(
                {
                    **r,
                    "ref": f"{r['name']}@{r['version']}",
                    "dataset": self._ws.data.by_id(r["dataset_version_id"]).ref,
                }
            )
        return out

    def edit_constraints(self, baseline: str | Baseline, changes: Mapping[str, Any]) -> Baseline:
        """A new version of a baseline with its constraints edited.

        Monitors keep the version they were created with; pass the new one to
        :meth:`create_monitor` (same monitor name) to move a monitor to it.

        Args:
            baseline: The baseline (or its reference) to start from.
            changes: ``{"FEATURE.SETTING": value}`` edits, e.g. ``{"age.completeness": 0.95,
                "monitoring_config.comparison_threshold": 0.2}``; see
                :func:`wellml.monitoring.baseline.edit_constraints`.

        Raises:
            NotFound: no such baseline.
            ConstraintError: an unknown feature or setting, or a bad value.
        """
        from wellml.monitoring.baseline import edit_constraints

        base = self.get_baseline(baseline)
        edited = edit_constraints(base.constraints, changes)
        return self._store_baseline(
            name=base.name,
            dataset=self._ws.data.by_id(base.dataset_version_id),
            features=base.features,
            statistics=base.statistics,
            constraints=edited,
            inputs=[(base.lineage_artifact_id, "parent")],
            execution_name=f"edit constraints of {base.ref}",
            parent_id=base.id,
            changes={str(k): v for k, v in changes.items()},
        )

    def export_baseline(self, baseline: str | Baseline, directory: str | Path) -> dict[str, Path]:
        """Write the baseline as Model Monitor's ``statistics.json`` and ``constraints.json``.

        Returns:
            ``{"statistics": path, "constraints": path}``.

        Raises:
            NotFound: no such baseline.
        """
        from wellml.monitoring.baseline import export_constraints, export_statistics

        base = self.get_baseline(baseline)
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for key, doc in (
            ("statistics", export_statistics(base.statistics)),
            ("constraints", export_constraints(base.constraints)),
        ):
            path = folder / f"{key}.json"
            _write_atomic(path, json.dumps(doc, indent=2, default=str) + "\n")
            out[key] = path
        return out

    def training_data(self, model_ref: str) -> DatasetVersion:
        """The dataset version a model version was trained on, found through lineage.

        Raises:
            NotFound: lineage records no training data for it.
        """
        mv = self._ws.registry.get(model_ref)
        graph = self._ws.lineage.upstream(mv.lineage_ref, depth=2)
        train_ids = [e.source for e in graph.edges if e.role == "train"]
        found = self._ws.data.by_lineage_ids(train_ids)
        if not found:
            raise NotFound(f"lineage records no training data for {mv.ref}")
        return max(found, key=lambda d: d.created_at)

    @functools.cached_property
    def reviews(self) -> ReviewQueue:
        """Human review of low-confidence predictions (:mod:`wellml.monitoring.review`)."""
        from wellml.monitoring.review import ReviewQueue

        return ReviewQueue(self._ws)

    # -- monitors ----------------------------------------------------------------------------

    def create_monitor(
        self,
        endpoint: str | None = None,
        *,
        kind: str = "data_drift",
        name: str | None = None,
        dataset: str | None = None,
        baseline: Baseline | str | None = None,
        thresholds: Mapping[str, float] | None = None,
        alert_webhook: str | None = None,
        alert_route: AlertRoute | Mapping[str, Any] | None = None,
        schedule: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create (or update, by name) a monitor of an endpoint's traffic or of a dataset.

        The default baseline of an endpoint monitor is the training data of the model version
        the endpoint serves, over the model's input columns; a dataset monitor needs one.

        Args:
            endpoint: The endpoint whose captured traffic (and ground truth) is checked.
            kind: One of :data:`MONITOR_KINDS`.
            name: Monitor name; default ``ENDPOINT-drift`` for data drift, else
                ``ENDPOINT-KIND`` (hyphens for underscores), or the same from the dataset.
            dataset: Instead of an endpoint, a dataset name whose new versions are checked.
            baseline: A :class:`Baseline` or baseline reference (data drift and quality).
            thresholds: Per-kind thresholds (see :data:`DEFAULT_THRESHOLDS`,
                :data:`QUALITY_THRESHOLDS`, :data:`MODEL_QUALITY_METRICS` as tolerances, and
                ``tolerance`` or a metric key for bias drift).
            alert_webhook: Shorthand for ``alert_route={"webhook": url}``.
            alert_route: Webhook, retries, minimum severity and retrain action.
            schedule: A cron expression (``0 * * * *``, ``@hourly``) for :meth:`run_due`.
            options: Per-kind options (:class:`DataDriftOptions`, :class:`ModelQualityOptions`,
                :class:`BiasDriftOptions`).

        Raises:
            NotFound: no such endpoint, dataset or baseline, or no training data in lineage.
            InvalidInput: unknown kind, thresholds or options; a bad schedule or route; neither
                or both of endpoint and dataset.
            Conflict: a monitor of that name watches something else or is of another kind.
        """
        if kind not in MONITOR_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(MONITOR_KINDS)}, not {kind!r}")
        if (endpoint is None) == (dataset is None):
            raise InvalidInput("a monitor watches an endpoint or a dataset: give exactly one")
        th = _check_thresholds(kind, thresholds)
        opts = _options(kind, options)
        route = self._route(alert_webhook, alert_route)
        if schedule is not None:
            _check_schedule(schedule)
        ep = self._ws.endpoints.get(endpoint) if endpoint is not None else None
        target_dataset = None
        if dataset is not None:
            target_dataset = parse_ref(dataset, "dataset name").name
            self._ws.data.get(target_dataset)
        watched = ep.name if ep is not None else target_dataset
        suffix = "drift" if kind == "data_drift" else kind.replace("_", "-")
        name = check_name(name or f"{watched}-{suffix}", "monitor name")

        base: Baseline | None = None
        config: dict[str, Any] = {
            "thresholds": th,
            "alert_webhook": route.webhook,
            "alert_route": route.to_dict() if (route.webhook or route.retrain) else None,
            "schedule": schedule,
            "options": opts.model_dump(),
        }
        if ep is not None:
            config["model_version"] = ep.model_version
        if kind in ("data_drift", "data_quality"):
            if baseline is not None:
                base = self.get_baseline(baseline)
            elif ep is not None:
                mv = self._ws.registry.by_id(ep.model_version_id)
                base = self.baseline(self.training_data(mv.ref), features=mv.signature.columns)
            else:
                raise InvalidInput(f"a {kind} monitor of a dataset needs a baseline")
            if isinstance(opts, DataDriftOptions) and opts.tests not in DRIFT_TESTS:
                raise InvalidInput(f"tests must be one of {', '.join(DRIFT_TESTS)}")
        elif isinstance(opts, ModelQualityOptions):
            config["baseline_metrics"] = self._baseline_metrics(opts, ep)
        elif isinstance(opts, BiasDriftOptions):
            config["baseline_bias"] = self._baseline_bias(opts, ep, th)
        elif isinstance(opts, AttributionDriftOptions):
            config.update(self._baseline_attribution(opts, ep))

        with self._store.write() as conn:
            row = sql.monitor_by_name(conn, name)
            values = {
                "kind": kind,
                "endpoint_id": ep.id if ep is not None else None,
                "target_dataset": target_dataset,
                "baseline_id": base.id if base is not None else None,
                "config": config,
            }
            if row is None:
                row = {"id": new_id(), "name": name, "created_at": now(), **values}
                sql.insert_monitor(conn, row)
            else:
                if row["endpoint_id"] != values["endpoint_id"] or (
                    row.get("target_dataset") != target_dataset
                ):
                    raise Conflict(f"monitor {name!r} watches another endpoint or dataset")
                if row["kind"] != kind:
                    raise Conflict(f"monitor {name!r} is a {row['kind']} monitor, not {kind}")
                sql.update_monitor(conn, row["id"], updated_at=now(), **values)
                row = {**row, **values}
        return {
            **row,
            "endpoint": ep.name if ep is not None else None,
            "baseline": base.to_dict() if base is not None else None,
        }

    @staticmethod
    def _route(webhook: str | None, route: AlertRoute | Mapping[str, Any] | None) -> AlertRoute:
        if route is None:
            return AlertRoute(webhook=webhook)
        parsed = route if isinstance(route, AlertRoute) else AlertRoute.from_dict(route)
        if webhook is not None and parsed.webhook not in (None, webhook):
            raise InvalidInput("alert_webhook and alert_route name different webhooks")
        if webhook is not None and parsed.webhook is None:
            parsed = replace(parsed, webhook=webhook)
        return parsed

    def _baseline_metrics(
        self, opts: ModelQualityOptions, ep: EndpointRecord | None
    ) -> dict[str, float]:
        from wellml.monitoring.model_quality import (
            PROBLEM_TYPES,
            baseline_metric_names,
            quality_metrics,
        )

        if opts.problem_type not in PROBLEM_TYPES:
            raise InvalidInput(
                f"problem_type must be one of {', '.join(PROBLEM_TYPES)}, not {opts.problem_type!r}"
            )
        if opts.baseline_metrics is not None:
            return baseline_metric_names(opts.baseline_metrics)
        if opts.baseline_dataset is not None:
            frame = self._ws.data.load(opts.baseline_dataset)
            frame = self._with_predictions(frame, opts.prediction, ep, opts.label)
            score = opts.score if opts.score in frame.columns else None
            metrics = quality_metrics(
                frame[opts.label],
                frame[opts.prediction],
                problem_type=opts.problem_type,
                scores=frame[score] if score else None,
                positive_label=opts.positive_label,
            )
            return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        if ep is None:
            raise InvalidInput(
                "a model_quality monitor of a dataset needs baseline_metrics or baseline_dataset"
            )
        mv = self._ws.registry.by_id(ep.model_version_id)
        found = baseline_metric_names(mv.metrics or {})
        if not found:
            raise InvalidInput(
                f"{mv.ref} records no metrics to compare with; give baseline_metrics or "
                "baseline_dataset"
            )
        return found

    def _with_predictions(
        self, frame: pd.DataFrame, prediction: str, ep: EndpointRecord | None, label: str
    ) -> pd.DataFrame:
        """The frame with a prediction column, predicting with the endpoint's model if needed."""
        if label not in frame.columns:
            raise InvalidInput(f"the baseline data has no label column {label!r}")
        if prediction in frame.columns:
            return frame
        if ep is None:
            raise InvalidInput(f"the baseline data has no prediction column {prediction!r}")
        mv = self._ws.registry.by_id(ep.model_version_id)
        model = self._ws.registry.load(mv)
        cols = mv.signature.columns
        lacking = [c for c in cols if c not in frame.columns]
        if lacking:
            raise InvalidInput(f"the baseline data lacks the model's inputs {lacking}")
        out = frame.copy()
        out[prediction] = model.predict(frame[cols])
        return out

    def _baseline_bias(
        self, opts: BiasDriftOptions, ep: EndpointRecord | None, thresholds: Mapping[str, float]
    ) -> dict[str, dict[str, float | None]]:
        check = self._bias_check(opts, thresholds, predicted_label=opts.prediction)
        if opts.baseline is not None:
            return opts.baseline
        if opts.baseline_dataset is not None:
            frame = self._ws.data.load(opts.baseline_dataset)
        elif ep is not None:
            mv = self._ws.registry.by_id(ep.model_version_id)
            frame = self._ws.data.load(self.training_data(mv.ref))
        else:
            raise InvalidInput("a bias_drift monitor of a dataset needs baseline_dataset")
        if opts.baseline_label is not None and opts.baseline_label != opts.label:
            if opts.baseline_label not in frame.columns:
                raise InvalidInput(f"the baseline data has no column {opts.baseline_label!r}")
            frame = frame.drop(columns=[opts.label], errors="ignore").rename(
                columns={opts.baseline_label: opts.label}
            )
        frame = self._with_predictions(frame, opts.prediction, ep, opts.label)
        values, _ = check.measure(frame)
        return values

    def _attribution_model(
        self, opts: AttributionDriftOptions, ep: EndpointRecord | None
    ) -> ModelVersion:
        if ep is not None:
            if opts.model is not None:
                raise InvalidInput(
                    "an endpoint monitor explains the endpoint's model; drop the model option"
                )
            return self._ws.registry.by_id(ep.model_version_id)
        if opts.model is None:
            raise InvalidInput("a feature_attribution_drift monitor of a dataset needs a model")
        return self._ws.registry.get(opts.model)

    @staticmethod
    def _explainer(opts: AttributionDriftOptions, features: Sequence[str], rows: Any) -> Any:
        from wellml.clarify import ShapExplainer

        if opts.method not in ("auto", "tree", "kernel"):
            raise InvalidInput(f"method must be auto, tree or kernel, not {opts.method!r}")
        for key in ("max_rows", "n_clusters", "n_samples"):
            if getattr(opts, key) < 1:
                raise InvalidInput(f"option {key} must be a positive number")
        return ShapExplainer(
            features=list(features),
            target_class=opts.target_class,
            method=opts.method,  # type: ignore[arg-type]
            baseline=rows,
            n_clusters=opts.n_clusters,
            n_samples=opts.n_samples,
            max_rows=opts.max_rows,
            seed=opts.seed,
        )

    def _baseline_attribution(
        self, opts: AttributionDriftOptions, ep: EndpointRecord | None
    ) -> dict[str, Any]:
        """The baseline attributions and the SHAP baseline rows both sides are explained with."""
        from wellml.clarify import baseline_rows

        mv = self._attribution_model(opts, ep)
        features = list(mv.signature.columns)
        if opts.baseline_dataset is not None:
            frame = self._ws.data.load(opts.baseline_dataset)
        else:
            frame = self._ws.data.load(self.training_data(mv.ref))
        lacking = [c for c in features if c not in frame.columns]
        if lacking:
            raise InvalidInput(f"the baseline data lacks the model's inputs {lacking}")
        rows = baseline_rows(frame[features], n_clusters=opts.n_clusters, seed=opts.seed)
        if opts.baseline is not None:
            unknown = sorted(set(opts.baseline) - set(features))
            if unknown:
                raise InvalidInput(f"baseline attributions name no input of {mv.ref}: {unknown}")
            attribution = {f: float(opts.baseline.get(f, 0.0)) for f in features}
            label = None
        else:
            model = self._ws.registry.load(mv)
            explanation = self._explainer(opts, features, rows).compute(model, frame)
            attribution = explanation.global_shap_values
            label = explanation.label
        return {
            "model_version": mv.ref,
            "attribution_model_id": mv.id,
            "baseline_attribution": attribution,
            "attribution_label": label,
            "shap_baseline_rows": json.loads(rows.to_json(orient="split", date_format="iso")),
        }

    @staticmethod
    def _bias_check(
        opts: BiasDriftOptions, thresholds: Mapping[str, float], *, predicted_label: str
    ) -> Any:
        from wellml.monitoring.bias_drift import (
            DEFAULT_BIAS_METHODS,
            DEFAULT_BIAS_TOLERANCE,
            BiasDriftCheck,
        )

        return BiasDriftCheck(
            label=opts.label,
            label_values_or_threshold=_facet_value(opts.label_values_or_threshold),
            facet=opts.facet,
            facet_values_or_threshold=_facet_value(opts.facet_values_or_threshold),
            predicted_label=predicted_label,
            methods=opts.methods or DEFAULT_BIAS_METHODS,
            tolerances={k: v for k, v in thresholds.items() if k != "tolerance"},
            tolerance=thresholds.get("tolerance", DEFAULT_BIAS_TOLERANCE),
        )

    def monitors(self) -> builtins.list[dict[str, Any]]:
        """Every monitor."""
        with self._store.read() as conn:
            return sql.list_monitors(conn)

    def get_monitor(self, name: str) -> dict[str, Any]:
        """A monitor by name.

        Raises:
            NotFound: no such monitor.
        """
        with self._store.read() as conn:
            row = sql.monitor_by_name(conn, name)
        if row is None:
            raise NotFound(f"no monitor named {name!r}")
        return row

    # -- running -----------------------------------------------------------------------------

    def run(
        self, endpoint: str, *, monitor: str | None = None, all_captured: bool = False
    ) -> MonitorExecution:
        """Check the endpoint's newly captured traffic with its data-drift monitor (created
        with the defaults when missing), or with ``monitor``.

        Raises:
            NotFound: no such endpoint, or nothing (new) has been captured.
        """
        ep = self._ws.endpoints.get(endpoint)
        name = monitor or f"{ep.name}-drift"
        with self._store.read() as conn:
            mon = sql.monitor_by_name(conn, name)
        if mon is None:
            self.create_monitor(ep.name, name=name)
        return self.run_monitor(name, all_captured=all_captured)

    def run_monitor(
        self,
        name: str,
        *,
        dataset: str | DatasetVersion | None = None,
        all_captured: bool = False,
        trigger: str = "manual",
        slot: float | None = None,
    ) -> MonitorExecution:
        """Run one monitor over new data, or over ``dataset``.

        New data is, for an endpoint, the captured traffic (or, for model quality and bias
        drift, the ground truth joined to it) that this monitor has not checked yet; for a
        dataset monitor, the newest version it has not checked. With ``all_captured`` the
        latest data is checked again when nothing is new.

        Raises:
            NotFound: no such monitor or dataset, or no new data.
            InvalidInput: the data does not fit the monitor (missing label columns, ...).
        """
        mon = self.get_monitor(name)
        ep = self._endpoint_of(mon)
        from_capture = ep is not None and dataset is None
        started = time.time()
        if dataset is not None:
            dv = self._ws.data.get(dataset) if isinstance(dataset, str) else dataset
            inputs = [dv]
            frame = self._ws.data.load(dv)
            used_ids = [dv.id]
        elif mon["kind"] in ("model_quality", "bias_drift") and ep is not None:
            dv, inputs, frame, used_ids = self._labelled(ep, mon, all_captured)
        elif ep is not None:
            inputs = self._new_versions(f"{ep.name}-capture", mon, all_captured, ep=ep)
            dv = inputs[-1]
            frame = self._load_all(inputs)
            used_ids = [v.id for v in inputs]
        else:
            inputs = self._new_versions(mon["target_dataset"], mon, all_captured)
            dv = inputs[-1]
            frame = self._load_all(inputs)
            used_ids = [v.id for v in inputs]

        base = self._monitor_baseline(mon)
        kind = mon["kind"]
        if kind == "data_drift":
            assert base is not None
            report, violations, drifted = self._data_drift(mon, base, frame)
        elif kind == "data_quality":
            assert base is not None
            report, violations, drifted = self._data_quality(mon, base, frame, from_capture)
        elif kind == "model_quality":
            report, violations, drifted = self._model_quality(mon, frame, from_capture)
        elif kind == "bias_drift":
            report, violations, drifted = self._bias_drift(mon, frame, from_capture)
        else:
            report, violations, drifted = self._attribution_drift(mon, frame)
        report["inputs"] = [v.ref for v in inputs]
        status = "completed-with-violations" if violations else "completed"
        execution = self._record(
            mon,
            ep,
            dv,
            inputs,
            used_ids,
            base,
            kind,
            status,
            report,
            violations,
            drifted,
            started,
            trigger,
            slot,
        )
        if violations:
            alerts = self._raise_alerts(mon, execution)
            execution = replace(execution, alerts=alerts)
        return execution

    def _endpoint_of(self, mon: Mapping[str, Any]) -> EndpointRecord | None:
        if mon["endpoint_id"] is None:
            return None
        for ep in self._ws.endpoints.list():
            if ep.id == mon["endpoint_id"]:
                return ep
        raise NotFound(f"the endpoint of monitor {mon['name']!r} no longer exists")

    def _monitor_baseline(self, mon: Mapping[str, Any]) -> Baseline | None:
        if mon["baseline_id"] is None:
            return None
        with self._store.read() as conn:
            row = sql.baseline_by_id(conn, mon["baseline_id"])
        if row is None:
            raise NotFound(f"the baseline of monitor {mon['name']!r} no longer exists")
        return self._baseline(row)

    def _new_versions(
        self,
        dataset: str,
        mon: Mapping[str, Any],
        all_captured: bool,
        *,
        ep: EndpointRecord | None = None,
    ) -> builtins.list[DatasetVersion]:
        """The versions of ``dataset`` this monitor has not checked, oldest first.

        Only versions made since the monitor was created count as new, except on its first
        run, which takes the latest version when nothing newer exists.
        """
        if ep is not None:
            self._ws.endpoints.capture_dataset(ep.name)
        versions = self._ws.data.versions(dataset)
        if not versions:
            if ep is not None:
                raise NotFound(f"endpoint {ep.name!r} has captured no traffic yet")
            raise NotFound(f"dataset {dataset!r} has no versions")
        with self._store.read() as conn:
            checked = set(sql.checked_dataset_ids(conn, mon["id"]))
        fresh = [v for v in versions if v.id not in checked and v.created_at >= mon["created_at"]]
        if not fresh and not checked:
            fresh = [versions[0]]
        if not fresh:
            if not all_captured:
                what = f"traffic captured at {ep.name!r}" if ep else f"version of {dataset!r}"
                raise NotFound(
                    f"no new {what} since the last check ({versions[0].ref}); "
                    "pass --all to check it again"
                )
            fresh = [versions[0]]
        return sorted(fresh, key=lambda v: v.version)

    def _load_all(self, versions: Sequence[DatasetVersion]) -> pd.DataFrame:
        frames = [self._ws.data.load(v) for v in versions]
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)

    # -- the four checks ----------------------------------------------------------------------

    def _data_drift(
        self, mon: Mapping[str, Any], base: Baseline, frame: pd.DataFrame
    ) -> tuple[dict[str, Any], builtins.list[dict[str, Any]], builtins.list[str]]:
        from wellml.monitoring.drift import detect_drift

        th = {**DEFAULT_THRESHOLDS, **mon["config"].get("thresholds", {})}
        tests = (mon["config"].get("options") or {}).get("tests", "auto")
        cols = [f for f in base.features if f in frame.columns]
        missing = [f for f in base.features if f not in frame.columns]
        violations = [
            {
                "feature_name": f,
                "constraint_check_type": "missing_column_check",
                "description": f"column {f} is missing from the current data",
            }
            for f in missing
        ]
        if not cols:
            return {"features": [], "drifted_features": []}, violations, []
        reference = self._ws.data.load(
            self._ws.data.by_id(base.dataset_version_id), columns=base.features
        )
        stats = {f["name"]: f for f in base.statistics.get("features", [])}
        categorical = [c for c in cols if _is_categorical(stats.get(c, {}), base, c)]
        report = detect_drift(
            reference[cols],
            frame[cols],
            features=cols,
            categorical=categorical,
            dataset_drift_share=th["dataset_drift_share"],
            distributions=True,
            **_drift_tests(tests, th),
        )
        violations += [
            {
                "feature_name": fd.feature,
                "constraint_check_type": "baseline_drift_check",
                "description": f"{fd.method} {fd.statistic:.4f} beyond threshold {fd.threshold}"
                + (f" (p={fd.p_value:.3g})" if fd.p_value is not None else ""),
            }
            for fd in report.features
            if fd.drifted
        ]
        return report.to_dict(), violations, list(report.drifted_features)

    def _data_quality(
        self, mon: Mapping[str, Any], base: Baseline, frame: pd.DataFrame, captured: bool
    ) -> tuple[dict[str, Any], builtins.list[dict[str, Any]], builtins.list[str]]:
        from wellml.monitoring.baseline import edit_constraints
        from wellml.monitoring.quality import DataQualityCheck

        overrides = {
            f"monitoring_config.{k}": v for k, v in mon["config"].get("thresholds", {}).items()
        }
        constraints = (
            edit_constraints(base.constraints, overrides) if overrides else base.constraints
        )
        check = DataQualityCheck(ignore=CAPTURE_EXTRA_COLUMNS if captured else ())
        result = check.compute(frame, base.statistics, constraints)
        drifted = [
            v["feature_name"]
            for v in result.violations
            if v["constraint_check_type"] == "baseline_drift_check"
        ]
        report = result.to_dict()
        report["drifted_features"] = drifted
        return report, result.violations, drifted

    def _model_quality(
        self, mon: Mapping[str, Any], frame: pd.DataFrame, captured: bool
    ) -> tuple[dict[str, Any], builtins.list[dict[str, Any]], builtins.list[str]]:
        from wellml.monitoring.model_quality import BINARY, ModelQualityCheck

        opts = ModelQualityOptions.model_validate(mon["config"].get("options") or {})
        label = "label" if captured else opts.label
        for col in (label, opts.prediction):
            if col not in frame.columns:
                raise InvalidInput(f"the data has no {col!r} column for the model-quality check")
        check = ModelQualityCheck(
            problem_type=opts.problem_type,
            positive_label=opts.positive_label,
            tolerances=mon["config"].get("thresholds", {}),
        )
        scores = None
        if opts.problem_type == BINARY:
            if captured and "probability" in frame.columns:
                # Captured traffic holds the probability of the predicted class.
                prob = frame["probability"].astype(float)
                positive = _same_label(frame[opts.prediction], opts.positive_label)
                scores = prob.where(positive, 1.0 - prob)
            elif opts.score is not None and opts.score in frame.columns:
                scores = frame[opts.score].astype(float)
        result = check.compute(
            frame[label],
            frame[opts.prediction],
            baseline=mon["config"].get("baseline_metrics", {}),
            scores=scores,
        )
        report = result.to_dict()
        return report, result.violations, []

    def _bias_drift(
        self, mon: Mapping[str, Any], frame: pd.DataFrame, captured: bool
    ) -> tuple[dict[str, Any], builtins.list[dict[str, Any]], builtins.list[str]]:
        opts = BiasDriftOptions.model_validate(mon["config"].get("options") or {})
        th = mon["config"].get("thresholds", {})
        label = "label" if captured else opts.label
        check = self._bias_check(
            opts.model_copy(update={"label": label}), th, predicted_label=opts.prediction
        )
        result = check.compute(frame, baseline=mon["config"].get("baseline_bias", {}))
        return result.to_dict(), result.violations, []

    def _attribution_drift(
        self, mon: Mapping[str, Any], frame: pd.DataFrame
    ) -> tuple[dict[str, Any], builtins.list[dict[str, Any]], builtins.list[str]]:
        from wellml.monitoring.bias_drift import attribution_drift_violations, attribution_ndcg

        config = mon["config"]
        opts = AttributionDriftOptions.model_validate(config.get("options") or {})
        mv = self._ws.registry.by_id(config["attribution_model_id"])
        features = list(mv.signature.columns)
        lacking = [c for c in features if c not in frame.columns]
        if lacking:
            raise InvalidInput(f"the data lacks the model's inputs {lacking}")
        stored = config["shap_baseline_rows"]
        rows = pd.DataFrame(stored["data"], columns=stored["columns"])
        rows = rows.astype(frame[features].dtypes.to_dict(), errors="ignore")
        model = self._ws.registry.load(mv)
        explanation = self._explainer(opts, features, rows).compute(model, frame[features])
        current = explanation.global_shap_values
        baseline = {f: float(v) for f, v in config["baseline_attribution"].items()}
        threshold = float(config.get("thresholds", {}).get("ndcg", DEFAULT_NDCG_THRESHOLD))
        score = attribution_ndcg(baseline, current)
        violations = attribution_drift_violations(
            baseline, current, threshold=threshold, label=explanation.label
        )
        base_rank = {f: i + 1 for i, f in enumerate(sorted(baseline, key=lambda f: -baseline[f]))}
        cur_rank = {f: i + 1 for i, f in enumerate(explanation.ranking)}
        report = {
            "model_version": mv.ref,
            "label": explanation.label,
            "method": explanation.method,
            "rows_explained": explanation.n_rows,
            "ndcg": score,
            "threshold": threshold,
            "features": [
                {
                    "feature": f,
                    "baseline": baseline.get(f, 0.0),
                    "current": current.get(f, 0.0),
                    "baseline_rank": base_rank.get(f),
                    "current_rank": cur_rank.get(f),
                }
                for f in features
            ],
            "notes": list(explanation.notes),
        }
        return report, violations, []

    # -- storing executions ------------------------------------------------------------------

    def _record(
        self,
        mon: Mapping[str, Any],
        ep: EndpointRecord | None,
        dv: DatasetVersion,
        inputs: Sequence[DatasetVersion],
        used_ids: Sequence[str],
        base: Baseline | None,
        kind: str,
        status: str,
        report: dict[str, Any],
        violations: builtins.list[dict[str, Any]],
        drifted: builtins.list[str],
        started: float,
        trigger: str,
        slot: float | None,
    ) -> MonitorExecution:
        from wellml.monitoring.drift import _jsonable

        eid = new_id()
        report = _jsonable(report)
        violations = _jsonable(violations)
        lineage_inputs = [(v.lineage_artifact_id, "current") for v in inputs]
        if dv.id not in {v.id for v in inputs}:
            lineage_inputs.append((dv.lineage_artifact_id, "current"))
        if base is not None:
            lineage_inputs.insert(0, (base.lineage_artifact_id, "baseline"))
        with self._store.write() as conn:
            out = self._ws.lineage.add_artifact(
                conn,
                kind="monitor_report",
                ref=f"monitor-report:{eid}",
                properties={"status": status, "kind": kind, "drifted": list(drifted)},
            )
            lin = self._ws.lineage.record_execution(
                conn,
                kind="monitor",
                ref=f"monitor-run:{eid}",
                name=f"{mon['name']} on {dv.ref}",
                inputs=lineage_inputs,
                outputs=[(out, "report")],
                started_at=started,
                properties={
                    "monitor": mon["name"],
                    "kind": kind,
                    "endpoint": ep.name if ep is not None else None,
                    "status": status,
                },
            )
            ended = time.time()
            sql.insert_execution(
                conn,
                {
                    "id": eid,
                    "monitor_id": mon["id"],
                    "kind": kind,
                    "dataset_version_id": dv.id,
                    "status": status,
                    "trigger": trigger,
                    "slot": slot,
                    "inputs": list(used_ids),
                    "report": report,
                    "violations": violations,
                    "started_at": started,
                    "ended_at": ended,
                    "lineage_execution_id": lin,
                },
            )
        return MonitorExecution(
            id=eid,
            monitor=mon["name"],
            endpoint=ep.name if ep is not None else None,
            dataset_ref=dv.ref,
            baseline_ref=base.dataset_ref if base is not None else "",
            status=status,
            drifted_features=list(drifted),
            violations=violations,
            report=report,
            started_at=started,
            ended_at=ended,
            kind=kind,
            trigger=trigger,
            slot=slot,
        )

    def executions(self, monitor: str, limit: int = 20) -> builtins.list[dict[str, Any]]:
        """A monitor's executions, newest first.

        Raises:
            NotFound: no such monitor.
        """
        mon = self.get_monitor(monitor)
        with self._store.read() as conn:
            return sql.executions_of(conn, mon["id"], limit)

    def execution(self, execution_id: str) -> MonitorExecution:
        """One execution by id.

        Raises:
            NotFound: no such execution.
        """
        with self._store.read() as conn:
            row = sql.execution_by_id(conn, execution_id)
            if row is None:
                raise NotFound(f"no monitor execution {execution_id!r}")
            mon = sql.monitor_by_name(conn, row["monitor"])
            alerts = [
                a
                for a in sql.alerts(conn, mon["id"] if mon else None, 1000)
                if a["execution_id"] == execution_id
            ]
        assert mon is not None
        ep = self._endpoint_of(mon)
        base = self._monitor_baseline(mon)
        report = row["report"] or {}
        drifted = report.get("drifted_features", [])
        return MonitorExecution(
            id=row["id"],
            monitor=row["monitor"],
            endpoint=ep.name if ep is not None else None,
            dataset_ref=self._ws.data.by_id(row["dataset_version_id"]).ref,
            baseline_ref=base.dataset_ref if base is not None else "",
            status=row["status"],
            drifted_features=list(drifted),
            violations=row["violations"],
            report=report,
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            kind=row["kind"],
            trigger=row["trigger"],
            slot=row["slot"],
            alerts=alerts,
        )

    # -- alerts and retraining ---------------------------------------------------------------

    def _raise_alerts(
        self, mon: Mapping[str, Any], execution: MonitorExecution
    ) -> builtins.list[dict[str, Any]]:
        """Log the alert, send it to the webhook and record a retrain trigger on drift."""
        route = AlertRoute.from_dict(mon["config"].get("alert_route"))
        if route.webhook is None and mon["config"].get("alert_webhook"):
            route = AlertRoute(webhook=mon["config"]["alert_webhook"])
        kind = execution.kind
        dataset_drift = bool(execution.report.get("dataset_drift"))
        drift = bool(execution.drifted_features) or (
            kind in _BEHAVIOUR_KINDS and bool(execution.violations)
        )
        if kind == "model_quality" or (kind == "data_drift" and dataset_drift):
            severity = "critical"
        else:
            severity = "warning"
        checks = sorted({v.get("constraint_check_type", "") for v in execution.violations})
        message = f"{mon['name']}: {len(execution.violations)} violation(s) on " + (
            f"{execution.dataset_ref} ({', '.join(checks)})"
        )
        if execution.drifted_features:
            message += "; drifted: " + ", ".join(execution.drifted_features)
        payload = {
            "monitor": mon["name"],
            "kind": kind,
            "endpoint": execution.endpoint,
            "execution": execution.id,
            "status": execution.status,
            "severity": severity,
            "message": message,
            "dataset": execution.dataset_ref,
            "drifted_features": execution.drifted_features,
            "violations": execution.violations[:50],
            "created_at": now(),
        }
        delivery = None
        if route.sends(severity):
            assert route.webhook is not None
            delivery = deliver_webhook(
                route.webhook,
                payload,
                timeout=route.timeout,
                retries=route.retries,
                backoff=route.backoff,
            )
        alert = {
            "id": new_id(),
            "monitor_id": mon["id"],
            "execution_id": execution.id,
            "severity": severity,
            "message": message,
            "payload": payload,
            "webhook": route.webhook if delivery is not None else None,
            "delivered": delivery.delivered if delivery is not None else None,
            "attempts": delivery.attempts if delivery is not None else 0,
            "error": delivery.error if delivery is not None else None,
            "created_at": payload["created_at"],
        }
        trigger = None
        action = route.retrain
        wanted = action is not None and (
            (action.when == "drift" and drift) or (action.when == "dataset_drift" and dataset_drift)
        )
        with self._store.write() as conn:
            sql.insert_alert(conn, alert)
            if wanted:
                assert action is not None
                stamp = now()
                trigger = {
                    "id": new_id(),
                    "monitor_id": mon["id"],
                    "execution_id": execution.id,
                    "alert_id": alert["id"],
                    "pipeline": action.pipeline,
                    "params": dict(action.params),
                    "reason": message,
                    "status": "pending",
                    "claimed_by": None,
                    "pipeline_run_id": None,
                    "error": None,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
                sql.insert_trigger(conn, trigger)
        return [{**alert, "retrain_trigger": trigger["id"] if trigger else None}]

    def alerts(self, monitor: str | None = None, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """Alert events (of one monitor, or all), newest first.

        Raises:
            NotFound: no such monitor.
        """
        mon_id = self.get_monitor(monitor)["id"] if monitor is not None else None
        with self._store.read() as conn:
            return sql.alerts(conn, mon_id, limit)

    def retrain_triggers(self, status: str | None = None) -> builtins.list[dict[str, Any]]:
        """Retrain triggers (``pending``, ``claimed``, ``completed``, ``failed``, or all)."""
        with self._store.read() as conn:
            return sql.triggers(conn, status, limit=1000)

    def claim_trigger(self, trigger_id: str, *, by: str | None = None) -> dict[str, Any]:
        """Take a pending retrain trigger, so that no one else runs it.

        Raises:
            NotFound: no such trigger.
            Conflict: it is not pending (someone took it, or it ran).
        """
        from wellml.config import current_user

        with self._store.write() as conn:
            row = sql.trigger_by_id(conn, trigger_id)
            if row is None:
                raise NotFound(f"no retrain trigger {trigger_id!r}")
            if not sql.claim_trigger(conn, trigger_id, by or current_user(), now()):
                raise Conflict(f"retrain trigger {trigger_id} is {row['status']}, not pending")
            row = sql.trigger_by_id(conn, trigger_id)
        assert row is not None
        return row

    def finish_trigger(
        self,
        trigger_id: str,
        *,
        status: str,
        pipeline_run_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record how a claimed retrain trigger ended (``completed`` or ``failed``).

        Raises:
            NotFound: no such trigger.
            InvalidInput: another status.
            Conflict: the trigger was not claimed.
        """
        if status not in ("completed", "failed"):
            raise InvalidInput(f"status must be completed or failed, not {status!r}")
        with self._store.write() as conn:
            row = sql.trigger_by_id(conn, trigger_id)
            if row is None:
                raise NotFound(f"no retrain trigger {trigger_id!r}")
            if row["status"] != "claimed":
                raise Conflict(f"retrain trigger {trigger_id} is {row['status']}, not claimed")
            sql.update_trigger(
                conn,
                trigger_id,
                status=status,
                pipeline_run_id=pipeline_run_id,
                error=error,
                updated_at=now(),
            )

    def dispatch_retraining(self, *, executor: str = "local") -> builtins.list[dict[str, Any]]:
        """Run the pipeline of every pending retrain trigger, one after another.

        Each trigger is claimed first, so two dispatchers never run the same one; its
        outcome (the pipeline run's id and status, or the error) is recorded on it.
        """
        outcomes = []
        for trig in self.retrain_triggers("pending"):
            try:
                self.claim_trigger(trig["id"], by="dispatch")
            except Conflict:
                continue
            try:
                run = self._ws.pipelines.run(
                    trig["pipeline"], trig["params"], executor=executor, raise_on_failure=False
                )
            except WellmlError as exc:
                self.finish_trigger(trig["id"], status="failed", error=str(exc))
                outcomes.append({"trigger": trig["id"], "status": "failed", "error": str(exc)})
                continue
            status = "completed" if run.status == "completed" else "failed"
            self.finish_trigger(
                trig["id"],
                status=status,
                pipeline_run_id=run.id,
                error=None if status == "completed" else f"pipeline run ended {run.status}",
            )
            outcomes.append({"trigger": trig["id"], "status": status, "pipeline_run": run.id})
        return outcomes

    # -- schedules ---------------------------------------------------------------------------

    def run_due(self, *, at: float | None = None) -> builtins.list[dict[str, Any]]:
        """Run every scheduled monitor whose latest cron slot has not run yet.

        A monitor's slot is claimed in the database before it runs, so a slot runs once even
        when several processes call this, or one restarts: a restarted loop sees the slot
        recorded and waits for the next. Missed slots are not caught up: only the latest due
        slot runs. The first slot of a new monitor is the first one after its creation.

        Args:
            at: The time to consider "now" (epoch seconds); default the clock.

        Returns:
            One entry per due monitor: ``monitor``, ``slot``, ``outcome`` (``ran``,
            ``skipped`` when there was no new data, ``failed``), ``execution`` and
            ``message``.
        """
        from croniter import croniter

        moment = time.time() if at is None else at
        results = []
        for mon in self.monitors():
            schedule = mon["config"].get("schedule")
            if not schedule:
                continue
            slot = float(croniter(schedule, moment).get_prev(float))
            if slot < mon["created_at"] or (
                mon["last_slot"] is not None and slot <= mon["last_slot"]
            ):
                continue
            with self._store.write() as conn:
                if not sql.claim_slot(conn, mon["id"], slot):
                    continue
            entry: dict[str, Any] = {"monitor": mon["name"], "slot": slot, "execution": None}
            try:
                result = self.run_monitor(mon["name"], trigger="schedule", slot=slot)
            except NotFound as exc:
                entry.update(outcome="skipped", message=str(exc))
            except WellmlError as exc:
                entry.update(outcome="failed", message=str(exc))
            else:
                entry.update(outcome="ran", execution=result.id, message=result.status)
            results.append(entry)
        return results

    # -- ground truth ------------------------------------------------------------------------

    def ingest_ground_truth(
        self,
        endpoint: str,
        data: pd.DataFrame | str | DatasetVersion,
        *,
        label: str = "label",
        inference_id: str = "inference_id",
        row: str = "row",
    ) -> GroundTruthIngest:
        """Store labels for an endpoint's inferences, to join with its captured traffic.

        The labels become the next version of the dataset ``ENDPOINT-ground-truth`` with the
        columns ``inference_id``, ``row`` and ``label``. A request may carry several rows
        under one inference id; ``row`` is the 0-based position within it (optional when each
        labelled inference id has one captured row). Labels that match no captured inference
        yet are kept and counted as unmatched.

        Args:
            endpoint: The endpoint that made the predictions.
            data: A data frame, or a dataset reference, with the id and label columns.
            label: The label column's name in ``data``.
            inference_id: The inference id column's name in ``data``.
            row: The row-position column's name in ``data``, when present.

        Raises:
            NotFound: no such endpoint or dataset.
            InvalidInput: missing columns, missing labels or ids, duplicated (id, row) pairs,
                or an id with several captured rows and no row position.
        """
        ep = self._ws.endpoints.get(endpoint)
        frame = data if isinstance(data, pd.DataFrame) else self._ws.data.load(data)
        lacking = [c for c in (inference_id, label) if c not in frame.columns]
        if lacking:
            raise InvalidInput(f"the ground truth lacks column(s) {', '.join(lacking)}")
        if len(frame) == 0:
            raise InvalidInput("the ground truth has no rows")
        truth = pd.DataFrame(
            {
                "inference_id": frame[inference_id].astype(str),
                "label": frame[label].to_numpy(),
            }
        )
        if frame[inference_id].isna().any() or frame[label].isna().any():
            raise InvalidInput("every ground-truth row needs an inference id and a label")
        captured = self._captured_ids(ep)
        if row in frame.columns:
            truth["row"] = pd.to_numeric(frame[row], errors="coerce").to_numpy()
            if truth["row"].isna().any() or (truth["row"] < 0).any():
                raise InvalidInput(f"{row!r} must hold row positions (0, 1, ...)")
            truth["row"] = truth["row"].astype("int64")
        else:
            sizes = captured.groupby("inference_id").size()
            multi = truth["inference_id"][truth["inference_id"].map(sizes).fillna(0) > 1]
            if len(multi):
                raise InvalidInput(
                    f"inference id {multi.iloc[0]!r} has {int(sizes[multi.iloc[0]])} captured "
                    f"rows; give a {row!r} column (the 0-based row within the request)"
                )
            truth["row"] = 0
        truth = truth[list(GROUND_TRUTH_COLUMNS)]
        doubled = truth.duplicated(subset=["inference_id", "row"])
        if doubled.any():
            first = truth[doubled].iloc[0]
            raise InvalidInput(
                f"inference id {first['inference_id']!r} row {first['row']} is labelled twice"
            )
        keys = captured[["inference_id", "row"]]
        matched_mask = (
            truth.merge(keys.drop_duplicates(), how="left", indicator=True)["_merge"]
            .eq("both")
            .to_numpy()
        )
        dv = self._ws.data.register(
            f"{ep.name}-ground-truth",
            truth,
            description=f"ground truth for inferences of endpoint {ep.name}",
            properties={"ground_truth_for": f"endpoint:{ep.name}"},
        )
        unmatched = truth.loc[~matched_mask, "inference_id"]
        return GroundTruthIngest(
            dataset_ref=dv.ref,
            rows=len(truth),
            matched=int(matched_mask.sum()),
            unmatched=int((~matched_mask).sum()),
            unmatched_examples=[str(x) for x in unmatched.head(5)],
        )

    def _capture_versions(self, ep: EndpointRecord) -> builtins.list[DatasetVersion]:
        self._ws.endpoints.capture_dataset(ep.name)
        return sorted(self._ws.data.versions(f"{ep.name}-capture"), key=lambda v: v.version)

    def _captured_ids(
        self, ep: EndpointRecord, versions: Sequence[DatasetVersion] | None = None
    ) -> pd.DataFrame:
        """Every captured (inference_id, row) of the endpoint (or of its capture ``versions``,
        all of them, oldest first), in capture order."""
        versions = self._capture_versions(ep) if versions is None else versions
        frames = [self._ws.data.load(v, columns=["inference_id"]) for v in versions]
        if not frames:
            return pd.DataFrame({"inference_id": pd.Series([], dtype=object), "row": []})
        ids = pd.concat(frames, ignore_index=True)
        ids["inference_id"] = ids["inference_id"].astype(str)
        ids["row"] = ids.groupby("inference_id").cumcount()
        return ids

    def _labelled(
        self, ep: EndpointRecord, mon: Mapping[str, Any], all_captured: bool
    ) -> tuple[DatasetVersion, builtins.list[DatasetVersion], pd.DataFrame, builtins.list[str]]:
        """New ground truth joined to the captured traffic, stored as ``ENDPOINT-labelled``."""
        name = f"{ep.name}-ground-truth"
        if not self._ws.data.versions(name):
            raise NotFound(
                f"no ground truth for endpoint {ep.name!r} yet; send it with "
                "ingest_ground_truth (wellml monitor ground-truth)"
            )
        truth_versions = self._new_versions(name, mon, all_captured)
        truth = self._load_all(truth_versions)
        truth["inference_id"] = truth["inference_id"].astype(str)
        captures = self._capture_versions(ep)
        if not captures:
            raise NotFound(f"endpoint {ep.name!r} has captured no traffic yet")
        captured = self._load_all(captures)
        captured["inference_id"] = captured["inference_id"].astype(str)
        captured["row"] = captured.groupby("inference_id").cumcount()
        captured = captured.drop(columns=[c for c in ("label",) if c in captured.columns])
        joined = truth.merge(captured, on=["inference_id", "row"], how="inner")
        if len(joined) == 0:
            raise NotFound(
                f"none of the {len(truth)} new ground-truth labels of {ep.name!r} matches a "
                "captured inference id"
            )
        if "event_time" in joined.columns:
            joined["event_time"] = joined["event_time"].astype(str)
        dv = self._ws.data.register(
            f"{ep.name}-labelled",
            joined,
            description=f"captured inferences of {ep.name} with their ground truth",
            parents=[*truth_versions, *captures],
        )
        return dv, [*truth_versions], joined, [dv.id, *(v.id for v in truth_versions)]

    # -- reports -----------------------------------------------------------------------------

    def report_html(self, execution_id: str, path: str | Path | None = None) -> Path:
        """Write an execution's report as self-contained HTML, with its JSON beside it.

        Args:
            execution_id: The execution.
            path: Where the HTML goes; default ``reports/MONITOR-ID.html`` in the workspace.
                The JSON is the same path with ``.json``.

        Raises:
            NotFound: no such execution.
        """
        from wellml.monitoring.html_report import render_html

        execution = self.execution(execution_id)
        base_stats = None
        mon = self.get_monitor(execution.monitor)
        base = self._monitor_baseline(mon)
        if base is not None:
            base_stats = base.statistics
        data = execution.to_dict()
        target = (
            Path(path)
            if path is not None
            else self._ws.root / "reports" / f"{execution.monitor}-{execution.id[:12]}.html"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(target, render_html(data, base_stats))
        _write_atomic(target.with_suffix(".json"), json.dumps(data, indent=1, default=str) + "\n")
        return target

    # -- data poisoning guard ----------------------------------------------------------------

    def poisoning_check(
        self,
        new_dataset: str | DatasetVersion,
        previous_dataset: str | DatasetVersion | None = None,
        *,
        key: str | Sequence[str],
        label: str,
        features: Sequence[str] | None = None,
        thresholds: Mapping[str, float] | None = None,
        raise_on_block: bool = False,
    ) -> PoisoningReport:
        """Compare a new training dataset version with the previous one, and store the result.

        See :mod:`wellml.monitoring.poisoning` for the signals. The report is stored (and
        linked in lineage from both versions) whether or not it blocks.

        Args:
            new_dataset: The version to check.
            previous_dataset: The version to compare with; default the version before
                ``new_dataset`` of the same dataset.
            key: Column(s) identifying a record across versions.
            label: The label column.
            features: Numeric columns for the outlier signal (default: all numeric ones).
            thresholds: Overrides of the default thresholds.
            raise_on_block: Raise instead of returning a blocked report.

        Returns:
            The report; ``blocked`` says whether the version should be used.

        Raises:
            NotFound: no such version, or no previous version.
            InvalidInput: missing columns or unknown thresholds.
            PoisonedDataError: blocked, with ``raise_on_block``.
        """
        from wellml.config import current_user
        from wellml.monitoring.poisoning import PoisoningCheck

        new = self._ws.data.get(new_dataset) if isinstance(new_dataset, str) else new_dataset
        if previous_dataset is None:
            if new.version <= 1:
                raise NotFound(f"{new.ref} has no previous version to compare with")
            previous = self._ws.data.get(f"{new.name}@{new.version - 1}")
        elif isinstance(previous_dataset, str):
            previous = self._ws.data.get(previous_dataset)
        else:
            previous = previous_dataset
        check = PoisoningCheck(key=key, label=label, features=features, thresholds=thresholds)
        report = check.compute(
            self._ws.data.load(new),
            self._ws.data.load(previous),
            new_ref=new.ref,
            previous_ref=previous.ref,
        )
        cid = new_id()
        from wellml.monitoring.drift import _jsonable

        stored = _jsonable({**report.to_dict(), "id": cid, "params": check.get_params()})
        with self._store.write() as conn:
            art = self._ws.lineage.add_artifact(
                conn,
                kind="poisoning_report",
                ref=f"poisoning-report:{cid}",
                properties={"blocked": report.blocked},
            )
            lin = self._ws.lineage.record_execution(
                conn,
                kind="poisoning_check",
                ref=f"poisoning-check:{cid}",
                name=f"poisoning check of {new.ref} against {previous.ref}",
                inputs=[
                    (new.lineage_artifact_id, "new"),
                    (previous.lineage_artifact_id, "previous"),
                ],
                outputs=[(art, "report")],
                properties={"blocked": report.blocked},
            )
            sql.insert_poisoning_check(
                conn,
                {
                    "id": cid,
                    "dataset_version_id": new.id,
                    "previous_version_id": previous.id,
                    "blocked": report.blocked,
                    "report": stored,
                    "created_at": now(),
                    "created_by": current_user(),
                    "lineage_execution_id": lin,
                },
            )
        report = replace(report, id=cid)
        if raise_on_block:
            report.raise_if_blocked()
        return report

    def poisoning_checks(self, dataset: str | DatasetVersion) -> builtins.list[dict[str, Any]]:
        """The stored poisoning checks of a dataset version, newest first."""
        dv = self._ws.data.get(dataset) if isinstance(dataset, str) else dataset
        with self._store.read() as conn:
            return sql.poisoning_checks_of(conn, dv.id)


# --------------------------------------------------------------------------------------------
# Helpers


def _check_schedule(schedule: str) -> None:
    from croniter import croniter

    if not isinstance(schedule, str) or not croniter.is_valid(schedule):
        raise InvalidInput(f"schedule {schedule!r} is not a cron expression (e.g. '0 * * * *')")


def _is_categorical(stats: Mapping[str, Any], base: Baseline, feature: str) -> bool:
    kind = stats.get("drift_kind")
    if kind is not None:
        return bool(kind == "categorical")
    # Baselines stored before drift kinds were recorded: strings and booleans.
    for c in base.constraints.get("features", []):
        if c["name"] == feature:
            return str(c.get("inferred_type", "")).lower() in ("string", "boolean")
    return False


def _drift_tests(tests: str, th: Mapping[str, float]) -> dict[str, Any]:
    from wellml.monitoring.drift import (
        PSI,
        AutoSelection,
        ChiSquare,
        JensenShannon,
        KolmogorovSmirnov,
        Wasserstein,
    )

    if tests == "statistical":
        return {
            "numeric_tests": [
                KolmogorovSmirnov(alpha=th["ks_alpha"], min_statistic=th["ks_min_statistic"]),
                PSI(threshold=th["psi"]),
            ],
            "categorical_tests": [
                ChiSquare(alpha=th["chi2_alpha"], min_effect=th["chi2_min_effect"]),
                PSI(threshold=th["psi"]),
            ],
        }
    if tests == "distance":
        return {
            "numeric_tests": [Wasserstein(threshold=th["wasserstein"])],
            "categorical_tests": [JensenShannon(threshold=th["jensen_shannon"])],
        }
    return {
        "selection": AutoSelection(
            small_sample=int(th["small_sample"]),
            ks_alpha=th["ks_alpha"],
            ks_min_statistic=th["ks_min_statistic"],
            chi2_alpha=th["chi2_alpha"],
            chi2_min_effect=th["chi2_min_effect"],
            wasserstein=th["wasserstein"],
            jensen_shannon=th["jensen_shannon"],
        )
    }


def _same_label(values: pd.Series, label: Any) -> pd.Series:
    def key(v: Any) -> str:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return str(v)

    return values.map(key) == key(label)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
