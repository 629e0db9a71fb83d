"""The population's output, byte for byte, as it was before ``streams/population.py`` was
split into a package (issue 15).

The hashes below were recorded on the single-module code (commit 4f6d36c; this file's
first version, commit 5821367, passed there) with this file's own hashing. They pin every
public generator: events (bytes and decoded, window and rate mode, three specs), consent
records and single look-ups, churn, segments, the signal encoders and ``draw_signals``,
and the PII-rich test builders. A refactoring that changes one byte of any of them, or
the key order of a record, fails here; a deliberate change of the population must
re-record them and say why in its commit.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from streams import population as P
from streams.population import signals as S
from tests.fixtures.population import PII_SENTINEL, pii_rich_consent, pii_rich_event

NOW = 1_750_000_000_000

SPECS = {
    "s7": P.PopulationSpec(),
    "s11": P.PopulationSpec(subjects=5_000, seed=11),
    "s3": P.PopulationSpec(subjects=2_500, seed=3, purchase_share=0.5, anonymous_share=0.2, no_consent_share=0.2,
                           shares={"control_addict": 0.5, "flexible": 0.5}),
}

RECORDED = {
    "churn/s11": "ed3262015d0c973966ac1a380bcb3a8977e203e13cefa68b07d4af6ead46aee3",
    "churn/s3": "cea325ca2c95c28a4621c0c2a6af8d4485e7f1b810ec30acd732a6b821691686",
    "churn/s7": "85d062649270f6cbb2d35a6720833caa102b3525ce2cce479c396d877b7fd17b",
    "consent_of/s11": "56354a78439396c39f3047c3e4a7a98cc425cdaafc3c76dfc5451b068e6bcf21",
    "consent_of/s3": "33890bbf709e8f57d30754e3c89d5befa0c19272d4250317381b4c55afb95cf6",
    "consent_of/s7": "9b4fcddbf4bab3b407a712957ea846f101d3f309b39a3dd18a423cc86dd30210",
    "consent_records/s11": "d4e7cc69353ce7d1436cc3966fb90f1298378addd99a28b974e93a31d650311e",
    "consent_records/s3": "b4acd764593a5c4f475ecdabf7acd4dbd761d0c95c6bf3fe150ec7e26ef8a9ec",
    "consent_records/s7": "01b2374ef5b67ee30d8873969e8facfe5998e5d4b8658db67226aeb1472192c4",
    "event_bytes/s11/rate": "b0ddbd22dd0d7bdeb037db0aa525e516b6d4938ef0ebca1cc068a92d6d52d727",
    "event_bytes/s11/window": "4336bd277149460cfe4e4b29c837969a2cefdc872ee65331fc04aabbbf4c753d",
    "event_bytes/s3/rate": "900cd8b40b9f6154ed44c19fe8256733b9458b2b0e7126cb69c9c6bba1adf0cf",
    "event_bytes/s3/window": "6653fd1a7d97797e330ba0734933d92b7ed38222c47aab9dbbb3516f40729ee3",
    "event_bytes/s7/rate": "2997e445a6fe29c13b262ec3900c92480a36005acf2fafe4c9677806a8fb28a1",
    "event_bytes/s7/window": "53a1c783ec161f212debfb69499317fda1047ce339e2064dc620d249221727d7",
    "events/s11": "25f42a5c718b57d7f60567a352637c4602463a23b30f9c9b28ada006fc62465d",
    "events/s3": "b6d4ffbcdceb985d2e966b31df6fe9ec0876ceaeb151bd3cda8202d7ee7cdcaf",
    "events/s7": "c14d812dc834f56a0d02850e21d63854569f261b5bd34f2d4eeb0f8dba4f14a6",
    "pii_rich": "409005e8af7c2206f37c0c75471b5acb75ef52b90b263176b4a700f3756e2db5",
    "segment_of/s11": "73e0763b48a68bfda2783ddc49584c95b7ad7c5b96200cadce60ae763d43a3c5",
    "segment_of/s3": "104c2fa1bd2c4dd86029e07455b1a916d9d94aac8d9dcb47bb1e41dc10b628fc",
    "segment_of/s7": "a36cf92ca1d99ed21b74a2c24eef5259304d7437b0253401c66d91c3ce450a8b",
    "signals/draw_signals": "f5d7eb70e4f92562c2efdca281612cd384c7993379a32442396e19cb7255a5d2",
    "signals/encoders": "700da8fa43d681340d8c5e9b3735992f7f5d08cfafe2537e2b79afb9db46161f",
    "subject_id": "8b2046718f2085582601dc1c44f5f5d8941c2f62bb2bf12f844309b759418f82",
    "vocabulary": "504241a334a81ff152cbfed811a51a983263ccf3eca13ab269a9f487d3f19a2a",
}


def _h(chunks: Iterable[bytes]) -> str:
    d = hashlib.sha256()
    for c in chunks:
        d.update(c)
        d.update(b"\x00")
    return d.hexdigest()


def _dump(rec: Any) -> bytes:
    return orjson.dumps(rec)  # insertion order: key order is part of the bytes a producer sends


def _events(spec: P.PopulationSpec, *args: Any, **kw: Any) -> str:
    return _h(k.encode() + b"|" + raw + b"|" + key.encode() for k, raw, key in P.event_bytes(spec, NOW, *args, **kw))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_generators_give_the_recorded_bytes(name: str) -> None:
    spec = SPECS[name]
    got = {
        f"event_bytes/{name}/window": _events(spec, 30_000),
        f"event_bytes/{name}/rate": _events(spec, 9_000, start_ts=NOW, rate_per_s=250.0, first=12_345),
        f"events/{name}": _h(_dump(e) for e in P.events(spec, NOW, 5_000, start_ts=NOW - 10_000)),
        f"consent_records/{name}": _h(_dump(r) for r in P.consent_records(spec, NOW)),
        f"consent_of/{name}": _h(_dump(P.consent_of(spec, i, NOW + 5)) for i in range(0, spec.subjects, 37)),
        f"churn/{name}": _h(sid.encode() + b"|" + _dump(r) for sid, r in P.churn(spec, NOW, 4_000, interval_ms=3)),
        f"segment_of/{name}": _h(P.segment_of(spec, i).encode() for i in range(spec.subjects)),
    }
    assert got == {k: RECORDED[k] for k in got}


def test_vocabulary_and_ids_are_the_recorded_ones() -> None:
    vocab = [P.SEGMENTS, dict(P.DEFAULT_SHARES), P.PURPOSES, P.CATEGORIES, P.CLICK_TYPES, P.EVENT_TYPES,
             dict(P.JURISDICTIONS)]
    assert _h([_dump(vocab)]) == RECORDED["vocabulary"]
    assert _h(P.subject_id(i).encode() for i in (0, 1, 999_999, 1_234_567)) == RECORDED["subject_id"]


def test_signals_are_the_recorded_ones() -> None:
    r = random.Random("record-signals")
    drawn = []
    for seg in P.SEGMENTS:
        for _ in range(300):
            granted = {p for p in P.PURPOSES if r.random() < 0.5}
            cats = {c: r.random() < 0.5 for c in P.CATEGORIES}
            drawn.append(_dump(S.draw_signals(r, seg, granted, cats, r.random() < 0.3)))
    assert _h(drawn) == RECORDED["signals/draw_signals"]
    encoded = [
        S.tc_string([1, 2, 3], [1], [755, 1, 2], use_range=False).encode(),
        S.tc_string(range(1, 11), [], range(100, 190), use_range=True).encode(),
        S.gpp_string([(7, S.us_section(7, {"SaleOptOut": 1}, True, version=2)),
                      (8, S.us_section(8, {}, None))]).encode(),
        S.encode_tc(S.TCModel()).encode(),
        S.gpp_header([2, 7, 8, 9]).encode(),
        _dump({k: list(v) for k, v in S.SEGMENT_SIGNALS.items()}),
        str(S.PARTNER_VENDOR_ID).encode(),
    ]
    assert _h(encoded) == RECORDED["signals/encoders"]


def test_pii_rich_builders_are_the_recorded_ones() -> None:
    chunks = [_dump(pii_rich_event(i)) + _dump(pii_rich_consent(i)) for i in range(12)] + [PII_SENTINEL.encode()]
    assert _h(chunks) == RECORDED["pii_rich"]
