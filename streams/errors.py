"""The filter's one error hierarchy.

Every error the filter raises on purpose derives from :class:`PFilterError`,
so a caller (the CLI, an embedding application, a test) can catch them all in
one place; the CLI prints such an error as one line and exits non-zero. The
message of each names the problem (a setting, a topic, a file) and never holds
a field value from an event or consent record, nor a secret (G6).

This module is a leaf: it imports nothing of the project, so the pure engine
layer can derive its errors from it without pulling in Kafka.
"""

from __future__ import annotations


class PFilterError(Exception):
    """Root of every error the filter raises on purpose."""


class BrokerUnreachable(PFilterError):
    """The Kafka brokers did not answer within the start-up bound."""
