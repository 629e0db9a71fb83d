"""Event streams (CONTRACT.md §3): sessions of clicks and purchases as pre-encoded JSON.

Contract: :func:`event_bytes` yields ``(kind, JSON bytes, key)`` and :func:`events` the
same events decoded; both are pure functions of their arguments (own seeded
``random.Random`` streams, never the global one). Event ``n`` has id ``e-<seed>-<n>``
whatever ``count`` is; which events come first does not depend on ``count`` (only their
``ts`` do, in window mode).

Speed matters (the benchmarks generate millions): events are spliced from the
:mod:`~streams.population.catalog` fragments, and the per-subject part of an event is
encoded once per session, not once per event.
"""

from __future__ import annotations

import random
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from streams.population.catalog import N_PRODUCTS, catalog, context, money, purchase_tail
from streams.population.places import CITIES, CITIES_BY_JUR, N_APP_UA
from streams.population.spec import PopulationSpec
from streams.population.subjects import (
    BLOCK_CACHE,
    BLOCK_SHIFT,
    JUR_TABLE,
    W_BUYER,
    W_DEVICE,
    W_DEVICE_UA,
    W_IP,
    W_PHONE,
    W_PLACE,
    WORDS,
    cached_block,
)
from streams.population.vocabulary import (
    EVENT_TYPES,
    HOUR,
    KIND_ADD_TO_CART,
    KIND_LOGIN,
    KIND_PAGE_VIEW,
    KIND_PRODUCT_VIEW,
    KIND_PURCHASE,
    KIND_SEARCH,
)

#: Default event-time window when no rate is given: the hour before ``now``.
_DEFAULT_WINDOW_MS = HOUR
#: Customers browsing at the same time (sessions interleave in the stream); an event's
#: random word picks its slot with ``& _SLOT_MASK``.
_SLOTS = 512
_SLOT_MASK = _SLOTS - 1
#: Size of the kind table; an event's random word picks a kind with ``>> _KIND_SHIFT``.
_KIND_TABLE_SIZE = 8192
_KIND_SHIFT = 19
assert 1 << (32 - _KIND_SHIFT) == _KIND_TABLE_SIZE
#: Events per block of random words: fixed, so which events come first does not
#: depend on how many were asked for (only their ts do, in window mode).
_EVENT_BLOCK = 4096
# Session lengths (events per session), a rough geometric shape, mean ~10.
_SESSION_LENGTHS = (1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 8, 8, 9, 10, 11, 12, 13, 15, 17, 20, 24, 30, 40)
_TYPE_PIECES = tuple(b',"event_type":"%s","ts":' % t.encode() for t in EVENT_TYPES)


@dataclass(slots=True, eq=False)
class Session:
    """One customer's browsing session: what its events share.

    Slotted because the generator reads it on every event. Measured against the 10-item
    list it replaced (timeit, Python 3.11): making one costs ~330 ns instead of ~70 ns,
    paid per session (~20k per 200k events, ~5 ms); the five reads and one update per
    event cost ~70 ns instead of ~110 ns. Net: no measurable change.
    """

    left: int  # events still to come; a slot starts a new session at 0
    key: str  # Kafka key: the subject id, or "" if anonymous
    subject: bytes  # the encoded subject_id / anonymous_id member
    context: bytes  # the encoded context member (see catalog.context)
    product: int  # product in view (index into the catalogue)
    city: int  # index into places.CITIES
    buyer_word: int  # W_BUYER word: name, mail domain, street, postal code
    phone_word: int  # W_PHONE word
    mail_tag: bytes  # disambiguates the buyer's mail address
    purchase_tail: bytes | None  # made at the session's first purchase


#: A slot's session before its first event: no events left.
_NO_SESSION = Session(0, "", b"", b"", 0, 0, 0, 0, b"", None)


def _kind_table(purchase_share: float) -> tuple[int, ...]:
    """_KIND_TABLE_SIZE entries: index into EVENT_TYPES, purchases first, then clicks by weight."""
    size = _KIND_TABLE_SIZE
    purchases = round(purchase_share * size)
    # click mix: page_view 41%, product_view 30%, search 12%, add_to_cart 12%, login 5%
    weights = ((KIND_PAGE_VIEW, 0.41), (KIND_PRODUCT_VIEW, 0.30), (KIND_SEARCH, 0.12),
               (KIND_ADD_TO_CART, 0.12), (KIND_LOGIN, 0.05))
    table = [KIND_PURCHASE] * purchases
    rest = size - purchases
    acc = 0.0
    for kind, w in weights:
        acc += w
        table.extend([kind] * (round(acc * rest) - (len(table) - purchases)))
    table.extend([KIND_PAGE_VIEW] * (size - len(table)))  # float rounding: never short
    return tuple(table[:size])


