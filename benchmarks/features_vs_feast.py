"""Feature store: wellml against Feast, and a hand-written DuckDB ASOF JOIN, in one invocation.

The same seeded data serves every tool, written once as Parquet under ``benchmarks/.data/``:
feature rows (an int64 ``entity_id``, an ``event_timestamp`` over 2025, eight float64 features
``f0``..``f7``, 1% of ``f7`` NULL), on average ten per entity, sorted by event time; and entity
rows (``row_id``, ``entity_id``, ``event_timestamp`` in the last nine months of the year), of
which about 1% name an entity with no feature row at all and about 1% more come before their
entity's first feature row. Workloads, each tool in a fresh process and a fresh store:

  historical   point-in-time join of every entity row, at 1M feature rows x 100k entity rows
               and at 10M x 1M: Feast ``get_historical_features(entity_df).to_df()`` (local
               provider, file offline store), wellml ``ws.features.get_historical_features``
               (Parquet path source, entity rows as a Parquet path) and one ``ASOF LEFT JOIN``
               in ``duckdb.sql`` (the reference). Wall time of the call and peak RSS of the
               process; every result is compared row by row with the reference.
  materialize  the 1M feature rows (100k entities) into the online store: Feast
               ``materialize`` to SQLite, wellml ``materialize`` to SQLite and to Redis.
  online       in a new process on the store just materialized: ``get_online_features`` for
               1 entity and for 100 entities per call, p50 and p99 over a few thousand calls
               after a warm-up; then the values of 200 probe keys are checked.
  bulk write   wellml only, at the store level: ``OnlineStore.write_table`` of the 1M feature
               rows as they are (100k distinct keys) and with every key distinct (1M), into
               an empty SQLite file and an empty Redis prefix, in this process.

Feast runs in its own virtual environment, ``benchmarks/.venvs/feast``, created on first use;
wellml and the reference run with the interpreter that runs this script. Redis is the server
at ``--redis`` (keys under a fresh prefix, deleted afterwards); ``--redis ''`` skips it.
Results go to ``benchmarks/results/features.json``.

    .venv/bin/python benchmarks/features_vs_feast.py [--quick] [--rounds N] [--large-rounds N]

Each round runs every workload once per tool, rotating which tool goes first; the 10M x 1M
join runs in the first ``--large-rounds`` rounds only. Tables show medians over rounds, with
the range of the per-round figures or ratios in brackets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _machine import machine
from _peers import command_line, pinned_python, worker_json

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_features_worker.py"
FEAST_VENV = HERE / ".venvs" / "feast"
DATA = HERE / ".data" / "features"
RESULTS = HERE / "results" / "features.json"

# The release ``pip install feast==0.67.0`` resolved here when these figures were first taken;
# the venv is brought to this version when it holds another. ``--feast-version`` overrides it.
FEAST_VERSION = "0.67.0"
# Bump when the generated data changes, so cached files are not reused.
DATA_VERSION = 1
SEED = 7
FEATURES = [f"f{i}" for i in range(8)]
ROWS_PER_ENTITY = 10
YEAR_START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
YEAR_US = 365 * 86_400 * 1_000_000
NULL_SHARE = 0.01
UNKNOWN_SHARE = 0.01
PROBE_KNOWN = 190
PROBE_UNKNOWN = 10

HISTORICAL_TOOLS = ("duckdb", "wellml", "feast")
# (label, tool that runs it, online store: "sqlite" or "redis")
ONLINE_SIDES = (
    ("wellml", "wellml", "sqlite"),
    ("wellml-redis", "wellml", "redis"),
    ("feast", "feast", "sqlite"),
)
LABELS = {
    "wellml": "wellml",
    "wellml-redis": "wellml on Redis",
    "feast": "Feast",
    "duckdb": "DuckDB ASOF",
}


@dataclass(frozen=True)
class Size:
    """One size of the data: feature rows and entity rows."""

    name: str
    feature_rows: int
    entity_rows: int

    @property
    def label(self) -> str:
        """``1M x 100k``."""
        return f"{short_count(self.feature_rows)} x {short_count(self.entity_rows)}"


FULL = {
    "small": Size("small", 1_000_000, 100_000),
    "large": Size("large", 10_000_000, 1_000_000),
    "calls": 3000,
    "warmup": 300,
}
QUICK = {"small": Size("small", 100_000, 10_000), "large": None, "calls": 300, "warmup": 50}


@dataclass(frozen=True)
class Goal:
    """A target set on one figure: ``value`` must be ``op`` the ``target``."""

    text: str
    value: float
    target: float
    higher_is_better: bool
    unit: str

    @property
    def met(self) -> bool:
        """Whether the figure reaches the target."""
        if self.higher_is_better:
            return self.value >= self.target
        return self.value <= self.target

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "goal": self.text,
            "value": self.value,
            "target": self.target,
            "unit": self.unit,
            "met": self.met,
        }


def short_count(n: int) -> str:
    """1000000 -> ``1M``, 100000 -> ``100k``."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# -- Feast's environment --------------------------------------------------------------------


