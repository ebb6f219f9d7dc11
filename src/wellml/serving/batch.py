"""Batch transform: a model version applied to a CSV or Parquet file larger than memory.

The input is read in chunks of ``chunk_rows`` rows (Arrow record batches, regrouped so that a
chunk always holds the same rows of the same file), predicted in a process pool, and each
chunk's answers are written as ``OUTPUT/part-NNNNN.parquet`` (the input rows, then
``prediction`` and, for classifiers, ``probability``). A chunk is recorded in the metadata
store once its file is in place, so a job that died is resumed by running it again: chunks
already written are skipped. Lineage runs from the model version and the input file through
a ``batch_transform`` execution to the output folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from wellml.config import current_user
from wellml.errors import Conflict, InvalidInput, NotFound
from wellml.processes import pid_alive
from wellml.store import serving as sql
from wellml.store.metadata import new_id, now

if TYPE_CHECKING:
    from wellml.workspace import Workspace

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class BatchJob:
    """A batch transform job as stored."""

    id: str
    model_version: str
    input: str
    output: str
    status: str
    chunks_total: int
    chunks_done: int
    rows: int
    resumed: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "model_version": self.model_version,
            "input": self.input,
            "output": self.output,
            "status": self.status,
            "chunks_total": self.chunks_total,
            "chunks_done": self.chunks_done,
            "rows": self.rows,
            "resumed": self.resumed,
        }


def _fingerprint(path: Path) -> str:
    """What identifies the input's content cheaply: size, mtime and the first and last MiB."""
    st = path.stat()
    h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with path.open("rb") as fh:
        h.update(fh.read(1 << 20))
        if st.st_size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()


def _chunks(path: Path, fmt: str, chunk_rows: int) -> Iterator[pa.Table]:
    """The input in tables of exactly ``chunk_rows`` rows (the last one shorter)."""
    dataset = pads.dataset(str(path), format=fmt)
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in dataset.to_batches(batch_size=min(chunk_rows, 1 << 16)):
        while batch.num_rows:
            take = min(batch.num_rows, chunk_rows - size)
            pending.append(batch.slice(0, take))
            size += take
            batch = batch.slice(take)
            if size == chunk_rows:
                yield pa.Table.from_batches(pending)
                pending, size = [], 0
    if size:
        yield pa.Table.from_batches(pending)


# -- the worker side --------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(model_bytes: bytes, signature: dict[str, Any]) -> None:
    from wellml.registry.packaging import load_model
    from wellml.registry.signature import Signature
    from wellml.serving.predictor import Predictor

    _WORKER["predictor"] = Predictor(load_model(model_bytes), Signature.from_dict(signature))


def _predict_chunk(index: int, table: pa.Table, out_dir: str) -> tuple[int, int, str]:
    """Predict one chunk and write its part file; return (index, rows, uri)."""
    predictor = _WORKER["predictor"]
    frame = table.to_pandas()
    clean = predictor.validate(frame)
    outputs = predictor.predict_frame(clean)
    result = frame.copy()
    for key, values in outputs.per_row().items():
        result[key] = values
    path = Path(out_dir) / f"part-{index:05d}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pandas(result, preserve_index=False), tmp, compression="zstd")
    os.replace(tmp, path)
    return index, len(frame), str(path)


# -- the job ----------------------------------------------------------------------------------


