"""Endpoints as records: versioned configurations of production and shadow variants,
deployments between them, the local server that runs them, and their captured traffic.

An endpoint's configuration is immutable and numbered; :meth:`Endpoints.update` and
:meth:`Endpoints.rollback` write a new version and a deployment that moves the endpoint to it.
While the endpoint runs (``wellml endpoints up``), its supervisor carries the deployment out
step by step (see :mod:`wellml.serving.supervisor`); when it does not run, the new version is
simply the one it will start with.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import logging.handlers
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd

from wellml.config import current_user
from wellml.errors import (
    AlreadyExists,
    BackendUnavailable,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from wellml.governance import tokens
from wellml.names import check_name
from wellml.processes import pid_alive
from wellml.serving.config import (
    AutoScaling,
    DeploymentPolicy,
    EndpointConfig,
    MultiModel,
    ProductionVariant,
    RateLimit,
    ShadowVariant,
    check_variant_name,
)
from wellml.store import serving as sql
from wellml.store.metadata import new_id, now

if TYPE_CHECKING:
    from wellml.data.catalog import DatasetVersion
    from wellml.registry.service import ModelVersion
    from wellml.serving.batch import BatchJob
    from wellml.serving.ray_serve import RayServeEndpoint
    from wellml.workspace import Workspace

DEFAULT_PORT = 8080
OPEN_OUTCOMES = ("pending", "in-progress")
# The policy of an update that names none on an endpoint that has none: straight to the new
# version, after a smoke test, with nothing to watch.
DIRECT = DeploymentPolicy(strategy="all-at-once", bake_seconds=0, alarms=())


@dataclass(frozen=True)
class EndpointRecord:
    """An endpoint as stored."""

    id: str
    name: str
    model_ref: str
    model_version_id: str
    model_version: str
    status: str
    host: str
    port: int
    pid: int | None
    config: dict[str, Any]
    created_at: float
    updated_at: float
    lineage_artifact_id: str
    deployments: builtins.list[dict[str, Any]] = field(default_factory=list)
    config_version: int | None = None
    runtime: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        """Base URL of the endpoint."""
        return f"http://{self.host}:{self.port}"

    @property
    def lineage_ref(self) -> str:
        """This endpoint's node in the lineage graph."""
        return f"endpoint:{self.name}"

    @property
    def endpoint_config(self) -> EndpointConfig:
        """The current configuration."""
        return EndpointConfig.from_dict(self.config)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "name": self.name,
            "model_ref": self.model_ref,
            "model_version": self.model_version,
            "status": self.status,
            "url": self.url,
            "pid": self.pid,
            "config_version": self.config_version,
            "config": self.config,
            "runtime": self.runtime,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "deployments": self.deployments,
        }


