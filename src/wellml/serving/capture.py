"""Data capture: a sampled record of what an endpoint was asked and what it answered.

Rows are buffered in memory and written as Parquet files (one per flush) under the capture
store, ``<root>/<endpoint>/yyyy/mm/dd/hh/<time>-<id>.parquet``; each file is then recorded in
the metadata store so the monitor can turn new files into a dataset version.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CAPTURE_COLUMNS = ("inference_id", "event_time", "model_version")


class CaptureWriter:
    """Buffers captured rows and flushes them to Parquet every ``flush_rows`` rows or
    ``flush_seconds`` seconds, and on :meth:`close`."""

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
    ) -> None:
        self.root = root.rstrip("/")
        self.endpoint = endpoint
        self.sampling_percent = float(sampling_percent)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._on_file = on_file
        self._rng = random.Random(seed)
        self._frames: list[pd.DataFrame] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wellml-capture", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Whether this request is in the sample."""
        return self.sampling_percent >= 100 or self._rng.random() * 100 < self.sampling_percent

    def add(
        self, inference_id: str, model_version: str, inputs: pd.DataFrame, outputs: dict[str, Any]
    ) -> None:
        """Buffer one request: its input rows and, per row, the model's outputs."""
        frame = inputs.reset_index(drop=True).copy()
        frame.insert(0, "model_version", model_version)
        frame.insert(0, "event_time", pd.Timestamp.now(tz="UTC"))
        frame.insert(0, "inference_id", inference_id)
        for key, values in outputs.items():
            frame[key] = values
        with self._lock:
            self._frames.append(frame)
            self._rows += len(frame)
            full = self._rows >= self.flush_rows
        if full:
            self.flush()

    def flush(self) -> str | None:
        """Write buffered rows to a new file; return its URI (None when nothing was buffered)."""
        with self._lock:
            frames, self._frames, self._rows = self._frames, [], 0
        if not frames:
            return None
        data = pd.concat(frames, ignore_index=True)
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
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:
                import logging

                logging.getLogger("wellml.capture").exception("capture flush failed")

    def close(self) -> None:
        """Stop the flush thread and write what is left."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
