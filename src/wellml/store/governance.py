"""SQL for governance: access tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from wellml.store.metadata import now
from wellml.store.tables import tokens


def insert_token(conn: Connection, row: dict[str, Any]) -> None:
    """Store a token (only its hash)."""
    conn.execute(insert(tokens).values(row))


def token_by_hash(conn: Connection, secret_hash: str) -> dict[str, Any] | None:
    """The token with this secret hash."""
    row = conn.execute(select(tokens).where(tokens.c.secret_hash == secret_hash)).first()
    return dict(row._mapping) if row else None


def touch_token(conn: Connection, token_id: str) -> None:
    """Record a token's use."""
    conn.execute(update(tokens).where(tokens.c.id == token_id).values(last_used_at=now()))


def revoke_token(conn: Connection, token_id: str) -> int:
    """Revoke a token; return how many rows changed."""
    res = conn.execute(
        update(tokens)
        .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    return int(res.rowcount or 0)


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Every token (without secrets)."""
    rows = conn.execute(select(tokens).order_by(tokens.c.created_at))
    return [{k: v for k, v in r._mapping.items() if k != "secret_hash"} for r in rows]
