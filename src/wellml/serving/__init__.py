"""Serving: real-time endpoints with signature checks, tokens and data capture."""

from wellml.serving.service import EndpointRecord, Endpoints, RunningEndpoint

__all__ = ["EndpointRecord", "Endpoints", "RunningEndpoint"]
