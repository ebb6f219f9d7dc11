"""The contract every artifact store backend passes (local folder, memory, S3, ...)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from wellml.errors import IntegrityError, InvalidInput, NotFound
from wellml.store.artifacts import ArtifactStore


class ArtifactStoreContract:
    """Subclass and provide an ``artifact_url`` fixture naming an empty location."""

    @pytest.fixture
    def artifact_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def store(self, artifact_url: str) -> ArtifactStore:
        return ArtifactStore(artifact_url)

    def corrupt(self, store: ArtifactStore, digest: str) -> None:
        """Overwrite a stored blob behind the store's back."""
        with store.fs.open(store.path(digest), "wb") as fh:
            fh.write(b"tampered")

    def test_blobs_are_named_by_their_sha256(self, store: ArtifactStore) -> None:
        digest = store.put_bytes(b"hello")
        assert digest == hashlib.sha256(b"hello").hexdigest()
        assert store.get_bytes(digest) == b"hello"
        assert store.size(digest) == 5

    def test_identical_content_is_stored_once(self, store: ArtifactStore) -> None:
        a = store.put_bytes(b"same")
        b = store.put_bytes(b"same")
        assert a == b
        blobs = [p for p in store.fs.find(store.root) if "/sha256/" in p]
        assert len(blobs) == 1

    def test_files_and_streams_round_trip(self, store: ArtifactStore, tmp_path: Path) -> None:
        f = tmp_path / "x.bin"
        f.write_bytes(b"\x00\x01" * 1000)
        digest = store.put_file(f)
        with store.writer() as w:
            w.write(b"\x00\x01" * 500)
            w.write(b"\x00\x01" * 500)
        assert w.digest == digest
        with store.open(digest) as fh:
            assert fh.read() == f.read_bytes()

    def test_a_corrupted_blob_is_never_served(self, store: ArtifactStore) -> None:
        digest = store.put_bytes(b"precious")
        self.corrupt(store, digest)
        with pytest.raises(IntegrityError):
            store.get_bytes(digest)
        with pytest.raises(IntegrityError):
            store.local_path(digest)

    def test_unknown_and_malformed_digests(self, store: ArtifactStore) -> None:
        with pytest.raises(NotFound):
            store.get_bytes("0" * 64)
        with pytest.raises(InvalidInput):
            store.get_bytes("../../etc/passwd")

    def test_a_failed_stream_leaves_nothing_behind(self, store: ArtifactStore) -> None:
        with pytest.raises(RuntimeError), store.writer() as w:
            w.write(b"partial")
            raise RuntimeError("writer died")
        assert not [p for p in store.fs.find(store.root) if "/sha256/" in p]
        assert not store.fs.find(store.root + "/tmp")
