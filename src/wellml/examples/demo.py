"""The demo workload: customer churn through every lifecycle phase in a fresh workspace.

Data is generated, registered, profiled and checked; a pipeline tunes, trains and compares three
candidate algorithms and registers the best with a model card (run twice, to show its cache);
the model is approved and served; held-out and then drifted traffic is sent to it; the drift
monitor runs after each; the lens review closes.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sklearn.base import clone

from wellml.errors import AlreadyExists
from wellml.examples import churn
from wellml.lens.engine import render
from wellml.serving import AutoScaling, DeploymentPolicy, ErrorRateAlarm, LatencyAlarm
from wellml.workspace import Workspace

ENDPOINT = "churn"
MODEL = "churn"
CONSUMER = "churn-app"
FEATURE_VIEW = "customer-profile"
RETRAIN_PIPELINE = "wellml.examples.churn_pipeline:retrain"
DEVELOP_PIPELINE = "wellml.examples.churn_pipeline:develop"
FEATURE_SERVICE = "churn-model"
# Predictions whose probability is below this go to the human review queue.
REVIEW_THRESHOLD = 0.6
# Every model update reaches traffic by canary: 10% for a 3-second bake, then the rest, rolled
# back by itself if errors or latency break their limits.
ROLLOUT = DeploymentPolicy(
    strategy="canary",
    canary_percent=10,
    bake_seconds=3,
    alarms=(ErrorRateAlarm(max_rate=0.02, min_requests=20), LatencyAlarm(p99_ms=2000)),
)

# One replica, a second one when more than 4 requests a replica are in flight.
SCALING = AutoScaling(min_replicas=1, max_replicas=2, target_inflight=4)

SPEC: dict[str, Any] = {
    "name": "churn",
    "owner": "ml-lead",
    "description": "Predict which subscribers will cancel in the next month.",
    "business": {
        "goal": "Reduce monthly churn by targeting retention offers at likely churners.",
        "kpis": [
            {
                "name": "retention_rate",
                "target": 0.9,
                "direction": "maximize",
                "description": "Share of subscribers still active after 30 days.",
            },
            {
                "name": "roc_auc",
                "target": 0.8,
                "direction": "maximize",
                "description": "Ranking quality of churn scores on held-out customers.",
            },
        ],
    },
    "stages": ["dev", "prod"],
    "tags": {"team": "retention", "cost-center": "cx-analytics"},
    "endpoints": {
        ENDPOINT: {
            "allowed_consumers": [CONSUMER],
            "slo": {"latency_p95_ms": 50, "error_rate": 0.01},
            # Retention agents check the predictions the model is unsure of.
            "human_review": True,
            "review_sla_hours": 48,
        }
    },
    "governance": {
        "explainability": {
            "level": "local",
            "rationale": "agents must see why a customer is flagged before making an offer",
            "agreed_by": ["ml-lead", "cx-manager"],
        }
    },
    # Customer features by customer id over time: training reads them point in time, the
    # endpoint fetches them online by customer id.
    "features": {
        "entities": [
            {
                "name": "customer",
                "join_keys": [churn.ID_COLUMN],
                "description": "A subscriber account",
            }
        ],
        "feature_views": [
            {
                "name": FEATURE_VIEW,
                "entities": ["customer"],
                "source": {"dataset": "customer-features"},
                "timestamp_field": churn.TIME_COLUMN,
                "ttl": "365d",
                "owner": "data-eng",
                "description": "Monthly account, usage and billing snapshot per customer",
            }
        ],
        "feature_services": [
            {
                "name": FEATURE_SERVICE,
                "features": [f"{FEATURE_VIEW}:{f}" for f in churn.FEATURES],
                "owner": "ml-lead",
                "description": "The inputs of the churn model",
            }
        ],
    },
}

QUALITY_RULES: list[dict[str, Any]] = [
    {"rule": "not_null", "column": churn.ID_COLUMN, "severity": "critical"},
    {"rule": "unique", "columns": [churn.ID_COLUMN, churn.TIME_COLUMN], "severity": "critical"},
    {"rule": "range", "column": "tenure_months", "min": 0, "max": 600},
    {"rule": "range", "column": "monthly_charges", "min": 0},
    {
        "rule": "allowed_values",
        "column": "contract",
        "values": ["month-to-month", "one-year", "two-year"],
    },
    {"rule": "allowed_values", "column": churn.TARGET, "values": [0, 1], "severity": "critical"},
    {"rule": "not_null", "column": "total_charges", "severity": "warning"},
]


@dataclass
class DemoResult:
    """What the demo produced and where to find it."""

    workspace: Path
    best_run: str = ""
    model_version: str = ""
    candidates: dict[str, float] = field(default_factory=dict)
    endpoint_url: str = ""
    drift_heldout: list[str] = field(default_factory=list)
    drift_shifted: list[str] = field(default_factory=list)
    review_counts: dict[str, int] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    clarify: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    retraining: dict[str, Any] = field(default_factory=dict)
    monitors: dict[str, Any] = field(default_factory=dict)
    human_review: dict[str, Any] = field(default_factory=dict)
    rollback_drill: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


def _kpi_target(name: str) -> float:
    """The target of one of the business KPIs in :data:`SPEC`."""
    return float(next(k["target"] for k in SPEC["business"]["kpis"] if k["name"] == name))


def _git_snapshot(root: Path) -> bool:
    """Make the workspace a git repository with its project files committed, so that every
    run records a clean commit of the project it belongs to."""
    if shutil.which("git") is None:
        return False
    env = {
        "GIT_AUTHOR_NAME": "wellml demo",
        "GIT_AUTHOR_EMAIL": "demo@wellml.invalid",
        "GIT_COMMITTER_NAME": "wellml demo",
        "GIT_COMMITTER_EMAIL": "demo@wellml.invalid",
        "PATH": __import__("os").environ.get("PATH", ""),
    }
    (root / ".gitignore").write_text(".wellml/\ndata/\n*.md\n*.json\nquality-rules.yaml\n")
    for args in (
        ["init", "-q"],
        ["add", "wellml.yaml", ".gitignore"],
        ["commit", "-q", "-m", "churn project"],
    ):
        if subprocess.run(["git", *args], cwd=root, env=env, capture_output=True).returncode:
            return False
    return True


def _send(
    ws: Workspace,
    frame: pd.DataFrame,
    token: str,
    batch: int = 50,
    columns: tuple[str, ...] = churn.FEATURES,
    truth: list[dict[str, Any]] | None = None,
) -> int:
    """Send rows to the endpoint in batches; return how many answers came back.

    With ``truth``, each request gets an inference id and the rows' true outcomes are
    collected under it, as an application that learns them later would keep them.
    """
    import uuid

    n = 0
    records = frame[list(columns)].astype(object).where(frame.notna(), None)
    for start in range(0, len(records), batch):
        rows = records.iloc[start : start + batch].to_dict(orient="records")
        inference_id = uuid.uuid4().hex
        answer = ws.endpoints.invoke(ENDPOINT, rows, token=token, inference_id=inference_id)
        n += len(answer["predictions"])
        if truth is not None:
            labels = frame[churn.TARGET].iloc[start : start + batch]
            truth.extend(
                {"inference_id": inference_id, "row": i, "label": int(label)}
                for i, label in enumerate(labels)
            )
    return n


def run_demo(
    path: Path,
    *,
    overwrite: bool = False,
    n_customers: int = 20_000,
    traffic_rows: int = 1_500,
    step: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the churn workload end to end in a fresh workspace at ``path``.

    Raises:
        AlreadyExists: ``path`` is not empty and ``overwrite`` is False.
    """
    import os

    say = step or (lambda _msg: None)
    path = path.expanduser().resolve()
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise AlreadyExists(f"{path} is not empty; choose another folder or pass --overwrite")
        if not (path / "wellml.yaml").exists():
            raise AlreadyExists(f"{path} is not a wellml workspace; refusing to overwrite it")
        shutil.rmtree(path)
    say("create the workspace")
    ws = Workspace.init(path, spec=SPEC)
    result = DemoResult(workspace=ws.root)
    cwd = os.getcwd()
    os.chdir(ws.root)  # provenance (the git commit) is read from the working folder
    try:
        _git_snapshot(ws.root)
        return _run(ws, result, n_customers, traffic_rows, say)
    finally:
        os.chdir(cwd)
        ws.close()