def feast_python(version: str) -> Path:
    """The interpreter of Feast's venv, creating it or bringing it to ``version``."""
    return pinned_python(FEAST_VENV, "feast", version, "Feast")


# -- data -------------------------------------------------------------------------------------


def data_folder(size: Size) -> Path:
    """Where the data of ``size`` lives, generating it on first use."""
    folder = DATA / f"v{DATA_VERSION}-s{SEED}-{size.feature_rows}x{size.entity_rows}"
    if not (folder / "meta.json").exists():
        print(f"writing {size.label} data to {folder}", flush=True)
        write_data(folder, size)
    return folder


def write_data(folder: Path, size: Size) -> None:
    """Write the seeded feature rows, entity rows and ``meta.json`` (last, as a marker)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng([SEED, size.feature_rows, size.entity_rows])
    start_us = int(YEAR_START.timestamp() * 1_000_000)
    entities = size.feature_rows // ROWS_PER_ENTITY

    ids = rng.integers(0, entities, size.feature_rows, dtype=np.int64)
    stamps = start_us + rng.integers(0, YEAR_US, size.feature_rows, dtype=np.int64)
    order = np.argsort(stamps, kind="stable")
    ids, stamps = ids[order], stamps[order]
    del order
    columns: dict[str, Any] = {
        "entity_id": ids,
        "event_timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
    }
    for i, name in enumerate(FEATURES):
        values = rng.standard_normal(size.feature_rows)
        mask = rng.random(size.feature_rows) < NULL_SHARE if i == len(FEATURES) - 1 else None
        columns[name] = pa.array(values, pa.float64(), mask=mask)
    pq.write_table(pa.table(columns), folder / "features.parquet")
    first, last = int(stamps[0]), int(stamps[-1])
    del columns, ids, stamps

    known = rng.integers(0, entities, size.entity_rows, dtype=np.int64)
    unknown = rng.random(size.entity_rows) < UNKNOWN_SHARE
    entity_ids = np.where(unknown, known + entities, known)
    entity_stamps = start_us + rng.integers(YEAR_US // 4, YEAR_US, size.entity_rows)
    pq.write_table(
        pa.table(
            {
                "row_id": np.arange(size.entity_rows, dtype=np.int64),
                "entity_id": entity_ids,
                "event_timestamp": pa.array(entity_stamps, pa.timestamp("us", tz="UTC")),
            }
        ),
        folder / "entities.parquet",
    )

    probe = [int(k) for k in rng.choice(entities, PROBE_KNOWN, replace=False)]
    probe += [entities + i for i in range(PROBE_UNKNOWN)]
    meta = {
        "seed": SEED,
        "feature_rows": size.feature_rows,
        "entity_rows": size.entity_rows,
        "feature_entities": entities,
        "first_event": dt.datetime.fromtimestamp(first / 1e6, dt.UTC).isoformat(),
        "last_event": dt.datetime.fromtimestamp(last / 1e6, dt.UTC).isoformat(),
        "probe_keys": probe,
        "expected_probe": latest_values(folder / "features.parquet", probe),
    }
    (folder / "meta.json").write_text(json.dumps(meta) + "\n")


def latest_values(features: Path, keys: list[int]) -> list[list[float | None]]:
    """The features of the latest row of each key (None for NULL, all None for no row)."""
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT entity_id, {', '.join(FEATURES)} FROM read_parquet(?) "
            "WHERE entity_id IN (SELECT unnest(?)) "
            "QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY event_timestamp DESC) = 1",
            [str(features), keys],
        ).fetchall()
    finally:
        con.close()
    found = {int(r[0]): [None if v is None else float(v) for v in r[1:]] for r in rows}
    return [found.get(k, [None] * len(FEATURES)) for k in keys]


# -- running workers --------------------------------------------------------------------------


def run_worker(
    python: Path,
    tool: str,
    workload: str,
    workdir: Path,
    data: Path,
    options: dict[str, Any],
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one workload of one tool in a fresh process; return the worker's JSON."""
    environment = {**os.environ, "FEAST_USAGE": "False", "DO_NOT_TRACK": "true", **(env or {})}
    command = [str(python), str(WORKER), tool, workload, str(workdir), f"--data={data}"]
    command += [f"--{k}={v}" for k, v in options.items()]
    started = time.perf_counter()
    # The folder is the working directory too, so nothing probes the caller's checkout.
    result = worker_json(command, environment, workdir, f"{tool} {workload}", tail=(5000, 20000))
    result["process_seconds"] = time.perf_counter() - started
    return result


