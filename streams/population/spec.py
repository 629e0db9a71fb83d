"""``PopulationSpec``: who the synthetic customers are.

Contract: a frozen, hashable value, validated on construction (a bad share or size is a
``ValueError`` naming the field). Everything the package generates is a pure function of a
spec and a ``now_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from streams.population.vocabulary import DEFAULT_SHARES, SEGMENTS


@dataclass(frozen=True)
class PopulationSpec:
    """Who the synthetic customers are; everything generated derives from it.

    ``shares`` maps segment name to its share of subjects (missing segments
    count as 0); ``no_consent_share`` of subjects have no consent record at
    all, ``anonymous_share`` of sessions (hence of events) carry no subject,
    ``purchase_share`` of events are purchases.
    """

    subjects: int = 10_000
    seed: int = 7
    shares: Mapping[str, float] = field(default_factory=lambda: DEFAULT_SHARES)
    no_consent_share: float = 0.05
    anonymous_share: float = 0.05
    purchase_share: float = 0.15

    def __post_init__(self) -> None:
        if isinstance(self.subjects, bool) or not isinstance(self.subjects, int) or self.subjects < 1:
            raise ValueError(f"PopulationSpec.subjects must be a positive integer, got {self.subjects!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"PopulationSpec.seed must be an integer, got {self.seed!r}")
        unknown = sorted(set(self.shares) - set(SEGMENTS))
        if unknown:
            raise ValueError(
                f"PopulationSpec.shares names unknown segment(s) {', '.join(unknown)}; "
                f"known segments: {', '.join(SEGMENTS)}"
            )
        for name, share in self.shares.items():
            if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0.0 <= share <= 1.0:
                raise ValueError(f"PopulationSpec.shares[{name!r}] must be a number in [0, 1], got {share!r}")
        total = float(sum(self.shares.values()))
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"PopulationSpec.shares must sum to 1, but they sum to {total:.6g}")
        for name in ("no_consent_share", "anonymous_share", "purchase_share"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"PopulationSpec.{name} must be a number in [0, 1], got {value!r}")
        # A private, read-only copy: a caller mutating its dict later must not
        # change the population behind our back.
        object.__setattr__(
            self, "shares", MappingProxyType({s: float(self.shares.get(s, 0.0)) for s in SEGMENTS})
        )

    def __hash__(self) -> int:  # mappingproxy is unhashable; hash its items
        return hash(
            (
                self.subjects,
                self.seed,
                tuple(self.shares.items()),
                self.no_consent_share,
                self.anonymous_share,
                self.purchase_share,
            )
        )
