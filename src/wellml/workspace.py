"""The workspace: the handle that owns a project's stores and hands out its services."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wellml.config import (
    SPEC_FILE,
    STATE_DIR,
    ProjectSpec,
    dump_spec,
    find_workspace_root,
    load_spec,
    parse_spec,
    store_urls,
)
from wellml.errors import AlreadyExists
from wellml.lineage.graph import LineageService
from wellml.store.artifacts import ArtifactStore
from wellml.store.metadata import MetadataStore

if TYPE_CHECKING:
    from wellml.clarify.service import Clarify
    from wellml.data.catalog import Catalog
    from wellml.features.service import FeatureStore
    from wellml.lens.engine import LensReviewer
    from wellml.monitoring.service import Monitoring
    from wellml.pipelines.service import Pipelines
    from wellml.registry.service import Registry
    from wellml.serving.service import Endpoints
    from wellml.tracking.service import Tracking
    from wellml.tuning.service import Tuning


class Workspace:
    """A wellml project: ``wellml.yaml`` plus its metadata and artifact stores.

    Services are created on first use: ``ws.data``, ``ws.tracking``, ``ws.registry``,
    ``ws.features``, ``ws.endpoints``, ``ws.monitoring``, ``ws.pipelines``, ``ws.clarify``,
    ``ws.lineage`` and ``ws.lens``.
    """

    def __init__(self, root: Path, spec: ProjectSpec) -> None:
        self.root = root
        self.spec = spec
        self.urls = store_urls(spec, root)
        self.metadata = MetadataStore(self.urls.metadata)
        self.artifacts = ArtifactStore(self.urls.artifacts)

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str] = ".",
        *,
        name: str | None = None,
        owner: str = "",
        spec: dict[str, Any] | None = None,
    ) -> Workspace:
        """Create a workspace in ``path``: ``wellml.yaml`` and the ``.wellml/`` folder.

        Raises:
            AlreadyExists: ``path`` already has a ``wellml.yaml``.
            InvalidInput: the spec is invalid.
        """
        root = Path(path).expanduser().resolve()
        spec_path = root / SPEC_FILE
        if spec_path.exists():
            raise AlreadyExists(f"{spec_path} already exists")
        data = dict(spec or {})
        data.setdefault("name", name or _name_from(root))
        if owner:
            data.setdefault("owner", owner)
        parsed = parse_spec(data, source=str(spec_path))
        root.mkdir(parents=True, exist_ok=True)
        (root / STATE_DIR).mkdir(exist_ok=True)
        (root / STATE_DIR / ".gitignore").write_text("*\n")
        tmp = spec_path.with_suffix(".yaml.tmp")
        tmp.write_text(dump_spec(parsed), encoding="utf-8")
        os.replace(tmp, spec_path)
        return cls(root, parsed)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        """Open the workspace at ``path``, or the one found from the current folder upward
        (or ``WELLML_WORKSPACE``).

        Raises:
            NotFound: no workspace there.
            InvalidInput: its ``wellml.yaml`` is invalid.
            BackendUnavailable: a store cannot be reached.
        """
        if path is not None:
            root = Path(path).expanduser().resolve()
            if not (root / SPEC_FILE).is_file():
                root = find_workspace_root(root)
        else:
            root = find_workspace_root()
        return cls(root, load_spec(root / SPEC_FILE))

    def close(self) -> None:
        """Release database and online-store connections."""
        if "features" in self.__dict__:
            self.features.close()
        self.metadata.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r}, name={self.spec.name!r})"

    @property
    def state_dir(self) -> Path:
        """The ``.wellml`` folder."""
        return self.root / STATE_DIR

    # -- services ----------------------------------------------------------------------------

    @functools.cached_property
    def lineage(self) -> LineageService:
        """The lineage graph."""
        return LineageService(self.metadata)

    @functools.cached_property
    def data(self) -> Catalog:
        """The data catalog."""
        from wellml.data.catalog import Catalog

        return Catalog(self.metadata, self.artifacts, self.lineage)

    @functools.cached_property
    def features(self) -> FeatureStore:
        """The feature store."""
        from wellml.features.service import FeatureStore

        return FeatureStore(self)

    @functools.cached_property
    def tracking(self) -> Tracking:
        """Experiments and runs."""
        from wellml.tracking.service import Tracking

        return Tracking(self.metadata, self.artifacts, self.lineage)

    @functools.cached_property
    def registry(self) -> Registry:
        """The model registry."""
        from wellml.registry.service import Registry

        return Registry(self.metadata, self.artifacts, self.lineage)

    @functools.cached_property
    def endpoints(self) -> Endpoints:
        """Real-time endpoints."""
        from wellml.serving.service import Endpoints

        return Endpoints(self)

    @functools.cached_property
    def monitoring(self) -> Monitoring:
        """Baselines and monitors."""
        from wellml.monitoring.service import Monitoring

        return Monitoring(self)

    @functools.cached_property
    def pipelines(self) -> Pipelines:
        """Pipeline runs."""
        from wellml.pipelines.service import Pipelines

        return Pipelines(self)

    @functools.cached_property
    def tuning(self) -> Tuning:
        """Hyperparameter tuning and AutoML."""
        from wellml.tuning.service import Tuning

        return Tuning(self)

    @functools.cached_property
    def clarify(self) -> Clarify:
        """Bias and explanation reports."""
        from wellml.clarify.service import Clarify

        return Clarify(self)

    @functools.cached_property
    def lens(self) -> LensReviewer:
        """The lens review."""
        from wellml.lens.engine import LensReviewer

        return LensReviewer(self)


def _name_from(root: Path) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.name).strip("-.") or "project"
    return name if name[0].isalnum() else f"p{name}"


def connect(path: str | os.PathLike[str] | None = None) -> Workspace:
    """Open the workspace at ``path`` or the one around the current folder."""
    return Workspace.open(path)
