"""Schema compiler: a straight-line Python reader and writer generated once per schema.

fastavro resolves every union on write by validating the value against each
branch (a nested record is validated recursively) and dispatches every field
through generic code on read, which costs ~1 us per nullable field. The
schemas here use a small subset of Avro (records, arrays, maps, unions with
null, string, long, int, double, boolean, bytes; ``[null, string, bytes]`` for
encrypted fields, told apart by the value's Python type), so each schema is compiled into
straight-line Python once. fastavro stays the reference: it parses and
checks the schemas, reads records written with other (registry) schema
versions, and the tests assert byte-identical output and identical decoding.
Anything the compiler does not support raises _Unsupported and that kind
falls back to fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from streams.engine.codecs.varint import LEN1, BadBody, read_varint, read_varint_long, write_long, zigzag_bytes
from streams.engine.vocab import I32_MAX, I32_MIN, I64_MAX, I64_MIN

class _Unsupported(Exception):
    pass


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "double", "string", "bytes"})
_unpack_double = struct.Struct("<d").unpack_from
_pack_double = struct.Struct("<d").pack


def zero_width(t: Any, named: dict[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """Whether a value of Avro type ``t`` can be encoded in zero bytes."""
    if isinstance(t, str):
        if t == "null":
            return True
        if t in named and t not in seen:
            return zero_width(named[t], named, seen | {t})
        return False
    if isinstance(t, list):
        return False  # a union index takes at least one byte
    kind = t.get("type")
    if kind == "record":
        return all(zero_width(f["type"], named, seen) for f in t.get("fields", ()))
    if kind == "fixed":
        return t.get("size") == 0
    if kind == "enum":
        return False
    if isinstance(kind, (str, list, dict)) and kind not in ("array", "map"):
        return zero_width(kind, named, seen)
    return False


def has_unbounded_array(t: Any, named: dict[str, Any], seen: set[str] | None = None) -> bool:
    """Arrays of zero-width items let a few bytes claim 2**63 items: refuse such writers."""
    seen = set() if seen is None else seen
    if isinstance(t, str):
        if t in named and t not in seen:
            seen.add(t)
            return has_unbounded_array(named[t], named, seen)
        return False
    if isinstance(t, list):
        return any(has_unbounded_array(b, named, seen) for b in t)
    kind = t.get("type")
    if kind == "array":
        return zero_width(t["items"], named) or has_unbounded_array(t["items"], named, seen)
    if kind == "map":
        return has_unbounded_array(t["values"], named, seen)
    if kind == "record":
        return any(has_unbounded_array(f["type"], named, seen) for f in t.get("fields", ()))
    if isinstance(kind, (list, dict)):
        return has_unbounded_array(kind, named, seen)
    return False



class _Gen:
    """Source emitter with unique local names."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.n = 0
        self.named: dict[str, Any] = {}
        self.consts: dict[str, Any] = {}
        self.namespace = raw.get("namespace", "")
        self.expanding: set[str] = set()

    def var(self, stem: str = "v") -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def const(self, value: Any) -> str:
        name = f"_K{len(self.consts)}"
        self.consts[name] = value
        return name

    def emit(self, ind: int, line: str) -> None:
        self.lines.append("    " * ind + line)

    def resolve(self, t: Any, namespace: str) -> tuple[Any, str]:
        """(type with named references and {"type": primitive} unwrapped, namespace)."""
        while True:
            if isinstance(t, str):
                if t in _PRIMITIVES:
                    return t, namespace
                full = t if "." in t else f"{namespace}.{t}" if namespace else t
                found = self.named.get(full, self.named.get(t))
                if found is None:
                    raise _Unsupported(f"type {t}")
                if full in self.expanding:
                    raise _Unsupported("recursive type")
                t = found
                continue
            if isinstance(t, dict):
                kind = t.get("type")
                if isinstance(kind, str) and kind in _PRIMITIVES:
                    if t.get("logicalType"):
                        raise _Unsupported("logical type")
                    return kind, namespace
                if kind == "record":
                    name = t["name"]
                    ns = t.get("namespace", namespace if "." not in name else "")
                    full = name if "." in name else f"{ns}.{name}" if ns else name
                    self.named.setdefault(full, t)
                    return t, (full.rsplit(".", 1)[0] if "." in full else "")
                if kind in ("array", "map"):
                    return t, namespace
                raise _Unsupported(f"type {kind}")
            if isinstance(t, list):
                return t, namespace
            raise _Unsupported("type form")

    # -- reader -------------------------------------------------------------

    def read_long(self, ind: int, target: str) -> None:
        self.emit(ind, f"{target} = b[p]")
        self.emit(ind, f"if {target} < 128:")
        self.emit(ind + 1, "p += 1")
        self.emit(ind + 1, f"{target} = ({target} >> 1) ^ -({target} & 1)")
        self.emit(ind, "else:")
        # inline, unrolled to 6 bytes (epoch-ms timestamps take 6); longer: the general loop
        self.emit(ind + 1, "_x = b[p + 1]")
        self.emit(ind + 1, f"{target} = ({target} & 127) | (_x & 127) << 7")
        for k in range(2, 7):
            i = ind + k - 1
            self.emit(i, "if _x < 128:")
            self.emit(i + 1, f"p += {k}")
            self.emit(i + 1, f"{target} = ({target} >> 1) ^ -({target} & 1)")
            self.emit(i, "else:")
            if k < 6:
                self.emit(i + 1, f"_x = b[p + {k}]")
                self.emit(i + 1, f"{target} |= (_x & 127) << {7 * k}")
            else:
                self.emit(i + 1, f"{target}, p = _rvl(b, p)")

    def read(self, t: Any, ns: str, target: str, ind: int) -> None:
        t, ns = self.resolve(t, ns)
        if t == "null":
            self.emit(ind, f"{target} = None")
        elif t == "boolean":
            self.emit(ind, f"{target} = b[p]")
            self.emit(ind, "p += 1")
            self.emit(ind, f"if {target} > 1: raise _Bad('boolean byte')")
            self.emit(ind, f"{target} = {target} == 1")
        elif t in ("long", "int"):
            self.read_long(ind, target)
        elif t == "double":
            self.emit(ind, f"{target} = _ud(b, p)[0]")
            self.emit(ind, "p += 8")
        elif t == "string":
            n, e = self.var("n"), self.var("e")
            self.read_long(ind, n)
            self.emit(ind, f"if {n} < 0: raise _Bad('negative length')")
            self.emit(ind, f"{e} = p + {n}")
            self.emit(ind, f"if {e} > L: raise EOFError")
            self.emit(ind, f"{target} = b[p:{e}].decode()")
            self.emit(ind, f"p = {e}")
        elif t == "bytes":
            n, e = self.var("n"), self.var("e")
            self.read_long(ind, n)
            self.emit(ind, f"if {n} < 0: raise _Bad('negative length')")
            self.emit(ind, f"{e} = p + {n}")
            self.emit(ind, f"if {e} > L: raise EOFError")
            self.emit(ind, f"{target} = bytes(b[p:{e}])")
            self.emit(ind, f"p = {e}")
        elif isinstance(t, list) and len(t) == 2:
            # a two-branch union's index is one byte, 0x00 or 0x02 (canonical encoding;
            # writers never emit another, and any other byte is rejected as garbage)
            idx = self.var("u")
            self.emit(ind, f"{idx} = b[p]")
            self.emit(ind, "p += 1")
            self.emit(ind, f"if {idx} == 0:")
            self.read(t[0], ns, target, ind + 1)
            self.emit(ind, f"elif {idx} == 2:")
            self.read(t[1], ns, target, ind + 1)
            self.emit(ind, "else:")
            self.emit(ind + 1, "raise _Bad('union index')")
        elif isinstance(t, list):
            if not t:
                raise _Unsupported("empty union")
            idx = self.var("u")
            self.read_long(ind, idx)
            for i, branch in enumerate(t):
                self.emit(ind, f"{'if' if i == 0 else 'elif'} {idx} == {i}:")
                self.read(branch, ns, target, ind + 1)
            self.emit(ind, "else:")
            self.emit(ind + 1, "raise _Bad('union index')")
        elif t["type"] == "record":
            names = []
            for f in t["fields"]:
                v = self.var("f")
                self.read(f["type"], ns, v, ind)
                names.append(f"{f['name']!r}: {v}")
            self.emit(ind, f"{target} = {{{', '.join(names)}}}")
        elif t["type"] in ("array", "map"):
            is_map = t["type"] == "map"
            inner = t["values"] if is_map else t["items"]
            if zero_width(self.resolve(inner, ns)[0], self.named):
                raise _Unsupported("zero-width items")
            cnt, item = self.var("c"), self.var("i")
            self.emit(ind, f"{target} = {{}}" if is_map else f"{target} = []")
            self.emit(ind, "while True:")
            self.read_long(ind + 1, cnt)
            self.emit(ind + 1, f"if {cnt} == 0: break")
            self.emit(ind + 1, f"if {cnt} < 0:")
            self.emit(ind + 2, f"{cnt} = -{cnt}")
            skip = self.var("s")
            self.read_long(ind + 2, skip)
            self.emit(ind + 1, f"if {cnt} > L - p: raise EOFError")  # every item takes >= 1 byte
            self.emit(ind + 1, f"for _ in range({cnt}):")
            if is_map:
                key = self.var("k")
                self.read("string", ns, key, ind + 2)
                self.read(inner, ns, item, ind + 2)
                self.emit(ind + 2, f"{target}[{key}] = {item}")
            else:
                self.read(inner, ns, item, ind + 2)
                self.emit(ind + 2, f"{target}.append({item})")
        else:
            raise _Unsupported("type")

    # -- writer -------------------------------------------------------------

    def write(self, t: Any, ns: str, v: str, ind: int) -> None:
        t, ns = self.resolve(t, ns)
        if t == "null":
            self.emit(ind, f"if {v} is not None: raise _Bad")
        elif t == "boolean":
            self.emit(ind, f"if {v} is True: out += b'\\x01'")
            self.emit(ind, f"elif {v} is False: out += b'\\x00'")
            self.emit(ind, "else: raise _Bad")
        elif t in ("long", "int"):
            lo, hi = (I64_MIN, I64_MAX) if t == "long" else (I32_MIN, I32_MAX)
            self.emit(ind, f"if type({v}) is not int or not {lo} <= {v} <= {hi}: raise _Bad")
            self.emit(ind, f"out += _wl({v})")
        elif t == "double":
            self.emit(ind, f"if type({v}) is not float and type({v}) is not int: raise _Bad")
            self.emit(ind, f"out += _pd({v})")
        elif t == "string":
            e, n = self.var("e"), self.var("n")
            self.emit(ind, f"{e} = {v}.encode()")  # AttributeError for non-strings
            self.emit(ind, f"{n} = len({e})")
            self.emit(ind, f"out += _L1[{n}] if {n} < 64 else _wl({n})")
            self.emit(ind, f"out += {e}")
        elif t == "bytes":
            n = self.var("n")
            self.emit(ind, f"if type({v}) is not bytes: raise _Bad")
            self.emit(ind, f"{n} = len({v})")
            self.emit(ind, f"out += _L1[{n}] if {n} < 64 else _wl({n})")
            self.emit(ind, f"out += {v}")
        elif isinstance(t, list):
            resolved = [self.resolve(b, ns)[0] for b in t]
            others = [i for i, b in enumerate(resolved) if b != "null"]
            nulls = [i for i, b in enumerate(resolved) if b == "null"]
            if sorted(resolved[i] for i in others) == ["bytes", "string"] and len(nulls) <= 1:
                # an encrypted field: plaintext text, or its binary envelope (CONTRACT §10);
                # the Python type picks the branch as fastavro's validation does
                si = others[0] if resolved[others[0]] == "string" else others[1]
                bi = others[1] if si == others[0] else others[0]
                kw = "if"
                if nulls:
                    self.emit(ind, f"if {v} is None: out += {zigzag_bytes(nulls[0])!r}")
                    kw = "elif"
                self.emit(ind, f"{kw} type({v}) is bytes:")
                self.emit(ind + 1, f"out += {zigzag_bytes(bi)!r}")
                self.write("bytes", ns, v, ind + 1)
                self.emit(ind, "else:")
                self.emit(ind + 1, f"out += {zigzag_bytes(si)!r}")
                self.write("string", ns, v, ind + 1)
                return
            if len(others) != 1 or len(nulls) > 1:
                raise _Unsupported("union other than [null, T]")
            i = others[0]
            if nulls:
                self.emit(ind, f"if {v} is None: out += {zigzag_bytes(nulls[0])!r}")
                self.emit(ind, "else:")
                ind += 1
            self.emit(ind, f"out += {zigzag_bytes(i)!r}")
            self.write(t[i], ns, v, ind)
        elif t["type"] == "record":
            self.emit(ind, f"if type({v}) is not dict: raise _Bad")
            for f in t["fields"]:
                fv = self.var("f")
                if "default" not in f:
                    self.emit(ind, f"{fv} = {v}[{f['name']!r}]")
                elif f["default"] is None:
                    self.emit(ind, f"{fv} = {v}.get({f['name']!r})")
                else:
                    default = f["default"]
                    if isinstance(default, (list, dict)):
                        default = tuple(default) if isinstance(default, list) else default
                    self.emit(ind, f"{fv} = {v}.get({f['name']!r}, {self.const(default)})")
                self.write(f["type"], ns, fv, ind)
        elif t["type"] == "array":
            item = self.var("i")
            self.emit(ind, f"if type({v}) is not list and type({v}) is not tuple: raise _Bad")
            self.emit(ind, f"if {v}:")
            self.emit(ind + 1, f"out += _wl(len({v}))")
            self.emit(ind + 1, f"for {item} in {v}:")
            self.write(t["items"], ns, item, ind + 2)
            self.emit(ind, "out += b'\\x00'")
        elif t["type"] == "map":
            key, item = self.var("k"), self.var("i")
            self.emit(ind, f"if type({v}) is not dict: raise _Bad")
            self.emit(ind, f"if {v}:")
            self.emit(ind + 1, f"out += _wl(len({v}))")
            self.emit(ind + 1, f"for {key}, {item} in {v}.items():")
            self.emit(ind + 2, f"if type({key}) is not str: raise _Bad")
            self.write("string", ns, key, ind + 2)
            self.write(t["values"], ns, item, ind + 2)
            self.emit(ind, "out += b'\\x00'")
        else:
            raise _Unsupported("type")


