"""The HTTP app of one endpoint: ``GET /ping`` and ``POST /invocations``.

Requests are JSON (a list of records, or MLflow's ``dataframe_split``, ``dataframe_records``,
``instances`` or ``inputs``) or CSV (with or without a header row). Every request is checked
against the model signature; a bad request gets a 4xx with a reason, never a 500.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from wellml.errors import InvalidInput, SchemaMismatch, WellmlError, http_status
from wellml.registry.signature import Signature, validate_frame
from wellml.serving.capture import CaptureWriter

log = logging.getLogger("wellml.serving")

DEFAULT_MAX_PAYLOAD = 6 * 1024 * 1024  # SageMaker's InvokeEndpoint limit
INFERENCE_ID_HEADERS = ("x-wellml-inference-id", "x-amzn-sagemaker-inference-id")
_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


@dataclass
class ServedModel:
    """What one endpoint serves."""

    endpoint: str
    model_version: str  # e.g. churn@3
    model: Any
    signature: Signature
    # Fills in model inputs from the online feature store for rows that carry entity keys.
    enrich: Callable[[pd.DataFrame], pd.DataFrame] | None = None


class RequestError(InvalidInput):
    """A request the endpoint cannot accept; carries its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_payload(body: bytes, content_type: str, signature: Signature) -> pd.DataFrame:
    """Turn a request body into a DataFrame of input rows.

    Raises:
        RequestError: unsupported content type (415), or a body that cannot be read (400).
    """
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    charset = params.strip().lower().removeprefix("charset=").strip() if params else "utf-8"
    if charset not in ("utf-8", "utf8", ""):
        raise RequestError(f"unsupported charset {charset!r}; send utf-8", 415)
    if not body.strip():
        raise RequestError("empty request body")
    if media in ("application/json", "application/jsonlines", "application/x-ndjson"):
        frame = _parse_json(body, signature, lines=media != "application/json")
    elif media in ("text/csv", "application/csv"):
        frame = _parse_csv(body, signature)
    else:
        raise RequestError(
            f"unsupported content type {media or '(none)'!r}; send application/json or text/csv",
            415,
        )
    if frame.empty:
        raise RequestError("the request holds no rows")
    return frame


