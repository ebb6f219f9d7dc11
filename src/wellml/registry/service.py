"""The model registry: versions created from runs, packages, approval, aliases, model cards."""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy.exc

from wellml.config import current_user
from wellml.errors import Conflict, InvalidInput, NotFound
from wellml.lineage.graph import LineageService
from wellml.names import check_name, parse_ref
from wellml.registry.packaging import FLAVOR_SKLEARN, load_model, requirements, save_model
from wellml.registry.signature import Signature, infer_signature
from wellml.store import registry as sql
from wellml.store.artifacts import ArtifactStore
from wellml.store.metadata import MetadataStore, new_id, now

STATUSES = ("pending", "approved", "rejected")
PACKAGE_FORMAT = "wellml-model/1"
MODEL_FILE = "model.skops"
# How many fitted models one registry keeps loaded, least recently used dropped first.
LOADED_MODELS = 8
CARD_FIELDS = (
    "intended_use",
    "training_data",
    "evaluation_data",
    "metrics",
    "limitations",
    "owner",
    "ethical_considerations",
    "explainability",
)


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a registered model."""

    id: str
    name: str
    version: int
    run_id: str | None
    flavor: str
    package_digest: str
    signature: Signature
    requirements: builtins.list[str]
    card: dict[str, Any]
    metrics: dict[str, Any]
    status: str
    status_by: str | None
    status_reason: str | None
    status_at: float | None
    created_at: float
    created_by: str
    lineage_artifact_id: str
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def lineage_ref(self) -> str:
        """This version's node in the lineage graph."""
        return f"model:{self.ref}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "flavor": self.flavor,
            "package_digest": self.package_digest,
            "signature": self.signature.to_dict(),
            "requirements": self.requirements,
            "card": self.card,
            "metrics": self.metrics,
            "status": self.status,
            "status_by": self.status_by,
            "status_reason": self.status_reason,
            "status_at": self.status_at,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "aliases": list(self.aliases),
        }


