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
    Column("model_version_id", ID, ForeignKey("model_versions.id"), nullable=False),
    Column("status", String(16), nullable=False),  # creating | in-service | stopped | failed
    Column("host", NAME, nullable=False),
    Column("port", Integer, nullable=False),
    Column("pid", Integer),
    Column("config", JSON, nullable=False),  # auth, capture sampling, payload limit, ...
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("lineage_artifact_id", ID, ForeignKey("lineage_artifacts.id"), nullable=False),
)

endpoint_deployments = Table(
    "endpoint_deployments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("endpoint_id", ID, ForeignKey("endpoints.id"), nullable=False),
    Column("model_version_id", ID, ForeignKey("model_versions.id"), nullable=False),
    Column("config", JSON, nullable=False),
    Column("actor", NAME, nullable=False),
    Column("origin", String(32), nullable=False, default="manual"),
    Column("outcome", String(32), nullable=False),  # started | stopped | failed | rolled-back
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
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

# --- monitoring --------------------------------------------------------------------------------

baselines = Table(
    "baselines",
    metadata,
    Column("id", ID, primary_key=True),
    Column("dataset_version_id", ID, ForeignKey("dataset_versions.id"), nullable=False),
    Column("features", JSON, nullable=False),
    Column("statistics", JSON, nullable=False),
    Column("constraints", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("lineage_artifact_id", ID, ForeignKey("lineage_artifacts.id"), nullable=False),
)

monitors = Table(
    "monitors",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", NAME, nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # data_drift, data_quality, ...
    Column("endpoint_id", ID, ForeignKey("endpoints.id")),
    Column("baseline_id", ID, ForeignKey("baselines.id"), nullable=False),
    Column("config", JSON, nullable=False),  # thresholds, alert route, schedule
    Column("created_at", Float, nullable=False),
)

monitor_executions = Table(
    "monitor_executions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("monitor_id", ID, ForeignKey("monitors.id"), nullable=False),
    Column("dataset_version_id", ID, ForeignKey("dataset_versions.id"), nullable=False),
    Column("status", String(32), nullable=False),  # completed | completed-with-violations | failed
    Column("report", JSON, nullable=False),
    Column("violations", JSON, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
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
