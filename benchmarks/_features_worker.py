"""One tool's side of ``features_vs_feast.py``, run in a fresh process with that tool's own
interpreter.

    python _features_worker.py {wellml|feast|duckdb} {historical|materialize|online} WORKDIR \
        --data DATA [options]

DATA holds the seeded ``features.parquet`` and ``entities.parquet`` written by the benchmark
script. WORKDIR is a fresh folder for this tool's store; ``materialize`` fills the online store
there and a later ``online`` process reads it back. The worker prints one JSON object on the
last line of stdout; ``historical`` also writes its result (``row_id`` and the features) to
``WORKDIR/result.parquet`` for the comparison.

Apart from the tool under test it uses only the standard library, pyarrow and pandas, so the
same file runs in wellml's environment and in Feast's. ``duckdb`` is the hand-written reference
(one ``ASOF LEFT JOIN``); it runs in wellml's environment and only does ``historical``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any, Protocol

FEATURES = [f"f{i}" for i in range(8)]
ENTITY = "entity"
JOIN_KEY = "entity_id"
TIMESTAMP = "event_timestamp"
ROW_ID = "row_id"
VIEW = "stats"
SERVICE = "svc"
PROJECT = "bench"


def _status_mib(field: str) -> float:
    """A ``VmRSS``/``VmHWM``-style line of ``/proc/self/status``, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_now_mib() -> float:
    """The process's resident set size right now, in MiB."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, in MiB.

    ``VmHWM`` rather than ``getrusage``: ``ru_maxrss`` carries over the parent's resident size
    at the moment it forked, so a large parent would inflate every worker's figure.
    """
    return _status_mib("VmHWM")


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def plain(value: Any) -> Any:
    """A feature value as JSON: floats as floats, NaN and missing as None."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def arrow_of(relation: Any) -> Any:
    """A DuckDB query's rows as an Arrow table."""
    if relation is None:
        raise RuntimeError("the query returned no relation")
    return relation.to_arrow_table()