def _run(
    ws: Workspace,
    result: DemoResult,
    n_customers: int,
    traffic_rows: int,
    say: Callable[[str], None],
) -> DemoResult:
    say("generate and register customer data")
    data_dir = ws.root / "data"
    data_dir.mkdir()
    raw = churn.generate_churn(n_customers)
    raw_csv = data_dir / "customers-2026h1.csv"
    raw.to_csv(raw_csv, index=False)
    customers = ws.data.register(
        "churn-customers",
        raw_csv,
        description="Monthly customer snapshots with churn labels",
        properties={
            "classification": "internal",
            "license": "proprietary",
            "permitted_uses": ["ml-training"],
        },
    )

    say("profile and check data quality")
    ws.data.profile(customers)
    quality = ws.data.check(customers, QUALITY_RULES)
    rules_file = ws.root / "quality-rules.yaml"
    rules_file.write_text(yaml.safe_dump(QUALITY_RULES, sort_keys=False), encoding="utf-8")

    say("define customer features; build the training set by point-in-time join")
    features_dv = ws.data.register(
        "customer-features",
        raw.drop(columns=[churn.TARGET]),
        parents=[customers],
        description="Customer snapshots by customer id and snapshot date",
    )
    labels_dv = ws.data.register(
        "churn-labels",
        raw[[churn.ID_COLUMN, churn.TIME_COLUMN, churn.TARGET]],
        parents=[customers],
        description="Churn outcome per customer snapshot",
    )
    ws.features.apply()
    training_set = ws.features.create_training_dataset(
        "churn-training-set",
        labels_dv,
        FEATURE_SERVICE,
        timestamp_field=churn.TIME_COLUMN,
        description="Labels joined point in time to the churn-model features",
    )
    materialized = ws.features.materialize(FEATURE_VIEW)
    parity = ws.features.check_parity(FEATURE_VIEW, sample=1_000)
    result.features = {
        "parity_mismatch_rate": parity.mismatch_rate,
        "training_set": training_set.ref,
        "online_entities": materialized.rows_written,
        "feature_rows": features_dv.num_rows,
    }

    say("split training, validation and held-out traffic")
    table = ws.data.load(training_set)
    train_val, heldout = churn.split_train_holdout(table, holdout_fraction=0.15, seed=1)
    train_df, val_df = churn.split_train_holdout(train_val, holdout_fraction=0.2, seed=2)
    train = ws.data.register(
        "churn-train", train_df, parents=[training_set], description="Training split (by customer)"
    )
    val = ws.data.register(
        "churn-validation",
        val_df,
        parents=[training_set],
        description="Validation split (by customer)",
    )
    for dv in (train, val):
        ws.data.profile(dv)
        ws.data.check(dv, QUALITY_RULES)

    say("train, tune and compare three candidates in a pipeline; register the best")
    X_tr, y_tr = train_df[list(churn.FEATURES)], train_df[churn.TARGET]
    X_va, y_va = val_df[list(churn.FEATURES)], val_df[churn.TARGET]
    develop_params = {
        "workspace": str(ws.root),
        "train_dataset": train.ref,
        "validation_dataset": val.ref,
        "target_auc": _kpi_target("roc_auc"),
    }
    developed = ws.pipelines.run(DEVELOP_PIPELINE, params=develop_params, raise_on_failure=False)
    if developed.status != "completed":
        raise RuntimeError(f"the training pipeline {developed.status}: {developed.error}")
    comparison = ws.pipelines.load_output(developed, "compare")
    result.candidates = dict(comparison["scores"])
    mv = ws.registry.get(ws.pipelines.load_output(developed, "register_best"))
    best_run = ws.tracking.get_run(comparison["best"]["run_id"])
    best_auc = float(comparison["best"]["roc_auc"])
    val_metrics = dict(mv.metrics)
    card = {k: v for k, v in mv.card.items() if k != "owner"}
    result.best_run = best_run.id

    say("run the training pipeline again: every step comes from the cache")
    again = ws.pipelines.run(DEVELOP_PIPELINE, params=develop_params, raise_on_failure=False)
    result.training = {
        "pipeline_run": developed.id,
        "counts": developed.counts(),
        "second_run": again.id,
        "second_counts": again.counts(),
        "tuned_params": ws.pipelines.load_output(developed, "tune_candidate")["params"],
    }
    ws.registry.approve(
        mv.ref,
        by="risk-officer",
        reason=f"validation ROC AUC {best_auc:.3f} on {val.ref} meets the 0.8 KPI",
    )
    ws.registry.set_alias(MODEL, "production", mv.version)
    result.model_version = mv.ref

    say("serve the model and issue a consumer token")
    running = ws.endpoints.start(
        f"{MODEL}@production",
        name=ENDPOINT,
        capture_percent=100,
        feature_service=FEATURE_SERVICE,
        policy=ROLLOUT,
        autoscaling=SCALING,
    )
    try:
        result.endpoint_url = running.url
        token = ws.endpoints.issue_token(ENDPOINT, CONSUMER).secret
        retrain_params = {
            "workspace": str(ws.root),
            "train_dataset": train.ref,
            "validation_dataset": val.ref,
            "trials": 3,
            "sample_rows": 2000,
        }
        ws.monitoring.create_monitor(
            ENDPOINT,
            schedule="@hourly",
            alert_route={"retrain": {"pipeline": RETRAIN_PIPELINE, "params": retrain_params}},
        )
        ws.monitoring.reviews.configure(ENDPOINT, threshold=REVIEW_THRESHOLD)

        say("refit the best candidate on training + validation data; roll it out by canary")
        final = clone(ws.registry.load(mv.ref)).fit(
            pd.concat([X_tr, X_va]), pd.concat([y_tr, y_va])
        )
        say("explain the model (SHAP) and measure bias on a facet (Clarify)")
        shap = ws.clarify.explain(
            mv.ref,
            val,
            rows=25,
            n_samples=64,
            n_clusters=5,
            partial_dependence=2,
            grid_resolution=10,
            html=ws.root / "shap-report.html",
        )
        global_shap = shap.document["analysis"]["explanations"]["kernel_shap"]
        top_features = dict(
            list(next(iter(global_shap.values()))["global_shap_values"].items())[:6]
        )
        explanations: dict[str, Any] = {
            "method": "SHAP with a Clarify-style k-means baseline",
            "report": shap.id,
            "of": f"{mv.ref}, the same algorithm fitted on the training split",
            "rows_explained": 25,
            "global_mean_abs_shap": top_features,
        }
        mv2 = ws.registry.register(
            MODEL,
            final,
            X=X_tr,
            y=y_tr,
            run=best_run,
            card={
                **card,
                "selection": f"{card['selection']}; refit on training + validation",
                "explanations": explanations,
            },
            metrics=val_metrics,
            owner="ml-lead",
            description="Churn risk classifier, refit on training + validation data",
        )
        ws.registry.approve(mv2.ref, by="risk-officer", reason="same algorithm, more data")
        # The version that will serve gets its own global SHAP report (MLPER-13).
        ws.clarify.explain(mv2.ref, val, rows=25, n_samples=64, n_clusters=5, partial_dependence=0)
        bias = ws.clarify.bias(
            val,
            label=churn.TARGET,
            label_values_or_threshold=[1],
            facet="senior",
            facet_values_or_threshold=[1],
            model=mv2.ref,
            html=ws.root / "bias-report.html",
        )
        result.clarify = {
            "bias_report": bias.id,
            "top_features": list(top_features),
        }
        sent = _roll_out(ws, mv2.ref, heldout.head(traffic_rows), token)
        ws.registry.set_alias(MODEL, "production", mv2.version)
        result.model_version = mv2.ref

        say("check the held-out traffic (customer ids only) for drift")
        _wait_for_capture(ws, sent)
        first = ws.monitoring.run(ENDPOINT)
        result.drift_heldout = first.drifted_features

        say("send drifted traffic and check for drift")
        drifted = churn.generate_churn_drifted(traffic_rows)
        # New customers, not in the online store yet: the app sends their whole feature row.
        truth: list[dict[str, Any]] = []
        sent = _send(ws, drifted, token, columns=(churn.ID_COLUMN, *churn.FEATURES), truth=truth)
        _wait_for_capture(ws, sent)
        second = ws.monitoring.run(ENDPOINT)
        result.drift_shifted = second.drifted_features

        say("drift alert: run the retraining pipeline it asked for (tuning inside)")
        result.retraining = _retrain(ws, retrain_params)

        say("queue the unsure predictions for review; a reviewer labels some")
        result.human_review, reviewed = _review(ws, truth)

        say("join ground truth; run data-quality, model-quality, bias and attribution monitors")
        result.monitors = _other_monitors(ws, [t for t in truth if _key(t) not in reviewed])

        say("rollback drill: back to the previous version and forward again")
        drill = ws.endpoints.rollback(ENDPOINT, drill=True)
        result.rollback_drill = [d["outcome"] for d in drill]

        say("review the workload against the ML Lens")
        review = ws.lens.review()
    finally:
        running.stop()
    result.review_counts = dict(review.summary["by_status"])
    md = ws.root / "lens-review.md"
    md.write_text(render(review, "md"), encoding="utf-8")
    js = ws.root / "lens-review.json"
    js.write_text(render(review, "json"), encoding="utf-8")
    result.outputs = {
        "workspace": str(ws.root),
        "metadata": ws.urls.metadata,
        "artifacts": ws.urls.artifacts,
        "captured traffic": ws.urls.capture,
        "lens review": str(md),
        "lens review (json)": str(js),
        "clarify": f"bias report {ws.root / 'bias-report.html'}, SHAP report "
        f"{ws.root / 'shap-report.html'} (wellml clarify list)",
        "training": f"{DEVELOP_PIPELINE} run {result.training['pipeline_run'][:12]}: "
        f"{result.training['counts']}; the same run again: {result.training['second_counts']} "
        "(wellml pipelines show RUN_ID)",
        "retraining": f"drift alert ran {RETRAIN_PIPELINE}: "
        f"{result.retraining.get('first_run')}; the same run again: "
        f"{result.retraining.get('second_counts')} (wellml pipelines list)",
        "monitors": ", ".join(f"{k} {v['status']}" for k, v in result.monitors.items())
        + " (wellml monitor list)",
        "rollback drill": f"{ENDPOINT} went back a version and forward again: "
        + ", ".join(result.rollback_drill)
        + f" (wellml endpoints history {ENDPOINT})",
        "human review": f"{result.human_review['queued']} unsure predictions queued, "
        f"{result.human_review['labelled']} labelled by a reviewer "
        f"(wellml monitor review list {ENDPOINT})",
        "feature store": f"{FEATURE_VIEW} served online for {materialized.rows_written:,} "
        f"customers; training set {training_set.ref} (wellml features list)",
        "data quality": f"{customers.ref}: {len(QUALITY_RULES)} rules, "
        + ("passed" if quality.passed else "FAILED")
        + f" (again: wellml data check {customers.ref} --rules {rules_file.name})",
    }
    return result


