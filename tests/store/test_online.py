"""Each online feature store passes the shared contract; URLs open the right backend."""

from __future__ import annotations

import builtins
import json
import math
import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wellml.errors import BackendUnavailable, InvalidInput
from wellml.store.online import (
    OnlineStore,
    RedisOnlineStore,
    SQLiteOnlineStore,
    _encode_key,
    open_online_store,
)
from wellml.testing.online import OnlineStoreContract

REDIS_HOST = os.environ.get("WELLML_TEST_REDIS", "127.0.0.1:6379")
# A random database, so parallel test runs on one server rarely meet; keys are prefixed anyway.
REDIS_DB = random.Random().randint(1, 15)
REDIS_URL = f"redis://{REDIS_HOST}/{REDIS_DB}"
REQUIRE = os.environ.get("WELLML_REQUIRE_SERVICES") == "1"


def _redis_unavailable(why: str) -> None:
    message = f"Redis is not available at {REDIS_HOST} ({why})"
    if REQUIRE:
        pytest.fail(message + " and WELLML_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def _drop_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
    finally:
        client.close()


class TestSQLiteOnline(OnlineStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[OnlineStore]:
        s = SQLiteOnlineStore(tmp_path / "online.db")
        yield s
        s.close()

    def test_data_persists_across_opens_and_uses_wal(self, tmp_path: Path) -> None:
        path = tmp_path / "sub" / "online.db"
        with SQLiteOnlineStore(path) as s:
            s.write("v", (1,), {"a": 1.5}, 1.0)
        with SQLiteOnlineStore(path) as s:
            assert s.read("v", (1,)) == {"a": 1.5}
            assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_closed_store_refuses_calls(self, tmp_path: Path) -> None:
        s = SQLiteOnlineStore(tmp_path / "online.db")
        s.close()
        s.close()  # idempotent
        with pytest.raises(BackendUnavailable):
            s.read("v", (1,))

    def test_unopenable_path_is_backend_unavailable(self, tmp_path: Path) -> None:
        (tmp_path / "dir.db").mkdir()
        with pytest.raises(BackendUnavailable):
            SQLiteOnlineStore(tmp_path / "dir.db")


@pytest.mark.redis
class TestRedisOnline(OnlineStoreContract):
    @pytest.fixture
    def redis_url(self) -> str:
        try:
            import redis
        except ImportError:
            _redis_unavailable("redis-py is not installed")
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            client.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            _redis_unavailable(str(exc))
        finally:
            client.close()
        return REDIS_URL

    @pytest.fixture
    def store(self, redis_url: str) -> Iterator[OnlineStore]:
        prefix = f"wellml-test-{uuid.uuid4().hex[:12]}"
        s = RedisOnlineStore(redis_url, prefix=prefix)
        try:
            yield s
        finally:
            s.close()
            _drop_prefix(redis_url, prefix)

    def test_prefixes_are_isolated(self, store: RedisOnlineStore, redis_url: str) -> None:
        other_prefix = f"{store.prefix}-other"
        other = RedisOnlineStore(redis_url, prefix=other_prefix)
        try:
            store.write("v", (1,), {"a": "mine"}, 1.0)
            assert other.read("v", (1,)) is None
            other.write("v", (1,), {"a": "theirs"}, 1.0)
            other.delete_view("v")
            assert store.read("v", (1,)) == {"a": "mine"}
        finally:
            other.close()
            _drop_prefix(redis_url, other_prefix)

    def test_layout_is_one_hash_per_key_with_ts(
        self, store: RedisOnlineStore, redis_url: str
    ) -> None:
        import redis

        store.write("v", ("u", 1), {"a": 1.5, "b": "x"}, 12.5)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            stored = client.hgetall(f'{store.prefix}:v:["u",1]')
        finally:
            client.close()
        assert stored == {"__ts": "12.5", "a": "d1.5", "b": "sx"}

    def test_write_table_writes_the_same_layout(
        self, store: RedisOnlineStore, redis_url: str
    ) -> None:
        import pyarrow as pa
        import redis

        table = pa.table(
            {
                "u": ["u"],
                "n": [1],
                "ts": pa.array([12_500], pa.timestamp("ms")),
                "a": [1.5],
                "b": ['x"y'],
                "c": pa.array([None], pa.int64()),
            }
        )
        store.write_table(
            "v",
            table,
            key_columns=["u", "n"],
            timestamp_column="ts",
            feature_columns=["a", "b", "c"],
        )
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            stored = client.hgetall(f'{store.prefix}:v:["u",1]')
        finally:
            client.close()
        assert stored == {"__ts": "12.5", "a": "d1.5", "b": 'sx"y', "c": "N"}

    def test_open_online_store_takes_a_prefix(self, redis_url: str) -> None:
        prefix = f"wellml-test-{uuid.uuid4().hex[:12]}"
        store = open_online_store(f"{redis_url}?prefix={prefix}")
        try:
            assert isinstance(store, RedisOnlineStore)
            assert store.prefix == prefix
            store.write("v", (1,), {"a": 1}, 1.0)
            assert store.read("v", (1,)) == {"a": 1}
        finally:
            store.close()
            _drop_prefix(redis_url, prefix)


def test_open_sqlite_url(tmp_path: Path) -> None:
    store = open_online_store(f"sqlite:///{tmp_path}/online.db")
    try:
        assert isinstance(store, SQLiteOnlineStore)
        assert store.path == f"{tmp_path}/online.db"
        store.write("v", (1,), {"a": 1}, 1.0)
    finally:
        store.close()
    assert (tmp_path / "online.db").exists()


@pytest.mark.parametrize(
    "url", ["postgresql://x/y", "s3://bucket/online", "online.db", "", "memory://"]
)
def test_unknown_scheme_lists_the_known_ones(url: str) -> None:
    with pytest.raises(InvalidInput, match=r"sqlite:///.*redis://"):
        open_online_store(url)


def test_unknown_scheme_error_hides_the_password() -> None:
    with pytest.raises(InvalidInput) as info:
        open_online_store("mongodb://user:secret@host/db")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://relative.db"])
def test_sqlite_url_without_path_is_invalid(url: str) -> None:
    with pytest.raises(InvalidInput, match="sqlite:///path"):
        open_online_store(url)


def test_unreachable_redis_names_the_address() -> None:
    # Port 1 on localhost refuses connections at once; the password must not leak.
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1") as info:
        open_online_store("redis://:hunter2@127.0.0.1:1/3")
    assert "hunter2" not in str(info.value)


def test_missing_redis_py_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "redis" or name.startswith("redis."):
            raise ImportError("No module named 'redis'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(BackendUnavailable, match=r"pip install 'wellml\[redis\]'"):
        RedisOnlineStore("redis://127.0.0.1:6379/0")


def test_invalid_redis_prefix() -> None:
    with pytest.raises(InvalidInput):
        RedisOnlineStore("redis://127.0.0.1:1/0", prefix="a*")


@pytest.mark.parametrize(
    "key",
    [
        (1,),
        (-(2**70), "a"),
        ('x"\\\n\u2028é✓\x00',),
        (1.0, True, None, 1),
        (math.nan, math.inf, -0.0),
        ("user", 1, False),
    ],
)
def test_key_encoding_is_compact_json(key: tuple[Any, ...]) -> None:
    # The fast path must spell keys exactly as JSON does, or stored keys would stop matching.
    assert _encode_key(key) == json.dumps(list(key), separators=(",", ":"), ensure_ascii=False)
