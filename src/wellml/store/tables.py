"""The metadata schema: every table wellml keeps, in one SQLAlchemy ``MetaData``.

Times are UTC epoch seconds (floats) so that SQLite and PostgreSQL compare and sort them the
same way; ids are 32-character hex strings. Changing anything here needs an Alembic migration
in ``store/migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(32)
NAME = String(255)

# --- provenance -------------------------------------------------------------------------------

environments = Table(
    "environments",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the package list and interpreter
    Column("python", String(64), nullable=False),
    Column("platform", String(255), nullable=False),
    Column("packages", JSON, nullable=False),  # {name: version}
    Column("created_at", Float, nullable=False),
)

# --- lineage graph (ML Metadata's artifacts, executions, events, contexts) ---------------------

lineage_artifacts = Table(
    "lineage_artifacts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(64), nullable=False),  # dataset_version, model_version, endpoint, ...
    Column("ref", String(512), nullable=False, unique=True),  # e.g. dataset:churn@3
    Column("uri", Text),
    Column("digest", String(64)),
    Column("properties", JSON, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
)

lineage_executions = Table(
    "lineage_executions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(64), nullable=False),  # run, register, deploy, capture, monitor, ...
    Column("ref", String(512), nullable=False, unique=True),
    Column("name", NAME),
    Column("status", String(32), nullable=False),
    Column("code_repo", Text),
    Column("code_commit", String(64)),
    Column("code_dirty", Boolean),
    Column("environment_id", String(64), ForeignKey("environments.id")),
    Column("user", NAME, nullable=False),
    Column("properties", JSON, nullable=False, default=dict),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
)

lineage_events = Table(
    "lineage_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("execution_id", ID, ForeignKey("lineage_executions.id"), nullable=False),
    Column("artifact_id", ID, ForeignKey("lineage_artifacts.id"), nullable=False),
    Column("direction", String(8), nullable=False),  # input | output
    Column("role", String(64), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("execution_id", "artifact_id", "direction"),
    Index("ix_lineage_events_artifact", "artifact_id", "direction"),
)

# --- data catalog ------------------------------------------------------------------------------

datasets = Table(
    "datasets",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("owner", NAME, nullable=False, default=""),
    Column("properties", JSON, nullable=False, default=dict),  # classification, licence, ...
    Column("created_at", Float, nullable=False),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("dataset_id", ID, ForeignKey("datasets.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_digest", String(64), nullable=False),  # digest of the data, not the file
    Column("artifact_digest", String(64), nullable=False),  # the Parquet blob
    Column("format", String(32), nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("num_bytes", BigInteger, nullable=False),
    Column("schema", JSON, nullable=False),
    Column("source", Text, nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("properties", JSON, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("lineage_artifact_id", ID, ForeignKey("lineage_artifacts.id"), nullable=False),
    UniqueConstraint("dataset_id", "version"),
    UniqueConstraint("dataset_id", "content_digest"),
)

dataset_profiles = Table(
    "dataset_profiles",
    metadata,
    Column("dataset_version_id", ID, ForeignKey("dataset_versions.id"), primary_key=True),
    Column("profile", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

quality_results = Table(
    "quality_results",
    metadata,
    Column("id", ID, primary_key=True),
    Column("dataset_version_id", ID, ForeignKey("dataset_versions.id"), nullable=False),
    Column("rules", JSON, nullable=False),
    Column("report", JSON, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
)

# --- experiment tracking -----------------------------------------------------------------------

experiments = Table(
    "experiments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("experiment_id", ID, ForeignKey("experiments.id"), nullable=False),
    Column("name", NAME, nullable=False),
    Column("status", String(16), nullable=False),  # running | finished | failed | killed
    Column("kind", String(32), nullable=False, default="train"),
    Column("parent_run_id", ID, ForeignKey("runs.id")),
    Column("user", NAME, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("heartbeat_at", Float),
    Column("pid", Integer),
    Column("host", NAME),
    Column("error", Text),
    Column("lineage_execution_id", ID, ForeignKey("lineage_executions.id"), nullable=False),
    Index("ix_runs_experiment_started", "experiment_id", "started_at"),
)

run_params = Table(
    "run_params",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", NAME, primary_key=True),
    Column("value", Text, nullable=False),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", NAME, primary_key=True),
    Column("value", Text, nullable=False),
)

run_metrics = Table(
    "run_metrics",
    metadata,
    # No foreign key: one insert per point is the hot path, and runs are never deleted.
    Column("run_id", ID, nullable=False),
    Column("key", NAME, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("value", Float, nullable=True),  # NaN is stored as NULL plus is_nan
    Column("is_nan", Boolean, nullable=False, default=False),
    Column("timestamp", Float, nullable=False),
    Index("ix_run_metrics_run_key_step", "run_id", "key", "step"),
)

run_latest_metrics = Table(
    "run_latest_metrics",
    metadata,
    # The point with the highest step of each metric (the latest written at that step),
    # kept up to date by every batch so that searches never scan metric histories.
    Column("run_id", ID, primary_key=True),
    Column("key", NAME, primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("value", Float, nullable=True),
    Column("is_nan", Boolean, nullable=False, default=False),
    Column("timestamp", Float, nullable=False),
    Index("ix_run_latest_metrics_key_value", "key", "value"),
)

run_artifacts = Table(
    "run_artifacts",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
)

# --- model registry ----------------------------------------------------------------------------

registered_models = Table(
    "registered_models",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("owner", NAME, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("model_id", ID, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", ID, ForeignKey("runs.id")),
    Column("flavor", String(32), nullable=False),
    Column("package_digest", String(64), nullable=False),  # the package manifest blob
    Column("signature", JSON, nullable=False),
    Column("requirements", JSON, nullable=False),
    Column("card", JSON, nullable=False),
    Column("metrics", JSON, nullable=False, default=dict),
    Column("status", String(16), nullable=False),  # pending | approved | rejected
    Column("status_by", NAME),
    Column("status_reason", Text),
    Column("status_at", Float),
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("lineage_artifact_id", ID, ForeignKey("lineage_artifacts.id"), nullable=False),
    UniqueConstraint("model_id", "version"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", ID, ForeignKey("registered_models.id"), primary_key=True),
    Column("alias", NAME, primary_key=True),
    Column("version_id", ID, ForeignKey("model_versions.id"), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", NAME, nullable=False),
)

model_events = Table(
    "model_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", ID, ForeignKey("model_versions.id"), nullable=False),
    Column("action", String(32), nullable=False),  # registered, approved, rejected, alias:...
    Column("actor", NAME, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("at", Float, nullable=False),
)

# --- serving -----------------------------------------------------------------------------------

endpoints = Table(
    "endpoints",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False, unique=True),
    Column("model_ref", String(512), nullable=False),  # what was asked for, e.g. churn@production
    # The model version of the variant with the largest weight in the current configuration.
    Column("model_version_id", ID, ForeignKey("model_versions.id"), nullable=False),
    Column("status", String(16), nullable=False),  # creating | in-service | stopped | failed
    Column("host", NAME, nullable=False),
    Column("port", Integer, nullable=False),
    Column("pid", Integer),
    Column("config", JSON, nullable=False),  # the current configuration (see endpoint_configs)
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("lineage_artifact_id", ID, ForeignKey("lineage_artifacts.id"), nullable=False),
    Column("config_version", Integer),  # the current row of endpoint_configs
    Column("runtime", JSON),  # replicas and per-variant traffic figures, written while serving
)

# Every configuration an endpoint has had: immutable, numbered from 1.
endpoint_configs = Table(
    "endpoint_configs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("endpoint_id", ID, ForeignKey("endpoints.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("config", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("lineage_artifact_id", ID, ForeignKey("lineage_artifacts.id"), nullable=False),
    UniqueConstraint("endpoint_id", "version"),
)

endpoint_deployments = Table(
    "endpoint_deployments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("endpoint_id", ID, ForeignKey("endpoints.id"), nullable=False),
    Column("model_version_id", ID, ForeignKey("model_versions.id"), nullable=False),
    Column("config", JSON, nullable=False),
    Column("actor", NAME, nullable=False),
    Column("origin", String(32), nullable=False, default="manual"),  # manual | rollback | ...
    # created | pending | in-progress | completed | rolled-back | failed | stopped | interrupted
    Column("outcome", String(32), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("strategy", String(32)),  # all-at-once | canary | linear
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("steps", JSON),  # every step taken: provision, smoke test, traffic, bake, alarms
    Column("reason", Text),
)

# What the supervisor of a running endpoint did by itself: restarts and scaling actions.
endpoint_events = Table(
    "endpoint_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint_id", ID, ForeignKey("endpoints.id"), nullable=False),
    Column("kind", String(32), nullable=False),  # replica-restart | scale-out | scale-in
    Column("variant", NAME, nullable=False),
    Column("detail", JSON, nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_endpoint_events_endpoint_at", "endpoint_id", "at"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("principal", NAME, nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("scopes", JSON, nullable=False),  # e.g. ["invoke:churn"]
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
    Column("rate_limit", JSON),  # {"rate": requests per second, "burst": n}; None: the endpoint's
)

capture_files = Table(
    "capture_files",
    metadata,
    Column("uri", String(1024), primary_key=True),
    Column("endpoint_id", ID, ForeignKey("endpoints.id"), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("dataset_version_id", ID, ForeignKey("dataset_versions.id")),  # once ingested
)

# Batch transform: a model version applied to a file in chunks; a chunk row is written once its
# output file is in place, so a job that dies resumes from the first chunk without one.
batch_jobs = Table(
    "batch_jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("model_version_id", ID, ForeignKey("model_versions.id"), nullable=False),
    Column("input_uri", Text, nullable=False),
    Column("output_uri", Text, nullable=False),
    Column("status", String(16), nullable=False),  # running | completed | failed
    Column("config", JSON, nullable=False),  # chunk rows, workers, input digest
    Column("chunks_total", Integer, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("user", NAME, nullable=False),
    Column("pid", Integer),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("error", Text),
    Column("lineage_execution_id", ID, ForeignKey("lineage_executions.id")),
)

batch_chunks = Table(
    "batch_chunks",
    metadata,
    Column("job_id", ID, ForeignKey("batch_jobs.id"), primary_key=True),
    Column("chunk", Integer, primary_key=True),
    Column("rows", Integer, nullable=False),
    Column("uri", Text, nullable=False),
    Column("done_at", Float, nullable=False),
)

# --- monitoring --------------------------------------------------------------------------------

# A baseline is an immutable (name, version): statistics and constraints computed from a dataset
# version, or an edit of an earlier version (parent_id, with the changes applied).
baselines = Table(
    "baselines",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False),
    Column("version", Integer, nullable=False),
    Column("dataset_version_id", ID, ForeignKey("dataset_versions.id"), nullable=False),
    Column("parent_id", ID, ForeignKey("baselines.id")),
    Column("features", JSON, nullable=False),
    Column("statistics", JSON, nullable=False),
    Column("constraints", JSON, nullable=False),
    Column("changes", JSON),  # the edit that made this version from its parent
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("lineage_artifact_id", ID, ForeignKey("lineage_artifacts.id"), nullable=False),
    UniqueConstraint("name", "version"),
)

monitors = Table(
    "monitors",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # data_drift, data_quality, model_quality, ...
    Column("endpoint_id", ID, ForeignKey("endpoints.id")),
    Column("target_dataset", NAME),  # a dataset name watched instead of an endpoint
    Column("baseline_id", ID, ForeignKey("baselines.id")),
    Column("config", JSON, nullable=False),  # thresholds, alert route, schedule, kind options
    Column("last_slot", Float),  # the newest cron slot already run (claimed before running)
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float),
)

monitor_executions = Table(
    "monitor_executions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("monitor_id", ID, ForeignKey("monitors.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("dataset_version_id", ID, ForeignKey("dataset_versions.id"), nullable=False),
    Column("status", String(32), nullable=False),  # completed | completed-with-violations | failed
    Column("trigger", String(16), nullable=False),  # manual | schedule
    Column("slot", Float),  # the cron slot a scheduled run was for
    Column("inputs", JSON),  # ids of the dataset versions it read (and so has checked)
    Column("report", JSON, nullable=False),
    Column("violations", JSON, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Column("lineage_execution_id", ID, ForeignKey("lineage_executions.id"), nullable=False),
    Index("ix_monitor_executions_monitor_started", "monitor_id", "started_at"),
)

# Every alert a monitor raised, whether or not a webhook took it.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("monitor_id", ID, ForeignKey("monitors.id"), nullable=False),
    Column("execution_id", ID, ForeignKey("monitor_executions.id")),
    Column("severity", String(16), nullable=False),  # info | warning | critical
    Column("message", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("webhook", Text),  # NULL: the event log only
    Column("delivered", Boolean),  # NULL when there is no webhook
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Index("ix_alert_events_monitor_created", "monitor_id", "created_at"),
)

# Retraining asked for by an alert: a pipeline reference for the pipelines capability to run.
retrain_triggers = Table(
    "retrain_triggers",
    metadata,
    Column("id", ID, primary_key=True),
    Column("monitor_id", ID, ForeignKey("monitors.id"), nullable=False),
    Column("execution_id", ID, ForeignKey("monitor_executions.id"), nullable=False),
    Column("alert_id", ID, ForeignKey("alert_events.id")),
    Column("pipeline", String(512), nullable=False),  # module:function or a declared name
    Column("params", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | claimed | completed | failed
    Column("claimed_by", NAME),
    Column("pipeline_run_id", ID),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_retrain_triggers_status", "status"),
)

# Human review of low-confidence predictions: one queue per endpoint (its confidence
# threshold and the newest capture version scanned), and one item per captured row queued.
review_queues = Table(
    "review_queues",
    metadata,
    Column("endpoint_id", ID, ForeignKey("endpoints.id"), primary_key=True),
    Column("threshold", Float, nullable=False),  # rows whose probability is below it are queued
    Column("scanned_version", Integer, nullable=False, default=0),  # of ENDPOINT-capture
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

review_items = Table(
    "review_items",
    metadata,
    Column("id", ID, primary_key=True),
    Column("endpoint_id", ID, ForeignKey("endpoints.id"), nullable=False),
    Column("inference_id", String(255), nullable=False),
    Column("row", Integer, nullable=False),  # position within the request
    Column("model_version", String(255), nullable=False),
    Column("capture_version_id", ID, ForeignKey("dataset_versions.id"), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("prediction", JSON),
    Column("confidence", Float, nullable=False),
    Column("status", String(16), nullable=False),  # pending | labelled | skipped
    Column("label", JSON),
    Column("reviewer", NAME),
    Column("note", Text),
    Column("ground_truth", String(255)),  # the ground-truth dataset version the label went to
    Column("created_at", Float, nullable=False),
    Column("reviewed_at", Float),
    UniqueConstraint("endpoint_id", "inference_id", "row"),
    Index("ix_review_items_endpoint_status", "endpoint_id", "status", "confidence"),
)

poisoning_checks = Table(
    "poisoning_checks",
    metadata,
    Column("id", ID, primary_key=True),
    Column("dataset_version_id", ID, ForeignKey("dataset_versions.id"), nullable=False),
    Column("previous_version_id", ID, ForeignKey("dataset_versions.id"), nullable=False),
    Column("blocked", Boolean, nullable=False),
    Column("report", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("lineage_execution_id", ID, ForeignKey("lineage_executions.id"), nullable=False),
)

# --- feature store -----------------------------------------------------------------------------

# Entities, feature views, on-demand feature views and feature services share one versioned
# table: each applied definition is an immutable (kind, name, version) row whose spec is the
# resolved definition (pinned dataset and view versions) and whose digest decides whether a new
# apply is a change.
feature_definitions = Table(
    "feature_definitions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(32), nullable=False),  # entity | feature_view | on_demand | service
    Column("name", NAME, nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("owner", NAME, nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=dict),
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("lineage_artifact_id", ID, ForeignKey("lineage_artifacts.id"), nullable=False),
    UniqueConstraint("kind", "name", "version"),
)

feature_materializations = Table(
    "feature_materializations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("definition_id", ID, ForeignKey("feature_definitions.id"), nullable=False),
    Column("start_time", Float),  # event-time window; NULL start means from the beginning
    Column("end_time", Float, nullable=False),
    Column("status", String(16), nullable=False),  # running | completed | failed
    Column("rows_read", BigInteger, nullable=False, default=0),
    Column("rows_written", BigInteger, nullable=False, default=0),
    Column("online_store", Text, nullable=False),
    Column("statistics", JSON, nullable=False, default=dict),
    Column("error", Text, nullable=False, default=""),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("created_by", NAME, nullable=False),
    Column("lineage_execution_id", ID, ForeignKey("lineage_executions.id"), nullable=False),
    Index("ix_feature_materializations_definition_started", "definition_id", "started_at"),
)

# --- pipelines ---------------------------------------------------------------------------------

# A pipeline run and its steps. A step row is written once, when the step has finished (or been
# cached, skipped or blocked), so a run killed mid-way keeps every finished step and loses only
# the ones in flight. ``cache_key`` digests the step's code, parameters and input digests.
pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("pipeline", NAME, nullable=False),
    Column("pipeline_ref", String(512)),  # module:function, to run it again
    Column("status", String(16), nullable=False),  # running | completed | blocked | failed | ...
    Column("executor", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("graph", JSON, nullable=False),  # the nodes and how they are wired
    Column("user", NAME, nullable=False),
    Column("host", NAME, nullable=False),
    Column("pid", Integer),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("error", Text),
    Column("resumed_from", ID, ForeignKey("pipeline_runs.id")),
    Index("ix_pipeline_runs_pipeline_started", "pipeline", "started_at"),
    Index("ix_pipeline_runs_status", "status"),
)

pipeline_steps = Table(
    "pipeline_steps",
    metadata,
    Column("id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("pipeline_runs.id"), nullable=False),
    Column("name", NAME, nullable=False),
    Column("function", String(512), nullable=False),
    Column("status", String(16), nullable=False),  # completed | cached | skipped | failed | blocked
    Column("cache_key", String(64)),
    Column("cached_from", ID, ForeignKey("pipeline_steps.id")),
    Column("attempts", Integer, nullable=False, default=0),
    Column("outputs", JSON, nullable=False, default=dict),  # {name: {digest, format, ...}}
    Column("reason", Text, nullable=False, default=""),
    Column("error", Text),  # the traceback of the last attempt
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("lineage_execution_id", ID, ForeignKey("lineage_executions.id")),
    UniqueConstraint("run_id", "name"),
    Index("ix_pipeline_steps_cache_key", "cache_key"),
)

# A schedule runs a pipeline at each slot of a cron expression (UTC) or once for each new version
# of a dataset. ``cursor`` is the newest slot (epoch seconds) or dataset version number already
# claimed: a scheduler moves it forward with one conditional UPDATE before it runs anything, so
# of two schedulers only one gets a slot, and a restarted scheduler never runs a slot again.
pipeline_schedules = Table(
    "pipeline_schedules",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False, unique=True),
    Column("pipeline", String(512), nullable=False),  # a declared name or module:function
    Column("kind", String(16), nullable=False),  # cron | dataset
    Column("cron", String(255)),
    Column("dataset", NAME),
    Column("dataset_param", NAME),  # the pipeline parameter that receives name@version
    Column("params", JSON, nullable=False),
    Column("executor", String(255), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("cursor", Float),
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Each time a scheduler ran a pipeline: for which schedule slot, dataset version or retrain
# trigger, in which process, and the pipeline run it started. Written when the slot is claimed.
pipeline_firings = Table(
    "pipeline_firings",
    metadata,
    Column("id", ID, primary_key=True),
    Column("schedule_id", ID, ForeignKey("pipeline_schedules.id")),
    Column("retrain_trigger_id", ID, ForeignKey("retrain_triggers.id")),
    Column("source", String(16), nullable=False),  # cron | dataset | retrain
    Column("key", String(255), nullable=False),  # the slot, dataset version or trigger id
    Column("pipeline", String(512), nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # running | completed | blocked | failed | ...
    Column("claimed_by", NAME, nullable=False),
    Column("host", NAME, nullable=False),
    Column("pid", Integer),
    Column("pipeline_run_id", ID, ForeignKey("pipeline_runs.id")),
    Column("error", Text),
    Column("claimed_at", Float, nullable=False),
    Column("ended_at", Float),
    UniqueConstraint("schedule_id", "key"),
    Index("ix_pipeline_firings_status", "status"),
)

# A hyperparameter search: the study's settings and outcome; each trial is also a child run of
# ``parent_run_id`` in tracking. The study itself runs in memory; these rows are its record.
tuning_studies = Table(
    "tuning_studies",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False),
    Column("metric", NAME, nullable=False),
    Column("direction", String(8), nullable=False),  # maximize | minimize
    Column("search_space", JSON, nullable=False),  # {param: Optuna distribution as JSON}
    Column("settings", JSON, nullable=False),  # sampler, pruner, seed, budget, executor, ...
    Column("status", String(16), nullable=False),  # running | completed | failed | interrupted
    Column("parent_run_id", ID, ForeignKey("runs.id")),
    Column("best_trial", Integer),
    Column("best_value", Float),
    Column("best_params", JSON),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("ended_at", Float),
    Index("ix_tuning_studies_name_created", "name", "created_at"),
)

tuning_trials = Table(
    "tuning_trials",
    metadata,
    Column("study_id", ID, ForeignKey("tuning_studies.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("state", String(16), nullable=False),  # complete | pruned | failed
    Column("params", JSON, nullable=False),
    Column("value", Float),
    Column("intermediate", JSON, nullable=False),  # [[step, value], ...]
    Column("run_id", ID, ForeignKey("runs.id")),
    Column("error", Text),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
)

# --- lens --------------------------------------------------------------------------------------

lens_reviews = Table(
    "lens_reviews",
    metadata,
    Column("id", ID, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", NAME, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("results", JSON, nullable=False),
)

lens_answers = Table(
    "lens_answers",
    metadata,
    Column("practice_id", String(16), primary_key=True),
    Column("choice", String(8), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("answered_by", NAME, nullable=False),
    Column("answered_at", Float, nullable=False),
)
