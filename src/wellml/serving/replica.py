"""One replica process of an endpoint variant, started by the endpoint's supervisor.

    python -m wellml.serving.replica --workspace W --endpoint E --variant V \
        --model-version-id ID --fd N [--shadow]

It serves the model on the listening socket it inherited (file descriptor ``N``; the supervisor
keeps the socket, so a restarted replica answers on the same port), answers only requests that
carry the router's secret (``WELLML_REPLICA_SECRET``), and exits when its supervisor is gone.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wellml.registry.service import ModelVersion
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


def training_ranges(ws: Workspace, mv: ModelVersion) -> dict[str, Any] | None:
    """The profile of the data ``mv`` was trained on, found through lineage (None when
    lineage records none)."""
    graph = ws.lineage.upstream(mv.lineage_ref, depth=2)
    train_ids = [e.source for e in graph.edges if e.role == "train"]
    found = ws.data.by_lineage_ids(train_ids)
    if not found:
        return None
    return ws.data.profile(max(found, key=lambda d: d.created_at)).to_dict()


def build_replica(
    ws: Workspace,
    endpoint: str,
    variant: str,
    model_version_id: str,
    *,
    shadow: bool = False,
    secret: str | None = None,
) -> Any:
    """The ASGI app of one replica, with capture, feature enrichment and OOD ranges set up
    from the endpoint's current record."""
    from wellml.serving.app import ServedModel, build_app
    from wellml.serving.capture import CaptureWriter
    from wellml.serving.config import EndpointConfig
    from wellml.serving.ood import InputRanges

    ep = ws.endpoints.get(endpoint)
    config = EndpointConfig.from_dict(ep.config)
    mv = ws.registry.by_id(model_version_id)
    model = ws.registry.load(mv)
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
    )
    if config.feature_service:
        served.enrich = ws.endpoints._enricher(config.feature_service, mv.signature.columns)
    capture = None
    if config.capture_percent > 0 and not shadow:
        capture = CaptureWriter(
            ws.urls.capture,
            ep.name,
            sampling_percent=config.capture_percent,
            on_file=lambda uri, rows, t0, t1: ws.endpoints._record_capture(
                ep.id, uri, rows, t0, t1
            ),
            integer_columns=tuple(c.name for c in mv.signature.inputs if c.type == "integer"),
        )
    return build_app(
        served,
        capture=capture,
        max_payload_bytes=config.max_payload_bytes,
        internal_secret=secret,
    )


def main(argv: list[str] | None = None) -> int:
    """Run one replica until SIGTERM; return the exit code."""
    parser = argparse.ArgumentParser(prog="wellml-replica")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--model-version-id", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--shadow", action="store_true")
    args = parser.parse_args(argv)
    _exit_with_parent(os.getppid())
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    import uvicorn

    from wellml.workspace import Workspace

    ws = Workspace.open(args.workspace)
    app = build_replica(
        ws,
        args.endpoint,
        args.variant,
        args.model_version_id,
        shadow=args.shadow,
        secret=os.environ.get(SECRET_ENV),
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
