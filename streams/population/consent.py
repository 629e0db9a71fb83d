"""Consent records of the population (CONTRACT.md §3), built from the segment patterns.

Contract: :func:`consent_records` yields one fresh dict per subject that has consent, in
subject order; :func:`consent_of` gives the same record for one subject. Records share no
mutable part with each other or with the cached patterns. Every ``updated_at`` and
``granted_at`` is at or before ``now_ms``. New fields (``basis``, ``objections``, signals,
``consent_mode``) appear only where they are not the default.

Speed matters: the end-to-end benchmark preloads millions of records, so the hot loop is
unrolled over ``PURPOSES`` and reads patterns flattened into plain tuples.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from streams.population.segments import SIGNAL_GROUP, TEMPLATE_MASK, TEMPLATE_SHIFT, PatternExtras, patterns
from streams.population.spec import PopulationSpec
from streams.population.subjects import BLOCK, JUR_TABLE, WORDS, block, cached_block, check_index, segment_table
from streams.population.vocabulary import PURPOSES

assert PURPOSES == ("personalization", "marketing_email", "marketing_phone", "analytics",
                    "third_party_sharing", "support"), "_consent_iter is unrolled over PURPOSES"


def consent_of(spec: PopulationSpec, i: int, now_ms: int) -> dict[str, Any] | None:
    """The consent record subject ``i`` holds at ``now_ms``, or None if it never gave one.

    Equal to the record :func:`consent_records` yields for ``i``; exposed so
    a demo or test can look one subject up without generating all of them.
    """
    check_index(spec, i)
    return next(_consent_iter(spec, now_ms, i, i + 1), None)


def consent_records(spec: PopulationSpec, now_ms: int) -> Iterator[dict[str, Any]]:
    """One consent record per subject that has consent, in subject order.

    Every ``updated_at`` and ``granted_at`` is at or before ``now_ms``; some
    grants fall in the hour before it (events before them are
    ``before_grant``), some ``expires_at`` are before it (``expired``) or a
    few minutes after it (expiring during a run).
    """
    return _consent_iter(spec, now_ms, 0, spec.subjects)


@lru_cache(maxsize=16)
def _flat_patterns(seed: int) -> tuple[tuple[Any, ...], ...]:
    """Patterns flattened for the hot loop: segment-major, 22 fields each (status,
    granted_off, expires_off per purpose in PURPOSES order, then categories, gpc,
    updated_off, extras). A plain tuple, because the loop unpacks it in one step."""
    return tuple(
        (*(x for g in pattern.purposes for x in (g.status, g.granted_off, g.expires_off)),
         pattern.categories, pattern.gpc, pattern.updated_off, pattern.extras)
        for per_segment in patterns(seed)
        for pattern in per_segment
    )


def _add_extras(rec: dict[str, Any], extras: PatternExtras) -> dict[str, Any]:
    """The pattern's bases, objections and signals onto a fresh record (copies: records
    must not share mutable parts)."""
    if extras.li_email:
        rec["purposes"]["marketing_email"]["basis"] = "legitimate_interest"
    if extras.objections:
        rec["objections"] = list(extras.objections)
    if extras.signals is not None:
        group = SIGNAL_GROUP.get(rec["jurisdiction"])
        if group is not None:
            rec.update(extras.signals[group])
    if extras.consent_mode is not None:
        rec["consent_mode"] = dict(extras.consent_mode)
    return rec


def _consent_iter(spec: PopulationSpec, now_ms: int, lo: int, hi: int) -> Iterator[dict[str, Any]]:
    seed = spec.seed
    seg_table = segment_table(tuple(spec.shares.items()))
    flat = _flat_patterns(seed)
    jur_table = JUR_TABLE
    nc = round(spec.no_consent_share * 65536)
    template_shift, template_mask = TEMPLATE_SHIFT, TEMPLATE_MASK
    i = lo
    while i < hi:
        b, j = divmod(i, BLOCK)
        words = block(seed, b) if hi - lo > BLOCK else cached_block(seed, b)
        m = min(BLOCK - j, hi - i)
        it = iter(words[j * WORDS : (j + m) * WORDS])
        # the eight words of each subject, named by their use (see subjects.W_*)
        for w_place, w_segment, w_pattern, _w3, _w4, _w5, _w6, _w7 in zip(it, it, it, it, it, it, it, it):
            if (w_place & 0xFFFF) >= nc:
                for bound, seg in seg_table:
                    if w_segment < bound:
                        break
                (s0, g0, e0, s1, g1, e1, s2, g2, e2, s3, g3, e3, s4, g4, e4, s5, g5, e5,
                 categories, gpc, u_off, extras) = flat[(seg << template_shift) | (w_pattern & template_mask)]
                base = now_ms - ((w_pattern >> 10) & 0xFFFFF)
                # Unrolled and inlined: this loop makes a million records in a
                # few seconds.
                rec = {
                    "subject_id": "s-%06d" % i,
                    "updated_at": base + u_off,
                    "purposes": {
                        "personalization": {"status": s0, "granted_at": None if g0 is None else base + g0,
                                            "expires_at": None if e0 is None else base + e0},
                        "marketing_email": {"status": s1, "granted_at": None if g1 is None else base + g1,
                                            "expires_at": None if e1 is None else base + e1},
                        "marketing_phone": {"status": s2, "granted_at": None if g2 is None else base + g2,
                                            "expires_at": None if e2 is None else base + e2},
                        "analytics": {"status": s3, "granted_at": None if g3 is None else base + g3,
                                      "expires_at": None if e3 is None else base + e3},
                        "third_party_sharing": {"status": s4, "granted_at": None if g4 is None else base + g4,
                                                "expires_at": None if e4 is None else base + e4},
                        "support": {"status": s5, "granted_at": None if g5 is None else base + g5,
                                    "expires_at": None if e5 is None else base + e5},
                    },
                    "categories": categories.copy(),
                    "jurisdiction": jur_table[(w_place >> 16) & 0xFF],
                    "gpc": gpc,
                    "tcf": None,
                }
                yield rec if extras is None else _add_extras(rec, extras)
            i += 1
