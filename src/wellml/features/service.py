"""The feature store service: plan and apply definitions, build training sets, materialize,
and serve online features.

One :class:`FeatureStore` per workspace (``ws.features``). Definitions are versioned the way
everything else in wellml is: applying a changed definition stores a new immutable version and
leaves the old one (and whatever was built from it) intact; an unchanged one is a no-op.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import importlib
import inspect
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy.exc

from wellml.config import current_user
from wellml.errors import Conflict, InvalidInput, NotFound, UserCodeError
from wellml.features.definitions import (
    DTYPES,
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    from_spec,
    parse_feature_ref,
)
from wellml.names import parse_ref
from wellml.store import features as sql
from wellml.store.metadata import new_id, now, redact_url
from wellml.store.offline import (
    FeatureSource,
    TieChecks,
    describe_source,
    get_historical_features,
    is_dataframe,
    latest_rows,
    source_has_ties,
)
from wellml.store.online import OnlineStore, open_online_store

if TYPE_CHECKING:
    # pandas is imported where a DataFrame is built, so that building a training set from
    # Parquet or Arrow data never loads it (it is a good part of a process's fixed memory).
    import pandas as pd

    from wellml.data.catalog import DatasetVersion
    from wellml.workspace import Workspace

__all__ = [
    "FeatureDefinitionVersion",
    "FeaturePlan",
    "FeatureStore",
    "Materialization",
    "OnlineFeatures",
    "ParityReport",
    "PlanItem",
]

EntityInput: TypeAlias = "pd.DataFrame | pa.Table | str | Path | DatasetVersion"

KINDS = ("entity", "feature_view", "on_demand", "feature_service")
_VIEW_KINDS = ("feature_view", "on_demand")

_ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}

# A DuckDB column type -> the dtype family a declared feature type is checked against.
_FAMILIES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?)$"), "integer"),
    (re.compile(r"^(FLOAT|DOUBLE|REAL|DECIMAL.*)$"), "float"),
    (re.compile(r"^(VARCHAR|ENUM.*)$"), "string"),
    (re.compile(r"^BOOLEAN$"), "bool"),
    (re.compile(r"^TIMESTAMP.*$"), "timestamp"),
]
# What a feature of an undeclared type is inferred as, by family.
_INFERRED = {
    "integer": "int64",
    "float": "float64",
    "string": "string",
    "bool": "bool",
    "timestamp": "timestamp",
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9][A-Za-z0-9_.-]*(?:@[A-Za-z0-9]+)?)\}")
# How long a cached resolution of unpinned feature references is trusted.
_PLAN_CACHE_SECONDS = 10.0


def _family(duck_type: str) -> str | None:
    for pattern, family in _FAMILIES:
        if pattern.match(duck_type):
            return family
    return None


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class FeatureDefinitionVersion:
    """One applied, immutable version of an entity, feature view, on-demand view or service."""

    id: str
    kind: str
    name: str
    version: int
    digest: str
    spec: dict[str, Any]
    description: str
    owner: str
    tags: dict[str, str]
    created_at: float
    created_by: str
    lineage_artifact_id: str

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def lineage_ref(self) -> str:
        """This version's node in the lineage graph."""
        return f"{self.kind}:{self.ref}"

    @property
    def online_name(self) -> str:
        """The table this version is kept under in the online store."""
        return f"{self.name}.v{self.version}"

    @property
    def feature_names(self) -> list[str]:
        """The features it provides (views) or consumes (services), in order."""
        if self.kind == "feature_service":
            return [
                f"{g['view']}@{g['version']}:{f}"
                for g in self.spec["features"]
                for f in g["features"]
            ]
        if self.kind == "entity":
            return []
        return [f["name"] for f in self.spec["features"]]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "kind": self.kind,
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "spec": self.spec,
            "description": self.description,
            "owner": self.owner,
            "tags": self.tags,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "lineage_ref": self.lineage_ref,
        }


def _definition(row: dict[str, Any]) -> FeatureDefinitionVersion:
    return FeatureDefinitionVersion(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        version=row["version"],
        digest=row["digest"],
        spec=row["spec"],
        description=row["description"],
        owner=row["owner"],
        tags=row["tags"] or {},
        created_at=row["created_at"],
        created_by=row["created_by"],
        lineage_artifact_id=row["lineage_artifact_id"],
    )


@dataclass(frozen=True)
class PlanItem:
    """What applying one definition would do."""

    kind: str
    name: str
    action: str  # create | update | unchanged
    current_version: int | None
    new_version: int
    changes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "current_version": self.current_version,
            "new_version": self.new_version,
            "changes": list(self.changes),
        }


@dataclass(frozen=True)
class FeaturePlan:
    """The outcome of planning (or applying) a set of definitions."""

    items: tuple[PlanItem, ...]
    applied: bool = False

    @property
    def changed(self) -> builtins.list[PlanItem]:
        """The items that create or update a version."""
        return [i for i in self.items if i.action != "unchanged"]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {"applied": self.applied, "items": [i.to_dict() for i in self.items]}


@dataclass(frozen=True)
class Materialization:
    """One run of copying a feature view version's latest rows to the online store."""

    id: str
    view: str
    version: int
    start_time: float | None
    end_time: float
    status: str
    rows_read: int
    rows_written: int
    online_store: str
    statistics: dict[str, Any]
    error: str
    started_at: float
    finished_at: float | None
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "view": f"{self.view}@{self.version}",
            "start_time": self.start_time,
            "end_time": self.end_time,
            "status": self.status,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "online_store": self.online_store,
            "statistics": self.statistics,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "created_by": self.created_by,
        }


def _materialization(row: dict[str, Any], view: FeatureDefinitionVersion) -> Materialization:
    return Materialization(
        id=row["id"],
        view=view.name,
        version=view.version,
        start_time=row["start_time"],
        end_time=row["end_time"],
        status=row["status"],
        rows_read=row["rows_read"],
        rows_written=row["rows_written"],
        online_store=row["online_store"],
        statistics=row["statistics"] or {},
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        created_by=row["created_by"],
    )


@dataclass(frozen=True)
class ParityReport:
    """How well the online store agrees with the offline data it was materialized from."""

    view: str
    as_of: float
    sampled: int
    mismatched: int
    examples: list[dict[str, Any]]

    @property
    def mismatch_rate(self) -> float:
        """Share of sampled entities whose online values differ from the offline ones."""
        return self.mismatched / self.sampled if self.sampled else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "view": self.view,
            "as_of": self.as_of,
            "sampled": self.sampled,
            "mismatched": self.mismatched,
            "mismatch_rate": self.mismatch_rate,
            "examples": self.examples,
        }


@dataclass(frozen=True)
class OnlineFeatures:
    """Online feature values, column by column: the entity columns given, then the features.

    A feature whose entity has never been materialized, or whose row is older than the view's
    TTL, is ``None``.
    """

    columns: dict[str, list[Any]]

    def to_dict(self) -> dict[str, list[Any]]:
        """``{column: [value per entity row]}``."""
        return self.columns

    def rows(self) -> list[dict[str, Any]]:
        """One dict per entity row."""
        names = list(self.columns)
        return [dict(zip(names, values)) for values in zip(*self.columns.values())]

    def to_pandas(self) -> pd.DataFrame:
        """A DataFrame with one row per entity row."""
        import pandas as pd

        return pd.DataFrame(self.columns)


# --------------------------------------------------------------------------------------------
# resolution of definitions against the workspace


