"""Model files: scikit-learn models persisted with skops, loaded without unpickling.

Loading never runs arbitrary code: skops rebuilds objects only from types it is told to trust,
and we trust only types from an allowlist of well-known modules, never a type a file asks for.
"""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

from wellml.errors import InvalidInput, PermissionDenied

FLAVOR_SKLEARN = "sklearn"
# Module prefixes whose types may be rebuilt from a model file.
TRUSTED_MODULES = (
    "sklearn.",
    "numpy.",
    "scipy.",
    "builtins.",
    "collections.",
    "skops.",
    "xgboost.",
    "lightgbm.",
    "pandas.",
)


def save_model(model: Any) -> bytes:
    """Serialise a fitted scikit-learn estimator (or pipeline) with skops.

    Raises:
        InvalidInput: the object is not a scikit-learn estimator or cannot be persisted.
    """
    import skops.io as sio
    from sklearn.base import BaseEstimator

    if not isinstance(model, BaseEstimator):
        raise InvalidInput(
            f"only scikit-learn estimators can be packaged, not {type(model).__name__}"
        )
    try:
        return bytes(sio.dumps(model))
    except Exception as exc:  # skops raises a variety of types for unsupported objects
        raise InvalidInput(f"cannot persist {type(model).__name__} with skops: {exc}") from exc


def untrusted_types(data: bytes) -> list[str]:
    """The types in a skops file that skops does not trust by default."""
    import skops.io as sio

    return list(sio.get_untrusted_types(data=data))


def load_model(data: bytes) -> Any:
    """Rebuild a model from skops bytes, trusting only types from :data:`TRUSTED_MODULES`.

    Raises:
        PermissionDenied: the file names a type outside the allowlist.
        InvalidInput: the bytes are not a skops file.
    """
    import skops.io as sio

    try:
        types = untrusted_types(data)
    except Exception as exc:
        raise InvalidInput(f"not a readable skops model file: {exc}") from exc
    refused = [t for t in types if not t.startswith(TRUSTED_MODULES)]
    if refused:
        raise PermissionDenied(
            "model file asks to load types outside the trusted modules: " + ", ".join(refused)
        )
    try:
        return sio.loads(data, trusted=types)
    except Exception as exc:
        raise InvalidInput(f"cannot load the model file: {exc}") from exc


def requirements(model: Any) -> list[str]:
    """Pinned requirements for serving the model, from the versions installed now."""
    pkgs = ["scikit-learn", "numpy", "scipy", "skops", "pandas"]
    module = type(model).__module__.split(".", 1)[0]
    if module in ("xgboost", "lightgbm"):
        pkgs.append(module)
    out = [f"python=={platform.python_version()}"]
    for name in pkgs:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
