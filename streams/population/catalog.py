"""Pre-encoded JSON fragments of events: the product catalogue, pages, contexts, buyers.

Contract: :func:`catalog` gives, per seed, one :class:`Catalog` drawn from its own seeded
``random.Random`` and cached; its fragments are immutable ``bytes`` that the event
generator joins into events (each payload fragment starts with ``,`` and closes the event
object). :func:`context` and :func:`purchase_tail` build the per-session and per-buyer
fragments. Nothing here is on the per-event path except table lookups: encoding happens
once per seed, per session or per buyer.
"""

from __future__ import annotations

import math
import random
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from streams.population.places import (
    APP_REFERRERS,
    CITIES,
    CURRENCY,
    FIRST_NAMES,
    IP_OCTETS,
    LAST_NAMES,
    LOGIN_METHODS,
    MAIL_DOMAINS,
    PAYMENT_METHODS,
    STREETS,
    USER_AGENTS,
    WEB_REFERRERS,
    postal_code,
)

# category -> (median price in currency units, spread, product nouns)
_CATALOG_CATEGORIES: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "shoes": (70, 0.5, ("running shoes", "sneakers", "boots", "sandals", "loafers")),
    "apparel": (35, 0.6, ("t-shirt", "hoodie", "jeans", "jacket", "dress", "socks")),
    "electronics": (120, 0.9, ("headphones", "charger", "speaker", "smartwatch", "keyboard")),
    "home": (40, 0.8, ("lamp", "cushion", "mug set", "towel", "frying pan")),
    "beauty": (18, 0.6, ("moisturizer", "shampoo", "lipstick", "perfume", "sunscreen")),
    "books": (15, 0.4, ("novel", "cookbook", "travel guide", "comic", "biography")),
    "toys": (25, 0.6, ("puzzle", "board game", "building set", "plush bear", "rc car")),
    "sports": (45, 0.8, ("yoga mat", "dumbbells", "water bottle", "tent", "bike light")),
    "grocery": (8, 0.5, ("coffee beans", "olive oil", "green tea", "dark chocolate", "granola")),
    "garden": (30, 0.7, ("watering can", "seed kit", "planter", "pruning shears", "hose")),
}
_ADJECTIVES = ("red", "black", "white", "blue", "organic", "wireless", "waterproof", "classic",
               "vegan", "kids", "large", "mini", "premium", "eco", "retro")
N_PRODUCTS = 4096
_SITE = "https://shop.example"


def _dump(value: Any) -> bytes:
    return orjson.dumps(value)


def money(cents: int) -> bytes:
    """``cents`` as a JSON number with two decimals (``1999`` -> ``19.99``)."""
    return b"%d.%02d" % divmod(cents, 100)


class Product(NamedTuple):
    product_id: str
    category: str
    price_cents: int
    name: str


class Catalog:
    """Pre-encoded JSON fragments, drawn once per seed.

    Each payload fragment starts with ``,`` and closes the event object, so
    an event is a handful of ``bytes`` joined together.
    """

    def __init__(self, seed: int) -> None:
        r = random.Random(f"population-catalog-{seed}")
        cats = list(_CATALOG_CATEGORIES)
        self.products: list[Product] = []
        for k in range(N_PRODUCTS):
            cat = cats[k % len(cats)] if k < len(cats) else r.choice(cats)
            median, spread, nouns = _CATALOG_CATEGORIES[cat]
            units = max(1, int(median * math.exp(r.gauss(0, spread))))
            cents = units * 100 + r.choice((99, 99, 99, 95, 49, 0))
            name = f"{r.choice(_ADJECTIVES)} {r.choice(nouns)}"
            self.products.append(Product(f"p-{k:05d}", cat, cents, name))
        self.price_cents = [p.price_cents for p in self.products]
        self.product_view = [
            b',"product_id":' + _dump(p.product_id) + b',"category":' + _dump(p.category) + b',"price":'
            + money(p.price_cents) + b"}"
            for p in self.products
        ]
        self.add_to_cart = [
            [b',"product_id":' + _dump(p.product_id) + b',"quantity":' + b"%d}" % q for q in (1, 1, 1, 2, 2, 3, 1, 4)]
            for p in self.products
        ]
        #: items[product][quantity]: one element of a purchase's ``items`` array
        self.items = [
            [
                b'{"product_id":' + _dump(p.product_id) + b',"category":' + _dump(p.category)
                + b',"quantity":%d,"price":' % q + money(p.price_cents) + b"}"
                for q in range(5)
            ]
            for p in self.products
        ]
        pages: list[bytes] = []
        fixed = [("/", "Home"), ("/cart", "Your cart"), ("/account", "Your account"),
                 ("/deals", "Today's deals"), ("/help", "Help centre"), ("/wishlist", "Wishlist")]
        for path, title in fixed:
            pages.append(b',"url":' + _dump(_SITE + path) + b',"title":' + _dump(title) + b"}")
        for cat in cats:
            frag = b',"url":' + _dump(f"{_SITE}/c/{cat}") + b',"title":' + _dump(cat.capitalize()) + b"}"
            pages.extend([frag] * 3)
        for p in self.products[:256]:
            pages.append(b',"url":' + _dump(f"{_SITE}/p/{p.product_id}") + b',"title":' + _dump(p.name.title()) + b"}")
        self.page_view = pages
        queries = set()
        while len(queries) < 400:
            _cat, (_m, _s, nouns) = r.choice(list(_CATALOG_CATEGORIES.items()))
            q = r.choice(nouns) if r.random() < 0.4 else f"{r.choice(_ADJECTIVES)} {r.choice(nouns)}"
            if r.random() < 0.15:
                q += r.choice((" sale", " size 42", " gift", " cheap", " set"))
            queries.add(q)
        self.search = [b',"query":' + _dump(q) + b"}" for q in sorted(queries)]
        self.login = [b',"method":' + _dump(m) + b"}" for m in LOGIN_METHODS]
        self.app_referrer = [b"null" if ref is None else _dump(ref) for ref in APP_REFERRERS]
        self.web_referrer = [b"null" if ref is None else _dump(ref) for ref in WEB_REFERRERS]
        self.geo = [
            _dump({"country": c.country, "region": c.region, "city": c.name, "lat": c.lat, "lon": c.lon})
            for c in CITIES
        ]
        self.ua = [_dump(ua) for ua in USER_AGENTS]
        # IPs: 256 "a.b." heads per jurisdiction (its usual first octets) and
        # 4096 "c.d" tails, ~1M addresses per jurisdiction without formatting
        # one per session.
        self.ip_head = {
            j: [b"%d.%d." % (r.choice(octets), r.randrange(256)) for _ in range(256)]
            for j, octets in IP_OCTETS.items()
        }
        self.ip_tail = [b"%d.%d" % (r.randrange(256), r.randrange(1, 255)) for _ in range(4096)]


