"""Governance: principals, tokens and scopes, audit."""
