"""Monitors of endpoints: a baseline from the training data, drift checks of captured data."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wellml.errors import Conflict, InvalidInput, NotFound
from wellml.names import check_name
from wellml.store import monitoring as sql
from wellml.store.metadata import new_id, now

if TYPE_CHECKING:
    from wellml.data.catalog import DatasetVersion
    from wellml.workspace import Workspace

MONITOR_KINDS = ("data_drift",)
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks_alpha": 0.05,
    "ks_min_statistic": 0.1,
    "chi2_alpha": 0.05,
    "chi2_min_effect": 0.1,
    "psi": 0.2,
}


@dataclass(frozen=True)
class Baseline:
    """Statistics and constraints of the reference data a monitor compares against."""

    id: str
    dataset_version_id: str
    dataset_ref: str
    features: list[str]
    statistics: dict[str, Any]
    constraints: dict[str, Any]
    created_at: float
    lineage_artifact_id: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "dataset": self.dataset_ref,
            "features": self.features,
            "statistics": self.statistics,
            "constraints": self.constraints,
            "created_at": self.created_at,
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

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "monitor": self.monitor,
            "endpoint": self.endpoint,
            "dataset": self.dataset_ref,
            "baseline": self.baseline_ref,
            "status": self.status,
            "drifted_features": self.drifted_features,
            "violations": self.violations,
            "report": self.report,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


def _constraints(profile: dict[str, Any], features: list[str]) -> dict[str, Any]:
    """Suggested constraints in the spirit of Model Monitor's constraints file."""
    cols = {c["name"]: c for c in profile["columns"]}
    out = []
    for f in features:
        c = cols[f]
        entry: dict[str, Any] = {
            "name": f,
            "inferred_type": c["logical_type"],
            "completeness": 1.0 - (c["missing_fraction"] or 0.0),
        }
        if c["logical_type"] in ("integer", "float") and c.get("min") is not None:
            entry["num_constraints"] = {"is_non_negative": c["min"] >= 0}
        top = c.get("top_values")
        if c["logical_type"] in ("string", "boolean") and top and c["distinct"] <= len(top):
            entry["string_constraints"] = {"domains": [v for v, _ in c["top_values"]]}
        out.append(entry)
    return {"version": 0, "features": out}


