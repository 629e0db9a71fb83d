"""One engine ``Filter`` deciding for every partition a fast worker owns, each partition
against its own consent store.

The engine's ``Filter.decide`` reads the consent store from ``filter.store``;
this class is the one place that sets it, right before each call, so no other
code may rely on what ``filter.store`` holds (it is the last partition
decided). ``apply_consent`` is given the store explicitly.

Why one Filter and not one per partition: its caches (per-subject consent
summaries, pseudonyms) are keyed by subject, and a subject's consent and
events always share a partition number (the join is per partition), so the
entries of two partitions never meet; one Filter keeps one bound on those
caches (``SUMMARY_CACHE_MAX``) for the whole worker, whatever the number of
partitions it owns.

Contract: pure CPU (the engine), no I/O, never blocks; the loop's thread only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class PartitionDecider:
    """``decide(p, records)`` and ``apply_consent(p, records)`` over ``stores[p]``."""

    def __init__(self, filt: Any, stores: Mapping[int, Any]) -> None:
        """``stores``: partition -> consent store, looked up at each call (the consent
        reader replaces a partition's store when it is assigned again)."""
        self._filter = filt
        self._stores = stores
        self.policy = filt.policy

    def decide(self, p: int, records: Sequence[tuple]) -> Any:
        """The engine's decisions for events of partition ``p`` (a BatchResult)."""
        f = self._filter
        f.store = self._stores[p]
        return f.decide(records)

    def apply_consent(self, p: int, records: Sequence[tuple]) -> Any:
        """Merge consent records of partition ``p`` into its store (a BatchResult)."""
        return self._filter.apply_consent(records, self._stores[p])