def _parse_json(body: bytes, signature: Signature, *, lines: bool) -> pd.DataFrame:
    try:
        if lines:
            data: Any = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        else:
            data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"malformed JSON: {exc}") from None
    if isinstance(data, list):
        return _records(data, signature)
    if not isinstance(data, dict):
        raise RequestError(
            "JSON must be a list of records or an object with one of " + ", ".join(_MLFLOW_KEYS)
        )
    keys = [k for k in _MLFLOW_KEYS if k in data]
    if len(keys) != 1:
        raise RequestError("a JSON object must hold exactly one of " + ", ".join(_MLFLOW_KEYS))
    key = keys[0]
    value = data[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or "data" not in value:
            raise RequestError("dataframe_split needs {'columns': [...], 'data': [[...], ...]}")
        cols = value.get("columns") or signature.columns
        rows = value["data"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise RequestError("dataframe_split.data must be a list of rows")
        if any(len(r) != len(cols) for r in rows):
            raise RequestError(f"every row of dataframe_split.data needs {len(cols)} values")
        return pd.DataFrame(rows, columns=cols)
    if key == "inputs" and isinstance(value, dict):
        try:
            return pd.DataFrame({k: v if isinstance(v, list) else [v] for k, v in value.items()})
        except ValueError as exc:
            raise RequestError(f"inputs: {exc}") from None
    if not isinstance(value, list):
        raise RequestError(f"{key} must be a list")
    return _records(value, signature)


def _records(rows: list[Any], signature: Signature) -> pd.DataFrame:
    if all(isinstance(r, dict) for r in rows):
        for r in rows:
            for v in r.values():
                if isinstance(v, (dict, list)):
                    raise RequestError("record values must be scalars, not nested objects")
        return pd.DataFrame.from_records(rows)
    if all(isinstance(r, list) for r in rows):
        cols = signature.columns
        if any(len(r) != len(cols) for r in rows):
            raise RequestError(f"every positional row needs {len(cols)} values ({', '.join(cols)})")
        return pd.DataFrame(rows, columns=cols)
    raise RequestError("rows must all be objects (records) or all be lists (positional)")


def _parse_csv(body: bytes, signature: Signature) -> pd.DataFrame:
    try:
        text = body.decode()
        frame = pd.read_csv(
            io.StringIO(text), header=None, dtype=str, keep_default_na=False, na_values=[""]
        )
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RequestError(f"malformed CSV: {exc}") from None
    cols = signature.columns
    first = [str(v) for v in frame.iloc[0].tolist()]
    # A first row that names any input column is a header (missing columns are then
    # reported by the signature check, not mistaken for data).
    if set(first) & set(cols):
        frame = frame.iloc[1:].reset_index(drop=True)
        frame.columns = first
    elif frame.shape[1] == len(cols):
        frame.columns = cols
    else:
        raise RequestError(
            f"CSV rows have {frame.shape[1]} fields; the model takes {len(cols)} "
            f"({', '.join(cols)}), or send a header row"
        )
    return frame


def predict(served: ServedModel, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate rows and predict; return the validated rows and the per-row outputs.

    Raises:
        SchemaMismatch: the rows do not fit the signature, or the model rejects their values.
    """
    clean = validate_frame(frame, served.signature)
    try:
        preds = served.model.predict(clean)
        out: dict[str, Any] = {"prediction": _plain(preds)}
        if hasattr(served.model, "predict_proba"):
            proba = served.model.predict_proba(clean)
            classes = [_scalar(c) for c in served.model.classes_]
            out["probabilities"] = np.round(proba, 6).tolist()
            out["classes"] = classes
    except (ValueError, TypeError) as exc:
        raise SchemaMismatch(f"the model cannot use these values: {exc}") from None
    return clean, out


def _plain(values: Any) -> list[Any]:
    return [_scalar(v) for v in np.asarray(values).tolist()]


def _scalar(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def build_app(
    served: ServedModel,
    *,
    capture: CaptureWriter | None = None,
    authenticate: Callable[[str | None], None] | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The FastAPI app serving one model.

    Args:
        authenticate: called with the bearer token (or None); raises PermissionDenied to refuse.
        on_shutdown: called once when the server stops (after capture is flushed).
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if capture is not None:
            capture.close()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(
        title=f"wellml endpoint {served.endpoint}", docs_url=None, redoc_url=None, lifespan=lifespan
    )

    @app.get("/ping")
    def ping() -> Response:
        return Response(status_code=200)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        inference_id = (
            next((request.headers[h] for h in INFERENCE_ID_HEADERS if h in request.headers), None)
            or uuid.uuid4().hex
        )
        try:
            if authenticate is not None:
                auth = request.headers.get("authorization", "")
                scheme, _, token = auth.partition(" ")
                authenticate(token.strip() if scheme.lower() == "bearer" else None)
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_payload_bytes:
                raise RequestError(f"payload larger than {max_payload_bytes} bytes", 413)
            raw = await request.body()
            if len(raw) > max_payload_bytes:
                raise RequestError(f"payload larger than {max_payload_bytes} bytes", 413)
            frame = parse_payload(raw, request.headers.get("content-type", ""), served.signature)
            if served.enrich is not None:
                frame = served.enrich(frame)
            clean, outputs = predict(served, frame)
        except RequestError as exc:
            return _error(exc.status, str(exc), inference_id)
        except WellmlError as exc:
            return _error(http_status(exc), str(exc), inference_id)
        if capture is not None and capture.sampled():
            per_row = {"prediction": outputs["prediction"]}
            if "probabilities" in outputs:
                per_row["probability"] = [max(p) for p in outputs["probabilities"]]
            try:
                capture.add(inference_id, served.model_version, clean, per_row)
            except Exception:
                log.exception("data capture failed for %s", inference_id)
        body: dict[str, Any] = {"predictions": outputs["prediction"]}
        if "probabilities" in outputs:
            body["probabilities"] = outputs["probabilities"]
            body["classes"] = outputs["classes"]
        return JSONResponse(
            body,
            headers={
                "x-wellml-model-version": served.model_version,
                "x-wellml-inference-id": inference_id,
            },
        )

    return app


def _error(status: int, message: str, inference_id: str) -> JSONResponse:
    return JSONResponse(
        {"error": message, "status": status},
        status_code=status,
        headers={"x-wellml-inference-id": inference_id},
    )
