"""Hypothesis strategies: policies from the default vocabulary, consent records, events."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from streams.engine.policy import TEXT_FIELDS

from tests.unit.engine.helpers import CATEGORIES, DAY, HOUR, NOW, PURPOSES, default_doc
from tests.unit.signals.encoders import TCModel, encode_tc, encode_us, gpp_header, usnat_spec

JURISDICTIONS = ("EU", "UK", "US", "US-CA", "BR", "CN")
EVENT_TYPES = ("page_view", "product_view", "search", "add_to_cart", "login", "purchase", "wishlist")
_DEFAULT = default_doc()
#: Fields a policy may move between (non-payment) categories.
_MOVABLE = [f for c, fs in _DEFAULT["categories"].items() if c != "payment" for f in fs]
#: Parts categorized instead of the whole record, when a policy splits it.
_SPLITS = {"context.geo": ["context.geo.city", "context.geo.lat"],
           "shipping_address": ["shipping_address.country", "shipping_address.city"]}

#: Times cluster around NOW in whole hours, +-1 ms, so that boundaries (ts == granted_at,
#: ts == expires_at, now == expires_at) are hit often.
times = st.builds(lambda h, d: NOW + h * HOUR + d, st.integers(-4, 3), st.sampled_from([-1, 0, 0, 1]))


@st.composite
def policies(draw, encrypt: bool = True, rules: bool = False, seal_heavy: bool = False) -> dict[str, Any]:
    """A random valid policy; ``encrypt=False``: no `encrypt` transforms;
    ``rules``: random legal bases, objection classes and a random ``[signals]`` mapping;
    ``seal_heavy``: half the text fields an engine may receive are encrypted (else rare)."""
    purposes = list(draw(st.permutations(PURPOSES)))
    cat_names = [c for c in draw(st.permutations(CATEGORIES))]
    non_payment = [c for c in cat_names if c != "payment"]
    cats: dict[str, list[str]] = {c: [] for c in cat_names}
    cats["payment"] = ["payment_method"]
    for f in _MOVABLE:
        if f in _SPLITS and draw(st.booleans()):
            for sub in _SPLITS[f]:
                cats[draw(st.sampled_from(non_payment))].append(sub)
            continue
        where = draw(st.sampled_from([*non_payment, None]))  # None: in no category
        if where is not None:
            cats[where].append(f)
    engines = []
    for n in range(draw(st.integers(1, 4))):
        party = draw(st.sampled_from(["first", "third"]))
        needs = draw(st.lists(st.sampled_from(purposes), min_size=1, max_size=3, unique=True))
        receive = draw(st.lists(st.sampled_from(non_payment), max_size=4, unique=True))
        jur: Any = draw(st.one_of(st.just("any"), st.lists(st.sampled_from(JURISDICTIONS), min_size=1,
                                                               max_size=4, unique=True)))
        e: dict[str, Any] = {"name": f"engine{n}", "topic": f"out.engine{n}", "party": party, "needs": needs,
                             "may_receive": receive, "jurisdictions": jur}
        if draw(st.booleans()):
            e["subject"] = draw(st.sampled_from(["keep", "pseudonymize"]))
        transforms: dict[str, str] = {}
        for c in receive:
            for f in cats[c]:
                if f in ("context.geo", "shipping_address") and draw(st.booleans()):
                    transforms[f] = draw(st.sampled_from(["coarsen:country", "keep", "drop"]))
                elif (seal_heavy and f in TEXT_FIELDS and e.get("subject", "keep") == "keep"
                      and draw(st.booleans())):
                    transforms[f] = "encrypt"
                elif draw(st.integers(0, 3)) == 0:
                    options = ["keep", "drop"] + (["pseudonymize"] if f in TEXT_FIELDS else [])
                    if encrypt and f in TEXT_FIELDS and e.get("subject", "keep") == "keep":
                        options.append("encrypt")  # CONTRACT §10
                    transforms[f] = draw(st.sampled_from(options))
        if draw(st.integers(0, 3)) == 0:
            transforms["ts"] = draw(st.sampled_from(["keep", "coarsen:hour"]))
        if transforms:
            e["transforms"] = transforms
        engines.append(e)
    doc = {"version": f"p-{draw(st.integers(0, 99))}", "purposes": purposes, "categories": cats,
           "engines": engines}
    if rules:
        doc["purpose_rules"] = draw(_purpose_rules(purposes))
        doc["signals"] = draw(_signals_table(purposes, non_payment, [e["name"] for e in engines]))
    return doc


@st.composite
def _purpose_rules(draw, purposes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in purposes:
        if draw(st.booleans()):
            entry: dict[str, Any] = {}
            if draw(st.booleans()):
                entry["bases"] = draw(st.lists(st.sampled_from(["consent", "legitimate_interest"]), min_size=1,
                                               max_size=2, unique=True))
            entry["objections"] = draw(st.lists(st.sampled_from(["direct_marketing", "profiling"]), max_size=2,
                                                unique=True))
            out[p] = entry
    return out


_OPT_OUTS = ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"]
_CM = ["ad_storage", "ad_user_data", "ad_personalization", "analytics_storage"]


@st.composite
def _signals_table(draw, purposes: list[str], categories: list[str], engines: list[str]) -> dict[str, Any]:
    ids = st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True)
    some = lambda names, values: st.dictionaries(st.sampled_from(names), values, max_size=2)  # noqa: E731
    return {
        "sec_gpc": draw(st.booleans()),
        "tcf": {
            "purposes": draw(some(purposes, ids)),
            "special_features": draw(some(categories, st.just([1]))),
            "engines": draw(some(engines, st.builds(lambda v, p: {"vendor_id": v, "purposes": p},
                                                    st.sampled_from([7, 755]), ids))),
        },
        "gpp": {"gpc": draw(st.booleans()),
                "opt_outs": draw(some(purposes, st.lists(st.sampled_from(_OPT_OUTS), min_size=1, unique=True)))},
        "consent_mode": {"denies": draw(some(purposes, st.lists(st.sampled_from(_CM), min_size=1, unique=True)))},
    }


def _usnat(values: dict[str, int], gpc: bool | None) -> str:
    v: dict[str, object] = {n: (0,) * c if c else 0 for n, c in usnat_spec(1)}
    v.update(values)
    return gpp_header([7]) + "~" + encode_us(7, 1, v, gpc)


#: A few TC and GPP strings (a population shares a CMP's strings), and broken ones.
TC_STRINGS = [encode_tc(TCModel(purpose_consents=p, vendor_consents=v, special_feature_optins=f))
              for p, v, f in [([1, 2, 3, 4, 5, 6], [755], [1]), ([1, 3, 4], [7, 755], []), ([5, 6], [7], [1]), ([], [], [])]]
GPP_STRINGS = [_usnat({"SaleOptOut": 1}, None), _usnat({"SaleOptOut": 2, "SharingOptOut": 2}, True),
               _usnat({"TargetedAdvertisingOptOut": 1}, False), _usnat({}, None)]
BAD_SIGNALS = [("tcf", "%%"), ("gpp", "DBABM~x"), ("consent_mode", {"ad_storage": "maybe"})]


def _with_rules(draw, rec: dict[str, Any]) -> dict[str, Any]:
    """Bases, objections and signals on a consent record (``consents(rules=True)``)."""
    for entry in rec["purposes"].values():
        if draw(st.integers(0, 2)) == 0:
            entry["basis"] = draw(st.sampled_from(["consent", "legitimate_interest"]))
    if draw(st.booleans()):
        rec["objections"] = draw(st.lists(st.sampled_from(["direct_marketing", "profiling"]), max_size=2))
    if draw(st.booleans()):
        rec["tcf"] = draw(st.sampled_from(TC_STRINGS))
    if draw(st.booleans()):
        rec["gpp"] = draw(st.sampled_from(GPP_STRINGS))
    if draw(st.booleans()):
        rec["consent_mode"] = draw(st.dictionaries(st.sampled_from(_CM), st.sampled_from(["granted", "denied"]),
                                                   max_size=3))
    if draw(st.integers(0, 3)) == 0:
        rec["sec_gpc"] = draw(st.booleans())
    if draw(st.integers(0, 15)) == 0:
        field, value = draw(st.sampled_from(BAD_SIGNALS))
        rec[field] = value
    return rec


def _rel(draw, base: int, offsets) -> int:
    return base + draw(st.sampled_from(offsets))


@st.composite
def consents(draw, subject: str = "s-1", ts: int | None = None, now: int | None = None,
             rules: bool = False) -> dict[str, Any]:
    """A valid consent record. With ``ts``/``now``, grant and expiry times cluster around them
    (mostly granted before ``ts`` and valid past both) so that every check passes or fails often.
    ``rules``: with bases, objections and signals (``_with_rules``; rarely a broken signal)."""
    purposes = {}
    for p in PURPOSES:
        if draw(st.integers(0, 9)) == 9:
            continue  # not mentioned at all
        status = draw(st.sampled_from(["granted"] * 8 + ["denied", "withdrawn"]))
        if ts is None:
            ga: Any = draw(times)
            ea: Any = draw(st.one_of(st.none(), times))
        else:
            ga = _rel(draw, ts, [-DAY, -HOUR, -HOUR, -1, 0, 0, 1])
            horizon = max(ts, now)
            ea = None if draw(st.integers(0, 2)) < 2 else _rel(draw, horizon, [HOUR, DAY, -1, 0, 1])
        if status != "granted" and draw(st.booleans()):
            ga = None
        if status == "granted" and ea is not None and ea <= ga:
            ea = ga + 1  # a grant that ends before it begins is malformed (DLQ): valid ones end after
        purposes[p] = {"status": status, "granted_at": ga, "expires_at": ea}
    if draw(st.integers(0, 7)) == 0:
        purposes["telepathy"] = {"status": "granted", "granted_at": NOW - DAY, "expires_at": None}
    categories = {c: draw(st.integers(0, 3)) < 3 for c in CATEGORIES if draw(st.integers(0, 7)) < 7}
    if draw(st.integers(0, 7)) == 0:
        categories["dreams"] = True
    rec = {
        "subject_id": subject,
        "updated_at": draw(times),
        "purposes": purposes,
        "categories": categories,
        "jurisdiction": draw(st.sampled_from(JURISDICTIONS)),
        "gpc": draw(st.integers(0, 4)) == 4,
    }
    return _with_rules(draw, rec) if rules else rec


@st.composite
def scenarios(draw) -> tuple[dict, dict | None, int]:
    """(event, consent or None, now): consent drawn relative to the event's time and now."""
    now = draw(times)
    ev = draw(events())
    rec = None if draw(st.integers(0, 9)) == 9 else draw(consents(ts=ev["ts"], now=now))
    return ev, rec, now


