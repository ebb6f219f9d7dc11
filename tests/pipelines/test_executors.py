"""Every executor passes the executor contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from wellml.pipelines.executors import Executor, LocalExecutor, ProcessExecutor, RayExecutor
from wellml.testing.executors import ExecutorContract


class TestLocal(ExecutorContract):
    @pytest.fixture
    def executor(self) -> Iterator[Executor]:
        with LocalExecutor() as exe:
            yield exe


class TestProcessPool(ExecutorContract):
    @pytest.fixture(scope="class")
    def executor(self) -> Iterator[Executor]:
        with ProcessExecutor(2) as exe:
            yield exe


@pytest.mark.ray
class TestRay(ExecutorContract):
    @pytest.fixture
    def executor(self, ray_local: Any) -> Iterator[Executor]:
        with RayExecutor() as exe:
            yield exe
