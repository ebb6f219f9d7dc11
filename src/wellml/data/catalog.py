"""The data catalog: register data as immutable, content-addressed dataset versions."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import sqlalchemy.exc

from wellml.config import current_user
from wellml.errors import InvalidInput, NotFound
from wellml.lineage.graph import LineageService
from wellml.names import check_name, parse_ref
from wellml.store import catalog as sql
from wellml.store.artifacts import ArtifactStore
from wellml.store.metadata import MetadataStore, new_id, now

if TYPE_CHECKING:
    from wellml.data.profile import DatasetProfile
    from wellml.data.quality import QualityReport

DataSource: TypeAlias = pd.DataFrame | pa.Table | str | os.PathLike[str]


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset."""

    id: str
    name: str
    version: int
    content_digest: str
    artifact_digest: str
    format: str
    num_rows: int
    num_bytes: int
    schema: builtins.list[dict[str, str]]
    source: str
    description: str
    created_at: float
    created_by: str
    lineage_artifact_id: str
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def lineage_ref(self) -> str:
        """This version's node in the lineage graph."""
        return f"dataset:{self.ref}"

    @property
    def columns(self) -> builtins.list[str]:
        """Column names in order."""
        return [c["name"] for c in self.schema]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "digest": self.content_digest,
            "artifact_digest": self.artifact_digest,
            "format": self.format,
            "num_rows": self.num_rows,
            "num_bytes": self.num_bytes,
            "schema": self.schema,
            "source": self.source,
            "description": self.description,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "properties": self.properties,
        }