def batch_transform(
    ws: Workspace,
    model_ref: str,
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    chunk_rows: int = 100_000,
    workers: int = 2,
    progress: Callable[[int, int | None], None] | None = None,
) -> BatchJob:
    """Apply a model version to a CSV or Parquet file, chunk by chunk, resuming an earlier
    job on the same input and output that did not finish.

    Args:
        progress: called with (chunks done, chunks in total or None while unknown).

    Raises:
        NotFound: no such model version or input file.
        InvalidInput: an input that is neither CSV nor Parquet, or bad sizes.
        Conflict: another live process runs this job, or the output folder holds another
            job's parts.
        SchemaMismatch: a chunk does not fit the model's signature (the job is marked failed
            and can be resumed after the input is fixed).
    """
    src = Path(input_path).expanduser().resolve()
    out = Path(output_dir).expanduser().resolve()
    if not src.is_file():
        raise NotFound(f"no such input file: {src}")
    fmt = FORMATS.get(src.suffix.lower())
    if fmt is None:
        raise InvalidInput(f"{src.name}: batch transform reads .csv or .parquet files")
    if chunk_rows < 1 or workers < 1:
        raise InvalidInput("chunk rows and workers must be at least 1")
    mv = ws.registry.get(model_ref)
    fingerprint = _fingerprint(src)
    config = {"chunk_rows": chunk_rows, "input_fingerprint": fingerprint, "format": fmt}
    with ws.metadata.write() as conn:
        previous = [
            j
            for j in sql.batch_jobs_for(conn, str(out))
            if j["model_version_id"] == mv.id
            and j["input_uri"] == str(src)
            and j["config"] == config
            and j["status"] != "completed"
        ]
        owner = previous[0]["pid"] if previous else None
        if owner and owner != os.getpid() and pid_alive(owner):
            raise Conflict(f"batch job {previous[0]['id']} runs in process {owner}")
        if previous:
            job = previous[0]
            sql.update_batch_job(conn, job["id"], status="running", pid=os.getpid(), error=None)
            resumed = True
        else:
            if out.exists() and any(out.glob("part-*.parquet")):
                raise Conflict(f"{out} holds the output of another job; choose an empty folder")
            input_ref = f"file:{src}@{fingerprint[:12]}"
            input_art = _artifact_id(ws, conn, input_ref) or ws.lineage.add_artifact(
                conn, kind="file", ref=input_ref, uri=str(src), digest=fingerprint
            )
            exec_id = ws.lineage.record_execution(
                conn,
                kind="batch_transform",
                ref=f"batch:{new_id()}",
                name=f"batch transform of {src.name} with {mv.ref}",
                status="running",
                inputs=[(mv.lineage_artifact_id, "model"), (input_art, "input")],
                properties=config,
            )
            job = {
                "id": new_id(),
                "model_version_id": mv.id,
                "input_uri": str(src),
                "output_uri": str(out),
                "status": "running",
                "config": config,
                "chunks_total": 0,
                "rows": 0,
                "user": current_user(),
                "pid": os.getpid(),
                "started_at": now(),
                "ended_at": None,
                "error": None,
                "lineage_execution_id": exec_id,
            }
            sql.insert_batch_job(conn, job)
            resumed = False
        done = {c["chunk"]: c for c in sql.batch_chunks_of(conn, job["id"])}
    out.mkdir(parents=True, exist_ok=True)
    done = {i: c for i, c in done.items() if Path(c["uri"]).exists()}
    manifest = ws.registry.package(mv)
    from wellml.registry.service import MODEL_FILE

    model_bytes = ws.artifacts.get_bytes(manifest["files"][MODEL_FILE])
    total = None
    rows = sum(c["rows"] for c in done.values())
    finished = len(done)
    if progress is not None:
        progress(finished, total)
    try:
        with ProcessPoolExecutor(
            max_workers=workers,
            initializer=_init_worker,
            initargs=(model_bytes, mv.signature.to_dict()),
        ) as pool:
            running: set[Future[tuple[int, int, str]]] = set()
            count = 0
            for index, table in enumerate(_chunks(src, fmt, chunk_rows)):
                count = index + 1
                if index in done:
                    continue
                running.add(pool.submit(_predict_chunk, index, table, str(out)))
                if len(running) >= workers * 2:
                    finished_now, running = wait(running, return_when=FIRST_COMPLETED)
                    rows, finished = _record(ws, job["id"], finished_now, rows, finished)
                    if progress is not None:
                        progress(finished, total)
            total = count
            while running:
                finished_now, running = wait(running, return_when=FIRST_COMPLETED)
                rows, finished = _record(ws, job["id"], finished_now, rows, finished)
                if progress is not None:
                    progress(finished, total)
    except BaseException as exc:
        with ws.metadata.write() as conn:
            sql.update_batch_job(
                conn,
                job["id"],
                status="failed",
                pid=None,
                error=f"{type(exc).__name__}: {exc}",
                rows=rows,
            )
        raise
    with ws.metadata.write() as conn:
        out_art = ws.lineage.add_artifact(
            conn,
            kind="batch_output",
            ref=f"file:{out}#{job['id']}",
            uri=str(out),
            properties={"rows": rows, "chunks": total},
        )
        ws.lineage.link(conn, job["lineage_execution_id"], outputs=[(out_art, "predictions")])
        ws.lineage.finish(conn, job["lineage_execution_id"], status="completed")
        sql.update_batch_job(
            conn,
            job["id"],
            status="completed",
            pid=None,
            chunks_total=total or 0,
            rows=rows,
            ended_at=now(),
        )
    return BatchJob(
        job["id"], mv.ref, str(src), str(out), "completed", total or 0, finished, rows, resumed
    )


def _record(
    ws: Workspace, job_id: str, futures: set[Future[tuple[int, int, str]]], rows: int, n: int
) -> tuple[int, int]:
    for f in futures:
        index, count, uri = f.result()
        with ws.metadata.write() as conn:
            sql.add_batch_chunk(
                conn,
                {"job_id": job_id, "chunk": index, "rows": count, "uri": uri, "done_at": now()},
            )
            sql.update_batch_job(conn, job_id, rows=rows + count)
        rows += count
        n += 1
    return rows, n


def _artifact_id(ws: Workspace, conn: Any, ref: str) -> str | None:
    try:
        return ws.lineage._node(conn, ref).id
    except NotFound:
        return None