@dataclass
class _Resolved:
    """A definition with its spec resolved, ready to compare with the stored latest version."""

    kind: str
    name: str
    spec: dict[str, Any]
    description: str
    owner: str
    tags: dict[str, str]
    depends_on: list[str]  # lineage artifact ids of what it was built from (stored versions)
    depends_on_new: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) applied now
    digest: str = ""
    current: FeatureDefinitionVersion | None = None
    version: int = 0

    def finish(self) -> None:
        self.digest = _digest(
            {
                "spec": self.spec,
                "description": self.description,
                "owner": self.owner,
                "tags": self.tags,
            }
        )
        if self.current is not None and self.current.digest == self.digest:
            self.version = self.current.version
        else:
            self.version = (self.current.version if self.current else 0) + 1

    @property
    def action(self) -> str:
        if self.current is None:
            return "create"
        return "unchanged" if self.current.digest == self.digest else "update"


def _changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two specs, key by key."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        where = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changes(a, b, f"{where}.")
        elif key == "features" and isinstance(a, list) and isinstance(b, list):
            names_a = {
                f.get("name", json.dumps(f, sort_keys=True)): f for f in a if isinstance(f, dict)
            }
            names_b = {
                f.get("name", json.dumps(f, sort_keys=True)): f for f in b if isinstance(f, dict)
            }
            added = [n for n in names_b if n not in names_a]
            removed = [n for n in names_a if n not in names_b]
            changed = [n for n in names_a if n in names_b and names_a[n] != names_b[n]]
            if added:
                out.append(f"{where}: added {', '.join(added)}")
            if removed:
                out.append(f"{where}: removed {', '.join(removed)}")
            if changed:
                out.append(f"{where}: changed {', '.join(changed)}")
            if not (added or removed or changed):
                out.append(f"{where}: reordered")
        else:
            out.append(f"{where}: {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}")
    return out


