"""Shapes of nested event fields and their compiled copiers.

A shape is None (a scalar, copied as is), a dict (a record: only these keys are
copied, recursively) or a one-element list (an array of that shape). The policy
compiles one copier per shape; the projection (``decide``) calls it. Its own
module so that ``policy`` (which compiles) and ``decide`` (which projects) do not
import each other.
"""

from __future__ import annotations

from typing import Any


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
