"""Lens review: the 105 practices, their evidence checks and reports."""
