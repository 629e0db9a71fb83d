"""The event fields (CONTRACT §3) as shapes, their dotted paths, and compiled copiers.

A shape is None (a scalar, copied as is), a dict (a record: only these keys are
copied, recursively) or a one-element list (an array of that shape). The policy
compiles one copier per shape; the projection (``decide``) calls it. Its own
module so that ``policy`` (which compiles) and ``decide`` (which projects) do not
import each other. The oracle (``reference``) writes these shapes out again on
purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_GEO = {"country": None, "region": None, "city": None, "lat": None, "lon": None}
CONTEXT_SHAPE: dict[str, Any] = {
    "ip": None, "user_agent": None, "device_id": None, "session_id": None, "referrer": None, "geo": _GEO,
}
_ITEM = {"product_id": None, "category": None, "quantity": None, "price": None}
_ADDRESS = {"street": None, "city": None, "postal_code": None, "country": None}

#: Payload fields per event type. A shape is None (a scalar, copied as is), a
#: dict (a record: only these keys are copied, recursively) or a one-element
#: list (an array of that shape).
EVENT_PAYLOADS: dict[str, dict[str, Any]] = {
    "page_view": {"url": None, "title": None},
    "product_view": {"product_id": None, "category": None, "price": None},
    "search": {"query": None},
    "add_to_cart": {"product_id": None, "quantity": None},
    "login": {"method": None},
    "purchase": {
        "order_id": None, "items": [_ITEM], "total": None, "currency": None,
        "payment_method": None, "shipping_address": _ADDRESS, "email": None, "phone": None,
    },
}

#: Fields whose values are text (strings in schemas/filtered_event.avsc): the
#: only ones ``pseudonymize`` applies to, since a pseudonym is text.
TEXT_FIELDS = frozenset({
    "context.ip", "context.user_agent", "context.device_id", "context.session_id", "context.referrer",
    "context.geo.country", "context.geo.region", "context.geo.city",
    "url", "title", "query", "product_id", "category", "method", "order_id", "currency", "payment_method",
    "email", "phone",
    "shipping_address.street", "shipping_address.city", "shipping_address.postal_code", "shipping_address.country",
})


def _paths(shape: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every dotted path of a shape tree (records only; arrays are leaves)."""
    out: dict[str, Any] = {}
    for k, sub in shape.items():
        p = prefix + k
        out[p] = sub
        if isinstance(sub, dict):
            out.update(_paths(sub, p + "."))
    return out


_CONTEXT_PATHS = _paths({"context": CONTEXT_SHAPE})
#: path -> shape, for every categorizable path of each event type.
PATHS_BY_TYPE: dict[str, dict[str, Any]] = {
    t: {**_CONTEXT_PATHS, **_paths(payload)} for t, payload in EVENT_PAYLOADS.items()
}
#: Every categorizable field path (the union over event types).
KNOWN_FIELDS: dict[str, Any] = {}
for _t in PATHS_BY_TYPE.values():
    KNOWN_FIELDS.update(_t)


def shape_copy(value: Any, shape: Any) -> Any:
    """Copy of ``value`` holding only what ``shape`` knows; None when nothing is left.

    Shape None: a scalar, returned as is. Shape dict: a record; keys not in
    the shape and None values are left out; an empty result is None. Shape
    [sub]: an array; each element copied with ``sub``, elements that come out
    None are left out (an empty array stays an empty array).
    """
    if shape is None:
        return value
    if type(shape) is dict:
        if type(value) is not dict:
            return None
        out = {}
        for k, sub in shape.items():
            v = value.get(k)
            if v is None:
                continue
            if sub is not None:
                v = shape_copy(v, sub)
                if v is None:
                    continue
            out[k] = v
        return out or None
    if type(value) is not list:
        return None
    sub = shape[0]
    res = []
    for el in value:
        c = shape_copy(el, sub)
        if c is not None:
            res.append(c)
    return res


def compile_shape(shape: Any) -> Any:
    """``shape_copy(value, shape)`` as a function of ``value``, generated once per shape
    (straight-line code instead of the recursive walk); None for a scalar shape (None)."""
    if shape is None:
        return None
    lines = ["def copy(v0):"]
    counter = [0]

    def var(stem: str) -> str:
        counter[0] += 1
        return f"{stem}{counter[0]}"

    def gen(sh: Any, src: str, dst: str, ind: int) -> None:
        pad = "    " * ind
        if type(sh) is dict:
            lines.append(f"{pad}if type({src}) is dict:")
            lines.append(f"{pad}    {dst} = {{}}")
            for k, sub in sh.items():
                x = var("x")
                lines.append(f"{pad}    {x} = {src}.get({k!r})")
                lines.append(f"{pad}    if {x} is not None:")
                if sub is None:
                    lines.append(f"{pad}        {dst}[{k!r}] = {x}")
                else:
                    y = var("y")
                    gen(sub, x, y, ind + 2)
                    lines.append(f"{pad}        if {y} is not None:")
                    lines.append(f"{pad}            {dst}[{k!r}] = {y}")
            lines.append(f"{pad}    if not {dst}:")
            lines.append(f"{pad}        {dst} = None")
            lines.append(f"{pad}else:")
            lines.append(f"{pad}    {dst} = None")
        elif type(sh) is list:
            sub = sh[0]
            el = var("e")
            lines.append(f"{pad}if type({src}) is list:")
            lines.append(f"{pad}    {dst} = []")
            lines.append(f"{pad}    for {el} in {src}:")
            if sub is None:
                lines.append(f"{pad}        if {el} is not None:")
                lines.append(f"{pad}            {dst}.append({el})")
            else:
                c = var("c")
                gen(sub, el, c, ind + 2)
                lines.append(f"{pad}        if {c} is not None:")
                lines.append(f"{pad}            {dst}.append({c})")
            lines.append(f"{pad}else:")
            lines.append(f"{pad}    {dst} = None")
        else:
            raise ValueError("a shape is None, a dict or a one-element list")

    gen(shape, "v0", "r", 1)
    lines.append("    return r")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines) + "\n", "<shape copy>", "exec"), namespace)  # noqa: S102 - our own shapes
    return namespace["copy"]
