"""The lineage graph: record what each write used and produced, and walk it.

Nodes are artifacts (dataset versions, model versions, endpoints, reports, ...) and executions
(ingests, runs, deployments, monitor runs, ...); an edge is an event: an artifact is an input
of an execution, or an execution outputs an artifact. Edges point the way data flows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection

from wellml.config import current_user
from wellml.errors import NotFound
from wellml.lineage.provenance import code_version, environment
from wellml.store import lineage as sql
from wellml.store.metadata import MetadataStore

Direction = Literal["upstream", "downstream", "both"]


@dataclass(frozen=True)
class LineageNode:
    """One node: ``type`` is "artifact" or "execution"; ``kind`` says what it stands for."""

    id: str
    type: str
    kind: str
    ref: str
    created_at: float
    properties: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    user: str | None = None
    code_commit: str | None = None
    code_dirty: bool | None = None
    environment_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "kind": self.kind,
            "ref": self.ref,
            "created_at": self.created_at,
            "properties": self.properties,
        }
        if self.type == "execution":
            out.update(
                status=self.status,
                user=self.user,
                code_commit=self.code_commit,
                code_dirty=self.code_dirty,
                environment_id=self.environment_id,
            )
        else:
            out["user"] = self.user
        return out


@dataclass(frozen=True)
class LineageEdge:
    """Data flows from ``source`` to ``target``; ``role`` says how (train, model, ...)."""

    source: str
    target: str
    role: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {"source": self.source, "target": self.target, "role": self.role}


@dataclass(frozen=True)
class LineageGraph:
    """A subgraph around ``root``."""

    root: str
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]

    def refs(self) -> set[str]:
        """Every node's ref."""
        return {n.ref for n in self.nodes}

    def by_kind(self, kind: str) -> list[LineageNode]:
        """The nodes of one kind."""
        return [n for n in self.nodes if n.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "root": self.root,
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [e.to_dict() for e in self.edges],
        }


def _artifact_node(row: dict[str, Any]) -> LineageNode:
    return LineageNode(
        id=row["id"],
        type="artifact",
        kind=row["kind"],
        ref=row["ref"],
        created_at=row["created_at"],
        properties=row["properties"] or {},
        user=row["created_by"],
    )


def _execution_node(row: dict[str, Any]) -> LineageNode:
    return LineageNode(
        id=row["id"],
        type="execution",
        kind=row["kind"],
        ref=row["ref"],
        created_at=row["started_at"],
        properties=row["properties"] or {},
        status=row["status"],
        user=row["user"],
        code_commit=row["code_commit"],
        code_dirty=row["code_dirty"],
        environment_id=row["environment_id"],
    )


