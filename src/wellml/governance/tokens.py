"""Access tokens: issued per consumer, scoped, expiring, revocable, optionally rate-limited;
only hashes are stored."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from typing import Any

from wellml.errors import InvalidInput, NotFound, PermissionDenied, Unauthenticated
from wellml.names import check_name
from wellml.store import governance as sql
from wellml.store.metadata import MetadataStore, new_id, now

TOKEN_PREFIX = "wml_"
DEFAULT_TTL_DAYS = 90


@dataclass(frozen=True)
class IssuedToken:
    """A token as issued: ``secret`` is shown once and never stored."""

    id: str
    principal: str
    scopes: tuple[str, ...]
    expires_at: float | None
    secret: str
    rate_limit: dict[str, Any] | None = None  # {"rate": requests a second, "burst": n}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    store: MetadataStore,
    principal: str,
    scopes: list[str],
    *,
    ttl_days: float | None = DEFAULT_TTL_DAYS,
    rate_limit: tuple[float, int | None] | None = None,
) -> IssuedToken:
    """Issue a token for ``principal`` with ``scopes`` such as ``invoke:churn``.

    Args:
        rate_limit: ``(requests per second, burst)`` for this token; None leaves the limit to
            each endpoint's configuration.

    Raises:
        InvalidInput: a bad principal name, no scopes, a wildcard scope or a bad rate limit.
    """
    check_name(principal, "principal")
    if not scopes:
        raise InvalidInput("a token needs at least one scope, e.g. invoke:ENDPOINT")
    for scope in scopes:
        action, _, target = scope.partition(":")
        if not action or not target or "*" in scope:
            raise InvalidInput(f"invalid scope {scope!r}: write ACTION:NAME, no wildcards")
    limit = None
    if rate_limit is not None:
        rate, burst = rate_limit
        if not (rate > 0 and math.isfinite(rate)) or (burst is not None and burst < 1):
            raise InvalidInput("a rate limit needs requests per second > 0 and a burst >= 1")
        limit = {"rate": float(rate), "burst": burst}
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tid = new_id()
    expires = None if ttl_days is None else now() + ttl_days * 86400
    with store.write() as conn:
        sql.insert_token(
            conn,
            {
                "id": tid,
                "principal": principal,
                "secret_hash": _hash(secret),
                "scopes": list(scopes),
                "created_at": now(),
                "expires_at": expires,
                "revoked_at": None,
                "last_used_at": None,
                "rate_limit": limit,
            },
        )
    return IssuedToken(tid, principal, tuple(scopes), expires, secret, limit)


def authenticate(store: MetadataStore, secret: str | None, scope: str) -> dict[str, Any]:
    """Check a presented token against a required scope; return the token record.

    Raises:
        Unauthenticated: no token, or an unknown, revoked or expired one.
        PermissionDenied: the token's scopes do not cover ``scope``.
    """
    if not secret:
        raise Unauthenticated("a token is required: send 'Authorization: Bearer <token>'")
    with store.read() as conn:
        token = sql.token_by_hash(conn, _hash(secret))
    if token is None:
        raise Unauthenticated("unknown token")
    if token["revoked_at"] is not None:
        raise Unauthenticated("the token has been revoked")
    if token["expires_at"] is not None and token["expires_at"] < now():
        raise Unauthenticated("the token has expired")
    if scope not in token["scopes"]:
        raise PermissionDenied(f"the token's scopes do not include {scope}")
    return token


def record_use(store: MetadataStore, token_id: str) -> None:
    """Stamp a token's last use."""
    with store.write() as conn:
        sql.touch_token(conn, token_id)


def revoke_token(store: MetadataStore, token_id: str) -> None:
    """Revoke a token.

    Raises:
        NotFound: no such active token.
    """
    with store.write() as conn:
        if not sql.revoke_token(conn, token_id):
            raise NotFound(f"no active token {token_id}")


def list_tokens(store: MetadataStore) -> list[dict[str, Any]]:
    """Every token, without secrets."""
    with store.read() as conn:
        return sql.list_tokens(conn)