def _compile(raw: dict[str, Any], what: str) -> Callable:
    gen = _Gen(raw)
    if what == "reader":
        gen.emit(0, "def read(b, p, L):")
        gen.read(raw, "", "r", 1)
        gen.emit(1, "return r, p")
    else:
        gen.emit(0, "def write(out, o):")
        gen.write(raw, "", "o", 1)
        gen.emit(1, "return out")
    namespace: dict[str, Any] = {
        "_rv": read_varint, "_rvl": read_varint_long, "_ud": _unpack_double, "_Bad": BadBody, "_wl": write_long,
        "_pd": _pack_double, "_L1": LEN1, **gen.consts,
    }
    code = compile("\n".join(gen.lines) + "\n", f"<avro {what} {raw.get('name')}>", "exec")
    exec(code, namespace)  # noqa: S102 - source generated from our own schema files
    return namespace["read" if what == "reader" else "write"]


def compile_reader(raw: dict[str, Any]) -> Callable[[bytes, int, int], tuple[Any, int]] | None:
    """``read(b, p, L) -> (value, end)`` for schema ``raw``, or None if unsupported.

    Raises IndexError/EOFError (body ends early), UnicodeDecodeError, BadBody (garbage)."""
    try:
        return _compile(raw, "reader")
    except _Unsupported:
        return None


def compile_writer(raw: dict[str, Any]) -> Callable[[bytearray, Any], bytearray] | None:
    """``write(out, value) -> out`` for schema ``raw``, or None if unsupported.

    Raises (BadBody, KeyError, AttributeError, ...) when the value does not fit."""
    try:
        return _compile(raw, "writer")
    except _Unsupported:
        return None

