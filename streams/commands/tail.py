"""`pfilter tail ENGINE`: a live, readable view of one engine's topic, for operators.

Reads ``personalization.<engine>`` (and the engine's erasure notices) through
the engine SDK, read_committed, decoded, pretty-printed with rich. Subject ids
are shown as the engine receives them: a pseudonym stays a pseudonym.
Encrypted fields are shown as ``<encrypted: key v…>`` unless ``--decrypt`` is
given together with the KEK (``PFILTER_KEK``/``PFILTER_KEK_FILE``); a field
whose key was shredded is then shown as ``<unreadable: key shredded>``.

The tail joins its own throw-away consumer group and never commits, so it
does not move any engine's offsets. ``--max`` and ``--timeout`` bound it (tests,
scripts); without them it runs until interrupted.
"""

from __future__ import annotations

import uuid
from typing import Any

import click
import orjson
from rich.console import Console
from rich.json import JSON

from streams.crypto import envelope_version, is_envelope

#: Shown instead of a field the SDK dropped because its key was shredded.
UNREADABLE = "<unreadable: key shredded>"


def _redact(obj: Any) -> Any:
    """Envelopes replaced by a readable placeholder (key version only)."""
    if isinstance(obj, dict):
        return {k: _redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    if is_envelope(obj):
        return f"<encrypted: key v{envelope_version(obj)}>"
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    return obj


@click.command("tail")
@click.argument("engine")
@click.option("--decrypt", is_flag=True, help="Decrypt encrypted fields (needs PFILTER_KEK or PFILTER_KEK_FILE).")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest retained record, not at the end.")
@click.option("--max", "max_records", type=click.IntRange(min=1), help="Stop after N events.")
@click.option("--timeout", type=click.FloatRange(min=0.1), help="Stop after S seconds without a record.")
@click.option("--json", "as_json", is_flag=True, help="One compact JSON object per line instead of rich output.")
@click.pass_obj
def tail(c: Any, engine: str, decrypt: bool, from_beginning: bool, max_records: int | None,
         timeout: float | None, as_json: bool) -> None:
    """Show ENGINE's filtered events as they arrive (decoded; pseudonyms stay pseudonyms)."""
    from streams.crypto import CryptoError, load_kek
    from streams.sdk import EngineConsumer, SdkError

    s = c.settings()
    kek = None
    if decrypt:
        try:
            kek = load_kek(s.kek, s.kek_file)
        except CryptoError as exc:
            raise click.ClickException(str(exc)) from None
        if kek is None:
            raise click.ClickException("--decrypt needs the KEK: set PFILTER_KEK or PFILTER_KEK_FILE")
    out = Console(highlight=False)

    def on_erasure(subject: str) -> None:
        if as_json:
            click.echo(orjson.dumps({"erasure_notice": subject, "engine": engine}).decode())
        else:
            out.print(f"[bold red]erasure notice[/] for [cyan]{subject}[/] (engine {engine})")

    try:
        consumer = EngineConsumer.from_settings(
            s, engine, f"pfilter-tail-{uuid.uuid4().hex[:12]}", kek=kek, on_erasure=on_erasure,
            start="earliest" if from_beginning else "latest")
    except (SdkError, CryptoError) as exc:
        raise click.ClickException(str(exc)) from None
    shown = 0
    try:
        while max_records is None or shown < max_records:
            try:
                # without --timeout: wait in 1 s steps forever (Ctrl-C ends it)
                event = consumer.poll(timeout if timeout is not None else 1.0)
            except CryptoError as exc:
                raise click.ClickException(str(exc)) from None
            if event is None:
                if timeout is not None:
                    break
                continue
            shown += 1
            _show(out, consumer, event, as_json)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if not as_json:
        st = consumer.stats
        click.echo(f"{shown} events, {st['erasures']} erasure notices, {st['decrypted']} fields decrypted, "
                   f"{st['unreadable']} unreadable", err=True)


def _show(out: Console, consumer: Any, event: dict[str, Any], as_json: bool) -> None:
    view = _redact(event)
    for path in consumer.last_unreadable:  # dropped by the SDK: say so where the field was
        *parents, leaf = path.split(".")
        node = view
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = UNREADABLE
    if as_json:
        click.echo(orjson.dumps(view).decode())
        return
    topic, partition, offset = consumer.last
    out.rule(f"{topic}[{partition}]@{offset}  {event.get('event_type')}  subject {event.get('subject_id')}",
             align="left")
    out.print(JSON.from_data(view))
