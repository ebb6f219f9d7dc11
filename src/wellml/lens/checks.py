"""Automated evidence checks, one function per practice, registered in :data:`CHECKS`.

A check reads records only (through :class:`Evidence`) and never calls a capability. It
returns a :class:`CheckOutcome` naming the records it examined and those that failed; when
nothing is in scope it returns ``not-evaluated`` with the reason, never a pass.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wellml.errors import WellmlError
from wellml.store import lens as sql

if TYPE_CHECKING:
    from wellml.lineage.graph import LineageGraph
    from wellml.workspace import Workspace

DAY = 86400.0


@dataclass(frozen=True)
class CheckOutcome:
    """What a check found."""

    status: str  # pass | fail | not-evaluated
    reason: str
    evidence: list[str] = field(default_factory=list)
    failing: list[str] = field(default_factory=list)


Check = Callable[["Evidence"], CheckOutcome]
CHECKS: dict[str, Check] = {}


def check(practice_id: str) -> Callable[[Check], Check]:
    """Register a check for a practice."""

    def register(fn: Check) -> Check:
        CHECKS[practice_id] = fn
        return fn

    return register


class Evidence:
    """Read-only, cached access to the records the checks need."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.spec = ws.spec
        self.now = time.time()

    def threshold(self, key: str, default: float) -> float:
        """A lens threshold from the spec, else the default."""
        return float(self.spec.lens.thresholds.get(key, default))

    @functools.cached_property
    def model_versions(self) -> list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            rows = sql.model_versions_all(conn)
        for r in rows:
            r["ref"] = f"model:{r['name']}@{r['version']}"
        return rows

    @functools.cached_property
    def versions_by_id(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self.model_versions}

    @functools.cached_property
    def approved_versions(self) -> list[dict[str, Any]]:
        return [r for r in self.model_versions if r["status"] == "approved"]

    @functools.cached_property
    def endpoints(self) -> list[dict[str, Any]]:
        """The endpoints in scope: every deployed endpoint (a stopped local server is still
        the deployed configuration)."""
        with self.ws.metadata.read() as conn:
            return sql.endpoints_all(conn)

    @functools.cached_property
    def deployments(self) -> list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            return sql.deployments_all(conn)

    @functools.cached_property
    def serving_versions(self) -> list[dict[str, Any]]:
        ids = {e["model_version_id"] for e in self.endpoints}
        return [self.versions_by_id[i] for i in sorted(ids) if i in self.versions_by_id]

    @functools.cached_property
    def runs(self) -> list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            return sql.runs_all(conn)

    @functools.cached_property
    def runs_by_exec(self) -> dict[str, dict[str, Any]]:
        return {r["lineage_execution_id"]: r for r in self.runs}

    @functools.cached_property
    def dataset_versions(self) -> dict[str, dict[str, Any]]:
        """By lineage artifact id."""
        with self.ws.metadata.read() as conn:
            return {r["lineage_artifact_id"]: r for r in sql.dataset_versions_all(conn)}

    @functools.cached_property
    def profiled(self) -> dict[str, float]:
        with self.ws.metadata.read() as conn:
            return sql.profiled_version_ids(conn)

    @functools.cached_property
    def quality(self) -> list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            return sql.quality_results_all(conn)

    @functools.cached_property
    def monitors(self) -> list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            return sql.monitors_all(conn)

    @functools.cached_property
    def monitor_executions(self) -> list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            return sql.monitor_executions_all(conn, since=self.now - 30 * DAY)

    @functools.cached_property
    def clarify_reports(self) -> list[dict[str, Any]]:
        """Clarify reports in lineage, with their properties (model, dataset, kinds)."""
        with self.ws.metadata.read() as conn:
            return sql.artifacts_of_kind(conn, "clarify_report")

    @functools.cached_property
    def captured_rows_7d(self) -> dict[str, int]:
        """Rows captured per endpoint id in the last 7 days."""
        with self.ws.metadata.read() as conn:
            return sql.capture_rows_since(conn, self.now - 7 * DAY)

    @functools.cached_property
    def review_queues(self) -> dict[str, dict[str, Any]]:
        """Review queues by endpoint id."""
        with self.ws.metadata.read() as conn:
            return {q["endpoint_id"]: q for q in sql.review_queues_all(conn)}

    @functools.cached_property
    def review_items(self) -> list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            return sql.review_items_all(conn)

    @functools.cached_property
    def tokens(self) -> list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            return sql.tokens_all(conn)

    @functools.cached_property
    def feature_definitions(self) -> list[dict[str, Any]]:
        """Every version of every feature store definition, with ``ref`` (kind:name@N)."""
        with self.ws.metadata.read() as conn:
            rows = sql.feature_definitions_all(conn)
        for r in rows:
            r["ref"] = f"{r['kind']}:{r['name']}@{r['version']}"
        return rows

    @functools.cached_property
    def materializations(self) -> list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            return sql.materializations_all(conn)

    @functools.cached_property
    def parity_checks(self) -> list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            return sql.executions_of_kind(conn, "feature_parity")

    def upstream_views(self, version: dict[str, Any]) -> list[dict[str, Any]]:
        """The feature view versions upstream of a model version, per lineage."""
        refs = self.upstream(version["ref"]).refs()
        return [
            d for d in self.feature_definitions if d["kind"] == "feature_view" and d["ref"] in refs
        ]

    @functools.cache  # noqa: B019 - one Evidence lives for one review
    def upstream(self, ref: str) -> LineageGraph:
        return self.ws.lineage.upstream(ref)

    @functools.cache  # noqa: B019
    def downstream(self, ref: str) -> LineageGraph:
        return self.ws.lineage.downstream(ref)

    def training_run(self, version: dict[str, Any]) -> dict[str, Any] | None:
        """The run that produced a model version, from lineage."""
        graph = self.upstream(version["ref"])
        for e in graph.edges:
            if e.role == "model" and e.target == version["lineage_artifact_id"]:
                return self.runs_by_exec.get(e.source)
        return None

    def run_inputs(self, run: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
        """``(dataset version row, role)`` of each dataset a run read, from lineage."""
        graph = self.upstream(f"run:{run['id']}")
        out = []
        for e in graph.edges:
            if e.target == run["lineage_execution_id"] and e.source in self.dataset_versions:
                out.append((self.dataset_versions[e.source], e.role))
        return out

    def package_verifies(self, version: dict[str, Any]) -> str | None:
        """None when the version's package and files match their digests, else the problem."""
        import json

        try:
            manifest = json.loads(self.ws.artifacts.get_bytes(version["package_digest"]))
            for digest in manifest["files"].values():
                self.ws.artifacts.verify(digest)
        except WellmlError as exc:
            return str(exc)
        return None

    def load_version(self, dv: dict[str, Any], columns: list[str]) -> Any:
        """A dataset version's columns as a DataFrame, read from its verified Parquet blob."""
        import pyarrow.parquet as pq

        return pq.read_table(
            self.ws.artifacts.local_path(dv["artifact_digest"]), columns=columns
        ).to_pandas()


def _outcome(
    examined: list[str], failing: dict[str, str], *, what: str, needed: float = 1.0
) -> CheckOutcome:
    if not examined:
        return CheckOutcome("not-evaluated", f"nothing in scope: no {what} yet")
    ok = len(examined) - len(failing)
    share = ok / len(examined)
    if share >= needed and not (needed == 1.0 and failing):
        return CheckOutcome("pass", f"{ok} of {len(examined)} {what} meet the check", examined)
    details = "; ".join(f"{k}: {v}" for k, v in list(failing.items())[:5])
    more = f" (+{len(failing) - 5} more)" if len(failing) > 5 else ""
    return CheckOutcome(
        "fail",
        f"{ok} of {len(examined)} {what} meet the check (need {needed:.0%}); {details}{more}",
        examined,
        sorted(failing),
    )


# --- operational excellence ---------------------------------------------------------------------


def _lineage_gaps(ev: Evidence, version: dict[str, Any]) -> list[str]:
    gaps = []
    graph = ev.upstream(version["ref"])
    if not any(n.kind == "dataset_version" for n in graph.nodes):
        gaps.append("no dataset version upstream")
    run = ev.training_run(version)
    if run is None:
        gaps.append("no training run")
    else:
        if not run["n_params"]:
            gaps.append("training run has no params")
        if not run["code_commit"]:
            gaps.append("no code commit recorded")
        elif run["code_dirty"]:
            gaps.append("code had uncommitted changes")
        if not run["environment_id"]:
            gaps.append("no environment recorded")
    return gaps


@check("MLOE-07")
def lineage_tracked(ev: Evidence) -> CheckOutcome:
    """Approved and serving model versions trace back to data, run, code and environment."""
    failing: dict[str, str] = {}
    serving = {v["id"] for v in ev.serving_versions}
    scope = {v["id"]: v for v in ev.approved_versions + ev.serving_versions}
    for v in scope.values():
        gaps = _lineage_gaps(ev, v)
        if gaps:
            failing[v["ref"]] = ", ".join(gaps)
    for ep in ev.endpoints:
        served = ev.versions_by_id.get(ep["model_version_id"])
        if served is None or f"endpoint:{ep['name']}" not in ev.downstream(served["ref"]).refs():
            failing[f"endpoint:{ep['name']}"] = "no deployment edge from its model version"
    examined = [v["ref"] for v in scope.values()] + [f"endpoint:{e['name']}" for e in ev.endpoints]
    serving_fail = [
        r
        for r in failing
        if r.startswith("endpoint:") or any(ev.versions_by_id[i]["ref"] == r for i in serving)
    ]
    approved_refs = [v["ref"] for v in ev.approved_versions]
    approved_ok = sum(1 for r in approved_refs if r not in failing)
    need = ev.threshold("MLOE-07.approved_share", 0.95)
    if (
        examined
        and not serving_fail
        and (not approved_refs or approved_ok / len(approved_refs) >= need)
    ):
        return CheckOutcome(
            "pass",
            f"{len(scope)} model version(s) and {len(ev.endpoints)} "
            "endpoint(s) have complete lineage",
            examined,
        )
    return _outcome(examined, failing, what="approved or serving versions and endpoints")


@check("MLOE-10")
def data_profiled(ev: Evidence) -> CheckOutcome:
    """Data feeding registered models was profiled and quality-checked before training."""
    failing: dict[str, str] = {}
    examined: list[str] = []
    for v in ev.model_versions:
        run = ev.training_run(v)
        if run is None:
            continue
        for dv, _role in ev.run_inputs(run):
            ref = f"dataset:{dv['name']}@{dv['version']}"
            if ref in examined:
                continue
            examined.append(ref)
            profiled_at = ev.profiled.get(dv["id"])
            checks = [q for q in ev.quality if q["dataset_version_id"] == dv["id"]]
            if profiled_at is None or profiled_at > run["started_at"]:
                failing[ref] = "not profiled before training"
            elif not any(q["created_at"] <= run["started_at"] for q in checks):
                failing[ref] = "no quality rules evaluated before training"
            elif any(_critical_failure(q["report"]) for q in checks):
                failing[ref] = "a critical quality rule failed"
    return _outcome(examined, failing, what="training dataset versions")


def _critical_failure(report: dict[str, Any]) -> bool:
    return any(
        r.get("severity") == "critical" and not r.get("passed", True)
        for r in report.get("results", [])
    )


@check("MLOE-11")
def versions_tracked(ev: Evidence) -> CheckOutcome:
    """Runs that made registered models point at immutable data versions, clean code and an
    environment, and every model package still verifies."""
    window = ev.now - ev.threshold("MLOE-11.window_days", 30) * DAY
    failing: dict[str, str] = {}
    model_runs: set[str] = set()
    examined = []
    for v in ev.model_versions:
        problems = []
        run = ev.training_run(v)
        bad_pkg = ev.package_verifies(v)
        if bad_pkg:
            problems.append(f"package does not verify ({bad_pkg})")
        if run is not None:
            model_runs.add(run["id"])
            if run["started_at"] >= window:
                problems += _run_gaps(ev, run)
        examined.append(v["ref"])
        if problems:
            failing[v["ref"]] = ", ".join(problems)
    others = [
        r
        for r in ev.runs
        if r["id"] not in model_runs and r["started_at"] >= window and r["kind"] == "train"
    ]
    other_bad = [r for r in others if _run_gaps(ev, r)]
    need = ev.threshold("MLOE-11.other_runs_share", 0.9)
    if others and (len(others) - len(other_bad)) / len(others) < need:
        failing[f"{len(other_bad)} other runs"] = "missing data versions, clean commit or env"
    examined += [f"run:{r['id']}" for r in others]
    return _outcome(examined, failing, what="model versions and runs")


def _run_gaps(ev: Evidence, run: dict[str, Any]) -> list[str]:
    gaps = []
    if not ev.run_inputs(run):
        gaps.append(f"run {run['id'][:8]} records no dataset version input")
    if not run["code_commit"]:
        gaps.append(f"run {run['id'][:8]} has no code commit")
    elif run["code_dirty"]:
        gaps.append(f"run {run['id'][:8]} ran uncommitted code")
    if not run["environment_id"]:
        gaps.append(f"run {run['id'][:8]} has no environment")
    return gaps


# --- reliability ------------------------------------------------------------------------------


@check("MLREL-08")
def validated_with_relevant_data(ev: Evidence) -> CheckOutcome:
    """Approved versions were evaluated on recent data that shares no rows with training."""
    import pandas as pd

    recent_days = ev.threshold("MLREL-08.recent_days", 30)
    failing: dict[str, str] = {}
    examined = []
    for v in ev.approved_versions:
        examined.append(v["ref"])
        run = ev.training_run(v)
        if run is None:
            failing[v["ref"]] = "no training run in lineage"
            continue
        inputs = ev.run_inputs(run)
        train = [dv for dv, role in inputs if role == "train"]
        evals = [dv for dv, role in inputs if role in ("validation", "test", "evaluation")]
        if not evals:
            failing[v["ref"]] = "no evaluation dataset recorded on its run"
            continue
        if not v["metrics"]:
            failing[v["ref"]] = "no evaluation metrics recorded on the version"
            continue
        problems = []
        for e in evals:
            for t in train:
                if e["content_digest"] == t["content_digest"]:
                    problems.append(
                        f"evaluation data {e['name']}@{e['version']} is the training data"
                    )
                    continue
                share = _row_overlap(ev, t, e, pd)
                if share >= 0.001:
                    problems.append(f"{share:.1%} of evaluation rows also in training")
            approved_at = v["status_at"] or ev.now
            if approved_at - e["created_at"] > recent_days * DAY:
                problems.append(f"evaluation data older than {recent_days:.0f} days at approval")
        if problems:
            failing[v["ref"]] = "; ".join(problems)
    return _outcome(examined, failing, what="approved model versions")


def _row_overlap(ev: Evidence, train: dict[str, Any], evald: dict[str, Any], pd: Any) -> float:
    common = [c["name"] for c in evald["schema"] if c in train["schema"]]
    if not common:
        return 0.0
    a = ev.load_version(train, common)
    b = ev.load_version(evald, common)
    b = b.sample(min(len(b), 10_000), random_state=0) if len(b) else b
    ha = set(pd.util.hash_pandas_object(a, index=False).tolist())
    hb = pd.util.hash_pandas_object(b, index=False)
    return float(hb.isin(ha).mean()) if len(hb) else 0.0


@check("MLREL-13")
def recoverable_endpoint(ev: Evidence) -> CheckOutcome:
    """Each endpoint can go back to a known-good version, rolls back by itself, keeps its
    configuration history, and has had a rollback (real or drill) recently."""
    failing: dict[str, str] = {}
    examined = []
    for ep in ev.endpoints:
        ref = f"endpoint:{ep['name']}"
        examined.append(ref)
        deps = [d for d in ev.deployments if d["endpoint_id"] == ep["id"]]
        problems = []
        good = [d for d in deps[:-1] if d["outcome"] not in ("failed", "rolled-back")]
        known_good = (
            ev.versions_by_id.get((good[-1] if good else deps[-1])["model_version_id"])
            if deps
            else None
        )
        if known_good is None:
            problems.append("no known-good model version in the registry")
        else:
            bad = ev.package_verifies(known_good)
            if bad:
                problems.append(f"known-good version {known_good['ref']} does not verify")
        if not ep["config"].get("auto_rollback"):
            problems.append("automatic rollback is not configured")
        if not deps:
            problems.append("no configuration history")
        window = ev.now - ev.threshold("MLREL-13.rollback_days", 180) * DAY
        if not any(
            (d["origin"] in ("rollback", "rollback-drill") or d["outcome"] == "rolled-back")
            and d["started_at"] >= window
            for d in deps
        ):
            problems.append("no rollback or rollback drill in 180 days")
        if problems:
            failing[ref] = ", ".join(problems)
    return _outcome(examined, failing, what="endpoints")


ROLLOUT_STRATEGIES = ("canary", "linear")


@check("MLREL-11")
def deployment_strategy(ev: Evidence) -> CheckOutcome:
    """Every rollout to a running endpoint in the window shifted traffic gradually (canary or
    linear), smoke-tested the new variants before traffic, baked with alarms that roll back,
    and was rolled back whenever an alarm fired."""
    window = ev.now - ev.threshold("MLREL-11.window_days", 90) * DAY
    names = {e["id"]: e["name"] for e in ev.endpoints}
    failing: dict[str, str] = {}
    examined = []
    for d in ev.deployments:
        if d["endpoint_id"] not in names or d["started_at"] < window:
            continue
        if d["origin"] in ("rollback", "rollback-drill"):
            continue  # going back to a known-good version is the recovery, not a rollout
        steps = d.get("steps") or []
        actions = [s.get("action") for s in steps]
        if "traffic" not in actions and d["outcome"] != "rolled-back":
            continue  # applied to a stopped endpoint, or the endpoint's first version
        ref = f"deployment:{names[d['endpoint_id']]}#{d['id'][:12]}"
        examined.append(ref)
        policy = (d.get("config") or {}).get("policy") or {}
        problems = []
        if (d.get("strategy") or policy.get("strategy")) not in ROLLOUT_STRATEGIES:
            problems.append(f"strategy {d.get('strategy') or policy.get('strategy')}")
        if "smoke-test" not in actions:
            problems.append("no smoke test before traffic")
        if not policy.get("bake_seconds") or ("bake" not in actions and "alarm" not in actions):
            problems.append("no bake period")
        if not policy.get("alarms"):
            problems.append("no rollback alarms")
        if "alarm" in actions and d["outcome"] != "rolled-back":
            problems.append(f"an alarm fired but the outcome is {d['outcome']}")
        if problems:
            failing[ref] = ", ".join(problems)
    return _outcome(examined, failing, what="rollouts to running endpoints")


@check("MLREL-12")
def endpoint_autoscaling(ev: Evidence) -> CheckOutcome:
    """Every production variant of every endpoint autoscales: min replicas of 1 (2 when the
    endpoint's availability SLO is 99.9% or more), max above min, and a target of in-flight
    requests per replica. Traffic history is not recorded, so whether scaling kept up with
    load is not judged here; the scaling events are in ``wellml endpoints history``."""
    failing: dict[str, str] = {}
    examined = []
    for ep in ev.endpoints:
        ref = f"endpoint:{ep['name']}"
        examined.append(ref)
        declared = ev.spec.endpoints.get(ep["name"])
        availability = float((declared.slo if declared else {}).get("availability", 0.0))
        least = 2 if availability >= 99.9 else 1
        problems = []
        for v in (ep["config"] or {}).get("variants") or []:
            scaling = v.get("autoscaling")
            if not scaling:
                problems.append(f"variant {v['name']} does not autoscale")
                continue
            if scaling["min_replicas"] < least:
                problems.append(f"variant {v['name']} may scale to {scaling['min_replicas']}")
            if scaling["max_replicas"] <= scaling["min_replicas"]:
                problems.append(f"variant {v['name']} cannot scale out (max = min)")
            if not scaling.get("target_inflight"):
                problems.append(f"variant {v['name']} has no scaling target")
        if not (ep["config"] or {}).get("variants"):
            problems.append("no production variants")
        if problems:
            failing[ref] = ", ".join(problems)
    return _outcome(examined, failing, what="endpoints")


@check("MLSUS-14")
def shared_endpoints(ev: Evidence) -> CheckOutcome:
    """Low-traffic models share multi-model endpoints: of the models on multi-model endpoints
    and those alone on an endpoint that answered fewer than ``MLSUS-14.rows_per_minute`` (1)
    rows a minute over the last 7 days (captured rows scaled by the capture share), at least
    80% are on multi-model endpoints. Every model wellml serves runs in the same serving
    environment, so any of them can share one."""
    limit = ev.threshold("MLSUS-14.rows_per_minute", 1.0)
    window = ev.now - 7 * DAY
    captured = ev.captured_rows_7d
    failing: dict[str, str] = {}
    examined = []
    unknown = []
    for ep in ev.endpoints:
        variants = (ep["config"] or {}).get("variants") or []
        shared = [v for v in variants if v.get("multi_model")]
        if shared:
            for v in shared:
                examined += [
                    f"endpoint:{ep['name']}/{m}" for m in v["multi_model"].get("models", [])
                ]
            continue
        share = float((ep["config"] or {}).get("capture_percent", 0.0)) / 100
        if share <= 0:
            unknown.append(ep["name"])
            continue
        minutes = max(1.0, (ev.now - max(window, ep["created_at"])) / 60)
        rate = captured.get(ep["id"], 0) / share / minutes
        if rate < limit:
            ref = f"endpoint:{ep['name']}"
            examined.append(ref)
            failing[ref] = f"a dedicated endpoint for {rate:.2f} rows a minute"
    outcome = _outcome(examined, failing, what="low-traffic models", needed=0.8)
    if unknown:
        note = f"; traffic unknown (no capture) for {', '.join(sorted(unknown))}"
        return dataclasses.replace(outcome, reason=outcome.reason + note)
    return outcome


# --- performance ------------------------------------------------------------------------------


@check("MLPER-14")
def drift_monitored(ev: Evidence) -> CheckOutcome:
    """Each endpoint has a data-drift monitor with thresholds, an alert route and a schedule it
    keeps, whose baseline is the training data of the version deployed now."""
    failing: dict[str, str] = {}
    examined = []
    for ep in ev.endpoints:
        ref = f"endpoint:{ep['name']}"
        examined.append(ref)
        mons = [
            m for m in ev.monitors if m["endpoint_id"] == ep["id"] and m["kind"] == "data_drift"
        ]
        if not mons:
            failing[ref] = "no data-drift monitor"
            continue
        problems_per_monitor = [_monitor_problems(ev, ep, m) for m in mons]
        if all(problems_per_monitor):
            failing[ref] = "; ".join(p for p in problems_per_monitor[0])
    return _outcome(examined, failing, what="endpoints")


EXPLAINABILITY_LEVELS = ("none", "global", "local")


@check("MLPER-13")
def explainability_evaluated(ev: Evidence) -> CheckOutcome:
    """Each serving model version has the explainability agreed in ``governance.explainability``
    (MLOE-02): for ``global`` or ``local``, a global SHAP report of that version and, on each
    endpoint serving it, a scheduled feature-attribution drift monitor that ran in 30 days;
    for ``local`` also training data in lineage, which the endpoint's explanations on request
    (``X-Amzn-SageMaker-Enable-Explanations``) take their baseline from."""
    agreed = ev.spec.governance.explainability
    level = str(agreed.get("level", "")).strip().lower()
    if level not in EXPLAINABILITY_LEVELS:
        return CheckOutcome(
            "fail",
            "wellml.yaml declares no governance.explainability.level (none, global or local)"
            if not level
            else f"unknown governance.explainability.level {level!r}",
        )
    if level == "none":
        if not str(agreed.get("rationale", "")).strip():
            return CheckOutcome("fail", "explainability level none is declared without a rationale")
        return CheckOutcome("pass", f"the agreed level is none: {agreed['rationale']}")
    failing: dict[str, str] = {}
    examined = []
    ran = {e["monitor_id"] for e in ev.monitor_executions if e["started_at"] >= ev.now - 30 * DAY}
    for version in ev.serving_versions:
        examined.append(version["ref"])
        name = version["ref"].removeprefix("model:")
        problems = []
        if not any(
            (r["properties"] or {}).get("model") == name
            and "global_shap" in (r["properties"] or {}).get("kinds", ())
            for r in ev.clarify_reports
        ):
            problems.append("no global SHAP report")
        for ep in ev.endpoints:
            if ep["model_version_id"] != version["id"]:
                continue
            mons = [
                m
                for m in ev.monitors
                if m["endpoint_id"] == ep["id"] and m["kind"] == "feature_attribution_drift"
            ]
            if not mons:
                problems.append(f"endpoint {ep['name']} has no attribution-drift monitor")
            elif not any(m["config"].get("schedule") and m["id"] in ran for m in mons):
                problems.append(
                    f"the attribution-drift monitor of {ep['name']} has no schedule or has "
                    "not run in 30 days"
                )
        if level == "local":
            run = ev.training_run(version)
            if run is None or not any(role == "train" for _, role in ev.run_inputs(run)):
                problems.append("no training data in lineage for explanations on request")
        if problems:
            failing[version["ref"]] = ", ".join(problems)
    return _outcome(examined, failing, what=f"serving model versions (level {level})")


@check("MLPER-18")
def human_in_the_loop(ev: Evidence) -> CheckOutcome:
    """Each endpoint's entry in ``wellml.yaml`` says whether people review its predictions
    (``human_review``; when not, ``human_review_rationale`` says why). A reviewed endpoint has
    a review queue that queued items in the last 30 days, its pending items' age at p95 is
    within ``review_sla_hours`` (72), its backlog did not grow on each of the last 7 days,
    and a model-quality monitor reads the ground truth the reviewers' labels become."""
    failing: dict[str, str] = {}
    examined = []
    for ep in ev.endpoints:
        ref = f"endpoint:{ep['name']}"
        examined.append(ref)
        declared = ev.spec.endpoints.get(ep["name"])
        wanted = declared.human_review if declared else None
        if wanted is None:
            failing[ref] = "wellml.yaml does not say whether its predictions need human review"
            continue
        if not wanted:
            if not declared or not declared.human_review_rationale.strip():
                failing[ref] = "human review is declared unnecessary without a rationale"
            continue
        problems = []
        items = [i for i in ev.review_items if i["endpoint_id"] == ep["id"]]
        if ep["id"] not in ev.review_queues:
            problems.append("no review queue")
        elif not any(i["created_at"] >= ev.now - 30 * DAY for i in items):
            problems.append("no review items queued in 30 days")
        ages = sorted(ev.now - i["created_at"] for i in items if i["status"] == "pending")
        assert declared is not None  # human_review was declared True
        sla = declared.review_sla_hours * 3600
        if ages and ages[min(len(ages) - 1, int(0.95 * len(ages)))] > sla:
            problems.append(f"pending items older than the {sla / 3600:g} h review SLA")
        backlog = [
            sum(
                1
                for i in items
                if i["created_at"] <= ev.now - k * DAY
                and (i["reviewed_at"] is None or i["reviewed_at"] > ev.now - k * DAY)
            )
            for k in range(7, -1, -1)
        ]
        if all(later > earlier for earlier, later in itertools.pairwise(backlog)):
            problems.append("the review backlog grew on each of the last 7 days")
        if not any(
            m["endpoint_id"] == ep["id"] and m["kind"] == "model_quality" for m in ev.monitors
        ):
            problems.append("no model-quality monitor reads the reviewers' labels")
        if problems:
            failing[ref] = ", ".join(problems)
    return _outcome(examined, failing, what="endpoints")


def _monitor_problems(ev: Evidence, ep: dict[str, Any], mon: dict[str, Any]) -> list[str]:
    problems = []
    cfg = mon["config"]
    if not cfg.get("thresholds"):
        problems.append("no thresholds")
    if not cfg.get("alert_webhook") and not cfg.get("alert_route"):
        problems.append("no alert route")
    schedule = cfg.get("schedule")
    runs = sorted(e["started_at"] for e in ev.monitor_executions if e["monitor_id"] == mon["id"])
    if not schedule:
        problems.append("no schedule")
    else:
        missed = _missed_slots(schedule, mon["created_at"], ev.now, runs)
        if missed is None:
            problems.append(f"schedule {schedule!r} cannot be read")
        elif missed > 1:
            problems.append(f"missed {missed} scheduled runs in 30 days")
    if not runs:
        problems.append("never ran in the last 30 days")
    version = ev.versions_by_id.get(ep["model_version_id"])
    if version is not None:
        run = ev.training_run(version)
        train_ids = {
            dv["id"] for dv, role in (ev.run_inputs(run) if run else []) if role == "train"
        }
        if mon["baseline_dataset_version_id"] not in train_ids:
            problems.append(f"baseline is not the training data of {version['ref']}")
    return problems


def _missed_slots(schedule: str, created: float, now: float, runs: list[float]) -> int | None:
    """How many schedule slots in the last 30 days had no run within the next slot."""
    from croniter import croniter

    try:
        it = croniter(schedule, max(created, now - 30 * DAY))
    except (ValueError, KeyError):
        return None
    missed = 0
    slot = it.get_next(float)
    while slot < now:
        nxt = it.get_next(float)
        if nxt > now:
            break  # the current slot is still open
        if not any(slot <= r < nxt for r in runs):
            missed += 1
        slot = nxt
    return missed


# --- feature store ------------------------------------------------------------------------------


def _serving_feature_models(ev: Evidence) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Serving model versions trained on feature-store features, with the view versions."""
    out = []
    for v in ev.serving_versions:
        views = ev.upstream_views(v)
        if views:
            out.append((v, views))
    return out


@check("MLPER-08")
def feature_statistics(ev: Evidence) -> CheckOutcome:
    """Every feature view version a serving model was trained on has statistics from a
    materialization, and the latest are recent."""
    max_age = ev.threshold("MLPER-08.max_age_days", 7) * DAY
    failing: dict[str, str] = {}
    examined: list[str] = []
    for _version, views in _serving_feature_models(ev):
        for view in views:
            if view["ref"] in examined:
                continue
            examined.append(view["ref"])
            done = [
                m
                for m in ev.materializations
                if m["definition_id"] == view["id"] and m["status"] == "completed"
            ]
            if not done:
                failing[view["ref"]] = "never materialized, so no feature statistics"
                continue
            latest = max(done, key=lambda m: m["finished_at"] or 0)
            if not (latest["statistics"] or {}).get("columns"):
                failing[view["ref"]] = "latest materialization has no statistics"
            elif ev.now - (latest["finished_at"] or 0) > max_age:
                days = (ev.now - (latest["finished_at"] or 0)) / DAY
                failing[view["ref"]] = f"latest statistics are {days:.0f} days old"
    return _outcome(examined, failing, what="feature view versions used by serving models")


@check("MLCOST-08")
def feature_reuse(ev: Evidence) -> CheckOutcome:
    """Serving models take most of their inputs from feature views; every view can be found
    (owner, description, entity keys); no two views duplicate the same source and features."""
    need = ev.threshold("MLCOST-08.feature_share", 0.8)
    failing: dict[str, str] = {}
    examined: list[str] = []
    for v in ev.serving_versions:
        examined.append(v["ref"])
        inputs = [c["name"] for c in (v.get("signature") or {}).get("inputs", [])]
        served = {f["name"] for d in ev.upstream_views(v) for f in d["spec"]["features"]}
        if not inputs:
            failing[v["ref"]] = "no signature to compare with"
            continue
        share = sum(1 for c in inputs if c in served) / len(inputs)
        if share < need:
            failing[v["ref"]] = f"{share:.0%} of its inputs come from feature views"
    latest: dict[str, dict[str, Any]] = {}
    for d in ev.feature_definitions:
        if d["kind"] == "feature_view" and d["version"] > latest.get(d["name"], {}).get(
            "version", 0
        ):
            latest[d["name"]] = d
    seen: dict[str, str] = {}
    for d in latest.values():
        examined.append(d["ref"])
        missing = [k for k in ("owner", "description") if not d[k]]
        if not d["spec"].get("join_keys"):
            missing.append("entity keys")
        if missing:
            failing[d["ref"]] = f"missing {', '.join(missing)}"
        same = repr((d["spec"]["source"], sorted(f["name"] for f in d["spec"]["features"])))
        if same in seen:
            failing[d["ref"]] = f"duplicates {seen[same]} (same source and features)"
        seen.setdefault(same, d["ref"])
    return _outcome(examined, failing, what="serving model versions and feature views", needed=1.0)


@check("MLREL-07")
def feature_consistency(ev: Evidence) -> CheckOutcome:
    """Endpoints serving feature-store models read the same view versions online that the
    training set was built from, by point-in-time retrieval; the online copy is fresh and a
    recent parity check agrees with the offline data."""
    max_parity_age = ev.threshold("MLREL-07.parity_max_age_days", 7) * DAY
    max_mismatch = ev.threshold("MLREL-07.max_mismatch_rate", 0.01)
    retrievals = {
        n.ref
        for v, _ in _serving_feature_models(ev)
        for n in ev.upstream(v["ref"]).nodes
        if n.kind == "feature_retrieval"
    }
    services = {
        d["ref"].removeprefix("feature_service:"): d
        for d in ev.feature_definitions
        if d["kind"] == "feature_service"
    }
    failing: dict[str, str] = {}
    examined: list[str] = []
    for ep in ev.endpoints:
        version = ev.versions_by_id.get(ep["model_version_id"])
        if version is None:
            continue
        views = ev.upstream_views(version)
        if not views:
            continue
        ref = f"endpoint:{ep['name']}"
        examined.append(ref)
        problems = []
        if not any(r in retrievals for r in (n.ref for n in ev.upstream(version["ref"]).nodes)):
            problems.append("training set not built by point-in-time retrieval")
        service = services.get((ep["config"] or {}).get("feature_service") or "")
        if service is None:
            problems.append("does not read features from the online store (no feature service)")
        else:
            online = {
                f"feature_view:{g['view']}@{g['version']}"
                for g in service["spec"]["features"]
                if g["kind"] == "feature_view"
            }
            trained = {d["ref"] for d in views}
            if online != trained:
                problems.append(f"serves {sorted(online)} but was trained on {sorted(trained)}")
        for view in views:
            done = [
                m
                for m in ev.materializations
                if m["definition_id"] == view["id"] and m["status"] == "completed"
            ]
            ttl = view["spec"].get("ttl_seconds")
            if not done:
                problems.append(f"{view['ref']} never materialized")
            elif ttl and ev.now - max(m["end_time"] for m in done) > ttl:
                problems.append(f"{view['ref']} online copy older than its TTL")
            checks = [
                p
                for p in ev.parity_checks
                if p["properties"].get("view") == view["ref"].removeprefix("feature_view:")
            ]
            if not checks or ev.now - checks[0]["started_at"] > max_parity_age:
                problems.append(f"no online/offline parity check of {view['ref']} in the window")
            elif checks[0]["properties"].get("mismatch_rate", 1.0) > max_mismatch:
                rate = checks[0]["properties"]["mismatch_rate"]
                problems.append(f"{view['ref']} parity mismatch rate {rate:.1%}")
        if problems:
            failing[ref] = "; ".join(problems)
    return _outcome(examined, failing, what="endpoints serving feature-store models")


# --- security ---------------------------------------------------------------------------------


@check("MLSEC-12")
def access_restricted(ev: Evidence) -> CheckOutcome:
    """Each endpoint requires a token, lists its allowed consumers in the spec, and only those
    consumers hold tokens that may invoke it."""
    failing: dict[str, str] = {}
    examined = []
    for ep in ev.endpoints:
        ref = f"endpoint:{ep['name']}"
        examined.append(ref)
        problems = []
        if not ep["config"].get("auth", False):
            problems.append("invocations need no token")
        declared = ev.spec.endpoints.get(ep["name"])
        allowed = set(declared.allowed_consumers) if declared else set()
        if not allowed:
            problems.append("wellml.yaml lists no allowed_consumers for it")
        holders = {
            t["principal"]
            for t in ev.tokens
            if f"invoke:{ep['name']}" in t["scopes"]
            and t["revoked_at"] is None
            and (t["expires_at"] is None or t["expires_at"] > ev.now)
        }
        wild = [t["id"] for t in ev.tokens if any("*" in s for s in t["scopes"])]
        if holders - allowed and allowed:
            problems.append(
                "tokens held by unlisted principals: " + ", ".join(sorted(holders - allowed))
            )
        if wild:
            problems.append("wildcard-scoped tokens exist")
        if problems:
            failing[ref] = ", ".join(problems)
    outcome = _outcome(examined, failing, what="endpoints")
    if outcome.status == "pass":
        # Without per-request access logs, what makes this a pass is the construction: every
        # invocation is authenticated against a token that only listed consumers hold.
        return CheckOutcome(
            "pass",
            outcome.reason + "; every call needs a token and only listed consumers hold one",
            outcome.evidence,
        )
    return outcome


@check("MLPER-01")
def kpis_declared(ev: Evidence) -> CheckOutcome:
    """The spec declares KPIs with targets, and approved model cards name them."""
    kpis = ev.spec.business.kpis
    if not kpis:
        return CheckOutcome("fail", "wellml.yaml declares no business.kpis")
    untargeted = [k.name for k in kpis if k.target is None]
    if untargeted:
        return CheckOutcome("fail", "KPIs without a target: " + ", ".join(untargeted))
    names = {k.name for k in kpis}
    failing = {
        v["ref"]: "model card names no declared KPI"
        for v in ev.approved_versions
        if not names & set(v["card"].get("kpis", []))
    }
    examined = ["spec:business.kpis"] + [v["ref"] for v in ev.approved_versions]
    if failing:
        return CheckOutcome(
            "fail",
            "approved model cards that name no declared KPI: " + ", ".join(sorted(failing)),
            examined,
            sorted(failing),
        )
    return CheckOutcome(
        "pass",
        f"{len(kpis)} KPI(s) with targets declared: "
        + ", ".join(
            f"{k.name} ≥ {k.target}" if k.direction == "maximize" else f"{k.name} ≤ {k.target}"
            for k in kpis
        ),
        examined,
    )
