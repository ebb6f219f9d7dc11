"""The HTTP app of one model replica: SageMaker's ``GET /ping`` and ``POST /invocations``, and
the Open Inference Protocol (KServe V2) routes under ``/v2``.

Requests are JSON (a list of records, or MLflow's ``dataframe_split``, ``dataframe_records``,
``instances`` or ``inputs``), JSON lines, CSV (with or without a header row) or a V2 tensor
request. Every request is checked against the model signature; a bad request gets a 4xx with
a reason, never a 500. A 500 means the model itself failed on valid rows.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response

from wellml.errors import InvalidInput, SchemaMismatch, WellmlError, http_status
from wellml.registry.signature import Signature
from wellml.serving.capture import CaptureWriter
from wellml.serving.explain import ExplanationUnavailable, explanation_request
from wellml.serving.ood import InputRanges
from wellml.serving.predictor import ModelFailure, Outputs, Predictor

if TYPE_CHECKING:
    from wellml.serving.explain import EndpointExplainer
    from wellml.serving.multimodel import TargetModels

log = logging.getLogger("wellml.serving")

DEFAULT_MAX_PAYLOAD = 6 * 1024 * 1024  # SageMaker's InvokeEndpoint limit
INFERENCE_ID_HEADERS = ("x-wellml-inference-id", "x-amzn-sagemaker-inference-id")
INTERNAL_HEADER = "x-wellml-internal"
TARGET_MODEL_HEADERS = ("x-amzn-sagemaker-target-model", "x-wellml-target-model")
_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_JSON_TYPES = ("application/json", "application/jsonlines", "application/x-ndjson")
_CSV_TYPES = ("text/csv", "application/csv")

try:
    import orjson

    def loads(data: bytes) -> Any:
        """Parse JSON (orjson when installed)."""
        return orjson.loads(data)

    def dumps(obj: Any) -> bytes:
        """Serialise JSON (orjson when installed)."""
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)

except ImportError:  # pragma: no cover - orjson is in the serving extra

    def loads(data: bytes) -> Any:
        """Parse JSON (orjson when installed)."""
        return json.loads(data)

    def dumps(obj: Any) -> bytes:
        """Serialise JSON (orjson when installed)."""
        return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class ServedModel:
    """What one replica serves."""

    endpoint: str
    model_version: str  # e.g. churn@3
    model: Any
    signature: Signature
    # Fills in model inputs from the online feature store for rows that carry entity keys.
    enrich: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    variant: str | None = None
    ranges: InputRanges = field(default_factory=InputRanges)
    # SHAP values of answered rows, for requests that ask with the explanation header.
    explainer: EndpointExplainer | None = None
    predictor: Predictor = field(init=False)

    def __post_init__(self) -> None:
        self.predictor = Predictor(self.model, self.signature)
        if self.ranges.empty:
            self.ranges = InputRanges.from_signature(self.signature)


class RequestError(InvalidInput):
    """A request the endpoint cannot accept; carries its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- reading requests -----------------------------------------------------------------------------


def media_type(content_type: str) -> str:
    """The media type of a Content-Type header, checking its charset.

    Raises:
        RequestError: a charset other than UTF-8 (415).
    """
    media, _, params = content_type.partition(";")
    charset = params.strip().lower().removeprefix("charset=").strip() if params else "utf-8"
    if charset not in ("utf-8", "utf8", ""):
        raise RequestError(f"unsupported charset {charset!r}; send utf-8", 415)
    return media.strip().lower()


def decode_json(body: bytes, *, lines: bool = False) -> Any:
    """Parse a JSON (or JSON lines) body.

    Raises:
        RequestError: malformed or too deeply nested JSON (400).
    """
    try:
        if lines:
            return [loads(line) for line in body.splitlines() if line.strip()]
        return loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise RequestError("malformed JSON: nested too deeply") from None


