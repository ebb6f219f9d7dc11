"""Bundled example workloads and their data generators."""
