"""Synthetic customer population, consent records and event streams.

The demo, the load generator, the benchmarks and the tests all need customers
whose consent looks like real consent: people fall into a few privacy
segments (brand loyalists grant nearly everything, privacy fundamentalists
nearly nothing, control addicts grant briefly and change their minds), live
under different jurisdictions, send Global Privacy Control, let grants expire
and sometimes never gave consent at all. Every reason of the decision rule
(CONTRACT.md §5) must occur in that data, or tests and benchmarks would only
exercise the happy path.

Contract of the package (this module is its public face; import from here):

* Deterministic: the same :class:`PopulationSpec` and the same ``now_ms`` give
  the same records, byte for byte, on any machine and under any
  ``PYTHONHASHSEED`` (``tests/unit/test_population_split.py`` pins the bytes).
  All randomness comes from ``random.Random`` instances seeded from
  ``spec.seed``, never the global ``random`` module.
* Records are plain dicts (consent) or pre-encoded JSON bytes (events) exactly
  as CONTRACT.md §3 describes; every yielded dict is fresh.
* No Kafka, and of the engine only its leaf vocabulary (``streams.engine.vocab``).

Modules, by concern (each states its own contract):

* ``vocabulary``: segments, purposes, categories, event types and kinds, jurisdictions;
* ``spec``: :class:`PopulationSpec`;
* ``subjects``: per-subject random words (drawn per block of 1024 subjects, so that
  the consent records, the events and the churn agree about a subject without
  materialising the population), segment, jurisdiction, subject id;
* ``segments``: consent patterns per privacy segment, pre-drawn per seed;
* ``signals``: TCF / GPP / Consent Mode encoders and the per-segment signal shares
  (issue 11: CMP signals, legitimate-interest e-mail, objections);
* ``consent``: consent records built from the patterns;
* ``places`` and ``catalog``: cities, devices, names, products, and the pre-encoded
  JSON fragments events are spliced from;
* ``event_stream``: sessions of clicks and purchases as bytes or dicts;
* ``consent_churn``: consent changes during a run.

Records for log-leak tests (PII-rich events and consent) are test fixtures:
``tests/fixtures/population.py``.
"""

from __future__ import annotations

from streams.population.consent_churn import churn
from streams.population.consent import consent_of, consent_records
from streams.population.event_stream import event_bytes, events
from streams.population.spec import PopulationSpec
from streams.population.subjects import segment_of, subject_id
from streams.population.vocabulary import (
    CATEGORIES,
    CLICK_TYPES,
    DEFAULT_SHARES,
    EVENT_TYPES,
    JURISDICTIONS,
    PURPOSES,
    SEGMENTS,
)

__all__ = [
    "CATEGORIES",
    "CLICK_TYPES",
    "DEFAULT_SHARES",
    "EVENT_TYPES",
    "JURISDICTIONS",
    "PURPOSES",
    "SEGMENTS",
    "PopulationSpec",
    "churn",
    "consent_of",
    "consent_records",
    "event_bytes",
    "events",
    "segment_of",
    "subject_id",
]