@dataclass
class RunningEndpoint:
    """An endpoint served by a child process started with :meth:`Endpoints.start`."""

    name: str
    url: str
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 30) -> int:
        """Ask the server to stop (SIGTERM: it flushes capture first) and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode or 0)

    def __enter__(self) -> RunningEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Endpoints:
    """Deploys, serves and tracks the endpoints of a workspace."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._store = ws.metadata

    # -- records -----------------------------------------------------------------------------

    def _record(self, row: dict[str, Any], with_history: bool = False) -> EndpointRecord:
        mv = self._ws.registry.by_id(row["model_version_id"])
        history = []
        if with_history:
            with self._store.read() as conn:
                history = sql.deployments_of(conn, row["id"])
        return EndpointRecord(
            id=row["id"],
            name=row["name"],
            model_ref=row["model_ref"],
            model_version_id=row["model_version_id"],
            model_version=mv.ref,
            status=row["status"],
            host=row["host"],
            port=row["port"],
            pid=row["pid"],
            config=row["config"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            lineage_artifact_id=row["lineage_artifact_id"],
            deployments=history,
            config_version=row.get("config_version"),
            runtime=row.get("runtime") if row["status"] == "in-service" else None,
        )

    def _row(self, name: str) -> dict[str, Any]:
        with self._store.read() as conn:
            row = sql.endpoint_by_name(conn, name)
        if row is None or row["status"] == "deleted":
            raise NotFound(f"no endpoint named {name!r}")
        return self._refresh(row)

    def get(self, name: str) -> EndpointRecord:
        """An endpoint by name, with its deployment history.

        Raises:
            NotFound: no such endpoint.
        """
        return self._record(self._row(name), with_history=True)

    def list(self) -> builtins.list[EndpointRecord]:
        """Every endpoint (deleted ones excepted)."""
        with self._store.read() as conn:
            rows = sql.list_endpoints(conn)
        return [self._record(self._refresh(r)) for r in rows if r["status"] != "deleted"]

    def _refresh(self, row: dict[str, Any]) -> dict[str, Any]:
        # An endpoint whose server died without saying so is not in service.
        if row["status"] == "in-service" and row["pid"] and not pid_alive(row["pid"]):
            with self._store.write() as conn:
                sql.update_endpoint(conn, row["id"], status="failed", pid=None)
                for dep in sql.open_deployments(conn, row["id"]):
                    sql.end_deployment(conn, dep["id"], "interrupted", "the endpoint died")
            row = {**row, "status": "failed", "pid": None}
        return row

    def _running(self, row: dict[str, Any]) -> bool:
        return bool(row["status"] == "in-service" and row["pid"] and pid_alive(row["pid"]))

    def configs(self, name: str) -> builtins.list[dict[str, Any]]:
        """Every configuration version of an endpoint, oldest first.

        Raises:
            NotFound: no such endpoint.
        """
        row = self._row(name)
        with self._store.read() as conn:
            return sql.configs_of(conn, row["id"])

    def deployments(self, name: str) -> builtins.list[dict[str, Any]]:
        """An endpoint's deployment history, oldest first."""
        return self.get(name).deployments

    def events(self, name: str) -> builtins.list[dict[str, Any]]:
        """What the endpoint's supervisor did by itself: restarts and scaling actions."""
        row = self._row(name)
        with self._store.read() as conn:
            return sql.events_of(conn, row["id"])

    # -- configurations ----------------------------------------------------------------------

    def _resolve(self, ref: str, *, production: bool, allow_unapproved: bool) -> ModelVersion:
        mv = self._ws.registry.get(ref)
        if mv.status == "rejected":
            raise Conflict(f"{mv.ref} is rejected and cannot be served")
        if production and mv.status != "approved" and not allow_unapproved:
            raise Conflict(
                f"{mv.ref} is {mv.status}; approve it first (wellml models approve {mv.ref}) "
                "or pass --allow-unapproved"
            )
        return mv

    def _check_config(
        self, config: EndpointConfig, *, allow_unapproved: bool
    ) -> tuple[EndpointConfig, builtins.list[ModelVersion], Any]:
        """Resolve every model reference to ``name@version``, check approval (production
        variants only; a shadow never answers a caller) and the feature service."""
        versions = []
        variants = []
        for v in config.variants:
            if v.multi_model is not None:
                spec, addressable = self._check_multi_model(v.multi_model)
                versions.extend(addressable)
                variants.append(replace(v, model_version=addressable[0].ref, multi_model=spec))
                continue
            mv = self._resolve(v.model_version, production=True, allow_unapproved=allow_unapproved)
            versions.append(mv)
            variants.append(replace(v, model_version=mv.ref))
        shadows = []
        for s in config.shadows:
            mv = self._resolve(s.model_version, production=False, allow_unapproved=True)
            versions.append(mv)
            shadows.append(ShadowVariant(s.name, mv.ref, s.replicas, s.sampling_percent))
        service = None
        if config.feature_service is not None:
            service = self._ws.features.get(config.feature_service, "feature_service")
            served = {n.rpartition(":")[2] for n in service.feature_names}
            for mv in versions:
                if all(c not in served for c in mv.signature.columns):
                    raise InvalidInput(
                        f"feature service {service.ref} provides none of {mv.ref}'s inputs "
                        f"({', '.join(mv.signature.columns)})"
                    )
        resolved = config.with_changes(
            variants=tuple(variants),
            shadows=tuple(shadows),
            feature_service=service.ref if service is not None else None,
        )
        return resolved, versions, service

    def _check_multi_model(
        self, spec: MultiModel
    ) -> tuple[MultiModel, builtins.list[ModelVersion]]:
        """Pin the versions a multi-model set names and find the versions it serves now: each
        named version (which must be approved) and the latest approved version of each named
        model. The first of them is what the variant's record shows and what deployments
        smoke-test.

        Raises:
            NotFound: no such model or version.
            Conflict: a named version is not approved, or nothing in the set is.
            InvalidInput: a named version is larger than the whole memory budget.
        """
        from wellml.serving.multimodel import model_file_size

        entries: builtins.list[str] = []
        served: builtins.list[ModelVersion] = []
        for entry in spec.models:
            if "@" in entry:
                mv = self._resolve(entry, production=True, allow_unapproved=False)
                entries.append(mv.ref)
                served.append(mv)
                if model_file_size(self._ws, mv) > spec.memory_budget_bytes:
                    raise InvalidInput(
                        f"{mv.ref} needs {model_file_size(self._ws, mv)} bytes, more than the "
                        f"memory budget of {spec.memory_budget_bytes} bytes"
                    )
                continue
            self._ws.registry.get(entry)  # NotFound for a model that does not exist
            entries.append(entry)
            served.extend(self._ws.registry.versions(entry, status="approved")[:1])
        if not served:
            raise Conflict(
                "none of " + ", ".join(spec.models) + " has an approved version; approve one "
                "first (wellml models approve NAME@VERSION)"
            )
        return replace(spec, models=tuple(entries)), served

    def _write_config(
        self,
        conn: Any,
        row: dict[str, Any],
        config: EndpointConfig,
        versions: builtins.list[ModelVersion],
        service: Any,
        *,
        origin: str,
    ) -> int:
        """Store a new configuration version with its lineage; return its number."""
        version = sql.next_config_version(conn, row["id"])
        art = self._ws.lineage.add_artifact(
            conn,
            kind="endpoint_config",
            ref=f"endpoint-config:{row['name']}@{version}",
            properties={"config": config.to_dict()},
        )
        sql.add_config(
            conn,
            {
                "id": new_id(),
                "endpoint_id": row["id"],
                "version": version,
                "config": config.to_dict(),
                "created_at": now(),
                "created_by": current_user(),
                "lineage_artifact_id": art,
            },
        )
        seen: set[str] = set()
        inputs = []
        for mv in versions:
            if mv.id not in seen:
                seen.add(mv.id)
                inputs.append((mv.lineage_artifact_id, "model"))
        if service is not None:
            inputs.append((service.lineage_artifact_id, "feature_service"))
        self._ws.lineage.record_execution(
            conn,
            kind="deploy",
            ref=f"deploy:{row['name']}@{version}:{new_id()[:8]}",
            name=f"configure {row['name']} v{version} ({origin})",
            inputs=inputs,
            outputs=[(row["lineage_artifact_id"], "endpoint"), (art, "endpoint_config")],
            properties={"config": config.to_dict(), "origin": origin},
        )
        return version

    def create(
        self,
        name: str,
        variants: Sequence[ProductionVariant],
        *,
        shadows: Sequence[ShadowVariant] = (),
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        auth: bool = True,
        capture_percent: float = 100.0,
        max_payload_bytes: int = 6 * 1024 * 1024,
        feature_service: str | None = None,
        rate_limit: RateLimit | None = None,
        policy: DeploymentPolicy | None = None,
        allow_unapproved: bool = False,
    ) -> EndpointRecord:
        """Create an endpoint (not started) from production variants and optional shadows.

        Raises:
            AlreadyExists: an endpoint of that name exists.
            Conflict: a production model version is not approved, or one is rejected.
            NotFound: no such model version or feature service.
            InvalidInput: bad names or settings.
        """
        name = check_name(name, "endpoint name")
        config = EndpointConfig(
            variants=tuple(variants),
            shadows=tuple(shadows),
            auth=auth,
            capture_percent=capture_percent,
            max_payload_bytes=max_payload_bytes,
            feature_service=feature_service,
            rate_limit=rate_limit,
            policy=policy,
        )
        with self._store.read() as conn:
            existing = sql.endpoint_by_name(conn, name)
        if existing is not None and existing["status"] != "deleted":
            raise AlreadyExists(
                f"endpoint {name!r} exists; change it with update, or delete it first"
            )
        return self._put(
            name,
            config,
            host=host,
            port=port,
            model_ref=None,
            allow_unapproved=allow_unapproved,
            replace_running=False,
        )

    def deploy(
        self,
        model_ref: str,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        capture_percent: float = 100.0,
        auth: bool = True,
        allow_unapproved: bool = False,
        max_payload_bytes: int = 6 * 1024 * 1024,
        feature_service: str | None = None,
        replicas: int = 1,
        rate_limit: RateLimit | None = None,
        policy: DeploymentPolicy | None = None,
        autoscaling: AutoScaling | None = None,
    ) -> EndpointRecord:
        """Create or replace the endpoint record for one model version (it is not started).

        With ``feature_service``, a request may carry only entity keys (and any request
        fields of on-demand features): the endpoint fetches the service's features from the
        online store before predicting. The service is pinned to its current version. With
        ``autoscaling``, the variant starts at ``replicas`` and is scaled within its bounds.

        Raises:
            Conflict: the version is not approved (unless ``allow_unapproved``), or the
                endpoint is running.
            NotFound: no such model version.
            InvalidInput: bad name or settings.
        """
        mv = self._ws.registry.get(model_ref)
        name = check_name(name or mv.name, "endpoint name")
        config = EndpointConfig(
            variants=(ProductionVariant("primary", mv.ref, replicas, 1.0, autoscaling),),
            auth=auth,
            capture_percent=capture_percent,
            max_payload_bytes=max_payload_bytes,
            feature_service=feature_service,
            rate_limit=rate_limit,
            policy=policy,
        )
        return self._put(
            name,
            config,
            host=host,
            port=port,
            model_ref=model_ref,
            allow_unapproved=allow_unapproved,
            replace_running=False,
        )

    def _put(
        self,
        name: str,
        config: EndpointConfig,
        *,
        host: str,
        port: int,
        model_ref: str | None,
        allow_unapproved: bool,
        replace_running: bool,
    ) -> EndpointRecord:
        config, versions, service = self._check_config(config, allow_unapproved=allow_unapproved)
        primary = config.primary()
        primary_mv = next(mv for mv in versions if mv.ref == primary.model_version)
        user = current_user()
        with self._store.write() as conn:
            row = sql.endpoint_by_name(conn, name)
            if row is not None and self._running(row) and not replace_running:
                raise Conflict(f"endpoint {name!r} is running (pid {row['pid']}); stop it first")
            values = {
                "model_ref": model_ref or primary.model_version,
                "model_version_id": primary_mv.id,
                "status": "creating",
                "host": host,
                "port": port,
                "pid": None,
                "config": config.to_dict(),
            }
            if row is None:
                art = self._ws.lineage.add_artifact(
                    conn, kind="endpoint", ref=f"endpoint:{name}", properties={"host": host}
                )
                row = {
                    "id": new_id(),
                    "name": name,
                    **values,
                    "created_at": now(),
                    "updated_at": now(),
                    "lineage_artifact_id": art,
                    "config_version": None,
                    "runtime": None,
                }
                sql.insert_endpoint(conn, row)
            else:
                sql.update_endpoint(conn, row["id"], **values)
            previous = row.get("config_version")
            version = self._write_config(conn, row, config, versions, service, origin="manual")
            sql.update_endpoint(conn, row["id"], config_version=version)
            sql.add_deployment(
                conn,
                {
                    "id": new_id(),
                    "endpoint_id": row["id"],
                    "model_version_id": primary_mv.id,
                    "config": {"endpoint": config.to_dict(), "policy": None},
                    "actor": user,
                    "origin": "manual",
                    "outcome": "created",
                    "started_at": now(),
                    "ended_at": None,
                    "strategy": None,
                    "from_version": previous,
                    "to_version": version,
                    "steps": [],
                    "reason": None,
                },
            )
        return self.get(name)

    def update(
        self,
        name: str,
        *,
        model: str | None = None,
        variant: str | None = None,
        replicas: int | None = None,
        variants: Sequence[ProductionVariant] | None = None,
        weights: dict[str, float] | None = None,
        shadows: Sequence[ShadowVariant] | None = None,
        capture_percent: float | None = None,
        rate_limit: RateLimit | None = None,
        policy: DeploymentPolicy | None = None,
        allow_unapproved: bool = False,
        wait: bool = True,
        timeout: float = 900,
        origin: str = "manual",
    ) -> dict[str, Any]:
        """Move an endpoint to a new configuration; return the deployment record.

        ``model`` replaces every production variant with one new variant serving it (named
        ``variant``, default ``<model>-<version>``): a blue/green update. ``variants`` sets
        the production variants as given (an A/B test); ``weights`` changes existing
        variants' weights; ``shadows`` sets the shadow variants (empty to remove them).

        The deployment follows ``policy`` (default: the endpoint's own policy, else all at
        once with no alarms). On a running endpoint its supervisor carries it out and, with
        ``wait``, this returns when it has completed or rolled back; on a stopped endpoint
        the new version is applied at once.

        Raises:
            NotFound: no such endpoint or model version.
            Conflict: a model version is not approved, or a deployment is in progress.
            InvalidInput: nothing to change, or a bad change.
            BackendUnavailable: ``wait`` ran out of ``timeout`` seconds.
        """
        row = self._row(name)
        current = EndpointConfig.from_dict(row["config"])
        target = current
        if model is not None:
            if variants is not None or weights is not None:
                raise InvalidInput("give a model, variants or weights, not several")
            mv = self._ws.registry.get(model)
            vname = check_variant_name(variant or f"{mv.name}-{mv.version}")
            if any(v.name == vname for v in current.all_variants()):
                raise InvalidInput(
                    f"variant {vname!r} exists already; name the new variant (--variant)"
                )
            count = replicas if replicas is not None else current.primary().replicas
            scaling = current.primary().autoscaling
            target = target.with_changes(
                variants=(ProductionVariant(vname, mv.ref, count, 1.0, scaling),)
            )
        elif variants is not None:
            target = target.with_changes(variants=tuple(variants))
        elif weights is not None:
            unknown = sorted(set(weights) - {v.name for v in current.variants})
            if unknown:
                raise InvalidInput(f"no production variant(s) {', '.join(unknown)}")
            target = target.with_changes(
                variants=tuple(
                    replace(v, weight=weights.get(v.name, v.weight)) for v in current.variants
                )
            )
        elif replicas is not None:
            names = {variant} if variant else {v.name for v in current.variants}
            target = target.with_changes(
                variants=tuple(
                    replace(v, replicas=replicas if v.name in names else v.replicas)
                    for v in current.variants
                )
            )
        if shadows is not None:
            target = target.with_changes(shadows=tuple(shadows))
        if capture_percent is not None:
            target = target.with_changes(capture_percent=capture_percent)
        if rate_limit is not None:
            target = target.with_changes(rate_limit=rate_limit)
        if policy is not None:
            target = target.with_changes(policy=policy)
        if target == current:
            raise InvalidInput("nothing to change: give a model, variants, weights or shadows")
        used = policy or current.policy or DIRECT
        return self._deploy_config(
            row,
            target,
            used,
            origin=origin,
            allow_unapproved=allow_unapproved,
            wait=wait,
            timeout=timeout,
        )

    def _deploy_config(
        self,
        row: dict[str, Any],
        target: EndpointConfig,
        policy: DeploymentPolicy,
        *,
        origin: str,
        allow_unapproved: bool,
        wait: bool,
        timeout: float,
    ) -> dict[str, Any]:
        target, versions, service = self._check_config(target, allow_unapproved=allow_unapproved)
        primary_id = next(mv.id for mv in versions if mv.ref == target.primary().model_version)
        dep_id = new_id()
        with self._store.write() as conn:
            fresh = sql.endpoint_by_name(conn, row["name"])
            assert fresh is not None
            if sql.open_deployments(conn, fresh["id"]):
                raise Conflict(
                    f"endpoint {row['name']!r} has a deployment in progress; wait for it"
                )
            running = self._running(fresh)
            version = self._write_config(conn, fresh, target, versions, service, origin=origin)
            record = {
                "id": dep_id,
                "endpoint_id": fresh["id"],
                "model_version_id": primary_id,
                "config": {"endpoint": target.to_dict(), "policy": policy.to_dict()},
                "actor": current_user(),
                "origin": origin,
                "outcome": "pending" if running else "completed",
                "started_at": now(),
                "ended_at": None if running else now(),
                "strategy": policy.strategy,
                "from_version": fresh.get("config_version"),
                "to_version": version,
                "steps": []
                if running
                else [
                    {
                        "at": round(now(), 3),
                        "action": "applied",
                        "note": "the endpoint was not running; it starts with this version",
                    }
                ],
                "reason": None,
            }
            sql.add_deployment(conn, record)
            if not running:
                sql.update_endpoint(
                    conn,
                    fresh["id"],
                    config=target.to_dict(),
                    config_version=version,
                    model_version_id=primary_id,
                )
        if not running or not wait:
            return self.deployment(dep_id)
        return self.wait_for(dep_id, timeout=timeout)

    def deployment(self, dep_id: str) -> dict[str, Any]:
        """One deployment record by id.

        Raises:
            NotFound: no such deployment.
        """
        with self._store.read() as conn:
            dep = sql.deployment_by_id(conn, dep_id)
        if dep is None:
            raise NotFound(f"no deployment {dep_id}")
        return dep

    def wait_for(self, deployment_id: str, *, timeout: float = 900) -> dict[str, Any]:
        """Wait until a deployment has completed, rolled back or failed; return it.

        Raises:
            BackendUnavailable: it is still open after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            dep = self.deployment(deployment_id)
            if dep["outcome"] not in OPEN_OUTCOMES:
                return dep
            if time.monotonic() > deadline:
                raise BackendUnavailable(
                    f"deployment {deployment_id} is still {dep['outcome']} after {timeout:.0f} s"
                )
            time.sleep(0.2)

    def rollback(
        self,
        name: str,
        *,
        to_version: int | None = None,
        drill: bool = False,
        wait: bool = True,
        timeout: float = 900,
    ) -> builtins.list[dict[str, Any]]:
        """Go back to an earlier configuration version (default: the one before the last
        completed deployment); return the deployment(s).

        A ``drill`` rolls back and then forward again to the version it started from, so
        that the path back is proven without staying on it.

        Raises:
            NotFound: no such endpoint or version.
            Conflict: there is no earlier version, or a deployment is in progress.
        """
        row = self._row(name)
        current_version = row.get("config_version")
        if to_version is None:
            with self._store.read() as conn:
                history = sql.deployments_of(conn, row["id"])
            applied = [
                d["from_version"]
                for d in history
                if d["outcome"] in ("completed", "created")
                and d["to_version"] == current_version
                and d["from_version"] is not None
            ]
            if not applied:
                raise Conflict(f"endpoint {name!r} has no earlier configuration to roll back to")
            to_version = int(applied[-1])
        with self._store.read() as conn:
            target_row = sql.config_version(conn, row["id"], to_version)
        if target_row is None:
            raise NotFound(f"endpoint {name!r} has no configuration version {to_version}")
        if to_version == current_version:
            raise Conflict(f"endpoint {name!r} runs version {to_version} already")
        target = EndpointConfig.from_dict(target_row["config"])
        current = EndpointConfig.from_dict(row["config"])
        policy = current.policy or DIRECT
        fast = DeploymentPolicy(
            strategy="all-at-once",
            bake_seconds=min(policy.bake_seconds, 10.0),
            smoke_test=True,
            alarms=policy.alarms,
        )
        target = self._rename_reused(current, target)
        back = self._deploy_config(
            row,
            target,
            fast,
            origin="rollback" if not drill else "rollback-drill",
            allow_unapproved=False,
            wait=True if drill else wait,
            timeout=timeout,
        )
        if not drill:
            return [back]
        if back["outcome"] != "completed":
            return [back]
        row = self._row(name)
        forward = self._rename_reused(EndpointConfig.from_dict(row["config"]), current)
        ahead = self._deploy_config(
            row,
            forward,
            fast,
            origin="rollback-drill",
            allow_unapproved=False,
            wait=wait,
            timeout=timeout,
        )
        return [back, ahead]

    @staticmethod
    def _rename_reused(current: EndpointConfig, target: EndpointConfig) -> EndpointConfig:
        """Variant names of ``target`` that ``current`` uses for another model version get a
        suffix, since a running variant keeps its model version for its whole life."""
        used = {v.name: v.model_version for v in current.all_variants()}
        names = set(used)

        def fresh(name: str, model: str) -> str:
            if name not in used or used[name] == model:
                return name
            i = 2
            while f"{name}-r{i}" in names:
                i += 1
            names.add(f"{name}-r{i}")
            return f"{name}-r{i}"

        return target.with_changes(
            variants=tuple(
                replace(v, name=fresh(v.name, v.model_version)) for v in target.variants
            ),
            shadows=tuple(
                ShadowVariant(
                    fresh(s.name, s.model_version), s.model_version, s.replicas, s.sampling_percent
                )
                for s in target.shadows
            ),
        )

    def delete(self, name: str) -> None:
        """Delete an endpoint: stop it if it runs here, and retire its record. Its history
        (configurations, deployments, captured data, lineage) is kept.

        Raises:
            NotFound: no such endpoint.
        """
        row = self._row(name)
        if self._running(row):
            self.stop(name)
        with self._store.write() as conn:
            sql.delete_endpoint(conn, row["id"])

    # -- serving -------------------------------------------------------------------------------

    def serve(self, name: str, *, log_to_stderr: bool = False) -> None:
        """Run an endpoint here until it is stopped (SIGTERM or Ctrl-C): its router on the
        endpoint's address and a supervisor that runs each variant's replica processes.
        Marks the endpoint in service while it runs and stopped after.

        Raises:
            NotFound: no such endpoint.
            Conflict: it runs already.
        """
        import uvicorn

        from wellml.serving.router import Router
        from wellml.serving.supervisor import Supervisor

        row = self._row(name)
        if self._running(row):
            raise Conflict(f"endpoint {name!r} is running (pid {row['pid']})")
        config = EndpointConfig.from_dict(row["config"])
        secret = secrets.token_urlsafe(24)
        supervisor = Supervisor(
            self._ws, row["id"], row["name"], config, int(row.get("config_version") or 1), secret
        )
        authenticate = metrics_auth = None
        if config.auth:
            store = self._store
            from wellml.serving.router import Authenticator

            authenticate = Authenticator(lambda t: tokens.authenticate(store, t, f"invoke:{name}"))
            metrics_auth = Authenticator(lambda t: tokens.authenticate(store, t, f"metrics:{name}"))
        handler = self._access_handler(name)

        def mark_stopped() -> None:
            with self._store.write() as conn:
                sql.update_endpoint(conn, row["id"], status="stopped", pid=None)
                for dep in sql.open_deployments(conn, row["id"]):
                    sql.end_deployment(conn, dep["id"], "interrupted", "the endpoint stopped")
                for dep in sql.deployments_of(conn, row["id"]):
                    if dep["ended_at"] is None:
                        sql.end_deployment(conn, dep["id"], "stopped")

        async def stopped() -> None:
            # uvicorn ends the process with the signal it caught once the server has stopped,
            # so the record is closed here rather than after ``run`` returns.
            try:
                await supervisor.shutdown()
            finally:
                await asyncio.to_thread(mark_stopped)

        router = Router(
            row["name"],
            config,
            internal_secret=secret,
            authenticate=authenticate,
            metrics_scope_check=metrics_auth,
            on_startup=supervisor.start,
            on_shutdown=stopped,
        )
        supervisor.router = router
        router.before_scrape = supervisor.publish_replicas
        with self._store.write() as conn:
            sql.update_endpoint(conn, row["id"], status="in-service", pid=os.getpid(), runtime=None)
        server = uvicorn.Server(
            uvicorn.Config(
                router,
                host=row["host"],
                port=row["port"],
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=30,
            )
        )
        try:
            server.run()
        finally:
            logging.getLogger("wellml.access").removeHandler(handler)
            handler.close()
            with self._store.read() as conn:
                now_row = sql.endpoint_by_name(conn, name)
            if now_row is not None and now_row["status"] == "in-service":
                if server.started:
                    mark_stopped()
                else:
                    with self._store.write() as conn:
                        sql.update_endpoint(conn, row["id"], status="failed", pid=None)

    def access_log_path(self, name: str) -> str:
        """Where the endpoint's JSON access log is written."""
        return str(self._ws.state_dir / "logs" / f"endpoint-{name}-access.jsonl")

    def _access_handler(self, name: str) -> logging.Handler:
        path = self.access_log_path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=64 << 20, backupCount=5, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("wellml.access")
        access.setLevel(logging.INFO)
        access.propagate = False
        access.addHandler(handler)
        return handler

    def start(
        self,
        model_ref: str | None = None,
        *,
        name: str | None = None,
        port: int | None = None,
        timeout: float = 120,
        **deploy_args: Any,
    ) -> RunningEndpoint:
        """Deploy a model version (or, with ``model_ref`` None, take the endpoint ``name`` as
        it is) and serve it in a child process; return once it answers /ping.

        Raises:
            BackendUnavailable: the server did not come up within ``timeout`` seconds.
        """
        if model_ref is not None:
            ep = self.deploy(model_ref, name=name, port=port or free_port(), **deploy_args)
        else:
            if name is None:
                raise InvalidInput("give a model version or the name of an endpoint")
            row = self._row(name)
            if port is not None or row["port"] in (0, 1):
                with self._store.write() as conn:
                    sql.update_endpoint(conn, row["id"], port=port or free_port())
            ep = self.get(name)
        cmd = [
            sys.executable,
            "-m",
            "wellml",
            "--workspace",
            str(self._ws.root),
            "endpoints",
            "up",
            ep.name,
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise BackendUnavailable(f"endpoint {ep.name} exited at start: {err.strip()}")
            try:
                if httpx.get(ep.url + "/ping", timeout=1).status_code == 200:
                    if proc.stderr is not None:
                        proc.stderr.close()
                        proc.stderr = None
                    return RunningEndpoint(ep.name, ep.url, proc)
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        proc.kill()
        proc.wait()
        raise BackendUnavailable(f"endpoint {ep.name} did not answer /ping in {timeout:.0f} s")

    def _enricher(
        self, service_ref: str, inputs: builtins.list[str]
    ) -> Callable[[pd.DataFrame], pd.DataFrame]:
        """Fill a request's missing model inputs from the online store via a feature service.

        Values sent with the request are kept: a client may override a feature, and a request
        that already carries every model input is not looked up at all.
        """
        features = self._ws.features
        features.get(service_ref, "feature_service")  # fail at start, not at the first request

        def enrich(frame: pd.DataFrame) -> pd.DataFrame:
            if all(c in frame.columns for c in inputs):
                return frame
            columns = {str(c): frame[c].tolist() for c in frame.columns}
            found = features.get_online_features(columns, service_ref).columns
            extra = {c: v for c, v in found.items() if c not in columns}
            if not extra:
                return frame
            return pd.concat([frame.reset_index(drop=True), pd.DataFrame(extra)], axis=1)

        return enrich

    def deploy_ray(
        self,
        name: str,
        *,
        address: str | None = None,
        port: int | None = None,
        route_prefix: str = "/",
        num_cpus: float = 1.0,
        timeout: float = 180,
    ) -> RayServeEndpoint:
        """Serve endpoint ``name``'s current configuration on Ray Serve (the scale-out backend):
        one Serve deployment per production variant and a router on 127.0.0.1:``port``; see
        :func:`wellml.serving.ray_serve.deploy`. Call ``stop()`` on the result to take it down.

        Raises:
            NotFound: no such endpoint.
            Conflict: it runs already.
            InvalidInput: an unusable port, route prefix or CPU share.
            BackendUnavailable: Ray Serve is missing or unreachable, or did not answer in time.
        """
        from wellml.serving.ray_serve import deploy

        return deploy(
            self._ws,
            name,
            address=address,
            port=port,
            route_prefix=route_prefix,
            num_cpus=num_cpus,
            timeout=timeout,
        )

    def stop(self, name: str, timeout: float = 30) -> EndpointRecord:
        """Stop a running endpoint's server (on this host).

        Raises:
            NotFound: no such endpoint.
            Conflict: it is not running.
        """
        ep = self.get(name)
        if ep.status != "in-service" or not ep.pid:
            raise Conflict(f"endpoint {name!r} is not running (status {ep.status})")
        if ep.pid == os.getpid():
            raise Conflict(
                f"endpoint {name!r} is served by this process on Ray Serve; call stop() on the "
                "handle that deploy_ray returned"
            )
        os.kill(ep.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(ep.pid):
            time.sleep(0.1)
        return self.get(name)

    # -- what deployments read -------------------------------------------------------------------

    def smoke_rows(self, name: str, model_ref: str, rows: int = 3) -> bytes:
        """A smoke-test request body for ``model_ref`` on endpoint ``name``: the latest
        captured rows when the capture log has them, else one row built from the signature."""
        import json

        mv = self._ws.registry.get(model_ref)
        cols = mv.signature.columns
        row = self._row(name)
        with self._store.read() as conn:
            files = sql.capture_files_of(conn, row["id"], only_new=False)
        for f in reversed(files[-5:]):
            try:
                frame = pd.read_parquet(f["uri"])
                if "target_model" in frame.columns:
                    # A multi-model endpoint captures every model's rows in one log.
                    frame = frame[frame["model_version"] == mv.ref]
                frame = frame[cols]
            except Exception:
                continue
            if len(frame):
                sample = frame.tail(rows).astype(object).where(frame.tail(rows).notna(), None)
                return json.dumps(sample.to_dict(orient="records"), default=str).encode()
        values: dict[str, Any] = {}
        for c in mv.signature.inputs:
            if c.categories:
                values[c.name] = c.categories[0]
            else:
                values[c.name] = {"integer": 0, "float": 0.0, "boolean": False}.get(c.type, "")
        return json.dumps([values]).encode()

    def captured_values(
        self, name: str, column: str, *, since: float, variants: Sequence[str]
    ) -> dict[str, builtins.list[Any]]:
        """Values of a captured column per variant, from capture files written since
        ``since`` (epoch seconds)."""
        row = self._row(name)
        with self._store.read() as conn:
            files = [
                f
                for f in sql.capture_files_of(conn, row["id"], only_new=False)
                if f["last_at"] >= since
            ]
        out: dict[str, builtins.list[Any]] = {v: [] for v in variants}
        for f in files:
            try:
                frame = pd.read_parquet(f["uri"])
            except Exception:
                continue
            if column not in frame.columns or "variant" not in frame.columns:
                continue
            times = frame["event_time"]
            recent = frame[(times.astype("int64") / 1e9 >= since) if len(times) else times.notna()]
            for v in variants:
                out[v].extend(recent.loc[recent["variant"] == v, column].tolist())
        return out

    def compare(self, name: str) -> dict[str, Any]:
        """Per-variant figures for an A/B test or a shadow test: requests, error rates and
        latencies (from the running router), and the distribution of predictions (from the
        capture log).

        Raises:
            NotFound: no such endpoint.
        """
        ep = self.get(name)
        runtime = ep.runtime or {}
        variants: dict[str, dict[str, Any]] = {}
        for vname, info in (runtime.get("variants") or {}).items():
            variants[vname] = {
                "model_version": info.get("model_version"),
                "shadow": info.get("shadow", False),
                "weight": info.get("weight"),
                "traffic": info.get("total"),
                "last_60s": info.get("last_60s"),
            }
        config = ep.endpoint_config
        for v in config.all_variants():
            variants.setdefault(v.name, {"model_version": v.model_version})
        captured = self.captured_values(name, "prediction", since=0.0, variants=list(variants))
        for vname, values in captured.items():
            if not values:
                continue
            series = pd.Series(values)
            summary: dict[str, Any] = {"rows": len(series)}
            if pd.api.types.is_numeric_dtype(series):
                summary["mean"] = float(series.mean())
            summary["top"] = {str(k): int(v) for k, v in series.value_counts().head(5).items()}
            variants[vname]["predictions"] = summary
        return {
            "endpoint": name,
            "config_version": ep.config_version,
            "variants": variants,
            "shadows": runtime.get("shadows", {}),
        }

    # -- access ------------------------------------------------------------------------------

    def issue_token(
        self,
        name: str,
        principal: str,
        *,
        ttl_days: float | None = 90,
        rate_limit: tuple[float, int | None] | None = None,
    ) -> tokens.IssuedToken:
        """Issue a token that may invoke endpoint ``name`` (optionally with its own rate
        limit: requests a second and burst).

        Raises:
            NotFound: no such endpoint.
        """
        self.get(name)
        return tokens.issue_token(
            self._store, principal, [f"invoke:{name}"], ttl_days=ttl_days, rate_limit=rate_limit
        )

    def invoke(
        self,
        name: str,
        data: pd.DataFrame | builtins.list[dict[str, Any]],
        *,
        token: str | None = None,
        timeout: float = 30,
        variant: str | None = None,
        inference_id: str | None = None,
        target_model: str | None = None,
        explain: str | None = None,
    ) -> dict[str, Any]:
        """Send rows to a running endpoint and return its JSON answer (with ``variant``, to that
        production variant, whatever the weights). ``inference_id`` names the request in the
        capture log, so that labels known later can be joined to it as ground truth.
        ``target_model`` (``name@version`` or ``name@alias``) picks the model version on a
        multi-model endpoint. ``explain`` is the JMESPath row filter of the explanation
        header (```true``` for every row): the answer then holds SHAP ``explanations``
        (:mod:`wellml.serving.explain`).

        Raises:
            NotFound: no such endpoint.
            Conflict: it is not running.
            InvalidInput, PermissionDenied: the endpoint refused the request.
            BackendUnavailable: the endpoint failed to answer (5xx).
        """
        ep = self.get(name)
        if ep.status != "in-service":
            raise Conflict(f"endpoint {name!r} is not running (status {ep.status})")
        records = data.to_dict(orient="records") if isinstance(data, pd.DataFrame) else data
        headers = {"authorization": f"Bearer {token}"} if token else {}
        if inference_id is not None:
            headers["x-wellml-inference-id"] = inference_id
        if variant:
            headers["x-wellml-target-variant"] = variant
        if target_model:
            headers["x-wellml-target-model"] = target_model
        if explain:
            headers["x-amzn-sagemaker-enable-explanations"] = explain
        resp = httpx.post(ep.url + "/invocations", json=records, headers=headers, timeout=timeout)
        if resp.status_code >= 400:
            try:
                message = resp.json().get("error", resp.text)
            except ValueError:
                message = resp.text
            if resp.status_code == 401:
                raise Unauthenticated(message)
            if resp.status_code == 403:
                raise PermissionDenied(message)
            if resp.status_code == 404:
                raise NotFound(message)
            if resp.status_code >= 500:
                raise BackendUnavailable(f"endpoint answered {resp.status_code}: {message}")
            raise InvalidInput(f"endpoint answered {resp.status_code}: {message}")
        result: dict[str, Any] = resp.json()
        return result

    # -- batch transform ---------------------------------------------------------------------

    def batch_transform(
        self,
        model_ref: str,
        input_path: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        chunk_rows: int = 100_000,
        workers: int = 2,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> BatchJob:
        """Apply a model version to a CSV or Parquet file in chunks, in a process pool,
        resuming an unfinished job on the same input and output (see
        :mod:`wellml.serving.batch`)."""
        from wellml.serving.batch import batch_transform

        return batch_transform(
            self._ws,
            model_ref,
            input_path,
            output_dir,
            chunk_rows=chunk_rows,
            workers=workers,
            progress=progress,
        )

    # -- captured data -----------------------------------------------------------------------

    def _record_capture(self, endpoint_id: str, uri: str, rows: int, t0: float, t1: float) -> None:
        with self._store.write() as conn:
            sql.add_capture_file(
                conn,
                {
                    "uri": uri,
                    "endpoint_id": endpoint_id,
                    "rows": rows,
                    "first_at": t0,
                    "last_at": t1,
                    "dataset_version_id": None,
                },
            )

    def capture_files(self, name: str, *, only_new: bool = False) -> builtins.list[dict[str, Any]]:
        """The endpoint's captured-data files, oldest first."""
        ep = self.get(name)
        with self._store.read() as conn:
            return sql.capture_files_of(conn, ep.id, only_new=only_new)

    def capture_dataset(self, name: str, *, only_new: bool = True) -> DatasetVersion | None:
        """Turn the endpoint's captured files into a dataset version ``<name>-capture``.

        The version's lineage runs from the endpoint through a ``capture`` execution. Returns
        None when there is nothing (new) captured.
        """
        import fsspec
        import pyarrow as pa
        import pyarrow.parquet as pq

        ep = self.get(name)
        files = self.capture_files(name, only_new=only_new)
        if not files:
            return None
        tables = []
        for f in files:
            fs, path = fsspec.core.url_to_fs(f["uri"])
            with fs.open(path, "rb") as fh:
                tables.append(pq.read_table(fh))
        table = pa.concat_tables(tables, promote_options="permissive")
        with self._store.write() as conn:
            exec_id = self._ws.lineage.record_execution(
                conn,
                kind="capture",
                ref=f"capture:{new_id()}",
                name=f"capture of {name}",
                status="running",
                inputs=[(ep.lineage_artifact_id, "endpoint")],
                properties={"files": len(files), "rows": table.num_rows},
            )
        try:
            dv = self._ws.data.register(
                f"{name}-capture",
                table,
                produced_by=exec_id,
                description=f"traffic captured at endpoint {name}",
                properties={"captured_from": f"endpoint:{name}"},
            )
        except Exception:
            with self._store.write() as conn:
                self._ws.lineage.finish(conn, exec_id, status="failed")
            raise
        with self._store.write() as conn:
            self._ws.lineage.finish(conn, exec_id, status="completed")
            sql.mark_ingested(conn, [f["uri"] for f in files], dv.id)
        return dv