def _version(row: dict[str, Any]) -> DatasetVersion:
    return DatasetVersion(
        id=row["id"],
        name=row["name"],
        version=row["version"],
        content_digest=row["content_digest"],
        artifact_digest=row["artifact_digest"],
        format=row["format"],
        num_rows=row["num_rows"],
        num_bytes=row["num_bytes"],
        schema=row["schema"],
        source=row["source"],
        description=row["description"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        lineage_artifact_id=row["lineage_artifact_id"],
        properties=row["properties"] or {},
    )


def read_source(source: DataSource) -> tuple[pa.Table, str]:
    """Read a DataFrame, Arrow table, or CSV / Parquet / JSON-lines file into an Arrow table.

    Returns:
        The table and a description of where it came from.

    Raises:
        NotFound: the file does not exist.
        InvalidInput: the file cannot be parsed, or the data has no columns or duplicate names.
    """
    if isinstance(source, pd.DataFrame):
        if source.columns.duplicated().any():
            dupes = sorted(set(source.columns[source.columns.duplicated()].astype(str)))
            raise InvalidInput(f"duplicate column names: {', '.join(dupes)}")
        try:
            table = pa.Table.from_pandas(source, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInput(f"cannot convert the DataFrame: {exc}") from None
        origin = "dataframe"
    elif isinstance(source, pa.Table):
        table, origin = source, "arrow-table"
    else:
        path = Path(source)
        if not path.is_file():
            raise NotFound(f"no such file: {path}")
        table = _read_file(path)
        origin = str(path.resolve())
    if table.num_columns == 0:
        raise InvalidInput(f"{origin}: the data has no columns")
    table = normalize_types(table)
    names = table.column_names
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput(f"{origin}: duplicate column names: {', '.join(dupes)}")
    return table, origin


def _read_file(path: Path) -> pa.Table:
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path)
        if suffix in (".csv", ".csv.gz", ".tsv", ".txt"):
            parse = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
            # An empty field is a missing value, as pandas reads it, not an empty string.
            convert = pacsv.ConvertOptions(strings_can_be_null=True)
            return pacsv.read_csv(path, parse_options=parse, convert_options=convert)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pajson.read_json(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise InvalidInput(f"{path}: cannot read as {suffix.lstrip('.')}: {exc}") from None
    raise InvalidInput(
        f"{path}: unsupported file type {suffix!r}; use .csv, .tsv, .parquet or .jsonl"
    )


def normalize_types(table: pa.Table) -> pa.Table:
    """Store text and bytes one way: readers differ (pandas gives large_string, CSV string),
    and the same values must get the same digest whichever reader they came through."""
    fields = []
    changed = False
    for f in table.schema:
        t = f.type
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
            t = pa.binary()
        changed |= t != f.type
        fields.append(f.with_type(t))
    if not changed:
        return table
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def content_digest(table: pa.Table) -> str:
    """A digest of the data itself (column names, types and values), independent of the file
    format it came in and of how Arrow laid out its buffers."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[f.name, str(f.type)] for f in table.schema]).encode())
    # Row hashes do not depend on chunking, null bitmaps or padding, unlike raw buffers.
    for batch in table.to_batches(max_chunksize=1 << 16):
        rows = pd.util.hash_pandas_object(batch.to_pandas(), index=False)
        digest.update(rows.to_numpy().tobytes())
    return digest.hexdigest()


def schema_of(table: pa.Table) -> builtins.list[dict[str, str]]:
    """The table's columns as ``[{"name": ..., "type": ...}]``."""
    return [{"name": f.name, "type": str(f.type)} for f in table.schema]


class Catalog:
    """Registers, finds and reads dataset versions; profiles and checks them."""

    def __init__(
        self, store: MetadataStore, artifacts: ArtifactStore, lineage: LineageService
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._lineage = lineage

    def register(
        self,
        name: str,
        source: DataSource,
        *,
        description: str = "",
        owner: str | None = None,
        properties: dict[str, Any] | None = None,
        parents: builtins.list[DatasetVersion] | None = None,
        produced_by: str | None = None,
    ) -> DatasetVersion:
        """Register data as the next version of dataset ``name``.

        Identical data (same content digest) returns the existing version instead of a new
        one. The data is stored as Parquet in the artifact store before any record is written,
        and the records (dataset, version, lineage) are written in one transaction.

        Args:
            parents: dataset versions this one was derived from (recorded as lineage inputs).
            produced_by: the lineage execution id that made the data, when it was not an ingest.

        Raises:
            InvalidInput: bad name, unreadable or empty data.
            NotFound: a source file does not exist.
        """
        check_name(name, "dataset name")
        table, origin = read_source(source)
        digest = content_digest(table)
        with self._store.read() as conn:
            ds = sql.dataset_by_name(conn, name)
            if ds is not None:
                existing = sql.version_by_digest(conn, ds["id"], digest)
                if existing is not None:
                    return _version(existing)
        artifact_digest, nbytes = self._write_parquet(table)
        for attempt in range(5):
            try:
                return self._insert_version(
                    name,
                    table,
                    origin,
                    digest,
                    artifact_digest,
                    nbytes,
                    description,
                    owner,
                    properties or {},
                    parents or [],
                    produced_by,
                )
            except sqlalchemy.exc.IntegrityError:
                # Another writer took the same version number (PostgreSQL); count again.
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _write_parquet(self, table: pa.Table) -> tuple[str, int]:
        fd, tmp = tempfile.mkstemp(suffix=".parquet")
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression="zstd")
            size = os.path.getsize(tmp)
            return self._artifacts.put_file(tmp), size
        finally:
            os.unlink(tmp)

    def _insert_version(
        self,
        name: str,
        table: pa.Table,
        origin: str,
        digest: str,
        artifact_digest: str,
        nbytes: int,
        description: str,
        owner: str | None,
        properties: dict[str, Any],
        parents: builtins.list[DatasetVersion],
        produced_by: str | None,
    ) -> DatasetVersion:
        user = current_user()
        with self._store.write() as conn:
            ds = sql.dataset_by_name(conn, name)
            if ds is None:
                ds = sql.create_dataset(
                    conn,
                    name=name,
                    description=description,
                    owner=owner or user,
                    properties={},
                )
            else:
                existing = sql.version_by_digest(conn, ds["id"], digest)
                if existing is not None:
                    return _version(existing)
            version = sql.next_version(conn, ds["id"])
            vid = new_id()
            ref = f"{name}@{version}"
            art = self._lineage.add_artifact(
                conn,
                kind="dataset_version",
                ref=f"dataset:{ref}",
                uri=f"sha256:{artifact_digest}",
                digest=digest,
                properties={"rows": table.num_rows, "source": origin, **properties},
            )
            row = {
                "id": vid,
                "dataset_id": ds["id"],
                "version": version,
                "content_digest": digest,
                "artifact_digest": artifact_digest,
                "format": "parquet",
                "num_rows": table.num_rows,
                "num_bytes": nbytes,
                "schema": schema_of(table),
                "source": origin,
                "description": description,
                "properties": properties,
                "created_at": now(),
                "created_by": user,
                "lineage_artifact_id": art,
            }
            sql.insert_version(conn, row)
            if produced_by is not None:
                self._lineage.link(conn, produced_by, outputs=[(art, "data")])
            else:
                self._lineage.record_execution(
                    conn,
                    kind="ingest",
                    ref=f"ingest:{vid}",
                    name=f"register {ref}",
                    inputs=[(p.lineage_artifact_id, "parent") for p in parents],
                    outputs=[(art, "data")],
                    properties={"origin": origin},
                )
            row["name"] = name
            return _version(row)

    def get(self, ref: str) -> DatasetVersion:
        """A dataset version by ``name``, ``name@N`` or ``name@latest``.

        Raises:
            NotFound: no such dataset or version.
            InvalidInput: the reference is malformed.
        """
        parsed = parse_ref(ref, "dataset reference")
        if parsed.alias is not None:
            raise InvalidInput(f"datasets have no aliases: {ref!r}; use name@N")
        with self._store.read() as conn:
            row = sql.get_version(conn, parsed.name, parsed.version)
            if row is None:
                if sql.dataset_by_name(conn, parsed.name) is None:
                    raise NotFound(f"no dataset named {parsed.name!r}")
                raise NotFound(f"dataset {parsed.name!r} has no version {parsed.version}")
        return _version(row)

    def by_id(self, version_id: str) -> DatasetVersion:
        """A dataset version by id.

        Raises:
            NotFound: no such version.
        """
        with self._store.read() as conn:
            row = sql.version_by_id(conn, version_id)
        if row is None:
            raise NotFound(f"no dataset version with id {version_id}")
        return _version(row)

    def by_lineage_ids(self, ids: builtins.list[str]) -> builtins.list[DatasetVersion]:
        """The dataset versions behind these lineage artifact ids."""
        with self._store.read() as conn:
            return [_version(r) for r in sql.versions_by_lineage_ids(conn, ids)]

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every dataset: name, owner, description, version count and latest version."""
        with self._store.read() as conn:
            return sql.list_datasets(conn)

    def versions(self, name: str | None = None) -> builtins.list[DatasetVersion]:
        """Every version (of one dataset, or all), newest first."""
        with self._store.read() as conn:
            return [_version(r) for r in sql.list_versions(conn, name)]

    def load_table(
        self, ref: str | DatasetVersion, *, columns: builtins.list[str] | None = None
    ) -> pa.Table:
        """The version's data as an Arrow table, verified against its digest.

        Raises:
            NotFound: no such version or column.
            IntegrityError: the stored file is corrupted.
        """
        dv = ref if isinstance(ref, DatasetVersion) else self.get(ref)
        path = self._artifacts.local_path(dv.artifact_digest)
        if columns is not None:
            missing = [c for c in columns if c not in dv.columns]
            if missing:
                raise NotFound(f"{dv.ref} has no column(s) {', '.join(missing)}")
        return pq.read_table(path, columns=columns)

    def load(
        self, ref: str | DatasetVersion, *, columns: builtins.list[str] | None = None
    ) -> pd.DataFrame:
        """The version's data as a pandas DataFrame (see :meth:`load_table`)."""
        return self.load_table(ref, columns=columns).to_pandas()

    def profile(self, ref: str | DatasetVersion) -> DatasetProfile:
        """The version's profile, computed on first request and stored (versions never change).

        Raises:
            NotFound: no such version.
        """
        from wellml.data.profile import DatasetProfile, profile_table

        dv = ref if isinstance(ref, DatasetVersion) else self.get(ref)
        with self._store.read() as conn:
            stored = sql.get_profile(conn, dv.id)
        if stored is not None:
            return DatasetProfile.from_dict(stored)
        prof = profile_table(self.load_table(dv))
        with self._store.write() as conn:
            sql.put_profile(conn, dv.id, prof.to_dict())
        return prof

    def check(
        self, ref: str | DatasetVersion, rules: builtins.list[dict[str, Any]]
    ) -> QualityReport:
        """Evaluate quality rules against a version and record the result.

        Args:
            rules: rule specs such as ``{"rule": "range", "column": "age", "min": 0}``.

        Raises:
            InvalidInput: a rule spec is malformed.
            NotFound: no such version.
        """
        from wellml.data.quality import evaluate, parse_rules

        dv = ref if isinstance(ref, DatasetVersion) else self.get(ref)
        try:
            parsed = parse_rules(rules)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        report = evaluate(self.load_table(dv), parsed)
        with self._store.write() as conn:
            sql.add_quality_result(
                conn,
                version_id=dv.id,
                rules=rules,
                report=report.to_dict(),
                passed=report.passed,
                user=current_user(),
            )
        return report

    def quality_results(self, ref: str | DatasetVersion) -> builtins.list[dict[str, Any]]:
        """Every recorded quality evaluation of a version, newest first."""
        dv = ref if isinstance(ref, DatasetVersion) else self.get(ref)
        with self._store.read() as conn:
            return sql.quality_results_of(conn, dv.id)