class Monitoring:
    """Baselines, monitors and their executions in a workspace."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._store = ws.metadata

    # -- baselines ---------------------------------------------------------------------------

    def baseline(
        self, dataset: str | DatasetVersion, *, features: list[str] | None = None
    ) -> Baseline:
        """The baseline of a dataset version over ``features`` (all columns by default),
        computed once and reused.

        Raises:
            NotFound: no such dataset version or column.
        """
        dv = self._ws.data.get(dataset) if isinstance(dataset, str) else dataset
        feats = list(features) if features is not None else dv.columns
        missing = [f for f in feats if f not in dv.columns]
        if missing:
            raise NotFound(f"{dv.ref} has no column(s) {', '.join(missing)}")
        with self._store.read() as conn:
            row = sql.baseline_for_dataset(conn, dv.id, feats)
        if row is not None:
            return self._baseline(row)
        profile = self._ws.data.profile(dv).to_dict()
        stats = {
            "dataset": {"item_count": profile["num_rows"]},
            "features": [c for c in profile["columns"] if c["name"] in feats],
        }
        bid = new_id()
        with self._store.write() as conn:
            art = self._ws.lineage.add_artifact(conn, kind="baseline", ref=f"baseline:{bid}")
            self._ws.lineage.record_execution(
                conn,
                kind="baseline",
                ref=f"baseline-run:{bid}",
                name=f"baseline of {dv.ref}",
                inputs=[(dv.lineage_artifact_id, "reference")],
                outputs=[(art, "baseline")],
            )
            row = {
                "id": bid,
                "dataset_version_id": dv.id,
                "features": feats,
                "statistics": stats,
                "constraints": _constraints(profile, feats),
                "created_at": now(),
                "lineage_artifact_id": art,
            }
            sql.insert_baseline(conn, row)
        return self._baseline(row)

    def _baseline(self, row: dict[str, Any]) -> Baseline:
        dv = self._ws.data.by_id(row["dataset_version_id"])
        return Baseline(
            row["id"],
            dv.id,
            dv.ref,
            list(row["features"]),
            row["statistics"],
            row["constraints"],
            row["created_at"],
            row["lineage_artifact_id"],
        )

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

    # -- monitors ----------------------------------------------------------------------------

    def create_monitor(
        self,
        endpoint: str,
        *,
        name: str | None = None,
        baseline: Baseline | None = None,
        thresholds: dict[str, float] | None = None,
        alert_webhook: str | None = None,
        schedule: str | None = None,
    ) -> dict[str, Any]:
        """Create (or update) the data-drift monitor of an endpoint.

        The default baseline is the training data of the model version the endpoint serves,
        over the model's input columns.

        Raises:
            NotFound: no such endpoint, or no training data in lineage.
            InvalidInput: unknown threshold names.
        """
        ep = self._ws.endpoints.get(endpoint)
        name = check_name(name or f"{ep.name}-drift", "monitor name")
        unknown = set(thresholds or {}) - set(DEFAULT_THRESHOLDS)
        if unknown:
            raise InvalidInput(
                f"unknown threshold(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(DEFAULT_THRESHOLDS)}"
            )
        if baseline is None:
            mv = self._ws.registry.by_id(ep.model_version_id)
            baseline = self.baseline(self.training_data(mv.ref), features=mv.signature.columns)
        config = {
            "thresholds": {**DEFAULT_THRESHOLDS, **(thresholds or {})},
            "alert_webhook": alert_webhook,
            "schedule": schedule,
            "model_version": ep.model_version,
        }
        with self._store.write() as conn:
            row = sql.monitor_by_name(conn, name)
            if row is None:
                row = {
                    "id": new_id(),
                    "name": name,
                    "kind": "data_drift",
                    "endpoint_id": ep.id,
                    "baseline_id": baseline.id,
                    "config": config,
                    "created_at": now(),
                }
                sql.insert_monitor(conn, row)
            else:
                if row["endpoint_id"] != ep.id:
                    raise Conflict(f"monitor {name!r} watches another endpoint")
                sql.update_monitor(conn, row["id"], baseline_id=baseline.id, config=config)
                row = {**row, "baseline_id": baseline.id, "config": config}
        return {**row, "endpoint": ep.name, "baseline": baseline.to_dict()}

    def monitors(self) -> list[dict[str, Any]]:
        """Every monitor."""
        with self._store.read() as conn:
            return sql.list_monitors(conn)

    def run(
        self, endpoint: str, *, monitor: str | None = None, all_captured: bool = False
    ) -> MonitorExecution:
        """Check the endpoint's newly captured traffic for drift against the baseline.

        The captured files not yet checked become a dataset version (``all_captured`` uses the
        latest capture version again when nothing new arrived); the result is stored with its
        violations and linked in lineage from the baseline and that data.

        Raises:
            NotFound: no such endpoint, or nothing has been captured.
        """
        from wellml.monitoring.drift import detect_drift

        ep = self._ws.endpoints.get(endpoint)
        name = monitor or f"{ep.name}-drift"
        with self._store.read() as conn:
            mon = sql.monitor_by_name(conn, name)
        if mon is None:
            mon = self.create_monitor(ep.name, name=name)
        with self._store.read() as conn:
            brow = sql.baseline_by_id(conn, mon["baseline_id"])
        assert brow is not None
        base = self._baseline(brow)
        current = self._ws.endpoints.capture_dataset(ep.name)
        if current is None:
            try:
                current = self._ws.data.get(f"{ep.name}-capture")
            except NotFound:
                raise NotFound(f"endpoint {ep.name!r} has captured no traffic yet") from None
            if not all_captured:
                raise NotFound(
                    f"no new traffic captured at {ep.name!r} since the last check "
                    f"({current.ref}); pass --all to check it again"
                )
        started = time.time()
        cols = [f for f in base.features if f in current.columns]
        missing = [f for f in base.features if f not in current.columns]
        reference = self._ws.data.load(
            self._ws.data.by_id(base.dataset_version_id), columns=base.features
        )
        cur = self._ws.data.load(current, columns=cols)
        th = {**DEFAULT_THRESHOLDS, **mon["config"].get("thresholds", {})}
        categorical = [
            c["name"]
            for c in base.constraints["features"]
            if c["inferred_type"] in ("string", "boolean")
        ]
        report = detect_drift(
            reference[cols],
            cur,
            features=cols,
            categorical=[c for c in categorical if c in cols],
            **_tests(th),
        )
        violations = [
            {
                "feature_name": f,
                "constraint_check_type": "missing_column_check",
                "description": f"column {f} is missing from the captured data",
            }
            for f in missing
        ] + [
            {
                "feature_name": fd.feature,
                "constraint_check_type": "baseline_drift_check",
                "description": f"{fd.method} {fd.statistic:.4f} beyond threshold {fd.threshold}"
                + (f" (p={fd.p_value:.3g})" if fd.p_value is not None else ""),
            }
            for fd in report.features
            if fd.drifted
        ]
        status = "completed-with-violations" if violations else "completed"
        eid = new_id()
        ended = time.time()
        report_dict = report.to_dict()
        with self._store.write() as conn:
            out = self._ws.lineage.add_artifact(
                conn,
                kind="monitor_report",
                ref=f"monitor-report:{eid}",
                properties={"status": status, "drifted": list(report.drifted_features)},
            )
            lin = self._ws.lineage.record_execution(
                conn,
                kind="monitor",
                ref=f"monitor-run:{eid}",
                name=f"{name} on {current.ref}",
                inputs=[
                    (base.lineage_artifact_id, "baseline"),
                    (current.lineage_artifact_id, "current"),
                ],
                outputs=[(out, "report")],
                started_at=started,
                properties={"monitor": name, "endpoint": ep.name, "status": status},
            )
            sql.insert_execution(
                conn,
                {
                    "id": eid,
                    "monitor_id": mon["id"],
                    "dataset_version_id": current.id,
                    "status": status,
                    "report": report_dict,
                    "violations": violations,
                    "started_at": started,
                    "ended_at": ended,
                    "lineage_execution_id": lin,
                },
            )
        return MonitorExecution(
            eid,
            name,
            ep.name,
            current.ref,
            base.dataset_ref,
            status,
            list(report.drifted_features),
            violations,
            report_dict,
            started,
            ended,
        )

    def executions(self, monitor: str, limit: int = 20) -> list[dict[str, Any]]:
        """A monitor's executions, newest first.

        Raises:
            NotFound: no such monitor.
        """
        with self._store.read() as conn:
            mon = sql.monitor_by_name(conn, monitor)
            if mon is None:
                raise NotFound(f"no monitor named {monitor!r}")
            return sql.executions_of(conn, mon["id"], limit)


def _tests(th: dict[str, float]) -> dict[str, Any]:
    from wellml.monitoring.drift import PSI, ChiSquare, KolmogorovSmirnov

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