def parse_payload(body: bytes, content_type: str, signature: Signature) -> pd.DataFrame:
    """Turn a request body into a DataFrame of input rows.

    Raises:
        RequestError: unsupported content type (415), or a body that cannot be read (400).
    """
    media = media_type(content_type)
    if not body.strip():
        raise RequestError("empty request body")
    if media in _JSON_TYPES:
        frame = frame_from_json(decode_json(body, lines=media != "application/json"), signature)
    elif media in _CSV_TYPES:
        frame = _parse_csv(body, signature)
    else:
        raise RequestError(
            f"unsupported content type {media or '(none)'!r}; send application/json or text/csv",
            415,
        )
    if frame.empty:
        raise RequestError("the request holds no rows")
    return frame


def frame_from_json(data: Any, signature: Signature) -> pd.DataFrame:
    """Rows from parsed JSON in any of the accepted shapes.

    Raises:
        RequestError: a shape that is not one of them (400).
    """
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
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise RequestError("dataframe_split.columns must be a list of column names")
        if len(set(cols)) != len(cols):
            raise RequestError("dataframe_split.columns holds a name twice")
        rows = value["data"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise RequestError("dataframe_split.data must be a list of rows")
        if any(len(r) != len(cols) for r in rows):
            raise RequestError(f"every row of dataframe_split.data needs {len(cols)} values")
        _check_scalars(rows)
        return pd.DataFrame(rows, columns=cols)
    if key == "inputs" and isinstance(value, dict):
        columns: dict[str, list[Any]] = {}
        for k, v in value.items():
            columns[k] = v if isinstance(v, list) else [v]
            _check_scalars([columns[k]])
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise RequestError("inputs: every column needs the same number of values")
        return pd.DataFrame(columns)
    if not isinstance(value, list):
        raise RequestError(f"{key} must be a list")
    return _records(value, signature)


def _check_scalars(rows: list[list[Any]]) -> None:
    for r in rows:
        for v in r:
            if isinstance(v, (dict, list)):
                raise RequestError("record values must be scalars, not nested objects")


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
        _check_scalars(rows)
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
        if len(set(first)) != len(first):
            raise RequestError("the CSV header names a column twice")
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


# -- the Open Inference Protocol (V2) ---------------------------------------------------------

V2_DATATYPES = {
    "BOOL": "boolean",
    "UINT8": "integer",
    "UINT16": "integer",
    "UINT32": "integer",
    "UINT64": "integer",
    "INT8": "integer",
    "INT16": "integer",
    "INT32": "integer",
    "INT64": "integer",
    "FP16": "float",
    "FP32": "float",
    "FP64": "float",
    "BYTES": "string",
}
_V2_OF_TYPE = {"integer": "INT64", "float": "FP64", "boolean": "BOOL", "string": "BYTES"}


def v2_datatype(kind: str) -> str:
    """The V2 datatype of a signature logical type."""
    return _V2_OF_TYPE.get(kind, "BYTES")


def frame_from_v2(data: Any, signature: Signature) -> pd.DataFrame:
    """Rows from a V2 inference request: one tensor per input column (shape ``[n]`` or
    ``[n, 1]``, named after the column), or one tensor of shape ``[n, k]`` holding all ``k``
    columns in signature order.

    Raises:
        RequestError: a request that does not follow the protocol or the signature (400).
    """
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), list) or not data["inputs"]:
        raise RequestError("a V2 request needs a non-empty 'inputs' list of tensors")
    tensors = []
    for t in data["inputs"]:
        if not isinstance(t, dict):
            raise RequestError("each V2 input must be an object")
        name, shape, dtype, values = t.get("name"), t.get("shape"), t.get("datatype"), t.get("data")
        if not isinstance(name, str) or not name:
            raise RequestError("each V2 input needs a name")
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise RequestError(f"input {name!r}: shape must be a list of non-negative integers")
        if dtype not in V2_DATATYPES:
            raise RequestError(f"input {name!r}: datatype must be one of {', '.join(V2_DATATYPES)}")
        if not isinstance(values, list):
            raise RequestError(f"input {name!r}: data must be a list")
        flat = _flatten(values, name)
        if len(flat) != math.prod(shape):
            raise RequestError(
                f"input {name!r}: shape {shape} needs {math.prod(shape)} values, got {len(flat)}"
            )
        tensors.append((name, shape, dtype, flat))
    cols = signature.columns
    if len(tensors) == 1 and tensors[0][0] not in cols:
        name, shape, _, flat = tensors[0]
        if len(shape) != 2 or shape[1] != len(cols):
            raise RequestError(
                f"input {name!r} is not a model input; send one tensor per input "
                f"({', '.join(cols)}) or one of shape [n, {len(cols)}]"
            )
        rows = [flat[i : i + shape[1]] for i in range(0, len(flat), shape[1])]
        return pd.DataFrame(rows, columns=cols)
    columns: dict[str, list[Any]] = {}
    for name, shape, _, flat in tensors:
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise RequestError(f"input {name!r}: a column tensor has shape [n] or [n, 1]")
        if name in columns:
            raise RequestError(f"input {name!r} is sent twice")
        columns[name] = flat
    if len({len(v) for v in columns.values()}) > 1:
        raise RequestError("every input tensor needs the same number of rows")
    return pd.DataFrame(columns)


