"""Data capture: a sampled record of what an endpoint was asked and what it answered.

Rows are buffered in memory and written as Parquet files (one per flush) under the capture
store, ``<root>/<endpoint>/yyyy/mm/dd/hh/<time>-<id>.parquet``; each file is then recorded in
the metadata store so the monitor can turn new files into a dataset version.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CAPTURE_COLUMNS = ("inference_id", "event_time", "model_version")
# Added by endpoints whose replicas belong to a named variant, by the out-of-distribution
# check (the input columns of each row outside the training ranges, comma-separated), and by
# multi-model endpoints (the target model as the request named it; ``model_version`` is the
# version it resolved to, the column to split a monitor's data by).
CAPTURE_OPTIONAL_COLUMNS = ("variant", "ood", "target_model")

log = logging.getLogger("wellml.capture")


@dataclass(frozen=True)
class _Entry:
    inference_id: str
    model_version: str
    variant: str | None
    at: float
    inputs: pd.DataFrame | tuple[np.ndarray, list[str]]
    outputs: dict[str, Any]
    rows: int
    target_model: str | None = None
    integer_columns: tuple[str, ...] | None = None


def _assemble(entries: list[_Entry], integer_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """One frame of captured rows: the bookkeeping columns, the inputs, then the outputs.
    Inputs sent as float matrices get ``integer_columns`` (or the entry's own) back as
    integers."""
    frames = []
    i = 0
    while i < len(entries):
        inputs = entries[i].inputs
        if isinstance(inputs, tuple):
            # Consecutive matrices with the same columns become one frame in one step.
            j = i
            while (
                j < len(entries)
                and isinstance(entries[j].inputs, tuple)
                and entries[j].inputs[1] == inputs[1]  # type: ignore[index]
                and entries[j].integer_columns == entries[i].integer_columns
            ):
                j += 1
            stacked = np.vstack([e.inputs[0] for e in entries[i:j]])  # type: ignore[index]
            frame = pd.DataFrame(stacked, columns=inputs[1])
            ints = entries[i].integer_columns
            for col in integer_columns if ints is None else ints:
                if col in frame.columns:
                    frame[col] = frame[col].astype("int64")
            frames.append(frame)
            i = j
        else:
            frames.append(inputs.reset_index(drop=True))
            i += 1
    data = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    counts = [e.rows for e in entries]
    head = {
        "inference_id": np.repeat([e.inference_id for e in entries], counts),
        "event_time": pd.to_datetime(
            np.repeat([e.at for e in entries], counts), unit="s", utc=True
        ),
        "model_version": np.repeat([e.model_version for e in entries], counts),
    }
    if any(e.variant is not None for e in entries):
        head["variant"] = np.repeat([e.variant or "" for e in entries], counts)
    if any(e.target_model is not None for e in entries):
        head["target_model"] = np.repeat([e.target_model or "" for e in entries], counts)
    keys: list[str] = []
    for e in entries:
        keys.extend(k for k in e.outputs if k not in keys)
    tail = {}
    for key in keys:
        values: list[Any] = []
        for e in entries:
            values.extend(e.outputs.get(key, [None] * e.rows))
        tail[key] = values
    return pd.concat(
        [
            pd.DataFrame(head),
            data.drop(columns=[c for c in keys if c in data.columns]),
            pd.DataFrame(tail),
        ],
        axis=1,
    )


class CaptureWriter:
    """Buffers captured rows and flushes them to Parquet (in a thread of its own) every
    ``flush_rows`` rows or ``flush_seconds`` seconds, and on :meth:`close`."""

    def __init__(
        self,
        root: str,
        endpoint: str,
        *,
        sampling_percent: float = 100.0,
        flush_rows: int = 1000,
        flush_seconds: float = 2.0,
        on_file: Callable[[str, int, float, float], None] | None = None,
        seed: int | None = None,
        integer_columns: tuple[str, ...] = (),
    ) -> None:
        self.root = root.rstrip("/")
        self.integer_columns = tuple(integer_columns)
        self.endpoint = endpoint
        self.sampling_percent = float(sampling_percent)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._on_file = on_file
        self._rng = random.Random(seed)
        self._entries: list[_Entry] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wellml-capture", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Whether this request is in the sample."""
        return self.sampling_percent >= 100 or self._rng.random() * 100 < self.sampling_percent

    def add(
        self,
        inference_id: str,
        model_version: str,
        inputs: pd.DataFrame | tuple[np.ndarray, list[str]],
        outputs: dict[str, Any],
        *,
        variant: str | None = None,
        target_model: str | None = None,
        integer_columns: tuple[str, ...] | None = None,
    ) -> None:
        """Buffer one request: its input rows (a DataFrame, or a float matrix with its column
        names) and, per row, the model's outputs. Rows get a ``variant`` column when the
        request was served by a named variant, and a ``target_model`` column when it named
        its target model. ``integer_columns`` overrides the writer's for this request (on a
        multi-model endpoint each model has its own)."""
        rows = len(inputs) if isinstance(inputs, pd.DataFrame) else inputs[0].shape[0]
        entry = _Entry(
            inference_id,
            model_version,
            variant,
            time.time(),
            inputs,
            outputs,
            rows,
            target_model,
            integer_columns,
        )
        with self._lock:
            self._entries.append(entry)
            self._rows += rows
            full = self._rows >= self.flush_rows
        if full:
            # Written by the flush thread, off the request's path.
            self._wake.set()

    def flush(self) -> str | None:
        """Write buffered rows to a new file; return its URI (None when nothing was buffered)."""
        with self._lock:
            entries, self._entries, self._rows = self._entries, [], 0
        if not entries:
            return None
        data = _assemble(entries, self.integer_columns)
        stamp = time.gmtime()
        uri = "/".join(
            (
                self.root,
                self.endpoint,
                time.strftime("%Y/%m/%d/%H", stamp),
                f"{time.strftime('%Y%m%dT%H%M%S', stamp)}-{uuid.uuid4().hex[:12]}.parquet",
            )
        )
        table = pa.Table.from_pandas(data, preserve_index=False)
        fs, path = fsspec.core.url_to_fs(uri)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = path + ".tmp"
        with fs.open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
        fs.mv(tmp, path)
        times = data["event_time"]
        if self._on_file is not None:
            self._on_file(uri, len(data), times.min().timestamp(), times.max().timestamp())
        return uri

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:
                log.exception("capture flush failed")

    def close(self) -> None:
        """Stop the flush thread and write what is left."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()
