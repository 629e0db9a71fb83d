"""The filter's error hierarchy (one root, so callers can catch what the filter raises on purpose)."""


class PFilterError(Exception):
    """Root of every error the filter raises on purpose."""