@contextmanager
def redis_prefix(url: str) -> Iterator[str]:
    """A fresh key prefix on the Redis server at ``url``; its keys are deleted afterwards."""
    import redis

    prefix = f"wellml-bench-features-{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url)
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.unlink(*keys[start : start + 500])
        finally:
            client.close()


def redis_available(url: str) -> bool:
    """Whether a Redis server answers at ``url``."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as exc:
        print(f"Redis at {url} is not available ({exc}); skipping it", flush=True)
        return False


# -- checking results -------------------------------------------------------------------------


def float_columns(table: pa.Table) -> list[np.ndarray]:
    """The feature columns as float64 arrays, NULL as NaN."""
    return [
        table.column(f).cast(pa.float64()).to_numpy().astype(np.float64, copy=False)
        for f in FEATURES
    ]


def compare(reference: Path, other: Path) -> dict[str, Any]:
    """Compare a join result with the reference's, by ``row_id``.

    Returns the output rows, whether they came in entity-row order, the entity rows missing
    from the output (and how many of those the reference had a feature row for), duplicated
    and unknown row ids, and rows whose feature values differ from the reference's (NaN equals
    NaN, NULL equals NaN).
    """
    ref = pq.read_table(reference).sort_by("row_id")
    raw = pq.read_table(other)
    ids_in_order = raw.column("row_id").to_numpy()
    in_order = bool(np.array_equal(ids_in_order, np.arange(len(ids_in_order))))
    got = raw.sort_by("row_id")
    del raw
    ref_ids = ref.column("row_id").to_numpy()
    got_ids = got.column("row_id").to_numpy()
    duplicates = int(len(got_ids) - len(np.unique(got_ids)))
    unknown = int((~np.isin(got_ids, ref_ids)).sum())
    present = np.isin(ref_ids, got_ids)
    matched = ref.column(FEATURES[0]).is_valid().to_numpy(zero_copy_only=False)
    out: dict[str, Any] = {
        "rows": int(got.num_rows),
        "in_order": in_order,
        "dropped": int((~present).sum()),
        "dropped_with_values": int((~present & matched).sum()),
        "duplicates": duplicates,
        "unknown": unknown,
        "mismatched_rows": None,
    }
    if duplicates or unknown:
        return out
    ref = ref.filter(pa.array(present))
    differs = np.zeros(ref.num_rows, dtype=bool)
    for a, b in zip(float_columns(ref), float_columns(got), strict=True):
        differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    out["mismatched_rows"] = int(differs.sum())
    return out


def probe_mismatches(expected: list[list[float | None]], got: list[list[float | None]]) -> int:
    """Probe keys whose online values differ from the latest source row's."""
    return sum(1 for e, g in zip(expected, got, strict=True) if e != g)


# -- the workloads ----------------------------------------------------------------------------


def rotated(items: tuple[str, ...], round_: int) -> list[str]:
    """``items`` starting at a different one each round."""
    k = round_ % len(items)
    return list(items[k:] + items[:k])


def historical_round(
    pythons: dict[str, Path], size: Size, data: Path, round_: int
) -> dict[str, dict[str, Any]]:
    """One round of the join at ``size``: every tool, then every result against the
    reference's."""
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        for tool in rotated(HISTORICAL_TOOLS, round_):
            print(f"  historical {size.label}: {LABELS[tool]}", flush=True)
            workdir = Path(tmp) / tool
            workdir.mkdir()
            results[tool] = run_worker(pythons[tool], tool, "historical", workdir, data, {})
            # The machine is shared: what else ran shows in the 1-minute load average.
            results[tool]["load_1min"] = round(os.getloadavg()[0], 2)
        reference = Path(results["duckdb"]["result"])
        for tool in HISTORICAL_TOOLS:
            results[tool]["check"] = compare(reference, Path(results[tool]["result"]))
            del results[tool]["result"]
    return results


