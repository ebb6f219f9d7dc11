"""Store URLs in messages and records never show a password."""

from __future__ import annotations

import pytest

from wellml.store.metadata import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://ana:s3cr@t@db:5432/ml", "postgresql+psycopg://ana:***@db:5432/ml"),
        ("redis://:pw@cache:6379/0?prefix=x", "redis://:***@cache:6379/0?prefix=x"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("sqlite:////tmp/metadata.db", "sqlite:////tmp/metadata.db"),
        ("postgresql://ana@db/ml", "postgresql://ana@db/ml"),
    ],
)
def test_passwords_are_redacted_and_nothing_else_changes(url: str, shown: str) -> None:
    assert redact_url(url) == shown
