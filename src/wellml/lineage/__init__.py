"""Lineage: one graph of datasets, runs, models, endpoints and monitors."""

from wellml.lineage.graph import LineageEdge, LineageGraph, LineageNode, LineageService

__all__ = ["LineageEdge", "LineageGraph", "LineageNode", "LineageService"]
