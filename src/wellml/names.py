"""Names and references: ``name``, ``name@3``, ``name@alias``, ``kind:name@3``; and the keys of
run params, metrics and tags."""

from __future__ import annotations

import re
from dataclasses import dataclass

from wellml.errors import InvalidInput

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
"""What a record name looks like: 1-128 letters, digits, ``_ . -``, not starting with ``_ . -``."""

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.\-/ :]{1,250}$")
"""What a run's param, metric or tag key looks like: 1-250 letters, digits, spaces, ``_.-/:``."""


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a valid record name.

    Raises:
        InvalidInput: it is empty, too long, or has characters other than letters, digits,
            ``_``, ``.`` and ``-`` (names appear in paths and URLs).
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidInput(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_key(key: str, what: str = "param") -> str:
    """Return ``key`` if it is a valid param, metric or tag key.

    Raises:
        InvalidInput: it is not a string of 1-250 letters, digits, spaces or ``_ . - / :``.
    """
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise InvalidInput(
            f"invalid {what} key {key!r}: 1-250 letters, digits, spaces or _ . - / :"
        )
    return key


@dataclass(frozen=True)
class Ref:
    """A parsed reference: a name and an optional version number or alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: str, what: str = "reference") -> Ref:
    """Parse ``name``, ``name@3``, ``name@v3`` or ``name@alias`` (``@latest`` means no version).

    Raises:
        InvalidInput: the text is not a reference.
    """
    if not isinstance(text, str) or not text:
        raise InvalidInput(f"empty {what}")
    name, sep, tail = text.partition("@")
    check_name(name, what)
    if not sep or tail == "latest":
        return Ref(name)
    if not tail:
        raise InvalidInput(f"invalid {what} {text!r}: nothing after '@'")
    digits = tail[1:] if tail[:1] in ("v", "V") and tail[1:].isdigit() else tail
    if digits.isdigit():
        return Ref(name, version=int(digits))
    check_name(tail, "alias")
    return Ref(name, alias=tail)