@lru_cache(maxsize=8)
def catalog(seed: int) -> Catalog:
    """The :class:`Catalog` of ``seed`` (cached)."""
    return Catalog(seed)


def context(cat: Catalog, city: int, ip_bits: int, ua: int, device: int, session: int, ref: bytes) -> bytes:
    """The whole ``,"context":{...}`` member of a session's events."""
    return b"".join((
        b',"context":{"ip":"',
        cat.ip_head[CITIES[city].jurisdiction][ip_bits & 0xFF],
        cat.ip_tail[(ip_bits >> 8) & 0xFFF],
        b'","user_agent":', cat.ua[ua],
        b',"device_id":"d-%010x","geo":' % device, cat.geo[city],
        b',"session_id":"%012x","referrer":' % session, ref, b"}",
    ))


# Pre-encoded pieces of the purchase tail (see purchase_tail), indexed by city.
_TAIL_HEAD = [
    b',"currency":"%s","payment_method":"' % CURRENCY[c.jurisdiction].encode() for c in CITIES
]
_TAIL_CITY = [
    b',"city":' + _dump(c.name) + b',"country":' + _dump(c.country) + b'},"email":"' for c in CITIES
]
_TAIL_PHONE = [b'","phone":"%s ' % c.phone_prefix.encode() for c in CITIES]
_PAYMENT_B = [p.encode() for p in PAYMENT_METHODS]
_STREETS_B = [b'","shipping_address":{"street":"%d ' % (k % 180 + 1) + _dump(s)[1:-1]
              for k in range(180 * len(STREETS)) for s in (STREETS[k // 180],)]
# 256 postal codes per city: delivery areas repeat, formatting per buyer is slow.
_POSTAL_B = [
    [b'","postal_code":' + _dump(postal_code(c.country, (k * 2654435761) >> 7)) for k in range(256)] for c in CITIES
]
_FIRST_B = [s.encode() for s in FIRST_NAMES]
_LAST_B = [b"." + s.encode() for s in LAST_NAMES]
_MAIL_B = [b"@" + s.encode() for s in MAIL_DOMAINS]


_D3 = [b"%03d" % k for k in range(1000)]


def purchase_tail(city: int, w5: int, w6: int, tag: bytes, pay: int) -> bytes:
    """Currency, payment, shipping address and contact of a buyer (closes the event).

    ``w5`` and ``w6`` are the buyer's random words: name, mail domain, street,
    postal code (w5) and phone number (w6).
    """
    return b"".join((
        _TAIL_HEAD[city], _PAYMENT_B[pay % len(_PAYMENT_B)],
        _STREETS_B[(w5 >> 12) % len(_STREETS_B)], _POSTAL_B[city][w5 >> 24], _TAIL_CITY[city],
        _FIRST_B[w5 % len(_FIRST_B)], _LAST_B[(w5 >> 5) % len(_LAST_B)], tag, _MAIL_B[(w5 >> 10) & 3],
        _TAIL_PHONE[city], _D3[w6 % 1000], b" ", _D3[(w6 >> 10) % 1000], _D3[(w6 >> 20) % 1000], b'"}',
    ))
