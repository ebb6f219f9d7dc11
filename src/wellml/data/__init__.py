"""Data catalog: immutable dataset versions, profiles and quality rules."""
