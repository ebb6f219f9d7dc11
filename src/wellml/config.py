"""Settings: the project spec in ``wellml.yaml``, ``WELLML_*`` environment variables, defaults.

The spec is the project's declarations that the lens review reads (owner, business goal, KPIs,
stages, ...). It is validated with pydantic so that every bad field gets its own clear line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from wellml.errors import InvalidInput, NotFound
from wellml.names import NAME_PATTERN, check_name

SPEC_FILE = "wellml.yaml"
STATE_DIR = ".wellml"
TRIGGER_KINDS = ("dataset",)
"""The trigger kinds ``wellml.yaml`` declares (a monitor's drift alert names its pipeline on
the monitor's alert route)."""
_PIPELINE_REF = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"


class _Section(BaseModel):
    # Unknown keys are almost always typos; refusing them beats silently ignoring a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class KPI(_Section):
    """A business KPI the workload is judged by."""

    name: str = Field(min_length=1)
    description: str = ""
    target: float | None = None
    direction: str = Field(default="maximize", pattern="^(maximize|minimize)$")
    unit: str = ""


class Business(_Section):
    """The business goal and how success is measured."""

    goal: str = ""
    kpis: list[KPI] = Field(default_factory=list)
    constraints: list[dict[str, Any]] = Field(default_factory=list)
    roi: dict[str, Any] = Field(default_factory=dict)


class Stage(_Section):
    """A deployment stage (dev, staging, prod, ...)."""

    name: str = Field(min_length=1, pattern=NAME_PATTERN.pattern)
    tags: list[str] = Field(default_factory=list)


class Stores(_Section):
    """Where the workspace keeps its records; relative paths are under the workspace."""

    metadata: str = f"sqlite:///{STATE_DIR}/metadata.db"
    artifacts: str = f"{STATE_DIR}/artifacts"
    capture: str = f"{STATE_DIR}/capture"
    online: str = f"sqlite:///{STATE_DIR}/online.db"


class Governance(_Section):
    """Roles and the agreed level of explainability."""

    roles: dict[str, list[str]] = Field(default_factory=dict)
    explainability: dict[str, Any] = Field(default_factory=dict)


class LensSettings(_Section):
    """Lens review thresholds and accepted risks."""

    thresholds: dict[str, float] = Field(default_factory=dict)
    waivers: list[dict[str, Any]] = Field(default_factory=list)


class EndpointSpec(_Section):
    """Declarations about one endpoint: who may call it, and its service levels."""

    allowed_consumers: list[str] = Field(default_factory=list)
    slo: dict[str, float] = Field(default_factory=dict)
    # Whether people review its low-confidence predictions (MLPER-18); when not, why not.
    human_review: bool | None = None
    human_review_rationale: str = ""
    review_sla_hours: float = Field(default=72.0, gt=0)


class FeatureFieldSpec(_Section):
    """A typed feature (or request field) in ``wellml.yaml``."""

    name: str = Field(min_length=1)
    dtype: str = Field(min_length=1)
    description: str = ""


class EntitySpec(_Section):
    """An entity: the join keys feature rows are looked up by."""

    name: str = Field(min_length=1)
    join_keys: list[str] = Field(default_factory=list)
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class FeatureSourceSpec(_Section):
    """Where a feature view reads from: exactly one of a catalog dataset, a Parquet path or
    glob, or a DuckDB query over them."""

    dataset: str | None = None
    path: str | None = None
    query: str | None = None


class FeatureViewSpec(_Section):
    """A feature view: typed features of one or more entities over event time."""

    name: str = Field(min_length=1)
    entities: list[str] = Field(min_length=1)
    source: FeatureSourceSpec
    timestamp_field: str = Field(min_length=1)
    created_timestamp_field: str | None = None
    ttl: str | float | None = None
    features: list[FeatureFieldSpec] = Field(default_factory=list)
    online: bool = True
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class OnDemandFeatureSpec(_Section):
    """Features computed by a Python function of request data and other features."""

    name: str = Field(min_length=1)
    function: str = Field(min_length=1, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    inputs: list[str] = Field(default_factory=list)
    request: list[FeatureFieldSpec] = Field(default_factory=list)
    features: list[FeatureFieldSpec] = Field(min_length=1)
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class FeatureServiceSpec(_Section):
    """A named set of features a model consumes."""

    name: str = Field(min_length=1)
    features: list[str] = Field(min_length=1)
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class FeatureDefinitions(_Section):
    """The ``features:`` section: what ``wellml features plan|apply`` reads."""

    entities: list[EntitySpec] = Field(default_factory=list)
    feature_views: list[FeatureViewSpec] = Field(default_factory=list)
    on_demand_features: list[OnDemandFeatureSpec] = Field(default_factory=list)
    feature_services: list[FeatureServiceSpec] = Field(default_factory=list)


class PipelineSpec(_Section):
    """A pipeline declared in ``wellml.yaml``: its ``module:function`` and default params."""

    function: str = Field(min_length=1, pattern=_PIPELINE_REF)
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class ScheduleSpec(_Section):
    """A cron schedule in ``wellml.yaml``: run a pipeline at every slot (five fields, UTC)."""

    pipeline: str = Field(min_length=1)
    cron: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    executor: str = "local"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from wellml.pipelines.schedules import check_cron

        try:
            return check_cron(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    @field_validator("executor")
    @classmethod
    def _valid_executor(cls, value: str) -> str:
        return _executor(value)


class TriggerSpec(_Section):
    """An event trigger in ``wellml.yaml``: run a pipeline when something happens.

    ``kind: dataset`` (the only kind declared here) runs once for every new version of
    ``dataset``; ``dataset_param`` names the pipeline parameter that receives ``name@version``.
    Retraining on a monitor's drift alert is declared on the monitor's alert route instead.
    """

    pipeline: str = Field(min_length=1)
    kind: str = "dataset"
    dataset: str = Field(min_length=1)
    dataset_param: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    executor: str = "local"

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in TRIGGER_KINDS:
            raise ValueError(
                f"unknown trigger kind {value!r}: use {', '.join(TRIGGER_KINDS)} (retraining "
                "on drift is declared on a monitor's alert route)"
            )
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        return _name(value, "dataset name")

    @field_validator("executor")
    @classmethod
    def _valid_executor(cls, value: str) -> str:
        return _executor(value)


def _name(value: str, what: str) -> str:
    try:
        return check_name(value, what)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


def _executor(value: str) -> str:
    from wellml.pipelines.schedules import check_executor

    try:
        return check_executor(value)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


def _check_pipelines_named(
    entries: dict[str, ScheduleSpec] | dict[str, TriggerSpec], info: ValidationInfo, what: str
) -> None:
    declared = info.data.get("pipelines") or {}
    for name, entry in entries.items():
        _name(name, f"{what} name")
        if entry.pipeline not in declared and not re.match(_PIPELINE_REF, entry.pipeline):
            known = ", ".join(sorted(declared)) or "none declared"
            raise ValueError(
                f"{name}: unknown pipeline {entry.pipeline!r}: name one declared under "
                f"pipelines ({known}) or give module:function"
            )


class ProjectSpec(_Section):
    """The contents of ``wellml.yaml``."""

    name: str = Field(min_length=1, pattern=NAME_PATTERN.pattern)
    owner: str = ""
    description: str = ""
    business: Business = Field(default_factory=Business)
    stages: list[Stage] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    stores: Stores = Field(default_factory=Stores)
    endpoints: dict[str, EndpointSpec] = Field(default_factory=dict)
    features: FeatureDefinitions = Field(default_factory=FeatureDefinitions)
    pipelines: dict[str, PipelineSpec] = Field(default_factory=dict)
    # After ``pipelines``: their validators look the declared pipelines up.
    schedules: dict[str, ScheduleSpec] = Field(default_factory=dict)
    triggers: dict[str, TriggerSpec] = Field(default_factory=dict)
    governance: Governance = Field(default_factory=Governance)
    lens: LensSettings = Field(default_factory=LensSettings)

    @field_validator("stages", mode="before")
    @classmethod
    def _stages_from_names(cls, value: Any) -> Any:
        # `stages: [dev, prod]` is the common short form.
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("pipelines", mode="before")
    @classmethod
    def _pipelines_from_refs(cls, value: Any) -> Any:
        # `name: module:function` is the short form of `name: {function: module:function}`.
        if isinstance(value, dict):
            for name in value:
                if not isinstance(name, str) or not NAME_PATTERN.match(name):
                    raise ValueError(f"invalid pipeline name {name!r}")
            return {k: {"function": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("schedules", "triggers")
    @classmethod
    def _known_pipelines(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Schedules and triggers share one namespace (one table of schedules).
        what = "trigger" if info.field_name == "triggers" else "schedule"
        _check_pipelines_named(value, info, what)
        if info.field_name == "triggers":
            both = set(value) & set(info.data.get("schedules") or {})
            if both:
                raise ValueError(
                    f"{', '.join(sorted(both))}: a schedule and a trigger cannot share a name"
                )
        return value

    @field_validator("stages")
    @classmethod
    def _unique_stages(cls, value: list[Stage]) -> list[Stage]:
        names = [s.name for s in value]
        if len(names) != len(set(names)):
            raise ValueError(f"stage names must be unique, got {names}")
        return value


def parse_spec(data: Any, *, source: str = SPEC_FILE) -> ProjectSpec:
    """Validate a parsed spec document.

    Raises:
        InvalidInput: one line per bad field, each naming the field's path.
    """
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: expected a mapping at the top level")
    try:
        return ProjectSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            # A validator's own message reads better without pydantic's "Value error, ".
            cause = (err.get("ctx") or {}).get("error") if err["type"] == "value_error" else None
            lines.append(f"{source}: {where}: {cause if cause is not None else err['msg']}")
        raise InvalidInput("\n".join(lines)) from None


def load_spec(path: Path) -> ProjectSpec:
    """Read and validate ``wellml.yaml``.

    Raises:
        NotFound: the file does not exist.
        InvalidInput: the file is not YAML or a field is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no {SPEC_FILE} at {path}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(data, source=str(path))


def dump_spec(spec: ProjectSpec) -> str:
    """Render a spec as YAML, leaving out values equal to their defaults."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    data.setdefault("name", spec.name)
    return yaml.safe_dump(data, sort_keys=False)


def find_workspace_root(start: Path | None = None) -> Path:
    """Find the workspace: ``WELLML_WORKSPACE``, else the nearest folder upward with a spec.

    Raises:
        NotFound: no workspace was found.
    """
    env = os.environ.get("WELLML_WORKSPACE")
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / SPEC_FILE).is_file():
            raise NotFound(f"WELLML_WORKSPACE={env} has no {SPEC_FILE}; run `wellml init {env}`")
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / SPEC_FILE).is_file():
            return folder
    raise NotFound(f"no {SPEC_FILE} in {here} or any parent; run `wellml init` first")


def resolve_url(url: str, root: Path) -> str:
    """Make a store URL or path absolute against the workspace root.

    ``sqlite:///relative.db`` and bare relative paths are taken relative to the workspace;
    any other URL (``postgresql+psycopg://``, ``s3://``, ...) is returned unchanged.
    """
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url.removeprefix("sqlite:///")
        if rel in ("", ":memory:"):
            return url
        return "sqlite:///" + str((root / rel).resolve())
    if "://" in url:
        return url
    return str((root / url).resolve())


def store_urls(spec: ProjectSpec, root: Path) -> Stores:
    """The store URLs in force: environment variables override the spec."""
    return Stores(
        metadata=resolve_url(os.environ.get("WELLML_DB_URL") or spec.stores.metadata, root),
        artifacts=resolve_url(
            os.environ.get("WELLML_ARTIFACTS_URL") or spec.stores.artifacts, root
        ),
        capture=resolve_url(os.environ.get("WELLML_CAPTURE_URL") or spec.stores.capture, root),
        online=resolve_url(os.environ.get("WELLML_ONLINE_URL") or spec.stores.online, root),
    )


def current_user() -> str:
    """Who is acting: ``WELLML_USER``, else the login name."""
    user = os.environ.get("WELLML_USER")
    if user:
        return user
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
