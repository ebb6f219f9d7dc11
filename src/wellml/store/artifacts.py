"""The artifact store: content-addressed blobs behind fsspec.

A blob's name is the sha256 of its bytes, so identical content is stored once. Writes go to a
temporary name first and are moved into place, so a killed writer never leaves a half blob
under a real name. Every read verifies the digest: a corrupted blob raises
:class:`~wellml.errors.IntegrityError` and is never served.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import fsspec

from wellml.errors import BackendUnavailable, IntegrityError, InvalidInput, NotFound

_CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    """Content-addressed blob storage on any fsspec filesystem (a local folder by default)."""

    def __init__(self, url: str) -> None:
        """Open the store at ``url`` (a path or an fsspec URL such as ``s3://bucket/prefix``).

        Raises:
            BackendUnavailable: the URL's filesystem is not installed.
        """
        try:
            fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise BackendUnavailable(f"artifact store {url}: {exc}") from exc
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.is_local = "file" in _protocols(fs)
        self.fs.makedirs(self._join("tmp"), exist_ok=True)
        # Digests verified by this process, keyed by (path, size, mtime): a file that has not
        # changed since it was last hashed need not be hashed again.
        self._verified: dict[str, tuple[int, float]] = {}

    # -- writing ---------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its digest."""
        digest = hashlib.sha256(data).hexdigest()
        if not self.exists(digest):
            tmp = self._tmp_name()
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
            self._move_into_place(tmp, digest)
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store a local file and return its digest.

        Raises:
            NotFound: the file does not exist.
        """
        if not os.path.isfile(path):
            raise NotFound(f"no such file: {path}")
        digest = sha256_file(path)
        if not self.exists(digest):
            tmp = self._tmp_name()
            self.fs.put_file(os.fspath(path), tmp)
            self._move_into_place(tmp, digest)
        return digest

    @contextmanager
    def writer(self) -> Iterator[_BlobWriter]:
        """Stream a blob in; its digest is on the writer after the block exits."""
        tmp = self._tmp_name()
        writer = _BlobWriter(self.fs.open(tmp, "wb"))
        try:
            yield writer
            writer.close()
        except BaseException:
            writer.close()
            self.fs.rm(tmp)
            raise
        if self.exists(writer.digest):
            self.fs.rm(tmp)
        else:
            self._move_into_place(tmp, writer.digest)

    # -- reading ---------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        """Whether a blob with this digest is stored."""
        return bool(self.fs.exists(self.path(digest)))

    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, verified.

        Raises:
            NotFound: no such blob.
            IntegrityError: the stored bytes do not match the digest.
        """
        path = self.path(digest)
        try:
            with self.fs.open(path, "rb") as fh:
                data: bytes = fh.read()
        except FileNotFoundError:
            raise NotFound(f"artifact {digest} is missing from {self.url}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"artifact {digest} is corrupted: its content no longer matches")
        return data

    def open(self, digest: str) -> IO[bytes]:
        """A verified, seekable binary file object for the blob."""
        if self.is_local:
            return open(self.local_path(digest), "rb")
        return io.BytesIO(self.get_bytes(digest))

    def local_path(self, digest: str) -> Path:
        """A local path holding the verified blob (the blob itself on a local store).

        Raises:
            NotFound: no such blob.
            IntegrityError: the stored bytes do not match the digest.
        """
        if not self.is_local:
            cache = Path(os.environ.get("WELLML_CACHE", Path.home() / ".cache" / "wellml"))
            target = cache / "blobs" / digest
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(f".{uuid.uuid4().hex}.tmp")
                tmp.write_bytes(self.get_bytes(digest))
                os.replace(tmp, target)
            path = target
        else:
            path = Path(self.path(digest))
        self.verify(digest, path)
        return path

    def verify(self, digest: str, path: Path | None = None) -> None:
        """Check that a blob's bytes still match its digest.

        Raises:
            NotFound: no such blob.
            IntegrityError: the stored bytes do not match the digest.
        """
        path = path or Path(self.path(digest))
        try:
            st = path.stat()
        except FileNotFoundError:
            raise NotFound(f"artifact {digest} is missing from {self.url}") from None
        key = str(path)
        if self._verified.get(key) == (st.st_size, st.st_mtime):
            return
        if sha256_file(path) != digest:
            raise IntegrityError(f"artifact {digest} is corrupted: its content no longer matches")
        self._verified[key] = (st.st_size, st.st_mtime)

    def size(self, digest: str) -> int:
        """The blob's size in bytes."""
        try:
            return int(self.fs.size(self.path(digest)))
        except FileNotFoundError:
            raise NotFound(f"artifact {digest} is missing from {self.url}") from None

    def path(self, digest: str) -> str:
        """Where a blob lives (``sha256/ab/cdef...``).

        Raises:
            InvalidInput: ``digest`` is not a sha256 hex digest.
        """
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise InvalidInput(f"not a sha256 digest: {digest!r}")
        return self._join("sha256", digest[:2], digest[2:])

    # -- internals -------------------------------------------------------------------------

    def _join(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def _tmp_name(self) -> str:
        return self._join("tmp", uuid.uuid4().hex)

    def _move_into_place(self, tmp: str, digest: str) -> None:
        target = self.path(digest)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        if self.is_local:
            os.replace(tmp, target)  # atomic on one filesystem
        else:
            self.fs.mv(tmp, target)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"


class _BlobWriter:
    """A write-only file that hashes what passes through it."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest = ""

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        return int(self._fh.write(data))

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.digest = self._hash.hexdigest()


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def copy_local(store: ArtifactStore, digest: str, target: str | os.PathLike[str]) -> None:
    """Copy a verified blob to a local path."""
    with store.open(digest) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
