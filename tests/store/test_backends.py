"""Each metadata and artifact backend passes the shared contract."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from wellml.testing import ArtifactStoreContract, MetadataStoreContract


class TestSQLiteMetadata(MetadataStoreContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/metadata.db"


@pytest.mark.postgres
class TestPostgresMetadata(MetadataStoreContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


class TestLocalArtifacts(ArtifactStoreContract):
    @pytest.fixture
    def artifact_url(self, tmp_path: Path) -> str:
        return str(tmp_path / "artifacts")


class TestMemoryArtifacts(ArtifactStoreContract):
    @pytest.fixture
    def artifact_url(self) -> str:
        return f"memory://wellml-{uuid.uuid4().hex}"
