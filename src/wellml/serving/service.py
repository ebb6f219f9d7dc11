"""Endpoints as records: deploy a registered model version, serve it, capture its traffic."""

from __future__ import annotations

import builtins
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd

from wellml.config import current_user
from wellml.errors import (
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
from wellml.store import serving as sql
from wellml.store.metadata import new_id, now

if TYPE_CHECKING:
    from wellml.data.catalog import DatasetVersion
    from wellml.workspace import Workspace

DEFAULT_PORT = 8080


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

    @property
    def url(self) -> str:
        """Base URL of the endpoint."""
        return f"http://{self.host}:{self.port}"

    @property
    def lineage_ref(self) -> str:
        """This endpoint's node in the lineage graph."""
        return f"endpoint:{self.name}"

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
            "config": self.config,
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
        )

    def get(self, name: str) -> EndpointRecord:
        """An endpoint by name, with its deployment history.

        Raises:
            NotFound: no such endpoint.
        """
        with self._store.read() as conn:
            row = sql.endpoint_by_name(conn, name)
        if row is None:
            raise NotFound(f"no endpoint named {name!r}")
        return self._record(self._refresh(row), with_history=True)

    def list(self) -> builtins.list[EndpointRecord]:
        """Every endpoint."""
        with self._store.read() as conn:
            rows = sql.list_endpoints(conn)
        return [self._record(self._refresh(r)) for r in rows]

    def _refresh(self, row: dict[str, Any]) -> dict[str, Any]:
        # An endpoint whose server died without saying so is not in service.
        if row["status"] == "in-service" and row["pid"] and not pid_alive(row["pid"]):
            with self._store.write() as conn:
                sql.update_endpoint(conn, row["id"], status="failed", pid=None)
            row = {**row, "status": "failed", "pid": None}
        return row

    # -- deploying ---------------------------------------------------------------------------

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
    ) -> EndpointRecord:
        """Create or update the endpoint record for a model version (it is not started).

        With ``feature_service``, a request may carry only entity keys (and any request
        fields of on-demand features): the endpoint fetches the service's features from the
        online store before predicting. The service is pinned to its current version.

        Raises:
            Conflict: the version is not approved (unless ``allow_unapproved``), or the
                endpoint is running.
            NotFound: no such model version.
            InvalidInput: bad name or settings.
        """
        mv = self._ws.registry.get(model_ref)
        name = check_name(name or mv.name, "endpoint name")
        if not 0 <= capture_percent <= 100:
            raise InvalidInput("capture percent must be between 0 and 100")
        if mv.status != "approved" and not allow_unapproved:
            raise Conflict(
                f"{mv.ref} is {mv.status}; approve it first (wellml models approve {mv.ref}) "
                "or pass --allow-unapproved"
            )
        service = None
        if feature_service is not None:
            service = self._ws.features.get(feature_service, "feature_service")
            served = {name.rpartition(":")[2] for name in service.feature_names}
            missing = [c for c in mv.signature.columns if c not in served]
            if len(missing) == len(mv.signature.columns):
                raise InvalidInput(
                    f"feature service {service.ref} provides none of {mv.ref}'s inputs "
                    f"({', '.join(mv.signature.columns)})"
                )
        config = {
            "auth": auth,
            "feature_service": service.ref if service is not None else None,
            "capture_percent": capture_percent,
            "max_payload_bytes": max_payload_bytes,
            "variants": [{"name": "primary", "model_version": mv.ref, "weight": 1.0}],
        }
        user = current_user()
        with self._store.write() as conn:
            row = sql.endpoint_by_name(conn, name)
            if (
                row is not None
                and row["status"] == "in-service"
                and row["pid"]
                and pid_alive(row["pid"])
            ):
                raise Conflict(f"endpoint {name!r} is running (pid {row['pid']}); stop it first")
            if row is None:
                art = self._ws.lineage.add_artifact(
                    conn, kind="endpoint", ref=f"endpoint:{name}", properties={"host": host}
                )
                row = {
                    "id": new_id(),
                    "name": name,
                    "model_ref": model_ref,
                    "model_version_id": mv.id,
                    "status": "creating",
                    "host": host,
                    "port": port,
                    "pid": None,
                    "config": config,
                    "created_at": now(),
                    "updated_at": now(),
                    "lineage_artifact_id": art,
                }
                sql.insert_endpoint(conn, row)
            else:
                sql.update_endpoint(
                    conn,
                    row["id"],
                    model_ref=model_ref,
                    model_version_id=mv.id,
                    status="creating",
                    host=host,
                    port=port,
                    pid=None,
                    config=config,
                )
            dep_id = new_id()
            sql.add_deployment(
                conn,
                {
                    "id": dep_id,
                    "endpoint_id": row["id"],
                    "model_version_id": mv.id,
                    "config": config,
                    "actor": user,
                    "origin": "manual",
                    "outcome": "created",
                    "started_at": now(),
                    "ended_at": None,
                },
            )
            self._ws.lineage.record_execution(
                conn,
                kind="deploy",
                ref=f"deploy:{dep_id}",
                name=f"deploy {mv.ref} to {name}",
                inputs=[(mv.lineage_artifact_id, "model")]
                + ([(service.lineage_artifact_id, "feature_service")] if service else []),
                outputs=[(row["lineage_artifact_id"], "endpoint")],
                properties={"config": config},
            )
        return self.get(name)

    def serve(self, name: str) -> None:
        """Run a deployed endpoint's server in this process until it is stopped (SIGTERM or
        Ctrl-C). Marks the endpoint in service while it runs and stopped after.

        Raises:
            NotFound: no such endpoint.
        """
        import uvicorn

        from wellml.serving.app import ServedModel, build_app
        from wellml.serving.capture import CaptureWriter

        ep = self.get(name)
        mv = self._ws.registry.by_id(ep.model_version_id)
        model = self._ws.registry.load(mv)
        served = ServedModel(ep.name, mv.ref, model, mv.signature)
        if ep.config.get("feature_service"):
            served.enrich = self._enricher(ep.config["feature_service"], mv.signature.columns)
        capture = None
        if ep.config.get("capture_percent", 0) > 0:
            capture = CaptureWriter(
                self._ws.urls.capture,
                ep.name,
                sampling_percent=ep.config["capture_percent"],
                on_file=lambda uri, rows, t0, t1: self._record_capture(ep.id, uri, rows, t0, t1),
            )
        authenticate = None
        if ep.config.get("auth", True):
            authenticate = _Authenticator(self._store, f"invoke:{ep.name}")

        def stopped() -> None:
            with self._store.write() as conn:
                sql.update_endpoint(conn, ep.id, status="stopped", pid=None)
                for dep in sql.deployments_of(conn, ep.id):
                    if dep["ended_at"] is None:
                        sql.end_deployment(conn, dep["id"], "stopped")

        app = build_app(
            served,
            capture=capture,
            authenticate=authenticate,
            max_payload_bytes=ep.config.get("max_payload_bytes", 6 << 20),
            on_shutdown=stopped,
        )
        with self._store.write() as conn:
            sql.update_endpoint(conn, ep.id, status="in-service", pid=os.getpid())
        config = uvicorn.Config(
            app, host=ep.host, port=ep.port, log_level="warning", access_log=False, lifespan="on"
        )
        server = uvicorn.Server(config)
        try:
            server.run()
        finally:
            with self._store.read() as conn:
                row = sql.endpoint_by_name(conn, name)
            if row is not None and row["status"] == "in-service":
                with self._store.write() as conn:
                    sql.update_endpoint(
                        conn, ep.id, status="failed" if not server.started else "stopped", pid=None
                    )

    def start(
        self,
        model_ref: str,
        *,
        name: str | None = None,
        port: int | None = None,
        timeout: float = 90,
        **deploy_args: Any,
    ) -> RunningEndpoint:
        """Deploy and serve an endpoint in a child process; return once it answers /ping.

        Raises:
            BackendUnavailable: the server did not come up within ``timeout`` seconds.
        """
        ep = self.deploy(model_ref, name=name, port=port or free_port(), **deploy_args)
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
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise BackendUnavailable(f"endpoint {ep.name} exited at start: {err.strip()}")
            try:
                if httpx.get(ep.url + "/ping", timeout=1).status_code == 200:
                    return RunningEndpoint(ep.name, ep.url, proc)
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        proc.kill()
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

    def stop(self, name: str, timeout: float = 30) -> EndpointRecord:
        """Stop a running endpoint's server (on this host).

        Raises:
            NotFound: no such endpoint.
            Conflict: it is not running.
        """
        ep = self.get(name)
        if ep.status != "in-service" or not ep.pid:
            raise Conflict(f"endpoint {name!r} is not running (status {ep.status})")
        os.kill(ep.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(ep.pid):
            time.sleep(0.1)
        return self.get(name)

    # -- access ------------------------------------------------------------------------------

    def issue_token(
        self, name: str, principal: str, *, ttl_days: float | None = 90
    ) -> tokens.IssuedToken:
        """Issue a token that may invoke endpoint ``name``.

        Raises:
            NotFound: no such endpoint.
        """
        self.get(name)
        return tokens.issue_token(self._store, principal, [f"invoke:{name}"], ttl_days=ttl_days)

    def invoke(
        self,
        name: str,
        data: pd.DataFrame | builtins.list[dict[str, Any]],
        *,
        token: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Send rows to a running endpoint and return its JSON answer.

        Raises:
            NotFound: no such endpoint.
            Conflict: it is not running.
            InvalidInput, PermissionDenied: the endpoint refused the request.
        """
        ep = self.get(name)
        if ep.status != "in-service":
            raise Conflict(f"endpoint {name!r} is not running (status {ep.status})")
        records = data.to_dict(orient="records") if isinstance(data, pd.DataFrame) else data
        headers = {"authorization": f"Bearer {token}"} if token else {}
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
            raise InvalidInput(f"endpoint answered {resp.status_code}: {message}")
        result: dict[str, Any] = resp.json()
        return result

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
        table = pa.concat_tables(tables, promote_options="default")
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


class _Authenticator:
    """Checks bearer tokens, remembering good ones for a few seconds to keep requests fast."""

    def __init__(self, store: Any, scope: str, ttl: float = 5.0) -> None:
        self._store = store
        self._scope = scope
        self._ttl = ttl
        self._ok: dict[str, float] = {}

    def __call__(self, token: str | None) -> None:
        if token and self._ok.get(token, 0) > time.monotonic():
            return
        tokens.authenticate(self._store, token, self._scope)
        assert token is not None
        self._ok[token] = time.monotonic() + self._ttl