class LineageService:
    """Records lineage inside other capabilities' transactions, and answers graph queries."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    # -- recording (called with the caller's open write connection) -------------------------

    def add_artifact(
        self,
        conn: Connection,
        *,
        kind: str,
        ref: str,
        uri: str | None = None,
        digest: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> str:
        """Add an artifact node; return its id."""
        return sql.add_artifact(
            conn,
            kind=kind,
            ref=ref,
            uri=uri,
            digest=digest,
            properties=properties,
            user=current_user(),
        )

    def record_execution(
        self,
        conn: Connection,
        *,
        kind: str,
        ref: str,
        name: str | None = None,
        inputs: Iterable[tuple[str, str]] = (),
        outputs: Iterable[tuple[str, str]] = (),
        status: str = "completed",
        properties: dict[str, Any] | None = None,
        started_at: float | None = None,
    ) -> str:
        """Add an execution with its code version, environment and user; link its artifacts.

        Args:
            inputs: ``(artifact_id, role)`` pairs the execution read.
            outputs: ``(artifact_id, role)`` pairs the execution produced.
        """
        env_id = sql.ensure_environment(conn, environment())
        eid = sql.add_execution(
            conn,
            kind=kind,
            ref=ref,
            name=name,
            status=status,
            user=current_user(),
            code=code_version(),
            environment_id=env_id,
            properties=properties,
            started_at=started_at,
        )
        self.link(conn, eid, inputs=inputs, outputs=outputs)
        return eid

    def link(
        self,
        conn: Connection,
        execution_id: str,
        *,
        inputs: Iterable[tuple[str, str]] = (),
        outputs: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Add input and output artifacts to an existing execution."""
        events = [(a, "input", r) for a, r in inputs] + [(a, "output", r) for a, r in outputs]
        sql.add_events(conn, execution_id, events)

    def finish(self, conn: Connection, execution_id: str, *, status: str) -> None:
        """Mark an execution ended."""
        sql.finish_execution(conn, execution_id, status=status)

    # -- queries -----------------------------------------------------------------------------

    def node(self, ref: str) -> LineageNode:
        """The node with this ref.

        Raises:
            NotFound: no node has this ref.
        """
        with self._store.read() as conn:
            return self._node(conn, ref)

    def _node(self, conn: Connection, ref: str) -> LineageNode:
        row = sql.artifact_by_ref(conn, ref)
        if row:
            return _artifact_node(row)
        row = sql.execution_by_ref(conn, ref)
        if row:
            return _execution_node(row)
        raise NotFound(f"no lineage node {ref!r}")

    def upstream(self, ref: str, *, depth: int | None = None) -> LineageGraph:
        """Everything ``ref`` was made from, transitively."""
        return self.walk(ref, direction="upstream", depth=depth)

    def downstream(self, ref: str, *, depth: int | None = None) -> LineageGraph:
        """Everything made from ``ref``, transitively."""
        return self.walk(ref, direction="downstream", depth=depth)

    def walk(
        self, ref: str, *, direction: Direction = "both", depth: int | None = None
    ) -> LineageGraph:
        """Breadth-first walk from ``ref``: one query per level, not per node.

        Raises:
            NotFound: no node has this ref.
        """
        with self._store.read() as conn:
            root = self._node(conn, ref)
            nodes: dict[str, LineageNode] = {root.id: root}
            edges: set[LineageEdge] = set()
            dirs: Sequence[str] = (
                ("upstream", "downstream") if direction == "both" else (direction,)
            )
            for d in dirs:
                self._walk_one_way(conn, root, d, depth, nodes, edges)
        return LineageGraph(
            root=root.ref,
            nodes=tuple(sorted(nodes.values(), key=lambda n: (n.created_at, n.ref))),
            edges=tuple(sorted(edges, key=lambda e: (e.source, e.target))),
        )

    def _walk_one_way(
        self,
        conn: Connection,
        root: LineageNode,
        direction: str,
        depth: int | None,
        nodes: dict[str, LineageNode],
        edges: set[LineageEdge],
    ) -> None:
        seen = {root.id}
        frontier = [root]
        level = 0
        while frontier and (depth is None or level < depth):
            level += 1
            art_ids = [n.id for n in frontier if n.type == "artifact"]
            exe_ids = [n.id for n in frontier if n.type == "execution"]
            next_art: set[str] = set()
            next_exe: set[str] = set()
            # Upstream of an artifact are the executions that output it; downstream, those
            # that read it. Upstream of an execution are its inputs; downstream, its outputs.
            want_art_dir = "output" if direction == "upstream" else "input"
            for ev in sql.events_of_artifacts(conn, art_ids):
                if ev["direction"] == want_art_dir:
                    next_exe.add(ev["execution_id"])
                    edges.add(_edge(ev))
            want_exe_dir = "input" if direction == "upstream" else "output"
            for ev in sql.events_of_executions(conn, exe_ids):
                if ev["direction"] == want_exe_dir:
                    next_art.add(ev["artifact_id"])
                    edges.add(_edge(ev))
            frontier = []
            for row in sql.executions_by_ids(conn, sorted(next_exe - seen)):
                node = _execution_node(row)
                nodes.setdefault(node.id, node)
                frontier.append(node)
            for row in sql.artifacts_by_ids(conn, sorted(next_art - seen)):
                node = _artifact_node(row)
                nodes.setdefault(node.id, node)
                frontier.append(node)
            seen.update(n.id for n in frontier)

    def path(self, source: str, target: str) -> list[LineageNode]:
        """The shortest data-flow path from ``source`` to ``target`` (empty if none).

        Raises:
            NotFound: either ref is unknown.
        """
        graph = self.downstream(source)
        by_ref = {n.ref: n for n in graph.nodes}
        if target not in by_ref:
            self.node(target)  # raises NotFound for an unknown ref
            return []
        by_id = {n.id: n for n in graph.nodes}
        succ: dict[str, list[str]] = {}
        for e in graph.edges:
            succ.setdefault(e.source, []).append(e.target)
        start, goal = by_ref[source].id, by_ref[target].id
        prev: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            cur = queue.popleft()
            if cur == goal:
                break
            for nxt in sorted(succ.get(cur, [])):
                if nxt not in prev:
                    prev[nxt] = cur
                    queue.append(nxt)
        hops: list[LineageNode] = []
        at: str | None = goal
        while at is not None:
            hops.append(by_id[at])
            at = prev[at]
        return hops[::-1]


def _edge(ev: dict[str, Any]) -> LineageEdge:
    if ev["direction"] == "input":
        return LineageEdge(ev["artifact_id"], ev["execution_id"], ev["role"])
    return LineageEdge(ev["execution_id"], ev["artifact_id"], ev["role"])