class Side(Protocol):
    """What each tool's adapter offers the workloads."""

    def versions(self) -> dict[str, str]:
        """Versions of the tool and of the libraries under it."""
        ...

    def historical(self, entities: Path) -> Any:
        """The point-in-time join of every entity row; the result in the tool's own form."""
        ...

    def result_table(self, result: Any) -> Any:
        """A pyarrow table of ``row_id`` and the features from ``historical``'s result."""
        ...

    def materialize(self, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        """Copy the latest row per entity to the online store; facts about what was written."""
        ...

    def online(self, keys: list[int]) -> Any:
        """Online features of ``keys`` as the tool's caller gets them: one dict of columns."""
        ...


class Wellml:
    """wellml's feature store on a workspace in WORKDIR/ws (online store from the
    environment: SQLite by default, ``WELLML_ONLINE_URL`` for Redis)."""

    def __init__(self, workdir: Path, data: Path, create: bool) -> None:
        import wellml
        from wellml.features import Entity, FeatureService, FeatureView, Field, Source

        root = workdir / "ws"
        if not create:
            self.ws = wellml.Workspace.open(root)
            return
        self.ws = wellml.Workspace.init(root, name="bench")
        self.ws.features.apply(
            [
                Entity(ENTITY, join_keys=(JOIN_KEY,)),
                FeatureView(
                    VIEW,
                    entities=(ENTITY,),
                    source=Source(path=str(data / "features.parquet")),
                    timestamp_field=TIMESTAMP,
                    features=tuple(Field(f, "float64") for f in FEATURES),
                ),
                FeatureService(SERVICE, features=(f"{VIEW}:*",)),
            ]
        )

    def versions(self) -> dict[str, str]:
        """wellml, DuckDB, pyarrow and pandas."""
        import duckdb
        import pandas
        import pyarrow

        import wellml

        return {
            "tool": str(wellml.__version__),
            "duckdb": duckdb.__version__,
            "pyarrow": pyarrow.__version__,
            "pandas": pandas.__version__,
        }

    def historical(self, entities: Path) -> Any:
        """``get_historical_features`` with the entity rows' Parquet path and the service."""
        return self.ws.features.get_historical_features(str(entities), SERVICE)

    def result_table(self, result: Any) -> Any:
        """The Arrow table as it is."""
        return result.select([ROW_ID, *FEATURES])

    def materialize(self, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        """``materialize`` of the view (its default window: everything up to now)."""
        done = self.ws.features.materialize(VIEW)
        return {"rows_read": done.rows_read, "rows_written": done.rows_written}

    def online(self, keys: list[int]) -> Any:
        """``get_online_features`` with one mapping per entity and the service."""
        rows = [{JOIN_KEY: k} for k in keys]
        return self.ws.features.get_online_features(rows, SERVICE).to_dict()

    def online_file(self) -> Path | None:
        """The SQLite online store's file, if that is the store in use."""
        url = self.ws.urls.online
        return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


class Feast:
    """Feast with the local provider, the file (dask) offline store and the SQLite online store,
    its registry and online database in WORKDIR."""

    def __init__(self, workdir: Path, data: Path, create: bool) -> None:
        from feast import (
            Entity,
            FeatureService,
            FeatureStore,
            FeatureView,
            Field,
            FileSource,
            RepoConfig,
            ValueType,
        )
        from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
        from feast.types import Float64

        self.online_path = workdir / "online.db"
        config = RepoConfig(
            project=PROJECT,
            registry=str(workdir / "registry.db"),
            provider="local",
            offline_store=DaskOfflineStoreConfig(type="file"),
            online_store=SqliteOnlineStoreConfig(path=str(self.online_path)),
            entity_key_serialization_version=3,
        )
        self.store = FeatureStore(config=config, repo_path=str(workdir))
        if create:
            entity = Entity(name=ENTITY, join_keys=[JOIN_KEY], value_type=ValueType.INT64)
            view = FeatureView(
                name=VIEW,
                entities=[entity],
                schema=[Field(name=f, dtype=Float64) for f in FEATURES],
                source=FileSource(path=str(data / "features.parquet"), timestamp_field=TIMESTAMP),
                online=True,
            )
            self.store.apply([entity, view, FeatureService(name=SERVICE, features=[view])])
        self.service = self.store.get_feature_service(SERVICE)

    def versions(self) -> dict[str, str]:
        """Feast, dask, pyarrow and pandas."""
        import dask
        import feast
        import pandas
        import pyarrow

        return {
            "tool": str(feast.__version__),
            "dask": str(dask.__version__),
            "pyarrow": pyarrow.__version__,
            "pandas": pandas.__version__,
        }

    def historical(self, entities: Path) -> Any:
        """``get_historical_features(entity_df).to_df()``; the file offline store takes the
        entity rows as a DataFrame only, so they are read from Parquet first."""
        import pandas as pd

        frame = pd.read_parquet(entities)
        service = self.store.get_feature_service(SERVICE)
        return self.store.get_historical_features(entity_df=frame, features=service).to_df()

    def result_table(self, result: Any) -> Any:
        """The DataFrame as an Arrow table."""
        import pyarrow as pa

        return pa.Table.from_pandas(result[[ROW_ID, *FEATURES]], preserve_index=False)

    def materialize(self, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        """``materialize(start, end)`` of every view."""
        import sqlite3

        self.store.materialize(start_date=start, end_date=end)
        with sqlite3.connect(self.online_path) as conn:
            table = f"{PROJECT}_{VIEW}"
            (entities,) = conn.execute(f"SELECT COUNT(DISTINCT entity_key) FROM {table}").fetchone()
        return {"rows_written": int(entities)}

    def online(self, keys: list[int]) -> Any:
        """``get_online_features`` with one dict per entity and the service object (fetched
        once from the registry, as a serving process does)."""
        rows = [{JOIN_KEY: k} for k in keys]
        return self.store.get_online_features(features=self.service, entity_rows=rows).to_dict()

    def online_file(self) -> Path | None:
        """The SQLite online store's file."""
        return self.online_path


class DuckdbReference:
    """The reference: one hand-written ``ASOF LEFT JOIN`` in DuckDB over the same Parquet."""

    def __init__(self, workdir: Path, data: Path, create: bool) -> None:
        import duckdb

        self.features = data / "features.parquet"
        # One-off costs of a process (loading pyarrow for the Arrow result) are paid here, as
        # wellml pays them when it applies its definitions and Feast when it opens its store.
        arrow_of(duckdb.sql("SELECT 1 AS x"))

    def versions(self) -> dict[str, str]:
        """DuckDB and pyarrow."""
        import duckdb
        import pyarrow

        return {"tool": duckdb.__version__, "pyarrow": pyarrow.__version__}

    def historical(self, entities: Path) -> Any:
        """``duckdb.sql`` with the join, fetched as an Arrow table."""
        import duckdb

        selected = ", ".join(f"f.{f}" for f in FEATURES)
        query = (
            f"SELECT e.{ROW_ID}, e.{JOIN_KEY}, e.{TIMESTAMP}, {selected} "
            f"FROM read_parquet('{entities}') e "
            f"ASOF LEFT JOIN read_parquet('{self.features}') f "
            f"ON e.{JOIN_KEY} = f.{JOIN_KEY} AND e.{TIMESTAMP} >= f.{TIMESTAMP}"
        )
        return arrow_of(duckdb.sql(query))

    def result_table(self, result: Any) -> Any:
        """The Arrow table as it is."""
        return result.select([ROW_ID, *FEATURES])

    def materialize(self, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        """Not a workload of the reference."""
        raise SystemExit("the DuckDB reference only does historical retrieval")

    def online(self, keys: list[int]) -> Any:
        """Not a workload of the reference."""
        raise SystemExit("the DuckDB reference only does historical retrieval")


def run_historical(side: Side, workdir: Path, data: Path) -> dict[str, Any]:
    """Time the point-in-time join, then write its result for the comparison."""
    rss_before = rss_now_mib()
    start = time.perf_counter()
    result = side.historical(data / "entities.parquet")
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    table = side.result_table(result)
    rows = table.num_rows
    del result

    import pyarrow.parquet as pq

    pq.write_table(table, workdir / "result.parquet")
    return {
        "seconds": seconds,
        "rows": rows,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak,
        "result": str(workdir / "result.parquet"),
    }


def run_materialize(side: Side, meta: dict[str, Any]) -> dict[str, Any]:
    """Time the materialization of every source row."""
    start_time = dt.datetime.fromisoformat(meta["first_event"]) - dt.timedelta(days=1)
    end_time = dt.datetime.fromisoformat(meta["last_event"]) + dt.timedelta(days=1)
    rss_before = rss_now_mib()
    start = time.perf_counter()
    facts = side.materialize(start_time, end_time)
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    path = side.online_file() if isinstance(side, Wellml | Feast) else None
    size = None
    if path is not None:
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return {
        "seconds": seconds,
        "source_rows": meta["feature_rows"],
        "rows_per_s": meta["feature_rows"] / seconds,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak,
        "online_bytes": size,
        **facts,
    }


def timed_calls(side: Side, batches: list[list[int]], warmup: int) -> dict[str, Any]:
    """Call ``online`` once per batch of keys (the first ``warmup`` untimed); latencies in ms."""
    for keys in batches[:warmup]:
        side.online(keys)
    times = []
    clock = time.perf_counter
    for keys in batches[warmup:]:
        start = clock()
        side.online(keys)
        times.append(clock() - start)
    ms = [t * 1000 for t in times]
    return {
        "calls": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms),
        "max_ms": max(ms),
    }


def run_online(side: Side, args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    """Latency of 1-entity and ``--batch``-entity calls on random materialized keys, and the
    values of a fixed probe set (known and unknown keys) for the comparison."""
    entities = meta["feature_entities"]
    rng = random.Random(11)
    single = [[rng.randrange(entities)] for _ in range(args.warmup + args.calls)]
    batched = [
        [rng.randrange(entities) for _ in range(args.batch)]
        for _ in range(args.warmup + args.calls)
    ]
    out: dict[str, Any] = {
        "one": timed_calls(side, single, args.warmup),
        "batch": {**timed_calls(side, batched, args.warmup), "entities": args.batch},
    }
    probe = meta["probe_keys"]
    got = side.online(probe)
    out["probe"] = [[plain(got[f][i]) for f in FEATURES] for i in range(len(probe))]
    return out


def main() -> None:
    """Parse the command line, run the workload and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=("wellml", "feast", "duckdb"))
    parser.add_argument("workload", choices=("historical", "materialize", "online"))
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="folder of the seeded data")
    parser.add_argument("--calls", type=int, default=3000, help="timed online calls")
    parser.add_argument("--warmup", type=int, default=300, help="untimed online calls first")
    parser.add_argument("--batch", type=int, default=100, help="entities per batched call")
    args = parser.parse_args()
    meta = json.loads((args.data / "meta.json").read_text())
    begun = time.perf_counter()
    adapters: dict[str, type[Wellml | Feast | DuckdbReference]] = {
        "wellml": Wellml,
        "feast": Feast,
        "duckdb": DuckdbReference,
    }
    side: Side = adapters[args.tool](args.workdir, args.data, args.workload != "online")
    setup = time.perf_counter() - begun
    if args.workload == "historical":
        result = run_historical(side, args.workdir, args.data)
    elif args.workload == "materialize":
        result = run_materialize(side, meta)
    else:
        result = run_online(side, args, meta)
    result.update(
        tool=args.tool,
        workload=args.workload,
        setup_seconds=setup,
        versions=side.versions(),
        python=platform.python_version(),
    )
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
