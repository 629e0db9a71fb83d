"""The filter's error hierarchy: one root, so callers can catch what we raise on purpose."""

from __future__ import annotations


class PFilterError(Exception):
    """Root of every error the filter raises on purpose."""
