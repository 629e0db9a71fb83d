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
        #: partition -> KeyRing (``streams.runtime.keys``), set by the worker when the policy
        #: encrypts; like the store, each partition's ring is set right before each call
        self.rings: Mapping[int, Any] | None = None
        self._no_keys: Any = None

    def decide(self, p: int, records: Sequence[tuple]) -> Any:
        """The engine's decisions for events of partition ``p`` (a BatchResult)."""
        f = self._filter
        f.store = self._stores[p]
        if self.rings is not None:
            f.keyring = self.rings[p]
        return f.decide(records)

    def apply_consent(self, p: int, records: Sequence[tuple], *, replay: bool = False) -> Any:
        """Merge consent records of partition ``p`` into its store (a BatchResult).

        ``replay``: records whose outputs were committed before (state only): their
        erasures must not touch the restored ring, which already reflects them and may
        hold the key of a subject who came back since."""
        f = self._filter
        if self.rings is not None:
            if replay:
                if self._no_keys is None:
                    from streams.crypto import KeyRing

                    self._no_keys = KeyRing()
                f.keyring = self._no_keys
            else:
                f.keyring = self.rings[p]
        return f.apply_consent(records, self._stores[p])