def online_round(
    pythons: dict[str, Path],
    data: Path,
    round_: int,
    options: dict[str, Any],
    redis_url: str | None,
) -> dict[str, dict[str, Any]]:
    """One round of materialization and online reads, each store on its own."""
    expected = json.loads((data / "meta.json").read_text())["expected_probe"]
    results: dict[str, dict[str, Any]] = {}
    sides = [s for s in ONLINE_SIDES if s[2] != "redis" or redis_url]
    for label, tool, store in [sides[(i + round_) % len(sides)] for i in range(len(sides))]:
        with (
            tempfile.TemporaryDirectory(prefix="bench-features-online-") as tmp,
            redis_prefix(redis_url) if store == "redis" and redis_url else _no_prefix() as prefix,
        ):
            env = {}
            if prefix is not None and redis_url:
                env["WELLML_ONLINE_URL"] = f"{redis_url}?prefix={prefix}"
            workdir = Path(tmp)
            print(f"  materialize: {LABELS[label]}", flush=True)
            done = run_worker(pythons[tool], tool, "materialize", workdir, data, {}, env)
            print(f"  online: {LABELS[label]}", flush=True)
            served = run_worker(pythons[tool], tool, "online", workdir, data, options, env)
        served["probe_mismatches"] = probe_mismatches(expected, served.pop("probe"))
        results[label] = {"materialize": done, "online": served}
    return results


@contextmanager
def _no_prefix() -> Iterator[None]:
    yield None


def bulk_write_round(data: Path, redis_url: str | None) -> dict[str, dict[str, float]]:
    """``OnlineStore.write_table`` of the feature rows into empty stores; rows/s per store.

    Two tables: the feature rows as generated (about ten rows per key) and the same rows with
    every key distinct, so that every row is written.
    """
    from wellml.store.online import OnlineStore, RedisOnlineStore, SQLiteOnlineStore

    table = pq.read_table(data / "features.parquet")
    tables = {
        "repeated keys": table,
        "distinct keys": table.set_column(
            0, "entity_id", pa.array(np.arange(table.num_rows, dtype=np.int64))
        ),
    }
    stores = ["sqlite", "redis"] if redis_url else ["sqlite"]
    results: dict[str, dict[str, float]] = {}
    for name, rows in tables.items():
        keys = len(np.unique(rows.column("entity_id").to_numpy()))
        for store in stores:
            with (
                tempfile.TemporaryDirectory(prefix="bench-features-bulk-") as tmp,
                redis_prefix(redis_url)
                if store == "redis" and redis_url
                else _no_prefix() as prefix,
            ):
                online: OnlineStore
                if prefix is not None and redis_url:
                    online = RedisOnlineStore(redis_url, prefix=prefix)
                else:
                    online = SQLiteOnlineStore(Path(tmp) / "online.db")
                print(f"  write_table, {name}: {store}", flush=True)
                try:
                    started = time.perf_counter()
                    online.write_table(
                        "stats",
                        rows,
                        key_columns=["entity_id"],
                        timestamp_column="event_timestamp",
                        feature_columns=FEATURES,
                    )
                    seconds = time.perf_counter() - started
                finally:
                    online.close()
            results[f"{store}, {name}"] = {
                "rows": rows.num_rows,
                "keys": keys,
                "seconds": seconds,
                "rows_per_s": rows.num_rows / seconds,
            }
    return results


# -- reporting --------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    """The median."""
    return float(statistics.median(values))


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    """``[low-high]`` of several values, or empty for one."""
    if len(values) < 2:
        return ""
    return f" [{fmt(min(values))}-{fmt(max(values))}]"


def seconds_text(v: float) -> str:
    """Seconds with sensible precision."""
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def mib_text(v: float) -> str:
    """MiB, or GiB above 1 GiB."""
    return f"{v / 1024:.2f} GiB" if v >= 1024 else f"{v:.0f} MiB"


def ratio_text(v: float) -> str:
    """A ratio."""
    return f"{v:.2f}"


