"""Model registry: versions, safe packages, signatures, approval, aliases, model cards."""

from wellml.registry.service import ModelVersion, Registry
from wellml.registry.signature import ColumnSpec, Signature, infer_signature, validate_frame

__all__ = [
    "ColumnSpec",
    "ModelVersion",
    "Registry",
    "Signature",
    "infer_signature",
    "validate_frame",
]