def load_function(path: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Import an on-demand transformation by ``module:qualname``.

    A module attribute that is an :class:`OnDemandFeatureView` (what the decorator leaves
    behind) gives its function.

    Raises:
        InvalidInput: the module or attribute cannot be imported, or is not callable.
    """
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"cannot import on-demand function {path!r}: {exc}") from None
    except Exception as exc:
        raise UserCodeError(f"importing on-demand function {path!r} failed: {exc}") from exc
    if isinstance(obj, OnDemandFeatureView):
        obj = obj.function
        if isinstance(obj, str):
            return load_function(obj)
    if not callable(obj):
        raise InvalidInput(f"on-demand function {path!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _code_digest(function: Callable[..., Any], path: str) -> str:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError) as exc:
        raise InvalidInput(
            f"cannot read the source code of on-demand function {path!r}: {exc}"
        ) from None
    return hashlib.sha256(source.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# retrieval plans


@dataclass(frozen=True)
class _ViewPart:
    """Features read from one feature view version."""

    view: FeatureDefinitionVersion
    features: tuple[str, ...]  # every feature read (requested and on-demand inputs)


@dataclass(frozen=True)
class _OnDemandPart:
    view: FeatureDefinitionVersion
    function: Callable[[pd.DataFrame], pd.DataFrame]
    features: tuple[str, ...]  # requested outputs


@dataclass(frozen=True)
class _RetrievalPlan:
    views: tuple[_ViewPart, ...]
    on_demand: tuple[_OnDemandPart, ...]
    outputs: tuple[tuple[str, str, str], ...]  # (view name, feature, output column)
    service: FeatureDefinitionVersion | None
    pinned: bool
    resolved_at: float

    def lineage_inputs(self) -> list[tuple[str, str]]:
        ids = [(p.view.lineage_artifact_id, "features") for p in self.views]
        ids += [(p.view.lineage_artifact_id, "features") for p in self.on_demand]
        if self.service is not None:
            ids.append((self.service.lineage_artifact_id, "feature_service"))
        return ids

    def feature_refs(self) -> list[str]:
        parts: list[_ViewPart | _OnDemandPart] = [*self.views, *self.on_demand]
        versions = {p.view.name: p.view.version for p in parts}
        return [f"{view}@{versions[view]}:{feature}" for view, feature, _ in self.outputs]


def _internal(view: str, feature: str) -> str:
    return f"{view}__{feature}"


# --------------------------------------------------------------------------------------------
# the service


class FeatureStore:
    """Entities, feature views, on-demand features and feature services of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self._store = workspace.metadata
        self._lineage = workspace.lineage
        self._online: OnlineStore | None = None
        self._online_lock = threading.Lock()
        self._plans: dict[tuple[Any, ...], _RetrievalPlan] = {}
        # Tie checks of Parquet sources, shared by every process of the workspace.
        self._tie_checks = TieChecks(workspace.state_dir / "offline-tie-checks.json")

    # -- online store handle -----------------------------------------------------------------

    @property
    def online_store(self) -> OnlineStore:
        """The workspace's online store (``stores.online`` / ``WELLML_ONLINE_URL``)."""
        if self._online is None:
            with self._online_lock:
                if self._online is None:
                    self._online = open_online_store(self._ws.urls.online)
        return self._online

    def close(self) -> None:
        """Release the online store's connections."""
        if self._online is not None:
            self._online.close()
            self._online = None

    # -- definitions -------------------------------------------------------------------------

    def definitions_from_spec(self) -> builtins.list[Definition]:
        """The definitions declared in the workspace's ``wellml.yaml``."""
        return from_spec(self._ws.spec.features)

    def plan(self, definitions: Iterable[Definition] | None = None) -> FeaturePlan:
        """What :meth:`apply` would do with these definitions (default: ``wellml.yaml``'s).

        Raises:
            InvalidInput: a definition is invalid against the workspace (unknown entity or
                view, missing column, type mismatch, unreadable source, ...).
            NotFound: a source dataset does not exist.
        """
        resolved = self._resolve(self._definitions(definitions))
        return FeaturePlan(tuple(self._plan_item(r) for r in resolved))

    def apply(self, definitions: Iterable[Definition] | None = None) -> FeaturePlan:
        """Store every changed definition as a new version, in one transaction.

        Unchanged definitions keep their version; nothing is deleted or overwritten. Either
        every change is applied or, on any error, none is.

        Raises:
            InvalidInput, NotFound: as :meth:`plan`; nothing is applied.
            Conflict: another apply changed the same definitions meanwhile; plan again.
        """
        resolved = self._resolve(self._definitions(definitions))
        items = tuple(self._plan_item(r) for r in resolved)
        changed = [r for r in resolved if r.action != "unchanged"]
        if changed:
            try:
                self._write(changed)
            except sqlalchemy.exc.IntegrityError:
                raise Conflict(
                    "feature definitions were changed by another apply meanwhile; plan again"
                ) from None
            self._plans.clear()
        for r in resolved:
            if r.kind == "feature_view":
                self._check_ties(r.name, r.spec)
        return FeaturePlan(items, applied=True)

    def _check_ties(self, name: str, spec: dict[str, Any]) -> None:
        """Check a view's Parquet source for ties now, so that the first training set built
        from it does not pay for the check (see :func:`wellml.store.offline.source_has_ties`).
        """
        data = self._source_data(spec["source"])
        if not isinstance(data, str):
            return
        source = FeatureSource(
            name=name,
            data=data,
            join_keys=tuple(spec["join_keys"]),
            timestamp=spec["timestamp_field"],
            features=tuple(f["name"] for f in spec["features"]),
        )
        try:
            source_has_ties(source, self._tie_checks)
        except InvalidInput:
            # The definitions are stored already; a source that became unreadable meanwhile
            # is reported by the join that reads it.
            return

    def _definitions(self, definitions: Iterable[Definition] | None) -> builtins.list[Definition]:
        if definitions is None:
            return self.definitions_from_spec()
        if isinstance(definitions, Entity | FeatureView | OnDemandFeatureView | FeatureService):
            return [definitions]
        out = list(definitions)
        for d in out:
            if not isinstance(d, Entity | FeatureView | OnDemandFeatureView | FeatureService):
                raise InvalidInput(f"not a feature definition: {d!r}")
        return out

    def _plan_item(self, r: _Resolved) -> PlanItem:
        current = r.current
        changes: tuple[str, ...] = ()
        if r.action == "update" and current is not None:
            old = {
                "spec": current.spec,
                "description": current.description,
                "owner": current.owner,
                "tags": current.tags,
            }
            new = {"spec": r.spec, "description": r.description, "owner": r.owner, "tags": r.tags}
            changes = tuple(_changes(old, new))
        return PlanItem(
            kind=r.kind,
            name=r.name,
            action=r.action,
            current_version=current.version if current else None,
            new_version=r.version,
            changes=changes,
        )

    def _resolve(self, definitions: builtins.list[Definition]) -> builtins.list[_Resolved]:
        """Validate every definition and resolve it against the workspace, in dependency order."""
        by_kind: dict[str, list[Any]] = {k: [] for k in KINDS}
        namespace: dict[str, str] = {}
        for d in definitions:
            kind = {
                Entity: "entity",
                FeatureView: "feature_view",
                OnDemandFeatureView: "on_demand",
                FeatureService: "feature_service",
            }[type(d)]
            space = "view" if kind in _VIEW_KINDS else kind
            key = f"{space}:{d.name}"
            if key in namespace:
                raise InvalidInput(f"{d.name!r} is defined twice ({namespace[key]} and {kind})")
            namespace[key] = kind
            by_kind[kind].append(d)

        out: list[_Resolved] = []
        pending: dict[tuple[str, str], _Resolved] = {}
        with self._store.read() as conn:

            def stored(
                kind: str | tuple[str, ...], name: str, version: int | None = None
            ) -> FeatureDefinitionVersion | None:
                row = sql.get_definition(conn, kind, name, version)
                return _definition(row) if row else None

            def add(r: _Resolved) -> None:
                r.current = stored(r.kind, r.name)
                if r.current is None and r.kind in _VIEW_KINDS:
                    other = "on_demand" if r.kind == "feature_view" else "feature_view"
                    if stored(other, r.name) is not None:
                        raise InvalidInput(
                            f"{r.name!r} already names a {other.replace('_', ' ')}; "
                            "feature view names are shared by both kinds"
                        )
                r.finish()
                out.append(r)
                pending[(r.kind, r.name)] = r

            for e in by_kind["entity"]:
                add(
                    _Resolved(
                        "entity",
                        e.name,
                        {"join_keys": list(e.join_keys)},
                        e.description,
                        e.owner,
                        e.tags,
                        [],
                    )
                )
            for v in by_kind["feature_view"]:
                add(self._resolve_view(v, pending, stored))
            for o in by_kind["on_demand"]:
                add(self._resolve_on_demand(o, pending, stored))
            for s in by_kind["feature_service"]:
                add(self._resolve_service(s, pending, stored))
        return out

    def _resolve_view(
        self,
        view: FeatureView,
        pending: dict[tuple[str, str], _Resolved],
        stored: Callable[..., FeatureDefinitionVersion | None],
    ) -> _Resolved:
        what = f"feature view {view.name!r}"
        join_keys: list[str] = []
        depends: list[str] = []
        depends_new: list[tuple[str, str]] = []
        entities = []
        for name in view.entities:
            new = pending.get(("entity", name))
            if new is not None:
                keys = new.spec["join_keys"]
                if new.action != "unchanged":
                    depends_new.append(("entity", name))
                elif new.current is not None:
                    depends.append(new.current.lineage_artifact_id)
                version = new.version
            else:
                old = stored("entity", name)
                if old is None:
                    raise InvalidInput(
                        f"{what}: unknown entity {name!r}; define and apply it first"
                    )
                keys = old.spec["join_keys"]
                depends.append(old.lineage_artifact_id)
                version = old.version
            entities.append(f"{name}@{version}")
            join_keys += [k for k in keys if k not in join_keys]

        source_spec, data, source_depends = self._resolve_source(view)
        depends += source_depends
        types = _source_types(data, what)
        key_types: dict[str, str] = {}
        for key in join_keys:
            if key not in types:
                raise InvalidInput(f"{what}: join key column {key!r} is missing from the source")
            family = _family(types[key])
            if family not in ("integer", "string"):
                raise InvalidInput(
                    f"{what}: join key {key!r} must be an integer or string column, "
                    f"got {types[key]}"
                )
            key_types[key] = family
        for label, column in (
            ("timestamp_field", view.timestamp_field),
            ("created_timestamp_field", view.created_timestamp_field),
        ):
            if column is None:
                continue
            if column not in types:
                raise InvalidInput(f"{what}: {label} column {column!r} is missing from the source")
            if _family(types[column]) != "timestamp":
                raise InvalidInput(
                    f"{what}: {label} column {column!r} must be a timestamp, got {types[column]}"
                )
        reserved = {*join_keys, view.timestamp_field, view.created_timestamp_field}
        features: list[dict[str, str]] = []
        if view.features:
            for f in view.features:
                if f.name in reserved:
                    raise InvalidInput(f"{what}: feature {f.name!r} is a join key or timestamp")
                if f.name not in types:
                    raise InvalidInput(
                        f"{what}: feature column {f.name!r} is missing from the source"
                    )
                family = _family(types[f.name])
                if family not in DTYPES[f.dtype]:
                    raise InvalidInput(
                        f"{what}: feature {f.name!r} is declared {f.dtype} but the source column "
                        f"is {types[f.name]}"
                    )
                features.append(f.to_dict())
        else:
            unsupported = []
            for column, duck_type in types.items():
                if column in reserved:
                    continue
                family = _family(duck_type)
                if family is None:
                    unsupported.append(f"{column} ({duck_type})")
                    continue
                features.append({"name": column, "dtype": _INFERRED[family], "description": ""})
            if unsupported:
                raise InvalidInput(
                    f"{what}: cannot infer feature types for {', '.join(unsupported)}; "
                    "declare the features to use"
                )
            if not features:
                raise InvalidInput(f"{what}: the source has no feature columns")
        spec = {
            "entities": entities,
            "join_keys": join_keys,
            "key_types": key_types,
            "source": source_spec,
            "timestamp_field": view.timestamp_field,
            "created_timestamp_field": view.created_timestamp_field,
            "ttl_seconds": view.ttl_seconds,
            "features": features,
            "online": view.online,
        }
        r = _Resolved(
            "feature_view",
            view.name,
            spec,
            view.description,
            view.owner,
            dict(view.tags),
            depends,
            depends_new,
        )
        return r

    def _resolve_source(self, view: FeatureView) -> tuple[dict[str, Any], Any, list[str]]:
        """The pinned source spec, something DuckDB can read, and lineage dependencies."""
        src = view.source
        what = f"feature view {view.name!r}"
        if src.dataset is not None:
            dv = self._ws.data.get(src.dataset)
            path = self._ws.artifacts.local_path(dv.artifact_digest)
            return {"dataset": dv.ref}, str(path), [dv.lineage_artifact_id]
        if src.path is not None:
            path_text = src.path
            if "://" not in path_text:
                path_text = (
                    str((self._ws.root / Path(path_text).expanduser()).resolve())
                    if not Path(path_text).expanduser().is_absolute()
                    else str(Path(path_text).expanduser())
                )
            return {"path": path_text}, path_text, []
        assert src.query is not None
        pinned: dict[str, str] = {}
        depends: list[str] = []
        for ref in sorted(set(_PLACEHOLDER.findall(src.query))):
            dv = self._ws.data.get(ref)
            pinned[ref] = dv.ref
            depends.append(dv.lineage_artifact_id)
        if not pinned and "read_parquet" not in src.query.lower():
            raise InvalidInput(
                f"{what}: the query reads no dataset; use {{dataset}} placeholders or read_parquet"
            )
        spec = {"query": src.query, "datasets": pinned}
        return spec, self._query_table(spec, what), depends

    def _query_table(self, spec: dict[str, Any], what: str) -> pa.Table:
        import duckdb

        def literal(path: Path) -> str:
            return "'" + str(path).replace("'", "''") + "'"

        def substitute(match: re.Match[str]) -> str:
            dv = self._ws.data.get(spec["datasets"][match.group(1)])
            return f"read_parquet({literal(self._ws.artifacts.local_path(dv.artifact_digest))})"

        query = _PLACEHOLDER.sub(substitute, spec["query"])
        con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
        try:
            return con.sql(query).to_arrow_table()
        except (duckdb.Error, AttributeError) as exc:
            raise InvalidInput(f"{what}: the source query failed: {exc}") from None
        finally:
            con.close()

    def _resolve_on_demand(
        self,
        odfv: OnDemandFeatureView,
        pending: dict[tuple[str, str], _Resolved],
        stored: Callable[..., FeatureDefinitionVersion | None],
    ) -> _Resolved:
        what = f"on-demand feature view {odfv.name!r}"
        path = odfv.function_path
        function = odfv.function if callable(odfv.function) else load_function(path)
        if callable(odfv.function):
            # What serving will import must be this very function.
            imported = load_function(path)
            if _code_digest(imported, path) != _code_digest(function, path):
                raise InvalidInput(f"{what}: {path} does not import as the function given")
        inputs = []
        depends: list[str] = []
        depends_new: list[tuple[str, str]] = []
        input_names: set[str] = set()
        for text in odfv.inputs:
            ref = parse_feature_ref(text)
            view_spec, version, artifact = self._view_for_ref(ref, pending, stored, what)
            if view_spec is None or "timestamp_field" not in view_spec:
                raise InvalidInput(f"{what}: input {text!r} must come from a feature view")
            names = [f["name"] for f in view_spec["features"]]
            if ref.feature not in names:
                raise InvalidInput(
                    f"{what}: feature view {ref.view!r} has no feature {ref.feature!r}"
                )
            if ref.feature in input_names:
                raise InvalidInput(f"{what}: two inputs are named {ref.feature!r}")
            input_names.add(ref.feature)
            dtype = next(f["dtype"] for f in view_spec["features"] if f["name"] == ref.feature)
            inputs.append(
                {"view": ref.view, "version": version, "feature": ref.feature, "dtype": dtype}
            )
            if artifact is None:
                depends_new.append(("feature_view", ref.view))
            elif artifact not in depends:
                depends.append(artifact)
        for f in odfv.request:
            if f.name in input_names:
                raise InvalidInput(f"{what}: request field {f.name!r} has the name of an input")
        spec = {
            "function": path,
            "code_digest": _code_digest(function, path),
            "inputs": inputs,
            "request": [f.to_dict() for f in odfv.request],
            "features": [f.to_dict() for f in odfv.features],
        }
        return _Resolved(
            "on_demand",
            odfv.name,
            spec,
            odfv.description,
            odfv.owner,
            dict(odfv.tags),
            depends,
            depends_new,
        )

    def _view_for_ref(
        self,
        ref: Any,
        pending: dict[tuple[str, str], _Resolved],
        stored: Callable[..., FeatureDefinitionVersion | None],
        what: str,
    ) -> tuple[dict[str, Any] | None, int, str | None]:
        """(spec, version, lineage artifact id or None if applied now) of a referenced view."""
        for kind in _VIEW_KINDS:
            new = pending.get((kind, ref.view))
            if new is not None and (ref.version is None or ref.version == new.version):
                if new.action == "unchanged" and new.current is not None:
                    return new.spec, new.version, new.current.lineage_artifact_id
                return new.spec, new.version, None
        old = stored(_VIEW_KINDS, ref.view, ref.version)
        if old is None:
            at = f" version {ref.version}" if ref.version is not None else ""
            raise InvalidInput(f"{what}: unknown feature view {ref.view!r}{at}")
        return old.spec, old.version, old.lineage_artifact_id

    def _resolve_service(
        self,
        service: FeatureService,
        pending: dict[tuple[str, str], _Resolved],
        stored: Callable[..., FeatureDefinitionVersion | None],
    ) -> _Resolved:
        what = f"feature service {service.name!r}"
        groups: list[dict[str, Any]] = []
        depends: list[str] = []
        depends_new: list[tuple[str, str]] = []
        for text in service.features:
            ref = parse_feature_ref(text)
            spec, version, artifact = self._view_for_ref(ref, pending, stored, what)
            assert spec is not None
            kind = "feature_view" if "timestamp_field" in spec else "on_demand"
            names = [f["name"] for f in spec["features"]]
            if ref.feature == "*":
                chosen = names
            elif ref.feature in names:
                chosen = [ref.feature]
            else:
                raise InvalidInput(f"{what}: {ref.view!r} has no feature {ref.feature!r}")
            group = next((g for g in groups if g["view"] == ref.view), None)
            if group is None:
                group = {"view": ref.view, "kind": kind, "version": version, "features": []}
                groups.append(group)
            elif group["version"] != version:
                raise InvalidInput(f"{what}: uses two versions of {ref.view!r}")
            group["features"] += [f for f in chosen if f not in group["features"]]
            if artifact is None:
                if (kind, ref.view) not in depends_new:
                    depends_new.append((kind, ref.view))
            elif artifact not in depends:
                depends.append(artifact)
        return _Resolved(
            "feature_service",
            service.name,
            {"features": groups},
            service.description,
            service.owner,
            dict(service.tags),
            depends,
            depends_new,
        )

    def _write(self, changed: builtins.list[_Resolved]) -> None:
        user = current_user()
        with self._store.write() as conn:
            artifacts: dict[tuple[str, str], str] = {}
            for r in changed:
                current = sql.get_definition(conn, r.kind, r.name)
                if (current["version"] if current else None) != (
                    r.current.version if r.current else None
                ):
                    raise Conflict(
                        f"{r.kind.replace('_', ' ')} {r.name!r} was changed by another apply "
                        "meanwhile; plan again"
                    )
                ref = f"{r.kind}:{r.name}@{r.version}"
                art = self._lineage.add_artifact(
                    conn,
                    kind=r.kind,
                    ref=ref,
                    digest=r.digest,
                    properties={"name": r.name, "version": r.version},
                )
                artifacts[(r.kind, r.name)] = art
                inputs = [(a, "input") for a in r.depends_on]
                inputs += [(artifacts[k], "input") for k in r.depends_on_new if k in artifacts]
                self._lineage.record_execution(
                    conn,
                    kind="feature_apply",
                    ref=f"feature_apply:{new_id()}",
                    name=f"apply {ref}",
                    inputs=inputs,
                    outputs=[(art, "definition")],
                )
                sql.insert_definition(
                    conn,
                    {
                        "id": new_id(),
                        "kind": r.kind,
                        "name": r.name,
                        "version": r.version,
                        "digest": r.digest,
                        "spec": r.spec,
                        "description": r.description,
                        "owner": r.owner,
                        "tags": r.tags,
                        "created_at": now(),
                        "created_by": user,
                        "lineage_artifact_id": art,
                    },
                )

    # -- reading definitions -----------------------------------------------------------------

    def get(self, ref: str, kind: str | None = None) -> FeatureDefinitionVersion:
        """A definition version by ``name`` or ``name@N`` (of any kind, or the kind given).

        Raises:
            NotFound: nothing has this name (and version).
            InvalidInput: the name is ambiguous across kinds; pass ``kind``.
        """
        parsed = parse_ref(ref, "feature definition reference")
        if parsed.alias is not None:
            raise InvalidInput(f"feature definitions have no aliases: {ref!r}")
        kinds = (kind,) if kind else KINDS
        if kind is not None and kind not in KINDS:
            raise InvalidInput(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        found = []
        with self._store.read() as conn:
            for k in kinds:
                row = sql.get_definition(conn, k, parsed.name, parsed.version)
                if row is not None:
                    found.append(_definition(row))
        if not found:
            raise NotFound(f"no feature definition {ref!r}")
        if len(found) > 1:
            raise InvalidInput(
                f"{ref!r} names a {' and a '.join(f.kind for f in found)}; pass the kind"
            )
        return found[0]

    def list(self, kind: str | None = None) -> builtins.list[dict[str, Any]]:
        """The latest version of every definition: kind, name, version, versions, features."""
        if kind is not None and kind not in KINDS:
            raise InvalidInput(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        with self._store.read() as conn:
            rows = sql.latest_definitions(conn, kind)
        out = []
        for row in rows:
            d = _definition(row)
            out.append(
                {
                    "kind": d.kind,
                    "name": d.name,
                    "version": d.version,
                    "versions": row["versions"],
                    "features": d.feature_names,
                    "owner": d.owner,
                    "description": d.description,
                    "created_at": d.created_at,
                }
            )
        return out

    def versions(
        self, name: str, kind: str | None = None
    ) -> builtins.list[FeatureDefinitionVersion]:
        """Every version of a definition, newest first.

        Raises:
            NotFound, InvalidInput: as :meth:`get`.
        """
        latest = self.get(name, kind)
        with self._store.read() as conn:
            return [_definition(r) for r in sql.definition_versions(conn, latest.kind, latest.name)]

    def materializations(self, view: str, *, limit: int = 100) -> builtins.list[Materialization]:
        """The materializations of a feature view (every version, or ``name@N``), newest first."""
        parsed = parse_ref(view, "feature view reference")
        if parsed.version is not None:
            versions = [self.get(view, "feature_view")]
        else:
            versions = self.versions(parsed.name, "feature_view")
        by_id = {v.id: v for v in versions}
        with self._store.read() as conn:
            rows = sql.materializations(conn, list(by_id), limit=limit)
        return [_materialization(r, by_id[r["definition_id"]]) for r in rows]

    def statistics(self, view: str) -> dict[str, Any]:
        """The feature statistics of the latest completed materialization of a view version.

        Raises:
            NotFound: the view has no completed materialization.
        """
        v = self.get(view, "feature_view")
        with self._store.read() as conn:
            rows = sql.materializations(conn, [v.id], status="completed", limit=1)
        if not rows:
            raise NotFound(f"feature view {v.ref} has not been materialized")
        return rows[0]["statistics"] or {}

    # -- retrieval plans ---------------------------------------------------------------------

    def _retrieval_plan(
        self, features: str | Sequence[str], full_feature_names: bool
    ) -> _RetrievalPlan:
        key = (features if isinstance(features, str) else tuple(features), full_feature_names)
        cached = self._plans.get(key)
        if cached is not None and (
            cached.pinned or time.monotonic() - cached.resolved_at < _PLAN_CACHE_SECONDS
        ):
            return cached
        plan = self._build_plan(features, full_feature_names)
        self._plans[key] = plan
        return plan

    def _build_plan(
        self, features: str | Sequence[str], full_feature_names: bool
    ) -> _RetrievalPlan:
        service: FeatureDefinitionVersion | None = None
        refs: list[tuple[str, int | None, str]] = []
        pinned = True
        if isinstance(features, str):
            if ":" in features:
                features = [features]
            else:
                service = self.get(features, "feature_service")
                pinned = parse_ref(features).version is not None
                for g in service.spec["features"]:
                    refs += [(g["view"], g["version"], f) for f in g["features"]]
        if service is None:
            if isinstance(features, str) or not isinstance(features, Sequence) or not features:
                raise InvalidInput(
                    "features must be a feature service name or a list of view:feature"
                )
            for text in features:
                ref = parse_feature_ref(text)
                pinned = pinned and ref.version is not None
                refs.append((ref.view, ref.version, ref.feature))

        views: dict[str, FeatureDefinitionVersion] = {}
        with self._store.read() as conn:

            def view_of(name: str, version: int | None) -> FeatureDefinitionVersion:
                have = views.get(name)
                if have is not None:
                    if version is not None and have.version != version:
                        raise InvalidInput(f"two versions of feature view {name!r} requested")
                    return have
                row = sql.get_definition(conn, _VIEW_KINDS, name, version)
                if row is None:
                    at = f" version {version}" if version is not None else ""
                    raise NotFound(f"no feature view {name!r}{at}")
                views[name] = _definition(row)
                return views[name]

            outputs: list[tuple[str, str, str]] = []
            for name, version, feature in refs:
                v = view_of(name, version)
                names = [f["name"] for f in v.spec["features"]]
                chosen = names if feature == "*" else [feature]
                for f in chosen:
                    if f not in names:
                        raise NotFound(f"feature view {v.ref} has no feature {f!r}")
                    column = _internal(name, f) if full_feature_names else f
                    if any(o[0] == name and o[1] == f for o in outputs):
                        continue
                    outputs.append((name, f, column))
            # On-demand views need their inputs, pinned to the versions they were applied with.
            needed: dict[str, list[str]] = {}
            for v in list(views.values()):
                if v.kind != "on_demand":
                    continue
                for i in v.spec["inputs"]:
                    src = (
                        view_of(i["view"], None)
                        if i["view"] in views
                        else view_of(i["view"], i["version"])
                    )
                    if src.version != i["version"]:
                        raise InvalidInput(
                            f"on-demand feature view {v.ref} reads {i['view']}@{i['version']} but "
                            f"{src.ref} is requested too; request the same version"
                        )
                    needed.setdefault(i["view"], [])
                    if i["feature"] not in needed[i["view"]]:
                        needed[i["view"]].append(i["feature"])

        columns = [o[2] for o in outputs]
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise InvalidInput(
                f"features {dupes} come from several views; pass full_feature_names=True"
            )
        view_parts = []
        on_demand_parts = []
        for name, v in views.items():
            requested = tuple(o[1] for o in outputs if o[0] == name)
            if v.kind == "on_demand":
                on_demand_parts.append(_OnDemandPart(v, self._odfv_function(v), requested))
            else:
                wanted = list(requested) + [f for f in needed.get(name, []) if f not in requested]
                view_parts.append(_ViewPart(v, tuple(wanted)))
        return _RetrievalPlan(
            views=tuple(view_parts),
            on_demand=tuple(on_demand_parts),
            outputs=tuple(outputs),
            service=service,
            pinned=pinned,
            resolved_at=time.monotonic(),
        )

    def _odfv_function(self, v: FeatureDefinitionVersion) -> Callable[[pd.DataFrame], pd.DataFrame]:
        path = v.spec["function"]
        function = load_function(path)
        if _code_digest(function, path) != v.spec["code_digest"]:
            raise Conflict(
                f"the code of on-demand feature view {v.ref} ({path}) has changed since it was "
                "applied; apply it again to make a new version"
            )
        return function

    # -- offline ------------------------------------------------------------------------------

    def _source_data(self, src: dict[str, Any]) -> str | None:
        """The Parquet path or glob a view's pinned source reads; None for a query source."""
        if "dataset" in src:
            dv = self._ws.data.get(src["dataset"])
            return str(self._ws.artifacts.local_path(dv.artifact_digest))
        if "path" in src:
            return str(src["path"])
        return None

    def _feature_source(self, part: _ViewPart) -> FeatureSource:
        spec = part.view.spec
        src = spec["source"]
        data: Any = self._source_data(src)
        if data is None:
            data = self._query_table(src, f"feature view {part.view.ref}")
        return FeatureSource(
            name=part.view.name,
            data=data,
            join_keys=tuple(spec["join_keys"]),
            timestamp=spec["timestamp_field"],
            features=part.features,
            ttl_seconds=spec["ttl_seconds"],
            created_timestamp=spec["created_timestamp_field"],
        )

    def _entity_input(self, entity: Any) -> tuple[Any, DatasetVersion | None]:
        # A dataset version can only be passed in once the catalog is loaded; not importing it
        # here keeps pandas, which it uses, out of joins of files and tables.
        catalog = sys.modules.get("wellml.data.catalog")
        if catalog is not None and isinstance(entity, catalog.DatasetVersion):
            return str(self._ws.artifacts.local_path(entity.artifact_digest)), entity
        if isinstance(entity, str) and not Path(entity).exists() and "*" not in entity:
            dv = self._ws.data.get(entity)
            return str(self._ws.artifacts.local_path(dv.artifact_digest)), dv
        if isinstance(entity, str | Path | pa.Table) or is_dataframe(entity):
            return entity, None
        raise InvalidInput(
            "entity rows must be a DataFrame, an Arrow table, a Parquet path or a dataset "
            f"reference, got {type(entity).__name__}"
        )

    def get_historical_features(
        self,
        entity: Any,
        features: str | Sequence[str],
        *,
        timestamp_field: str = "event_timestamp",
        full_feature_names: bool = False,
        memory_limit: str | None = None,
        temp_directory: str | None = None,
    ) -> pa.Table:
        """Point-in-time correct feature values for every entity row.

        For each entity row (join keys, a timestamp, anything else such as labels), each
        feature is the value of the latest row of its view at or before the row's timestamp
        and within the view's TTL; NULL when there is none. One output row per entity row, in
        order: the entity columns, then the features, cast to their declared types. On-demand
        features are computed from those values and the entity rows' request columns.

        Args:
            entity: A DataFrame, Arrow table, Parquet path or glob, a dataset version or a
                dataset reference (``labels@2``).
            features: A feature service (``churn`` or ``churn@2``) or feature references.
            timestamp_field: The entity rows' timestamp column.
            full_feature_names: Name columns ``view__feature``.
            memory_limit: DuckDB memory limit (``"4GB"``); beyond it the join spills to disk.
            temp_directory: Where DuckDB spills.

        Raises:
            NotFound: an unknown feature, view, service or dataset.
            InvalidInput: a missing join key or timestamp column, a type mismatch, a name
                collision, an on-demand request field missing from the entity rows.
            UserCodeError: an on-demand function raised.
        """
        table, _plan, _dv = self._historical(
            entity, features, timestamp_field, full_feature_names, memory_limit, temp_directory
        )
        return table

    def _historical(
        self,
        entity: Any,
        features: str | Sequence[str],
        timestamp_field: str,
        full_feature_names: bool,
        memory_limit: str | None,
        temp_directory: str | None,
    ) -> tuple[pa.Table, _RetrievalPlan, DatasetVersion | None]:
        plan = self._retrieval_plan(features, full_feature_names)
        data, dv = self._entity_input(entity)
        sources = [self._feature_source(p) for p in plan.views]
        joined = get_historical_features(
            data,
            sources,
            entity_timestamp=timestamp_field,
            full_feature_names=True,
            memory_limit=memory_limit,
            temp_directory=temp_directory,
            tie_checks=self._tie_checks,
        )
        internal = {_internal(p.view.name, f) for p in plan.views for f in p.features}
        entity_columns = [c for c in joined.column_names if c not in internal]
        parts: list[_ViewPart | _OnDemandPart] = [*plan.views, *plan.on_demand]
        dtypes = {
            (p.view.name, f["name"]): f["dtype"] for p in parts for f in p.view.spec["features"]
        }
        for _view, _feature, column in plan.outputs:
            if column in entity_columns:
                raise InvalidInput(f"feature column {column!r} collides with an entity column")
        computed: dict[tuple[str, str], pa.Array | pa.ChunkedArray] = {}
        if plan.on_demand:
            frame_columns = {c: joined.column(c) for c in joined.column_names}
            for part in plan.on_demand:
                values = self._run_on_demand(part, frame_columns, plan, joined.num_rows)
                for f, array in values.items():
                    computed[(part.view.name, f)] = array
        arrays = [joined.column(c) for c in entity_columns]
        names = list(entity_columns)
        for view, feature, column in plan.outputs:
            if (view, feature) in computed:
                array = computed[(view, feature)]
            else:
                array = joined.column(_internal(view, feature))
            arrays.append(_cast(array, dtypes[(view, feature)], f"{view}:{feature}"))
            names.append(column)
        return pa.Table.from_arrays(arrays, names=names), plan, dv

    def _run_on_demand(
        self,
        part: _OnDemandPart,
        columns: Mapping[str, Any],
        plan: _RetrievalPlan,
        num_rows: int,
    ) -> dict[str, pa.Array]:
        """Run an on-demand function over input columns; validate and type its output."""
        import pandas as pd

        spec = part.view.spec
        what = f"on-demand feature view {part.view.ref}"
        data: dict[str, pd.Series] = {}
        # Both paths (training and serving) convert inputs the same way: through Arrow with the
        # declared type, then to pandas, so a function sees identical dtypes in both.
        for f in spec["request"]:
            if f["name"] not in columns:
                raise InvalidInput(f"{what}: request field {f['name']!r} is missing")
            data[f["name"]] = _series(
                columns[f["name"]], f["dtype"], f"{what}: request field {f['name']!r}"
            )
        for i in spec["inputs"]:
            column = columns[_internal(i["view"], i["feature"])]
            data[i["feature"]] = _series(column, i["dtype"], f"{what}: input {i['feature']!r}")
        frame = (
            pd.DataFrame(data, index=pd.RangeIndex(num_rows))
            if data
            else pd.DataFrame(index=pd.RangeIndex(num_rows))
        )
        try:
            result = part.function(frame)
        except Exception as exc:
            raise UserCodeError(
                f"{what}: {spec['function']} raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(result, pd.DataFrame):
            raise UserCodeError(
                f"{what}: {spec['function']} must return a DataFrame, got {type(result).__name__}"
            )
        if len(result) != num_rows:
            raise UserCodeError(
                f"{what}: {spec['function']} returned {len(result)} rows for {num_rows}"
            )
        out: dict[str, pa.Array] = {}
        for f in spec["features"]:
            if f["name"] not in result.columns:
                raise UserCodeError(
                    f"{what}: {spec['function']} did not return feature {f['name']!r}"
                )
            try:
                array = pa.array(result[f["name"]].to_numpy(), from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise UserCodeError(f"{what}: feature {f['name']!r}: {exc}") from None
            out[f["name"]] = _cast(
                array, f["dtype"], f"{part.view.name}:{f['name']}", user_code=True
            )
        return out

    def create_training_dataset(
        self,
        name: str,
        entity: Any,
        features: str | Sequence[str],
        *,
        timestamp_field: str = "event_timestamp",
        full_feature_names: bool = False,
        description: str = "",
        memory_limit: str | None = None,
        temp_directory: str | None = None,
    ) -> DatasetVersion:
        """Build a training set by point-in-time join and register it as a dataset version.

        The version's lineage runs back to the feature view versions (and the service) it was
        built from and, when the entity rows are a dataset version, to it; its properties
        record the exact feature references.

        Raises:
            As :meth:`get_historical_features`, and InvalidInput for a bad dataset name.
        """
        table, plan, entity_dv = self._historical(
            entity, features, timestamp_field, full_feature_names, memory_limit, temp_directory
        )
        inputs = plan.lineage_inputs()
        if entity_dv is not None:
            inputs.append((entity_dv.lineage_artifact_id, "entity_rows"))
        properties = {
            "features": plan.feature_refs(),
            "feature_service": plan.service.ref if plan.service else None,
            "timestamp_field": timestamp_field,
            "entity": entity_dv.ref if entity_dv else None,
        }
        with self._store.write() as conn:
            eid = self._lineage.record_execution(
                conn,
                kind="feature_retrieval",
                ref=f"feature_retrieval:{new_id()}",
                name=f"training set {name}",
                inputs=inputs,
                status="running",
                properties=properties,
            )
        try:
            dv = self._ws.data.register(
                name, table, description=description, properties=properties, produced_by=eid
            )
        except BaseException:
            with self._store.write() as conn:
                self._lineage.finish(conn, eid, status="failed")
            raise
        with self._store.write() as conn:
            self._lineage.finish(conn, eid, status="completed")
        return dv

    # -- online --------------------------------------------------------------------------------

    def materialize(
        self,
        view: str,
        *,
        start: dt.datetime | str | None = None,
        end: dt.datetime | str | None = None,
        incremental: bool = False,
        progress: Callable[[int, int], None] | None = None,
        chunk_rows: int = 100_000,
    ) -> Materialization:
        """Copy the latest row per entity of a feature view version to the online store.

        Reads the view's source rows with ``start <= event time <= end``, keeps the latest per
        entity key (the same order as historical retrieval), and writes them; the online store
        keeps, per key, the row with the newest event time, so windows may overlap and run in
        any order. The statistics of what was written are stored with the record.

        Args:
            view: ``name`` (latest version) or ``name@N``.
            start: Window start (inclusive); None reads from the beginning.
            end: Window end (inclusive); None means now.
            incremental: Start where the last completed materialization of this version ended.
            progress: Called with ``(rows written, rows to write)`` after each chunk.
            chunk_rows: Rows per online-store write.

        Raises:
            NotFound: no such feature view.
            InvalidInput: a view with ``online=False``, a bad window, or unreadable source data.
            BackendUnavailable: the online store cannot be reached.
        """
        import pandas as pd

        from wellml.data.profile import profile_table

        v = self.get(view, "feature_view")
        if not v.spec["online"]:
            raise InvalidInput(f"feature view {v.ref} is not an online view (online: false)")
        end_ts = _timestamp(end, "end") if end is not None else pd.Timestamp.now(tz="UTC")
        start_ts = _timestamp(start, "start") if start is not None else None
        if incremental:
            if start is not None:
                raise InvalidInput("pass either start or incremental, not both")
            with self._store.read() as conn:
                last = sql.materializations(conn, [v.id], status="completed", limit=1)
            if last:
                start_ts = pd.Timestamp(last[0]["end_time"], unit="s", tz="UTC")
        if start_ts is not None and start_ts > end_ts:
            raise InvalidInput(
                f"materialization window starts after it ends: {start_ts} > {end_ts}"
            )
        online = self.online_store
        mid = new_id()
        started = now()
        user = current_user()
        with self._store.write() as conn:
            eid = self._lineage.record_execution(
                conn,
                kind="materialize",
                ref=f"materialize:{mid}",
                name=f"materialize {v.ref}",
                inputs=[(v.lineage_artifact_id, "features")],
                status="running",
                properties={
                    "start": str(start_ts) if start_ts is not None else None,
                    "end": str(end_ts),
                },
                started_at=started,
            )
            sql.insert_materialization(
                conn,
                {
                    "id": mid,
                    "definition_id": v.id,
                    "start_time": start_ts.timestamp() if start_ts is not None else None,
                    "end_time": end_ts.timestamp(),
                    "status": "running",
                    "rows_read": 0,
                    "rows_written": 0,
                    "online_store": redact_url(self._ws.urls.online),
                    "statistics": {},
                    "error": "",
                    "started_at": started,
                    "finished_at": None,
                    "created_by": user,
                    "lineage_execution_id": eid,
                },
            )
        try:
            part = _ViewPart(v, tuple(f["name"] for f in v.spec["features"]))
            source = self._feature_source(part)
            table, read = latest_rows(source, start=start_ts, end=end_ts)
            features = list(part.features)
            dtypes = {f["name"]: f["dtype"] for f in v.spec["features"]}
            table = table.select([*source.join_keys, source.timestamp, *features])
            for f in features:
                i = table.column_names.index(f)
                typed = _cast(table.column(f), dtypes[f], f"{v.name}:{f}")
                table = table.set_column(i, f, typed)
            # The online store holds JSON scalars: timestamps go as epoch seconds.
            online_table = table
            for f in features:
                if dtypes[f] == "timestamp":
                    i = online_table.column_names.index(f)
                    micros = online_table.column(f).cast(pa.int64())
                    seconds = pc.divide(micros.cast(pa.float64()), 1e6)
                    online_table = online_table.set_column(i, f, seconds)
            written = 0
            total = table.num_rows
            if progress is not None:
                progress(0, total)
            for offset in range(0, total, chunk_rows):
                chunk = online_table.slice(offset, chunk_rows)
                online.write_table(
                    v.online_name,
                    chunk,
                    key_columns=list(source.join_keys),
                    timestamp_column=source.timestamp,
                    feature_columns=features,
                )
                written += chunk.num_rows
                if progress is not None:
                    progress(written, total)
            stats = profile_table(table.select(features)).to_dict()
            stats["event_time"] = _time_range(table.column(source.timestamp))
        except BaseException as exc:
            with self._store.write() as conn:
                sql.finish_materialization(
                    conn,
                    mid,
                    status="failed",
                    error=f"{type(exc).__name__}: {exc}"[:2000],
                    finished_at=now(),
                )
                self._lineage.finish(conn, eid, status="failed")
            raise
        with self._store.write() as conn:
            sql.finish_materialization(
                conn,
                mid,
                status="completed",
                rows_read=read,
                rows_written=written,
                statistics=stats,
                finished_at=now(),
            )
            self._lineage.finish(conn, eid, status="completed")
            row = sql.materializations(conn, [v.id], limit=1)[0]
        return _materialization(row, v)

    def check_parity(self, view: str, *, sample: int = 1000, seed: int = 0) -> ParityReport:
        """Compare online values with the offline data for a sample of entities.

        The offline truth is the latest row per entity at or before the end of the newest
        completed materialization of the view version: exactly what the online store should
        hold. A difference means the source changed after it was materialized, a window was
        skipped, or something else wrote to the online store. The result is recorded as a
        ``feature_parity`` execution in the lineage graph, which the lens review reads.

        Raises:
            NotFound: no such view, or it was never materialized.
            InvalidInput: ``sample`` is not positive.
        """
        import pandas as pd

        if sample < 1:
            raise InvalidInput("sample must be at least 1")
        v = self.get(view, "feature_view")
        with self._store.read() as conn:
            done = sql.materializations(conn, [v.id], status="completed", limit=1000)
        if not done:
            raise NotFound(f"feature view {v.ref} has not been materialized")
        as_of = max(m["end_time"] for m in done)
        part = _ViewPart(v, tuple(f["name"] for f in v.spec["features"]))
        source = self._feature_source(part)
        table, _read = latest_rows(source, end=pd.Timestamp(as_of, unit="s", tz="UTC"))
        rng = np.random.default_rng(seed)
        n = min(sample, table.num_rows)
        picked = np.sort(rng.choice(table.num_rows, size=n, replace=False))
        rows = table.take(pa.array(picked, type=pa.int64())).to_pylist()
        keys = [tuple(r[k] for k in source.join_keys) for r in rows]
        online = self.online_store.read_batch(v.online_name, keys, list(part.features))
        dtypes = {f["name"]: f["dtype"] for f in v.spec["features"]}
        mismatched = 0
        examples: list[dict[str, Any]] = []
        for key, row, got in zip(keys, rows, online, strict=True):
            diffs = {}
            for f in part.features:
                expected = _online_value(row[f], dtypes[f])
                actual = None if got is None else got.get(f)
                if not _same(expected, actual):
                    diffs[f] = {"offline": expected, "online": actual}
            if diffs:
                mismatched += 1
                if len(examples) < 5:
                    examples.append({"key": list(key), "features": diffs})
        report = ParityReport(v.ref, as_of, n, mismatched, examples)
        with self._store.write() as conn:
            self._lineage.record_execution(
                conn,
                kind="feature_parity",
                ref=f"feature_parity:{new_id()}",
                name=f"online/offline parity of {v.ref}",
                inputs=[(v.lineage_artifact_id, "features")],
                properties=report.to_dict(),
            )
        return report

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        features: str | Sequence[str],
        *,
        full_feature_names: bool = False,
    ) -> OnlineFeatures:
        """The latest materialized feature values for entities, at serving latency.

        Args:
            entity_rows: One mapping per entity (join keys, and request fields for on-demand
                features), or one sequence per column.
            features: A feature service or feature references, as for training.
            full_feature_names: Name columns ``view__feature``.

        Returns:
            The entity columns given, then one column per feature.

        Raises:
            NotFound: an unknown feature, view or service.
            InvalidInput: a missing join key or request field, or a key of the wrong type.
            UserCodeError: an on-demand function raised.
            BackendUnavailable: the online store cannot be reached.
        """
        plan = self._retrieval_plan(features, full_feature_names)
        columns = _columns(entity_rows)
        n = len(next(iter(columns.values()))) if columns else 0
        values: dict[str, Any] = {}
        store = self.online_store
        for part in plan.views:
            keys = _online_keys(part.view, columns, n)
            present = [i for i, k in enumerate(keys) if None not in k]
            asked = keys if len(present) == n else [keys[i] for i in present]
            ttl = part.view.spec["ttl_seconds"]
            if ttl is None:
                found = store.read_batch(part.view.online_name, asked, part.features)
            else:
                # Rows older than the TTL are stale, as in training: their features are None.
                oldest = time.time() - ttl
                timed = store.read_batch_with_times(part.view.online_name, asked, part.features)
                found = [hit[0] if hit is not None and hit[1] >= oldest else None for hit in timed]
            if len(present) == n:
                rows = found
            else:
                rows = [None] * n
                for i, r in zip(present, found, strict=True):
                    rows[i] = r
            dtypes = {f["name"]: f["dtype"] for f in part.view.spec["features"]}
            for f in part.features:
                feature_values = [r[f] if r is not None else None for r in rows]
                if dtypes[f] == "timestamp":
                    feature_values = [_from_epoch(x) for x in feature_values]
                values[_internal(part.view.name, f)] = feature_values
        computed: dict[tuple[str, str], list[Any]] = {}
        if plan.on_demand:
            inputs = {**columns, **values}
            for od in plan.on_demand:
                for f, array in self._run_on_demand(od, inputs, plan, n).items():
                    computed[(od.view.name, f)] = array.to_pylist()
        out: dict[str, list[Any]] = {c: list(v) for c, v in columns.items()}
        for view, feature, column in plan.outputs:
            if column in out:
                raise InvalidInput(f"feature column {column!r} collides with an entity column")
            key = (view, feature)
            out[column] = computed[key] if key in computed else values[_internal(view, feature)]
        return OnlineFeatures(out)


# --------------------------------------------------------------------------------------------
# helpers


def _from_epoch(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return value


def _online_value(value: Any, dtype: str) -> Any:
    """An offline value as the online store returns it."""
    if value is None:
        return None
    if dtype == "timestamp" and isinstance(value, dt.datetime):
        return value.timestamp()
    if dtype in ("float64", "float32"):
        return float(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return (bool(a == b) and type(a) is type(b)) or (a is None and b is None)


def _source_types(data: Any, what: str) -> dict[str, str]:
    try:
        return describe_source(data)
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from None


def _series(column: Any, dtype: str, what: str) -> pd.Series:
    target = _ARROW_TYPES[dtype]
    try:
        if isinstance(column, pa.ChunkedArray | pa.Array):
            array = _cast(column, dtype, what)
        else:
            array = pa.array(list(column), type=target, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise InvalidInput(f"{what}: values do not fit type {dtype}: {exc}") from None
    return array.to_pandas()


def _cast(array: Any, dtype: str, what: str, *, user_code: bool = False) -> Any:
    target = _ARROW_TYPES[dtype]
    if array.type == target:
        return array
    try:
        if (
            pa.types.is_timestamp(array.type)
            and pa.types.is_timestamp(target)
            and array.type.tz is None
        ):
            array = array.cast(pa.timestamp(array.type.unit, tz="UTC"))
        return array.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        error = UserCodeError if user_code else InvalidInput
        raise error(f"feature {what} does not fit its declared type {dtype}: {exc}") from None


def _timestamp(value: Any, what: str) -> pd.Timestamp:
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"invalid {what} time {value!r}: {exc}") from None
    if ts is pd.NaT:
        raise InvalidInput(f"invalid {what} time {value!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _time_range(column: pa.ChunkedArray) -> dict[str, Any]:
    if len(column) == 0:
        return {"min": None, "max": None}
    bounds = pc.min_max(column)
    return {
        k: (v.as_py().isoformat() if v.as_py() is not None else None)
        for k, v in (("min", bounds["min"]), ("max", bounds["max"]))
    }


def _columns(entity_rows: Any) -> dict[str, list[Any]]:
    if isinstance(entity_rows, Mapping):
        columns = {}
        length = None
        for k, v in entity_rows.items():
            values = list(v) if not isinstance(v, str | bytes) and isinstance(v, Iterable) else None
            if values is None:
                raise InvalidInput(f"entity column {k!r} must be a list of values")
            if length is not None and len(values) != length:
                raise InvalidInput("entity columns must have the same length")
            length = len(values)
            columns[str(k)] = values
        return columns
    if is_dataframe(entity_rows):
        return {str(c): entity_rows[c].tolist() for c in entity_rows.columns}
    if isinstance(entity_rows, str | bytes) or not isinstance(entity_rows, Sequence):
        raise InvalidInput("entity rows must be a list of mappings or a mapping of columns")
    names: list[str] = []
    for row in entity_rows:
        if not isinstance(row, Mapping):
            raise InvalidInput(f"an entity row must be a mapping, got {row!r:.80}")
        for k in row:
            if k not in names:
                names.append(k)
    return {k: [row.get(k) for row in entity_rows] for k in names}


def _online_keys(
    view: FeatureDefinitionVersion, columns: dict[str, list[Any]], n: int
) -> list[tuple[Any, ...]]:
    key_types = view.spec["key_types"]
    per_key = []
    for key in view.spec["join_keys"]:
        if key not in columns:
            raise InvalidInput(f"join key {key!r} of feature view {view.ref} is missing")
        family = key_types[key]
        per_key.append([_coerce_key(v, family, key) for v in columns[key]])
    if len(per_key) == 1:
        return [(v,) for v in per_key[0]]
    return list(zip(*per_key)) if n else []


def _coerce_key(value: Any, family: str, key: str) -> Any:
    """Keys arrive from JSON and CSV as text or floats; store them the way the source had them."""
    if value is None:
        return None
    if family == "integer":
        if isinstance(value, bool):
            raise InvalidInput(f"join key {key!r} must be an integer, got {value!r}")
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise InvalidInput(f"join key {key!r} must be an integer, got {value!r:.40}")
    if isinstance(value, str):
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"join key {key!r} must be a string, got {value!r:.40}")
