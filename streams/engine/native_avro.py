"""What the native engine needs of an Avro schema: its type program, compiled once.

The native decoder (native/src/avro_scan.rs) reads the Avro body of an event with a
small program made here from the codec's own schema (``AvroCodec._raw``), so the
field order and the union branches come from ``schemas/*.avsc`` at start-up instead
of being written into the Rust code. A schema the program cannot express (a map,
an enum, bytes, a logical type...) gives None: that topic's events go to the Python
engine, which reads every schema.

Program: ``[code]`` for a primitive (``null boolean int long double string bytes``),
``["union", [t, ...]]``, ``["record", [[name start, name end, t, absent], ...]]`` (the
names are slices of one blob, so the decoded tape can point into it; ``absent``: what
the writer does with an absent field, 0 raise, 1 null, 2 another default),
``["array", t]``.

The outputs: ``avro_output`` gives the output schema's program (engine outputs are
re-encoded from their JSON text, native/src/avro_write.rs) and the decision record's
fragments, which are ``fragments.AvroFragments``' own bytes.
"""

from __future__ import annotations

from typing import Any

from streams.engine.codecs import AvroCodec
from streams.engine.fragments import AvroFragments, avro_str
from streams.engine.policy import CompiledPolicy

#: bytes: only in the outputs' encrypted fields (``[null, string, bytes]``); the native
#: side never reads or writes one (the Python engine decides those records)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "double", "string", "bytes"})


class _Unsupported(Exception):
    pass


def program(raw: dict[str, Any]) -> tuple[bytes, list[Any]] | None:
    """(names blob, program) of a record schema, or None when the program cannot express it."""
    names = bytearray()
    named: dict[str, Any] = {}

    def full_name(name: str, ns: str) -> str:
        return name if "." in name or not ns else f"{ns}.{name}"

    def conv(t: Any, ns: str, depth: int) -> list[Any]:
        if depth > 30:  # avro_scan::MAX_DEPTH is 32
            raise _Unsupported
        if isinstance(t, str):
            if t in _PRIMITIVES:
                return [t]
            found = named.get(full_name(t, ns), named.get(t))
            if found is None:
                raise _Unsupported
            return found
        if isinstance(t, list):
            return ["union", [conv(b, ns, depth + 1) for b in t]]
        if not isinstance(t, dict) or t.get("logicalType"):
            raise _Unsupported
        kind = t.get("type")
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return [kind]
        if kind == "array":
            return ["array", conv(t["items"], ns, depth + 1)]
        if kind == "record":
            name = t["name"]
            rns = t.get("namespace", ns if "." not in name else "")
            full = full_name(name, rns)
            inner_ns = full.rsplit(".", 1)[0] if "." in full else ""
            fields: list[Any] = []
            prog = ["record", fields]
            named[full] = prog  # a recursive reference would loop: refused below
            for f in t["fields"]:
                b = f["name"].encode()
                a = len(names)
                names.extend(b)
                absent = 0 if "default" not in f else 1 if f["default"] is None else 2
                fields.append([a, len(names), conv(f["type"], inner_ns, depth + 1), absent])
            named[full] = ["record", fields]
            return prog
        raise _Unsupported

    try:
        root = conv(raw, raw.get("namespace", ""), 0)
        _check_finite(root, set())
    except (_Unsupported, KeyError, TypeError):
        return None
    if root[0] != "record":
        return None
    return bytes(names), root


def _check_finite(t: list[Any], path: set[int]) -> None:
    if id(t) in path:
        raise _Unsupported  # a recursive schema: the native side reads trees only
    path.add(id(t))
    if t[0] == "union":
        for b in t[1]:
            _check_finite(b, path)
    elif t[0] == "record":
        for f in t[1]:
            _check_finite(f[2], path)
    elif t[0] == "array":
        _check_finite(t[1], path)
    path.discard(id(t))


def avro_input(codec: Any) -> dict[str, Any] | None:
    """The spec of an Avro input topic (``spec_of``), or None when the native side must not
    decode it: not our compiled codec, no schema id yet (registry, before its first
    encode), or a schema the program cannot express."""
    return _program_of(codec, "_read")


def _program_of(codec: Any, side: str) -> dict[str, Any] | None:
    """The compiled program of an AvroCodec's schema with its header, or None (not our
    codec, no schema id yet, no compiled reader or writer (``side``), or a schema the
    program cannot express)."""
    if type(codec) is not AvroCodec or codec.header is None or getattr(codec, side) is None:
        return None
    prog = program(codec._raw)
    if prog is None:
        return None
    names, root = prog
    return {"header": codec.header, "names": names, "program": root}


def avro_output(policy: CompiledPolicy, out_codec: Any, decision_codec: Any) -> dict[str, Any] | None:
    """The spec's ``avro_out`` (engine outputs and decision records in Avro), or None when
    the native side must not write them: not our compiled codecs, or no schema id yet
    (registry, before the first encode: the Python engine registers)."""
    out = _program_of(out_codec, "_write")
    if out is None or type(decision_codec) is not AvroCodec or decision_codec.header is None:
        return None
    return {"output": out, "decision_header": decision_codec.header,
            "categories": [avro_str(c) for c in policy.vocab.categories]}


def decision_fragments(policy: CompiledPolicy, header: bytes) -> AvroFragments:
    """The Python fast path's own Avro decision fragments (the bytes are its bytes)."""
    return AvroFragments(policy, header)