def _version(row: dict[str, Any], aliases: dict[str, str] | None = None) -> ModelVersion:
    return ModelVersion(
        id=row["id"],
        name=row["name"],
        version=row["version"],
        run_id=row["run_id"],
        flavor=row["flavor"],
        package_digest=row["package_digest"],
        signature=Signature.from_dict(row["signature"]),
        requirements=list(row["requirements"]),
        card=dict(row["card"]),
        metrics=dict(row["metrics"] or {}),
        status=row["status"],
        status_by=row["status_by"],
        status_reason=row["status_reason"],
        status_at=row["status_at"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        lineage_artifact_id=row["lineage_artifact_id"],
        aliases=tuple(sorted(a for a, v in (aliases or {}).items() if v == row["id"])),
    )


class Registry:
    """Registered models and their versions."""

    def __init__(
        self, store: MetadataStore, artifacts: ArtifactStore, lineage: LineageService
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._lineage = lineage
        self._loaded: dict[str, Any] = {}

    def register(
        self,
        name: str,
        model: Any,
        *,
        X: Any = None,
        y: Any = None,
        signature: Signature | None = None,
        run: Any = None,
        card: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        training_data: builtins.list[Any] | None = None,
        description: str = "",
        owner: str | None = None,
    ) -> ModelVersion:
        """Register a fitted model as the next version of ``name`` (status pending).

        Args:
            model: a fitted scikit-learn estimator or pipeline.
            X: training inputs (a DataFrame) to infer the signature from, unless ``signature``.
            run: the training run (an ActiveRun or RunRecord); the version becomes its output.
            card: model card fields (see :data:`CARD_FIELDS`); unknown fields are kept too.
            training_data: dataset versions used to train, when not recorded on the run.

        Raises:
            InvalidInput: bad name, no signature source, or a model that cannot be packaged.
        """
        check_name(name, "model name")
        if signature is None:
            if X is None:
                raise InvalidInput("give the training inputs (X=...) or a signature")
            signature = infer_signature(X, y, model=model)
        blob = save_model(model)
        model_digest = self._artifacts.put_bytes(blob)
        reqs = requirements(model)
        user = current_user()
        card = {"owner": owner or user, **(card or {})}
        if metrics and "metrics" not in card:
            card["metrics"] = metrics
        manifest = {
            "format": PACKAGE_FORMAT,
            "flavor": FLAVOR_SKLEARN,
            "files": {MODEL_FILE: model_digest},
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "signature": signature.to_dict(),
            "requirements": reqs,
            "card": card,
        }
        package_digest = self._artifacts.put_bytes(
            json.dumps(manifest, sort_keys=True, default=str).encode()
        )
        run_exec = getattr(run, "lineage_execution_id", None)
        run_id = getattr(run, "id", None) if run is not None else None
        for attempt in range(5):
            try:
                with self._store.write() as conn:
                    mdl = sql.model_by_name(conn, name) or sql.create_model(
                        conn, name, description, owner or user
                    )
                    version = sql.next_version(conn, mdl["id"])
                    vid = new_id()
                    art = self._lineage.add_artifact(
                        conn,
                        kind="model_version",
                        ref=f"model:{name}@{version}",
                        uri=f"sha256:{package_digest}",
                        digest=package_digest,
                        properties={
                            "flavor": FLAVOR_SKLEARN,
                            "model_class": manifest["model_class"],
                        },
                    )
                    row = {
                        "id": vid,
                        "model_id": mdl["id"],
                        "version": version,
                        "run_id": run_id,
                        "flavor": FLAVOR_SKLEARN,
                        "package_digest": package_digest,
                        "signature": signature.to_dict(),
                        "requirements": reqs,
                        "card": card,
                        "metrics": metrics or {},
                        "status": "pending",
                        "status_by": None,
                        "status_reason": None,
                        "status_at": None,
                        "created_at": now(),
                        "created_by": user,
                        "lineage_artifact_id": art,
                    }
                    sql.insert_version(conn, row)
                    sql.add_event(conn, vid, "registered", user)
                    if run_exec:
                        self._lineage.link(conn, run_exec, outputs=[(art, "model")])
                    else:
                        self._lineage.record_execution(
                            conn,
                            kind="register",
                            ref=f"register:{vid}",
                            name=f"register {name}@{version}",
                            inputs=[
                                (d.lineage_artifact_id, "train") for d in (training_data or [])
                            ],
                            outputs=[(art, "model")],
                        )
                    if run_exec and training_data:
                        self._lineage.link(
                            conn,
                            run_exec,
                            inputs=[(d.lineage_artifact_id, "train") for d in training_data],
                        )
                    row["name"] = name
                    return _version(row)
            except sqlalchemy.exc.IntegrityError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    # -- lookups ---------------------------------------------------------------------------

    def get(self, ref: str) -> ModelVersion:
        """A version by ``name`` (latest), ``name@N`` or ``name@alias``.

        Raises:
            NotFound: no such model, version or alias.
            InvalidInput: a malformed reference.
        """
        parsed = parse_ref(ref, "model reference")
        with self._store.read() as conn:
            mdl = sql.model_by_name(conn, parsed.name)
            if mdl is None:
                raise NotFound(f"no registered model named {parsed.name!r}")
            aliases = sql.aliases_of_model(conn, mdl["id"])
            if parsed.alias is not None:
                if parsed.alias not in aliases:
                    known = ", ".join(sorted(aliases)) or "none"
                    raise NotFound(
                        f"model {parsed.name!r} has no alias {parsed.alias!r} (aliases: {known})"
                    )
                row = sql.version_by_id(conn, aliases[parsed.alias])
            else:
                row = sql.get_version(conn, parsed.name, parsed.version)
            if row is None:
                raise NotFound(f"model {parsed.name!r} has no version {parsed.version}")
        return _version(row, aliases)

    def by_id(self, version_id: str) -> ModelVersion:
        """A version by id.

        Raises:
            NotFound: no such version.
        """
        with self._store.read() as conn:
            row = sql.version_by_id(conn, version_id)
            if row is None:
                raise NotFound(f"no model version with id {version_id}")
            aliases = sql.aliases_of_model(conn, row["model_id"])
        return _version(row, aliases)

    def by_lineage_ids(self, ids: builtins.list[str]) -> builtins.list[ModelVersion]:
        """The versions behind these lineage artifact ids."""
        with self._store.read() as conn:
            return [_version(r) for r in sql.versions_by_lineage_ids(conn, ids)]

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every registered model with version count and latest version."""
        with self._store.read() as conn:
            return sql.list_models(conn)

    def versions(
        self, name: str | None = None, *, status: str | None = None
    ) -> builtins.list[ModelVersion]:
        """Versions (of one model, or all), newest first; optionally only one status."""
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
        with self._store.read() as conn:
            rows = sql.list_versions(conn, name, status)
            alias_maps = {r["model_id"]: sql.aliases_of_model(conn, r["model_id"]) for r in rows}
        return [_version(r, alias_maps[r["model_id"]]) for r in rows]

    def history(self, ref: str) -> builtins.list[dict[str, Any]]:
        """A version's events: registered, approved, rejected, aliases set."""
        mv = self.get(ref)
        with self._store.read() as conn:
            return sql.events_of(conn, mv.id)

    def package(self, ref: str | ModelVersion) -> dict[str, Any]:
        """The version's package manifest, verified against its digest.

        Raises:
            IntegrityError: the stored package no longer matches.
        """
        mv = ref if isinstance(ref, ModelVersion) else self.get(ref)
        manifest: dict[str, Any] = json.loads(self._artifacts.get_bytes(mv.package_digest))
        return manifest

    def verify(self, ref: str | ModelVersion) -> None:
        """Check that the package and every file in it still match their digests.

        Raises:
            IntegrityError: something stored has changed.
            NotFound: something stored is missing.
        """
        for digest in self.package(ref)["files"].values():
            self._artifacts.verify(digest)

    def load(self, ref: str | ModelVersion) -> Any:
        """The fitted model of a version, rebuilt safely (see :mod:`registry.packaging`).

        Raises:
            NotFound, IntegrityError, PermissionDenied: as the package is read.
        """
        mv = ref if isinstance(ref, ModelVersion) else self.get(ref)
        model = self._loaded.pop(mv.id, None)
        if model is None:
            manifest = self.package(mv)
            data = self._artifacts.get_bytes(manifest["files"][MODEL_FILE])
            model = load_model(data)
        # The most recently used versions stay loaded; a long-lived process that loads many
        # versions (a scheduler, a monitor loop) does not keep them all.
        self._loaded[mv.id] = model
        while len(self._loaded) > LOADED_MODELS:
            self._loaded.pop(next(iter(self._loaded)))
        return model

    # -- approval and aliases --------------------------------------------------------------

    def approve(self, ref: str, *, reason: str = "", by: str | None = None) -> ModelVersion:
        """Approve a version.

        Raises:
            Conflict: it is already approved.
        """
        return self._set_status(ref, "approved", reason, by)

    def reject(self, ref: str, *, reason: str, by: str | None = None) -> ModelVersion:
        """Reject a version; a reason is required.

        Raises:
            InvalidInput: no reason given.
            Conflict: it is already rejected.
        """
        if not reason.strip():
            raise InvalidInput("say why the version is rejected (--reason)")
        return self._set_status(ref, "rejected", reason, by)

    def _set_status(self, ref: str, status: str, reason: str, by: str | None) -> ModelVersion:
        mv = self.get(ref)
        if mv.status == status:
            raise Conflict(f"{mv.ref} is already {status}")
        with self._store.write() as conn:
            sql.set_status(conn, mv.id, status, by or current_user(), reason)
        return self.by_id(mv.id)

    def set_alias(
        self, name: str, alias: str, version: int | str, *, by: str | None = None
    ) -> ModelVersion:
        """Point ``name@alias`` at a version (moving the alias if it exists).

        Raises:
            InvalidInput: a numeric or reserved alias.
            NotFound: no such version.
        """
        check_name(alias, "alias")
        if alias.isdigit() or alias == "latest" or (alias[:1] in "vV" and alias[1:].isdigit()):
            raise InvalidInput(f"{alias!r} cannot be an alias: it reads as a version")
        mv = self.get(f"{name}@{version}")
        actor = by or current_user()
        with self._store.write() as conn:
            mdl = sql.model_by_name(conn, name)
            assert mdl is not None
            sql.set_alias(conn, mdl["id"], alias, mv.id, actor)
            sql.add_event(conn, mv.id, f"alias:{alias}", actor)
        return self.by_id(mv.id)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias.

        Raises:
            NotFound: no such model or alias.
        """
        with self._store.write() as conn:
            mdl = sql.model_by_name(conn, name)
            if mdl is None:
                raise NotFound(f"no registered model named {name!r}")
            if not sql.delete_alias(conn, mdl["id"], alias):
                raise NotFound(f"model {name!r} has no alias {alias!r}")

    def compare(self, ref_a: str, ref_b: str) -> dict[str, Any]:
        """Two versions side by side: metrics (with differences), status, signature changes."""
        a, b = self.get(ref_a), self.get(ref_b)
        keys = sorted(set(a.metrics) | set(b.metrics))
        metrics = {}
        for k in keys:
            va, vb = a.metrics.get(k), b.metrics.get(k)
            diff = (
                vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
            )
            metrics[k] = {"a": va, "b": vb, "diff": diff}
        cols_a = {c.name: c.type for c in a.signature.inputs}
        cols_b = {c.name: c.type for c in b.signature.inputs}
        return {
            "a": a.ref,
            "b": b.ref,
            "status": {"a": a.status, "b": b.status},
            "metrics": metrics,
            "signature": {
                "added": sorted(set(cols_b) - set(cols_a)),
                "removed": sorted(set(cols_a) - set(cols_b)),
                "type_changed": sorted(
                    k for k in set(cols_a) & set(cols_b) if cols_a[k] != cols_b[k]
                ),
            },
        }
