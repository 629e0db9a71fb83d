"""Transparency a customer can read (issue 14): summary, export, page, support page.

Layers, each one module:

- ``records``: adapters from what the topics hold (decision records in the one-per-input
  form of CONTRACT §7 and the older one-per-engine form; consent records; notices;
  erasure notices; data-key records) to small typed rows. Pure.
- ``summary``: ``build_summary`` folds those rows into a ``SubjectSummary``. Pure.
- ``sources``: reads the rows of one subject from Kafka, only the partitions its
  keys hash to. The only module here that talks to a broker.
- ``vocab``: the words for purposes, categories and reasons in English and German.
- ``text`` / ``export`` / ``html``: the three renderings; ``render`` picks one.
- ``erase``: the support page's erase action (one function).

What a customer sees never holds a raw field value of an event, and a
pseudonymized engine is named as a recipient without its pseudonym.
"""

from __future__ import annotations

from typing import Literal

from streams.config import Settings

Format = Literal["text", "json", "html"]
Lang = Literal["en", "de"]
FORMATS: tuple[str, ...] = ("text", "json", "html")
LANGS: tuple[str, ...] = ("en", "de")


def render(settings: Settings, subject: str, fmt: Format = "text", lang: Lang = "en") -> str:
    """The subject's transparency summary read from the broker, as text, JSON or HTML."""
    from streams.transparency.sources import load_summary

    return render_summary(load_summary(settings, subject), fmt, lang)


def render_summary(summary, fmt: Format = "text", lang: Lang = "en") -> str:  # noqa: ANN001
    """A built ``SubjectSummary`` as text, JSON or HTML (no I/O)."""
    if fmt == "json":
        from streams.transparency.export import export_json

        return export_json(summary)
    if fmt == "html":
        from streams.transparency.html import render_html

        return render_html(summary, lang)
    if fmt == "text":
        from streams.transparency.text import render_text

        return render_text(summary, lang)
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