def summarize_historical(
    raw: dict[str, list[dict[str, dict[str, Any]]]], sizes: list[Size], quick: bool
) -> tuple[list[dict[str, Any]], list[Goal]]:
    """Print the join table; return its summary rows and goals."""
    summary: list[dict[str, Any]] = []
    goals: list[Goal] = []
    for size in sizes:
        rounds = raw[size.name]
        print(f"\npoint-in-time join, {size.label} (median of {len(rounds)} round(s))")
        print(
            f"{'':14} {'seconds':>22} {'peak RSS':>24} {'rows':>9} {'dropped':>8} "
            f"{'in order':>8} {'differ':>6}"
        )
        for tool in HISTORICAL_TOOLS:
            secs = [r[tool]["seconds"] for r in rounds]
            rss = [r[tool]["peak_rss_mib"] for r in rounds]
            check = rounds[0][tool]["check"]
            print(
                f"{LABELS[tool]:14} {seconds_text(median(secs)) + spread(secs, seconds_text):>22} "
                f"{mib_text(median(rss)) + spread(rss, mib_text):>24} {check['rows']:>9,} "
                f"{check['dropped']:>8,} {check['in_order']!s:>8} "
                f"{check['mismatched_rows']!s:>6}"
            )
            summary.append(
                {
                    "workload": f"historical {size.label}",
                    "tool": tool,
                    "seconds": median(secs),
                    "seconds_per_round": secs,
                    "peak_rss_mib": median(rss),
                    "peak_rss_mib_per_round": rss,
                    "checks": [r[tool]["check"] for r in rounds],
                }
            )
        loads = [r[tool]["load_1min"] for r in rounds for tool in HISTORICAL_TOOLS]
        print(f"1-minute load average after each process: {min(loads):.2f}-{max(loads):.2f}")
        vs_feast = [r["feast"]["seconds"] / r["wellml"]["seconds"] for r in rounds]
        vs_ref = [r["wellml"]["seconds"] / r["duckdb"]["seconds"] for r in rounds]
        memory = [r["wellml"]["peak_rss_mib"] / r["feast"]["peak_rss_mib"] for r in rounds]
        print(
            f"Feast / wellml time {median(vs_feast):.2f}x{spread(vs_feast, ratio_text)}; "
            f"wellml / DuckDB time {median(vs_ref):.2f}x{spread(vs_ref, ratio_text)}; "
            f"wellml / Feast peak RSS {median(memory):.2f}{spread(memory, ratio_text)}"
        )
        summary.append(
            {
                "workload": f"historical {size.label}",
                "feast_over_wellml_time": median(vs_feast),
                "feast_over_wellml_time_per_round": vs_feast,
                "wellml_over_duckdb_time": median(vs_ref),
                "wellml_over_duckdb_time_per_round": vs_ref,
                "wellml_over_feast_peak_rss": median(memory),
                "wellml_over_feast_peak_rss_per_round": memory,
                "load_1min_range": [min(loads), max(loads)],
            }
        )
        if not quick:
            goals += [
                Goal(
                    f"join {size.label}: wellml >= 8x faster than Feast",
                    median(vs_feast),
                    8.0,
                    True,
                    "x",
                ),
                Goal(
                    f"join {size.label}: wellml within 1.25x of the DuckDB ASOF JOIN",
                    median(vs_ref),
                    1.25,
                    False,
                    "x",
                ),
                Goal(
                    f"join {size.label}: wellml peak RSS under half of Feast's",
                    median(memory),
                    0.5,
                    False,
                    "of Feast's",
                ),
            ]
    return summary, goals


