"""Regenerate the README's configuration table from streams/config.py (a test checks it)."""

from pathlib import Path

from streams.config import settings_markdown

readme = Path(__file__).resolve().parent.parent / "README.md"
lines = readme.read_text().splitlines(keepends=True)
start = next(i for i, ln in enumerate(lines) if ln.startswith("| env var | default | meaning |"))
end = start
while end < len(lines) and lines[end].startswith("|"):
    end += 1
readme.write_text("".join(lines[:start]) + settings_markdown() + "\n" + "".join(lines[end:]))
