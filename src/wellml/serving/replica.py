"""One replica process of an endpoint variant, started by the endpoint's supervisor.

    python -m wellml.serving.replica --workspace W --endpoint E --variant V \
        --model-version-id ID --fd N [--shadow] [--multi-model JSON]

It serves the model on the listening socket it inherited (file descriptor ``N``; the supervisor
keeps the socket, so a restarted replica answers on the same port), answers only requests that
carry the router's secret (``WELLML_REPLICA_SECRET``), and exits when its supervisor is gone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wellml.data.catalog import DatasetVersion
    from wellml.registry.service import ModelVersion
    from wellml.serving.app import ServedModel
    from wellml.serving.config import EndpointConfig, MultiModel
    from wellml.serving.explain import EndpointExplainer
    from wellml.serving.service import EndpointRecord
    from wellml.workspace import Workspace

SECRET_ENV = "WELLML_REPLICA_SECRET"
log = logging.getLogger("wellml.serving")


def _exit_with_parent(parent: int) -> None:
    """End this process when the supervisor that started it is gone (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover - no prctl
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="wellml-parent-watch", daemon=True).start()


def training_dataset(ws: Workspace, mv: ModelVersion) -> DatasetVersion | None:
    """The dataset version ``mv`` was trained on, found through lineage (None when lineage
    records none)."""
    from wellml.errors import NotFound

    try:
        return ws.monitoring.training_data(mv.ref)
    except NotFound:
        return None


def training_ranges(ws: Workspace, mv: ModelVersion) -> dict[str, Any] | None:
    """The profile of the data ``mv`` was trained on (None when lineage records none)."""
    dv = training_dataset(ws, mv)
    return ws.data.profile(dv).to_dict() if dv is not None else None


def _explainer(ws: Workspace, mv: ModelVersion, model: Any) -> EndpointExplainer:
    """Explanations on request, with baseline rows made from the training data on first use."""
    from wellml.serving.explain import EndpointExplainer, ExplanationUnavailable

    def training_data() -> Any:
        dv = training_dataset(ws, mv)
        if dv is None:
            raise ExplanationUnavailable(
                f"lineage records no training data of {mv.ref} to make the SHAP baseline from",
                409,
            )
        return ws.data.load(dv, columns=list(mv.signature.columns))

    return EndpointExplainer(model, mv.signature.columns, training_data)


def build_replica(
    ws: Workspace,
    endpoint: str,
    variant: str,
    model_version_id: str,
    *,
    shadow: bool = False,
    secret: str | None = None,
    multi_model: MultiModel | None = None,
) -> Any:
    """The ASGI app of one replica, with capture, feature enrichment and OOD ranges set up
    from the endpoint's current record. With ``multi_model`` it serves the versions that set
    allows, each loaded on its first request (see :mod:`wellml.serving.multimodel`)."""
    from wellml.serving.app import build_app
    from wellml.serving.capture import CaptureWriter
    from wellml.serving.config import EndpointConfig

    ep = ws.endpoints.get(endpoint)
    config = EndpointConfig.from_dict(ep.config)
    mv = ws.registry.by_id(model_version_id) if multi_model is None else None
    capture = None
    if config.capture_percent > 0 and not shadow:
        capture = CaptureWriter(
            ws.urls.capture,
            ep.name,
            sampling_percent=config.capture_percent,
            on_file=lambda uri, rows, t0, t1: ws.endpoints._record_capture(
                ep.id, uri, rows, t0, t1
            ),
            # A multi-model replica gives each request its model's integer columns.
            integer_columns=tuple(c.name for c in mv.signature.inputs if c.type == "integer")
            if mv is not None
            else (),
        )
    if multi_model is not None:
        from wellml.serving.multimodel import TargetModels, load_uncached, model_file_size

        def record_event(kind: str, detail: dict[str, Any]) -> None:
            from wellml.store import serving as sql

            with ws.metadata.write() as conn:
                sql.add_event(conn, ep.id, kind, variant, {**detail, "pid": os.getpid()})

        targets = TargetModels(
            multi_model,
            resolve=ws.registry.get,
            size_of=lambda mv: model_file_size(ws, mv),
            build=lambda mv: _served_model(ws, ep, config, mv, variant, load_uncached(ws, mv)),
            on_event=record_event,
        )
        return build_app(
            None,
            targets=targets,
            endpoint=ep.name,
            capture=capture,
            max_payload_bytes=config.max_payload_bytes,
            internal_secret=secret,
        )
    assert mv is not None
    served = _served_model(ws, ep, config, mv, variant, ws.registry.load(mv))
    return build_app(
        served,
        capture=capture,
        max_payload_bytes=config.max_payload_bytes,
        internal_secret=secret,
    )


def _served_model(
    ws: Workspace,
    ep: EndpointRecord,
    config: EndpointConfig,
    mv: ModelVersion,
    variant: str,
    model: Any,
) -> ServedModel:
    """One model version as a replica serves it: its training ranges for the OOD check and,
    with a feature service, the enrichment of requests."""
    from wellml.serving.app import ServedModel
    from wellml.serving.ood import InputRanges

    try:
        profile = training_ranges(ws, mv)
    except Exception:
        log.warning("no training ranges for %s; only categories are checked", mv.ref)
        profile = None
    served = ServedModel(
        ep.name,
        mv.ref,
        model,
        mv.signature,
        variant=variant,
        ranges=InputRanges.from_signature(mv.signature, profile),
        explainer=_explainer(ws, mv, model),
    )
    if config.feature_service:
        served.enrich = ws.endpoints._enricher(config.feature_service, mv.signature.columns)
    return served


def main(argv: list[str] | None = None) -> int:
    """Run one replica until SIGTERM; return the exit code."""
    parser = argparse.ArgumentParser(prog="wellml-replica")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--model-version-id", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--shadow", action="store_true")
    parser.add_argument("--multi-model", help="the variant's multi-model settings, as JSON")
    args = parser.parse_args(argv)
    _exit_with_parent(os.getppid())
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    import uvicorn

    from wellml.serving.config import MultiModel
    from wellml.workspace import Workspace

    ws = Workspace.open(args.workspace)
    app = build_replica(
        ws,
        args.endpoint,
        args.variant,
        args.model_version_id,
        shadow=args.shadow,
        secret=os.environ.get(SECRET_ENV),
        multi_model=MultiModel.from_dict(json.loads(args.multi_model))
        if args.multi_model
        else None,
    )
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=20
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