def summarize_online(
    raw: list[dict[str, dict[str, Any]]], quick: bool
) -> tuple[list[dict[str, Any]], list[Goal]]:
    """Print the materialization and online tables; return their summary rows and goals."""
    labels = [label for label, _t, _s in ONLINE_SIDES if label in raw[0]]
    summary: list[dict[str, Any]] = []
    goals: list[Goal] = []

    def figure(label: str, part: str, *path: str) -> list[float]:
        values = []
        for r in raw:
            node: Any = r[label][part]
            for key in path:
                node = node[key]
            values.append(float(node))
        return values

    print(f"\nmaterialization (median of {len(raw)} round(s))")
    print(f"{'':16} {'source rows/s':>26} {'seconds':>20} {'peak RSS':>22} {'online store':>12}")
    for label in labels:
        rate = figure(label, "materialize", "rows_per_s")
        secs = figure(label, "materialize", "seconds")
        rss = figure(label, "materialize", "peak_rss_mib")
        size = raw[0][label]["materialize"]["online_bytes"]
        on_disk = mib_text(size / 2**20) if size else "-"
        rate_text = f"{median(rate):,.0f}" + spread(rate, lambda v: f"{v:,.0f}")
        print(
            f"{LABELS[label]:16} {rate_text:>26} "
            f"{seconds_text(median(secs)) + spread(secs, seconds_text):>20} "
            f"{mib_text(median(rss)) + spread(rss, mib_text):>22} {on_disk:>12}"
        )
        summary.append(
            {
                "workload": "materialize",
                "tool": label,
                "rows_per_s": median(rate),
                "rows_per_s_per_round": rate,
                "seconds": median(secs),
                "peak_rss_mib": median(rss),
                "online_bytes": size,
            }
        )

    print(f"\nonline reads, ms (median of {len(raw)} round(s) of each percentile)")
    print(
        f"{'':16} {'1 entity p50':>18} {'1 entity p99':>18} {'100 p50':>18} {'100 p99':>18} "
        f"{'probe diffs':>11}"
    )
    for label in labels:
        cells = []
        row: dict[str, Any] = {"workload": "online", "tool": label}
        for part in ("one", "batch"):
            for pct in ("p50_ms", "p99_ms"):
                values = figure(label, "online", part, pct)
                cells.append(f"{median(values):.3f}" + spread(values, lambda v: f"{v:.3f}"))
                row[f"{part}_{pct}"] = median(values)
                row[f"{part}_{pct}_per_round"] = values
        diffs = [int(r[label]["online"]["probe_mismatches"]) for r in raw]
        row["probe_mismatches"] = diffs
        print(f"{LABELS[label]:16} " + " ".join(f"{c:>18}" for c in cells) + f" {max(diffs):>11}")
        summary.append(row)

    def ratio(a: str, b: str, part: str, *path: str) -> list[float]:
        return [x / y for x, y in zip(figure(a, part, *path), figure(b, part, *path), strict=True)]

    if quick:
        return summary, goals
    one = ratio("wellml", "feast", "online", "one", "p99_ms")
    goals.append(
        Goal(
            "online 1 entity: wellml p99 at or below Feast's", median(one), 1.0, False, "of Feast's"
        )
    )
    for pct in ("p50_ms", "p99_ms"):
        faster = ratio("feast", "wellml", "online", "batch", pct)
        goals.append(
            Goal(
                f"online 100 entities: wellml (SQLite) >= 4x faster than Feast, {pct[:3]}",
                median(faster),
                4.0,
                True,
                "x",
            )
        )
    if "wellml-redis" in labels:
        p99 = figure("wellml-redis", "online", "batch", "p99_ms")
        goals.append(
            Goal("online 100 entities on Redis: wellml p99 < 3 ms", median(p99), 3.0, False, "ms")
        )
    for label in ("wellml", "wellml-redis"):
        if label in labels:
            rate = ratio(label, "feast", "materialize", "rows_per_s")
            goals.append(
                Goal(
                    f"materialize: {LABELS[label]} >= 5x Feast's rows/s",
                    median(rate),
                    5.0,
                    True,
                    "x",
                )
            )
    return summary, goals


