"""Fixtures of the feature store tests: a workspace with a small activity dataset, and Redis."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from wellml.workspace import Workspace

REDIS_HOST = os.environ.get("WELLML_TEST_REDIS", "127.0.0.1:6379")
REQUIRE = os.environ.get("WELLML_REQUIRE_SERVICES") == "1"


def activity_frame(customers: int = 20, months: int = 6, seed: int = 0) -> pd.DataFrame:
    """Monthly activity rows per customer, with a float, an int, a string and a bool feature."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=months, freq="MS")
    n = customers * months
    return pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(1, customers + 1), months),
            "event_timestamp": np.tile(stamps.to_numpy(), customers),
            "spend": rng.normal(50, 10, n).round(2),
            "calls": rng.integers(0, 10, n),
            "plan": rng.choice(["basic", "pro"], n),
            "active": rng.random(n) > 0.3,
        }
    )


@pytest.fixture
def activity() -> pd.DataFrame:
    """The activity rows registered by ``ws``."""
    return activity_frame()


@pytest.fixture
def ws(workspace: Workspace, activity: pd.DataFrame) -> Workspace:
    """A workspace with dataset ``activity`` registered."""
    workspace.data.register("activity", activity)
    return workspace


@pytest.fixture
def redis_online_url() -> Iterator[str]:
    """An online-store URL on the real Redis, under a fresh prefix that is dropped afterwards."""
    try:
        import redis
    except ImportError:
        message = "Redis is not available (redis-py is not installed)"
        if REQUIRE:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    db = random.Random().randint(1, 15)
    url = f"redis://{REDIS_HOST}/{db}"
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        message = f"Redis is not available at {REDIS_HOST} ({exc})"
        if REQUIRE:
            pytest.fail(message + " and WELLML_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)
    prefix = f"wellml-test-{uuid.uuid4().hex[:10]}"
    try:
        yield f"{url}?prefix={prefix}"
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
        client.close()
