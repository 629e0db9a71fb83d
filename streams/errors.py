"""The filter's error hierarchy (one root, so callers can catch "ours" apart from bugs)."""


class PFilterError(Exception):
    """Root of every error the filter raises on purpose."""