def _roll_out(ws: Workspace, model_ref: str, heldout: pd.DataFrame, token: str) -> int:
    """Update the endpoint to ``model_ref`` by canary while held-out traffic (customer ids
    only) keeps flowing; return the rows sent.

    Raises:
        RuntimeError: the rollout did not complete (it rolled back).
    """
    dep = ws.endpoints.update(ENDPOINT, model=model_ref, wait=False)
    sent = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        sent += _send(ws, heldout, token, columns=(churn.ID_COLUMN,))
        dep = ws.endpoints.deployment(dep["id"])
        if dep["outcome"] not in ("pending", "in-progress"):
            break
    if dep["outcome"] != "completed":
        raise RuntimeError(f"the canary of {model_ref} {dep['outcome']}: {dep.get('reason')}")
    return sent


def _retrain(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Run the retraining the drift alert asked for, then the same pipeline again: every step
    is cached the second time, since nothing it reads has changed."""
    pending = ws.monitoring.retrain_triggers("pending")
    outcomes = ws.monitoring.dispatch_retraining()
    again = ws.pipelines.run(RETRAIN_PIPELINE, params=params, raise_on_failure=False)
    first = (
        ws.pipelines.get(outcomes[0]["pipeline_run"])
        if outcomes and "pipeline_run" in outcomes[0]
        else None
    )
    return {
        "triggers": len(pending),
        "first_run": first.status if first else None,
        "first_counts": first.counts() if first else {},
        "second_counts": again.counts(),
    }


def _key(label: dict[str, Any]) -> tuple[str, int]:
    return (str(label["inference_id"]), int(label["row"]))


def _review(
    ws: Workspace, truth: list[dict[str, Any]], labelled: int = 25
) -> tuple[dict[str, Any], set[tuple[str, int]]]:
    """Queue the captured predictions below the review threshold, and label the least
    confident ones the way a reviewer who knows the outcome would; their labels become ground
    truth. Returns the queue's figures and the (inference id, row) pairs labelled."""
    reviews = ws.monitoring.reviews
    (scan,) = reviews.fill(ENDPOINT)
    known = {_key(t): t["label"] for t in truth}
    picked = {
        item.id: known[(item.inference_id, item.row)]
        for item in reviews.items(ENDPOINT, limit=None)
        if (item.inference_id, item.row) in known
    }
    chosen = dict(list(picked.items())[:labelled])
    done = reviews.label(ENDPOINT, chosen, reviewer="retention-agent") if chosen else None
    summary = reviews.summary(ENDPOINT)
    reviewed = {
        (i.inference_id, i.row) for i in reviews.items(ENDPOINT, status="labelled", limit=None)
    }
    return {
        "threshold": REVIEW_THRESHOLD,
        "queued": scan.queued,
        "labelled": done["labelled"] if done else 0,
        "disagreement_rate": summary["disagreement_rate"],
    }, reviewed


def _other_monitors(ws: Workspace, truth: list[dict[str, Any]]) -> dict[str, Any]:
    """Store the true outcomes of the requests sent (joined by inference id to the captured
    traffic), then run the data-quality, model-quality, bias-drift and feature-attribution
    drift monitors."""
    ws.monitoring.ingest_ground_truth(ENDPOINT, pd.DataFrame(truth))
    outcome = {}
    for kind, options in (
        ("data_quality", None),
        ("model_quality", None),
        (
            "bias_drift",
            {"facet": "senior", "facet_values_or_threshold": [1], "baseline_label": churn.TARGET},
        ),
        ("feature_attribution_drift", {"max_rows": 200, "n_samples": 64, "n_clusters": 5}),
    ):
        monitor = ws.monitoring.create_monitor(
            ENDPOINT, kind=kind, schedule="@daily", options=options
        )
        execution = ws.monitoring.run_monitor(monitor["name"], all_captured=True)
        outcome[kind] = {"status": execution.status, "violations": len(execution.violations)}
    return outcome


def _wait_for_capture(ws: Workspace, rows: int, timeout: float = 20.0) -> None:
    """Wait until the endpoint's capture writer has flushed ``rows`` new rows (it flushes
    every 1,000 rows and every 2 seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = ws.endpoints.capture_files(ENDPOINT, only_new=True)
        if sum(f["rows"] for f in files) >= rows:
            return
        time.sleep(0.25)