def _flatten(values: list[Any], name: str) -> list[Any]:
    out: list[Any] = []
    stack = [iter(values)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                if len(stack) > 8:
                    raise RequestError(f"input {name!r}: data nested too deeply")
                stack.append(iter(v))
                break
            if isinstance(v, dict):
                raise RequestError(f"input {name!r}: data must hold scalars")
            out.append(v)
        else:
            stack.pop()
    return out


def v2_response(served: ServedModel, outputs: Outputs, request_id: str) -> dict[str, Any]:
    """A V2 inference response."""
    n = len(outputs.prediction)
    kind = served.signature.output.get("type")
    sample = outputs.prediction[0] if n else 0
    datatype = (
        "BYTES"
        if isinstance(sample, str)
        else "BOOL"
        if isinstance(sample, bool)
        else "INT64"
        if isinstance(sample, int) and kind != "regression"
        else "FP64"
    )
    tensors: list[dict[str, Any]] = [
        {"name": "predict", "shape": [n], "datatype": datatype, "data": outputs.prediction}
    ]
    if outputs.probabilities is not None:
        width = len(outputs.probabilities[0]) if n else 0
        tensors.append(
            {
                "name": "predict_proba",
                "shape": [n, width],
                "datatype": "FP64",
                "data": [p for row in outputs.probabilities for p in row],
                "parameters": {"classes": outputs.classes},
            }
        )
    return {
        "model_name": served.endpoint,
        "model_version": served.model_version,
        "id": request_id,
        "outputs": tensors,
    }


# -- the app ------------------------------------------------------------------------------------


def predict(served: ServedModel, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate rows and predict; return the validated rows and the per-row outputs.

    Raises:
        SchemaMismatch: the rows do not fit the signature, or the model rejects their values.
        ModelFailure: the model raised on valid rows.
    """
    clean = served.predictor.validate(frame)
    outputs = served.predictor.predict_frame(clean)
    return clean, outputs.body()


@dataclass
class Answer:
    """What a request produced: the rows as validated, the outputs and any OOD flags."""

    outputs: Outputs
    rows: pd.DataFrame | None
    matrix: np.ndarray | None
    ood: list[tuple[int, list[str]]] | None  # flagged rows: (index, columns out of range)

    def frame(self, columns: list[str]) -> pd.DataFrame:
        """The validated rows as a DataFrame (built from the matrix on the fast path)."""
        if self.rows is not None:
            return self.rows
        assert self.matrix is not None
        return pd.DataFrame(self.matrix, columns=columns)


def answer(
    served: ServedModel,
    data: Any = None,
    frame: pd.DataFrame | None = None,
    *,
    raw: bytes | None = None,
) -> Answer:
    """Predict for parsed JSON ``data`` (taking the numeric fast path when it applies) or for a
    ``frame`` already read.

    ``raw`` is the JSON text ``data`` was parsed from, when at hand: a text without ``true``
    or ``false`` holds no booleans, which lets the fast path skip a per-value type check.

    Raises:
        RequestError, SchemaMismatch: the request cannot be served (4xx).
        ModelFailure: the model raised on valid rows (500).
    """
    p = served.predictor
    if frame is None and served.enrich is None and p.numeric:
        no_bools = raw is not None and b"true" not in raw and b"false" not in raw
        matrix = _fast_matrix(p, data, no_bools)
        if matrix is not None:
            outputs = p.predict_matrix(matrix)
            return Answer(outputs, None, matrix, served.ranges.check_matrix(matrix, p.columns))
    if frame is None:
        frame = frame_from_json(data, served.signature)
    if frame.empty:
        raise RequestError("the request holds no rows")
    if served.enrich is not None:
        frame = served.enrich(frame)
    clean = p.validate(frame)
    outputs = p.predict_frame(clean)
    return Answer(outputs, clean, None, served.ranges.check_frame(clean))


def _fast_matrix(p: Predictor, data: Any, no_bools: bool) -> np.ndarray | None:
    if isinstance(data, list):
        return p.matrix_from_records(data, no_booleans=no_bools)
    if isinstance(data, dict) and len(data) == 1:
        if "dataframe_split" in data:
            split = data["dataframe_split"]
            if (
                isinstance(split, dict)
                and split.get("columns") in (None, p.columns)
                and isinstance(split.get("data"), list)
                and split["data"]
                and all(type(r) is list and len(r) == len(p.columns) for r in split["data"])
            ):
                return p.matrix_from_values(split["data"], no_booleans=no_bools)
            return None
        for key in ("dataframe_records", "instances"):
            if key in data and isinstance(data[key], list):
                return p.matrix_from_records(data[key], no_booleans=no_bools)
    return None


def target_model(headers: Any) -> str | None:
    """The target model a request names in its headers, if any."""
    for h in TARGET_MODEL_HEADERS:
        value = headers.get(h)
        if value is not None:
            return str(value).strip()
    return None


def build_app(
    served: ServedModel | None,
    *,
    capture: CaptureWriter | None = None,
    authenticate: Callable[[str | None], None] | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
    on_shutdown: Callable[[], None] | None = None,
    internal_secret: str | None = None,
    targets: TargetModels | None = None,
    endpoint: str | None = None,
) -> FastAPI:
    """The FastAPI app serving one model, or with ``targets`` (and ``served`` None) the model
    versions of a multi-model variant, chosen per request by the target-model header.

    Args:
        authenticate: called with the bearer token (or None); raises PermissionDenied to refuse.
        on_shutdown: called once when the server stops (after capture is flushed).
        internal_secret: when set, every route but health needs it in ``x-wellml-internal``
            (the router of the endpoint sends it; nothing else knows it).
        endpoint: the endpoint's name (default: ``served.endpoint``).
    """
    if (served is None) == (targets is None):
        raise InvalidInput("build_app takes one served model or a set of target models")
    endpoint_name = endpoint or (served.endpoint if served is not None else "")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if capture is not None:
            capture.close()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(
        title=f"wellml endpoint {endpoint_name}", docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.openapi_url = None
    base_headers: dict[str, str] = {}
    if served is not None:
        base_headers["x-wellml-model-version"] = served.model_version
        if served.variant:
            base_headers["x-wellml-variant"] = served.variant

    async def choose(target: str | None) -> tuple[ServedModel, dict[str, str]]:
        """The model that answers a request naming ``target`` (None: no target header)."""
        if targets is None:
            assert served is not None
            if target is not None and target != served.model_version:
                raise RequestError(
                    f"this endpoint serves {served.model_version} only and is not a multi-model "
                    f"endpoint; drop the target-model header (it names {target!r})"
                )
            return served, base_headers
        if not target:
            raise RequestError(
                "a multi-model endpoint needs the target model: send the header "
                "X-Amzn-SageMaker-Target-Model: NAME@VERSION (or NAME@ALIAS)"
            )
        picked = await targets.get(target)
        return picked.served, picked.headers(len(targets.cache), targets.cache.loaded_bytes)

    def admit(request: Request) -> None:
        if internal_secret is not None and request.headers.get(INTERNAL_HEADER) != internal_secret:
            raise RequestError("this replica only answers its endpoint's router", 403)
        if authenticate is not None:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            authenticate(token.strip() if scheme.lower() == "bearer" else None)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_payload_bytes:
            raise RequestError(f"payload larger than {max_payload_bytes} bytes", 413)
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_payload_bytes:
                raise RequestError(f"payload larger than {max_payload_bytes} bytes", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    def record(
        inference_id: str, result: Answer, served: ServedModel, target: str | None = None
    ) -> None:
        if capture is None or not capture.sampled():
            return
        per_row: dict[str, list[Any]] = dict(result.outputs.per_row())
        if result.ood is not None or not served.ranges.empty:
            flags = [""] * len(result.outputs.prediction)
            for i, cols in result.ood or ():
                flags[i] = ",".join(cols)
            per_row["ood"] = flags
        try:
            inputs: pd.DataFrame | tuple[np.ndarray, list[str]] = (
                (result.matrix, served.predictor.columns)
                if result.matrix is not None
                else result.frame(served.predictor.columns)
            )
            if targets is None:
                capture.add(
                    inference_id, served.model_version, inputs, per_row, variant=served.variant
                )
            else:
                capture.add(
                    inference_id,
                    served.model_version,
                    inputs,
                    per_row,
                    variant=served.variant,
                    target_model=target,
                    integer_columns=tuple(
                        c.name for c in served.signature.inputs if c.type == "integer"
                    ),
                )
        except Exception:
            log.exception("data capture failed for %s", inference_id)

    @app.get("/ping")
    def ping() -> Response:
        return Response(status_code=200)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        inference_id = _inference_id(request)
        target = target_model(request.headers)
        try:
            admit(request)
            wanted = explanation_request(request.headers)
            served, headers = await choose(target)
            raw = await read_body(request)
            media = media_type(request.headers.get("content-type", ""))
            if not raw.strip():
                raise RequestError("empty request body")
            if media in _JSON_TYPES:
                data = decode_json(raw, lines=media != "application/json")
                result = answer(served, data, raw=raw)
            elif media in _CSV_TYPES:
                result = answer(served, frame=_parse_csv(raw, served.signature))
            else:
                raise RequestError(
                    f"unsupported content type {media or '(none)'!r}; "
                    "send application/json or text/csv",
                    415,
                )
            body = result.outputs.body()
            if wanted is not None:
                if served.explainer is None:
                    raise RequestError(f"{served.model_version} cannot be explained here", 409)
                body["explanations"] = await asyncio.to_thread(
                    served.explainer.explain,
                    result.frame(served.predictor.columns),
                    body,
                    wanted,
                )
        except Exception as exc:
            return _failure(exc, inference_id)
        record(inference_id, result, served, target)
        headers = {**headers, "x-wellml-inference-id": inference_id}
        if result.ood:
            flagged = [{"row": i, "columns": cols} for i, cols in result.ood]
            body["out_of_distribution"] = flagged
            headers["x-wellml-ood-rows"] = str(len(flagged))
        return Response(dumps(body), media_type="application/json", headers=headers)

    # -- Open Inference Protocol ------------------------------------------------------------
    # One model: the model name is the endpoint's. Multi-model: the model name is a registered
    # model's and the version comes from the path, or from the target-model header.

    def v2_target(request: Request, name: str, version: str | None) -> str | None:
        if targets is None:
            assert served is not None
            number = served.model_version.rpartition("@")[2]
            if name != served.endpoint:
                raise RequestError(
                    f"no model {name!r} here; this endpoint serves {served.endpoint!r}", 404
                )
            if version is not None and version != number:
                raise RequestError(
                    f"version {version!r} of {name!r} is not served here (serving {number})",
                    404,
                )
            return target_model(request.headers)
        if version is not None:
            return f"{name}@{version}"
        header = target_model(request.headers)
        if not header or header.partition("@")[0] != name:
            raise RequestError(
                f"name the version of {name!r}: /v2/models/{name}/versions/N/..., or the "
                "header X-Amzn-SageMaker-Target-Model: NAME@VERSION"
            )
        return header

    @app.get("/v2")
    def v2_server() -> Response:
        return _json({"name": "wellml", "version": _wellml_version(), "extensions": []})

    @app.get("/v2/health/live")
    def v2_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    def v2_ready() -> Response:
        return _json({"ready": True})

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def v2_metadata(request: Request, name: str, version: str | None = None) -> Response:
        try:
            admit(request)
            model, _ = await choose(v2_target(request, name, version))
        except Exception as exc:
            return _failure(exc, "")
        outputs: list[dict[str, Any]] = [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
        if model.predictor._has_proba:
            outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, -1]})
        return _json(
            {
                "name": name,
                "versions": [model.model_version.rpartition("@")[2]],
                "platform": "wellml-sklearn",
                "inputs": [
                    {"name": c.name, "datatype": v2_datatype(c.type), "shape": [-1]}
                    for c in model.signature.inputs
                ],
                "outputs": outputs,
            }
        )

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(request: Request, name: str, version: str | None = None) -> Response:
        try:
            target = v2_target(request, name, version)
            if targets is not None:
                # Ready means loaded; asking does not load it.
                admit(request)
                assert target is not None
                mv = await targets.version(target)
                return _json({"name": name, "ready": mv.ref in targets.cache})
        except Exception as exc:
            return _failure(exc, "")
        return _json({"name": name, "ready": True})

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def v2_infer(request: Request, name: str, version: str | None = None) -> Response:
        inference_id = _inference_id(request)
        target = None
        try:
            admit(request)
            target = v2_target(request, name, version)
            served, headers = await choose(target)
            raw = await read_body(request)
            media = media_type(request.headers.get("content-type", "") or "application/json")
            if media != "application/json":
                raise RequestError("a V2 request is application/json", 415)
            if not raw.strip():
                raise RequestError("empty request body")
            data = decode_json(raw)
            request_id = data.get("id") if isinstance(data, dict) else None
            if request_id is not None and not isinstance(request_id, str):
                raise RequestError("the request id must be a string")
            result = answer(served, frame=frame_from_v2(data, served.signature))
        except Exception as exc:
            return _failure(exc, inference_id)
        record(inference_id, result, served, target)
        body = v2_response(served, result.outputs, request_id or inference_id)
        body["model_name"] = name
        headers = {**headers, "x-wellml-inference-id": inference_id}
        if result.ood:
            body["parameters"] = {
                "out_of_distribution": [{"row": i, "columns": cols} for i, cols in result.ood]
            }
            headers["x-wellml-ood-rows"] = str(len(body["parameters"]["out_of_distribution"]))
        return Response(dumps(body), media_type="application/json", headers=headers)

    return app


def _inference_id(request: Request) -> str:
    for h in INFERENCE_ID_HEADERS:
        value = request.headers.get(h)
        if value:
            return value[:64]
    return uuid.uuid4().hex


def _wellml_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wellml")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json")


def _failure(exc: Exception, inference_id: str) -> Response:
    """The answer to a request that failed: 4xx for the request's faults, 500 for the model's."""
    if isinstance(exc, RequestError | ExplanationUnavailable):
        status, message = exc.status, str(exc)
    elif isinstance(exc, WellmlError):
        status, message = http_status(exc), str(exc)
    elif isinstance(exc, ModelFailure):
        log.error("%s", exc, exc_info=exc.__cause__)
        status, message = 500, str(exc)
    elif isinstance(exc, (ValueError, TypeError, OverflowError, RecursionError, KeyError)):
        # Whatever else reading the request tripped over is still the request's fault.
        status, message = 400, f"the request cannot be read: {type(exc).__name__}: {exc}"
    else:
        log.exception("request %s failed", inference_id)
        status, message = 500, f"internal error: {type(exc).__name__}"
    headers = {"x-wellml-inference-id": inference_id} if inference_id else None
    return Response(
        dumps({"error": message, "status": status}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "RequestError",
    "SchemaMismatch",
    "ServedModel",
    "build_app",
    "parse_payload",
    "predict",
    "target_model",
]