def summarize_bulk(raw: list[dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """Print the bulk-write table; return its summary rows."""
    print(f"\nOnlineStore.write_table, 8 float features (median of {len(raw)} round(s))")
    print(f"{'':28} {'rows':>10} {'keys':>10} {'rows/s':>26} {'seconds':>18}")
    summary = []
    for label in raw[0]:
        rate = [r[label]["rows_per_s"] for r in raw]
        secs = [r[label]["seconds"] for r in raw]
        rows, keys = int(raw[0][label]["rows"]), int(raw[0][label]["keys"])
        rate_text = f"{median(rate):,.0f}" + spread(rate, lambda v: f"{v:,.0f}")
        print(
            f"{label:28} {rows:>10,} {keys:>10,} {rate_text:>26} "
            f"{seconds_text(median(secs)) + spread(secs, seconds_text):>18}"
        )
        summary.append(
            {
                "workload": f"write_table {label}",
                "rows": rows,
                "keys": keys,
                "rows_per_s": median(rate),
                "rows_per_s_per_round": rate,
                "seconds": median(secs),
            }
        )
    return summary


def source_state() -> dict[str, Any]:
    """The checkout's commit and the uncommitted files of the code under test."""
    root = HERE.parent

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=root)
        return out.stdout if out.returncode == 0 else ""

    paths = ["src/wellml/features", "src/wellml/store/offline.py", "src/wellml/store/online.py"]
    changed = git("status", "--porcelain", "--", *paths)
    return {
        "commit": git("rev-parse", "HEAD").strip(),
        "uncommitted": [line[3:] for line in changed.splitlines() if line.strip()],
    }


def main() -> int:
    """Run every tool on every workload, print the tables and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data only, for a check")
    parser.add_argument(
        "--rounds", type=int, help="rounds of the 1M x 100k workloads (default 3, 1 with --quick)"
    )
    parser.add_argument(
        "--large-rounds", type=int, default=1, help="rounds of the 10M x 1M join (default 1)"
    )
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/0",
        help="Redis URL for wellml's Redis online store ('' to skip)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--feast-version", default=FEAST_VERSION, help=f"default {FEAST_VERSION}")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    rounds = args.rounds or (1 if args.quick else 3)
    small = plan["small"]
    large = plan["large"]
    assert isinstance(small, Size)
    calls, warmup = int(str(plan["calls"])), int(str(plan["warmup"]))
    large_rounds = 0 if not isinstance(large, Size) else min(args.large_rounds, rounds)
    redis_url = args.redis if args.redis and redis_available(args.redis) else None

    began = time.perf_counter()
    python = Path(sys.executable)
    pythons = {"wellml": python, "duckdb": python, "feast": feast_python(args.feast_version)}
    folders = {small.name: data_folder(small)}
    sizes = [small]
    if isinstance(large, Size) and large_rounds:
        folders[large.name] = data_folder(large)
        sizes.append(large)

    historical: dict[str, list[dict[str, dict[str, Any]]]] = {s.name: [] for s in sizes}
    online: list[dict[str, dict[str, Any]]] = []
    bulk: list[dict[str, dict[str, float]]] = []
    options = {"calls": calls, "warmup": warmup, "batch": 100}
    for round_ in range(rounds):
        print(f"round {round_ + 1}/{rounds}", flush=True)
        for size in sizes:
            if size is large and round_ >= large_rounds:
                continue
            historical[size.name].append(
                historical_round(pythons, size, folders[size.name], round_)
            )
        online.append(online_round(pythons, folders[small.name], round_, options, redis_url))
        bulk.append(bulk_write_round(folders[small.name], redis_url))

    first = historical[small.name][0]
    versions = {tool: first[tool]["versions"] for tool in HISTORICAL_TOOLS}
    versions["python"] = {tool: first[tool]["python"] for tool in HISTORICAL_TOOLS}
    print(
        f"\nwellml {versions['wellml']['tool']} vs Feast {versions['feast']['tool']} "
        f"(dask {versions['feast']['dask']}, pandas {versions['feast']['pandas']}) and "
        f"DuckDB {versions['duckdb']['tool']}"
    )
    joins, join_goals = summarize_historical(historical, sizes, args.quick)
    served, online_goals = summarize_online(online, args.quick)
    written = summarize_bulk(bulk)
    goals = join_goals + online_goals
    if goals:
        print("\ngoals")
        for goal in goals:
            verdict = "met" if goal.met else "MISSED"
            relation = ">=" if goal.higher_is_better else "<="
            print(
                f"  {verdict:6} {goal.text}: {goal.value:.2f} {goal.unit} "
                f"(target {relation} {goal.target:g})"
            )
    total = time.perf_counter() - began
    print(f"\ntotal {total / 60:.1f} min")

    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "quick": args.quick,
        "rounds": rounds,
        "large_rounds": large_rounds,
        "sizes": {
            s.name: {"feature_rows": s.feature_rows, "entity_rows": s.entity_rows} for s in sizes
        },
        "online_calls": options,
        "redis": redis_url is not None,
        "machine": machine(),
        "source": source_state(),
        "versions": versions,
        "seconds": total,
        "goals": [g.to_dict() for g in goals],
        "summary": joins + served + written,
        "raw": {"historical": historical, "online": online, "bulk_write": bulk},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