def event_bytes(
    spec: PopulationSpec,
    now_ms: int,
    count: int,
    *,
    start_ts: int | None = None,
    rate_per_s: float | None = None,
    first: int = 0,
) -> Iterator[tuple[str, bytes, str]]:
    """``count`` events as ``(kind, JSON bytes, key)``; kind is ``click`` or ``purchase``.

    The fast path for producers and benchmarks: events are spliced from
    pre-encoded fragments, never built as dicts. ``key`` is the subject id
    (the Kafka key) or ``""`` for anonymous events.

    Customers browse in sessions (about 10 events each, up to 512
    interleaved) with one session id, device and entry referrer; purchases
    carry the buyer's address and contact. Event ``n`` (counting from
    ``first``) has id ``e-<seed>-<n>`` and purchases order id
    ``o-<seed>-<n>``: ids never repeat within a seed as long as a caller
    that generates in several calls advances ``first``.

    Event time: with ``rate_per_s``, that many events per second from
    ``start_ts`` (default ``now_ms``), for live load; otherwise ``count``
    events spread evenly over ``[start_ts, now_ms)`` (default the hour before
    ``now_ms``), the hour in which some subjects granted consent (their
    earlier events are ``before_grant``). Each ts gets up to a second of
    jitter (client clocks, batching): the stream is nearly, not strictly,
    ordered.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if first < 0:
        raise ValueError(f"first must be >= 0, got {first}")
    if rate_per_s is not None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        t0 = float(now_ms if start_ts is None else start_ts)
        step = 1000.0 / rate_per_s
    else:
        start = now_ms - _DEFAULT_WINDOW_MS if start_ts is None else start_ts
        if start >= now_ms:
            raise ValueError("start_ts must be before now_ms unless rate_per_s is given")
        t0 = float(start)
        step = (now_ms - start) / max(count, 1)
    return _event_iter(spec, count, t0, step, first)


def _event_iter(
    spec: PopulationSpec, count: int, t0: float, step: float, first: int
) -> Iterator[tuple[str, bytes, str]]:
    seed = spec.seed
    cat = catalog(seed)
    rng = random.Random(f"population-events-{seed}-{first}")
    bits = rng.getrandbits
    n_subjects = spec.subjects
    anon_cut = round(spec.anonymous_share * 65536)
    kind_table = _kind_table(spec.purchase_share)
    eid_head = b'{"event_id":"e-%d-' % seed
    order_head = b',"order_id":"o-%d-' % seed
    page_view, product_view, add_to_cart = cat.page_view, cat.product_view, cat.add_to_cart
    search, login, items_t, price_cents = cat.search, cat.login, cat.items, cat.price_cents
    n_pages, n_search, n_login = len(page_view), len(search), len(login)
    app_refs, web_refs = cat.app_referrer, cat.web_referrer
    type_pieces = _TYPE_PIECES
    purchase_piece = type_pieces[KIND_PURCHASE]
    lengths = _SESSION_LENGTHS
    n_ua_app = N_APP_UA
    join = b"".join
    # the kinds as locals: the loop compares against them on every event
    purchase, page, product_page, search_page, cart = (
        KIND_PURCHASE, KIND_PAGE_VIEW, KIND_PRODUCT_VIEW, KIND_SEARCH, KIND_ADD_TO_CART)

    n_cities, n_ua = len(CITIES), len(cat.ua)
    jur_table, cities_by_jur = JUR_TABLE, CITIES_BY_JUR
    blocks, load_block = BLOCK_CACHE, cached_block
    block_mask = (1 << BLOCK_SHIFT) - 1

    def new_session() -> Session:
        r = bits(64)
        length = lengths[(r >> 48) % len(lengths)]
        product = (r >> 52) % N_PRODUCTS
        if ((r >> 32) & 0xFFFF) < anon_cut:
            a = bits(64)
            city = (a >> 56) % n_cities
            ua = ((a >> 50) & 0x3F) % n_ua
            refs = app_refs if ua < n_ua_app else web_refs
            device = (a >> 8) & 0xFFFFFFFFFF
            ctx = context(cat, city, a, ua, device, r & 0xFFFFFFFFFFFF, refs[(r >> 40) % len(refs)])
            subj = b'","subject_id":null,"anonymous_id":"a-%012x"' % (a >> 16)
            return Session(length, "", subj, ctx, product, city, bits(32), bits(32), b"%x" % (a & 0xFFFFF), None)
        i = (bits(40) * n_subjects) >> 40
        words = blocks.get((seed, i >> BLOCK_SHIFT)) or load_block(seed, i >> BLOCK_SHIFT)
        j = (i & block_mask) * WORDS
        w_place = words[j + W_PLACE]
        w_device_ua = words[j + W_DEVICE_UA]
        ip_bits = words[j + W_IP]
        cities = cities_by_jur[jur_table[(w_place >> 16) & 0xFF]]
        city = cities[(w_place >> 24) % len(cities)]
        device = words[j + W_DEVICE] | ((w_device_ua & 0xFF) << 32)
        ua = (w_device_ua >> 8) & 0x3F
        if (r >> 62) == 0:  # a quarter of sessions: the customer's other device
            device ^= 0x5A5A5A5A5A
            ua += 7
            ip_bits ^= 0xAAAAA
        ua %= n_ua
        refs = app_refs if ua < n_ua_app else web_refs
        ctx = context(cat, city, ip_bits, ua, device, r & 0xFFFFFFFFFFFF, refs[(r >> 40) % len(refs)])
        key = "s-%06d" % i
        subj = b'","subject_id":"%s"' % key.encode()
        return Session(length, key, subj, ctx, product, city, words[j + W_BUYER], words[j + W_PHONE], b"%d" % i, None)

    slots: list[Session] = [_NO_SESSION] * _SLOTS
    slot_mask, kind_shift = _SLOT_MASK, _KIND_SHIFT
    t = t0
    pos = first
    end = first + count
    while pos < end:
        block = array("I", rng.randbytes(8 * _EVENT_BLOCK))
        if sys.byteorder == "big":
            block.byteswap()
        it = iter(block)
        m = min(_EVENT_BLOCK, end - pos)
        # two random words per event: w1 picks slot, ts jitter and kind; w2 the payload
        for n, w1, w2 in zip(range(pos, pos + m), it, it):
            s = slots[w1 & slot_mask]
            if s.left <= 0:
                s = slots[w1 & slot_mask] = new_session()
            s.left -= 1
            tsb = b"%d" % (int(t) + ((w1 >> 9) & 1023))
            t += step
            nb = b"%d" % n
            kind = kind_table[w1 >> kind_shift]
            if kind == purchase:
                # 1-3 lines; the first is the product in view
                p1 = s.product
                q1 = 1 + (w2 & 1)
                lines = (w2 >> 1) & 3
                if lines < 2:
                    items = items_t[p1][q1]
                    total = price_cents[p1] * q1
                else:
                    p2 = (w2 >> 3) % N_PRODUCTS
                    q2 = 1 + ((w2 >> 15) & 1)
                    if lines == 2:
                        items = items_t[p1][q1] + b"," + items_t[p2][q2]
                        total = price_cents[p1] * q1 + price_cents[p2] * q2
                    else:
                        p3 = (w2 >> 16) % N_PRODUCTS
                        items = join((items_t[p1][q1], b",", items_t[p2][q2], b",", items_t[p3][1]))
                        total = price_cents[p1] * q1 + price_cents[p2] * q2 + price_cents[p3]
                tail = s.purchase_tail
                if tail is None:
                    tail = s.purchase_tail = purchase_tail(s.city, s.buyer_word, s.phone_word, s.mail_tag, w2 >> 28)
                yield "purchase", join((
                    eid_head, nb, s.subject, purchase_piece, tsb, s.context, order_head, nb,
                    b'","items":[', items, b'],"total":', money(total), tail,
                )), s.key
            else:
                if kind == page:
                    payload = page_view[w2 % n_pages]
                elif kind == product_page:
                    # mostly browsing around the product in view, sometimes elsewhere
                    if w2 & 3:
                        p = s.product = (s.product + 1 + (w2 >> 4) % 64) % N_PRODUCTS
                    else:
                        p = s.product = (w2 >> 4) % N_PRODUCTS
                    payload = product_view[p]
                elif kind == search_page:
                    payload = search[w2 % n_search]
                elif kind == cart:
                    payload = add_to_cart[s.product][w2 & 7]
                else:  # KIND_LOGIN
                    payload = login[w2 % n_login]
                yield "click", join((eid_head, nb, s.subject, type_pieces[kind], tsb, s.context, payload)), s.key
        pos += m


def events(
    spec: PopulationSpec,
    now_ms: int,
    count: int,
    *,
    start_ts: int | None = None,
    rate_per_s: float | None = None,
    first: int = 0,
) -> Iterator[dict[str, Any]]:
    """The events of :func:`event_bytes` (same arguments), decoded into fresh dicts.

    One generator, two views: whatever a test asserts about these dicts
    holds for the bytes a producer sends.
    """
    stream = event_bytes(spec, now_ms, count, start_ts=start_ts, rate_per_s=rate_per_s, first=first)
    loads = orjson.loads
    return (loads(raw) for _kind, raw, _key in stream)
