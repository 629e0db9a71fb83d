"""One log line format for every part of the filter.

``2026-11-22T06:00:00.123Z INFO streams.runtime.faust msg key=value ...``

G6: log calls in this project pass counts, offsets, partitions, topic names,
error classes and setting names, never a field value of an event or consent
record (not even a subject id). ``tests/integration/test_no_pii_in_logs.py``
feeds records full of recognisable personal data and greps the captured logs.
"""

from __future__ import annotations

import logging
import sys
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: libraries that are chatty at INFO about every rebalance step
_NOISY = ("aiokafka", "faust.transport", "mode")


def library_level(level: str) -> str:
    """Never DEBUG for third-party loggers: some of them log record contents there."""
    return "INFO" if level == "DEBUG" else level


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        t = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{t}.{int(record.msecs):03d}Z"


def formatter() -> logging.Formatter:
    return _UTCFormatter(FORMAT)


def setup(level: str = "INFO") -> None:
    """Route every logger (ours, faust's, aiokafka's) through one handler and format."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    root.addHandler(handler)
    # G6: libraries log record keys and values at DEBUG (faust.topics logs every
    # send, changelog keys included), so DEBUG applies to our own loggers only.
    root.setLevel(library_level(level))
    logging.getLogger("streams").setLevel(level)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def kv(**fields: object) -> str:
    """key=value pairs for a log message; callers pass counts and ids of places, not data."""
    return " ".join(f"{k}={v}" for k, v in fields.items())


def dict_config(level: str = "INFO") -> dict:
    """The same format as ``setup``, as a logging dictConfig (faust's Worker takes one)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"pfilter": {"()": "streams.logs._UTCFormatter", "format": FORMAT}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "pfilter", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": library_level(level)},
        "loggers": {"streams": {"level": level},
                    **{name: {"level": "WARNING"} for name in _NOISY}},
    }