_text = st.text(alphabet="abcdé-xyz019 .@/", min_size=0, max_size=8)
_scalar = st.one_of(st.none(), _text, st.integers(-5, 10_000), st.floats(0, 1000, allow_nan=False))


def _maybe(draw, d: dict, key: str, strat) -> None:
    r = draw(st.integers(0, 4))
    if r == 4:
        return           # absent
    d[key] = None if r == 3 else draw(strat)


@st.composite
def events(draw, subject: str = "s-1") -> dict[str, Any]:
    et = draw(st.sampled_from(EVENT_TYPES))
    anonymous = draw(st.integers(0, 9)) == 9
    ev: dict[str, Any] = {"event_id": f"e-{draw(st.integers(0, 10**6))}",
                          "subject_id": None if anonymous else subject, "event_type": et, "ts": draw(times)}
    if anonymous:
        ev["anonymous_id"] = "a-1"
    if draw(st.integers(0, 5)) < 5:
        ctx: dict[str, Any] = {}
        for k in ("ip", "user_agent", "device_id", "session_id", "referrer"):
            _maybe(draw, ctx, k, _text)
        if draw(st.integers(0, 3)) < 3:
            geo: dict[str, Any] = {}
            for k in ("country", "region", "city", "lat", "lon"):
                _maybe(draw, geo, k, _scalar)
            if draw(st.integers(0, 5)) == 0:
                geo["street"] = "not in the schema"
            ctx["geo"] = geo
        if draw(st.integers(0, 5)) == 0:
            ctx["extra"] = "not in the schema"
        ev["context"] = ctx
    # payload: fields of this type, and sometimes stray fields of other types
    names = ["url", "title", "product_id", "category", "price", "query", "quantity", "method", "order_id",
             "total", "currency", "payment_method", "email", "phone"]
    for k in names:
        if draw(st.integers(0, 3)) < 3:
            _maybe(draw, ev, k, _scalar)
    if draw(st.booleans()):
        item = st.one_of(
            st.fixed_dictionaries({}, optional={"product_id": _scalar, "category": _scalar, "quantity": _scalar,
                                                "price": _scalar, "note": _text}),
            st.none(), _text)
        _maybe(draw, ev, "items", st.lists(item, max_size=3))
    if draw(st.booleans()):
        _maybe(draw, ev, "shipping_address", st.one_of(st.fixed_dictionaries(
            {}, optional={"street": _text, "city": _scalar, "postal_code": _text, "country": _scalar,
                          "name": _text}), _text))
    return ev
