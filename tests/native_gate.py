"""Tests of the native engine run only where it is built, and in CI they must run.

``require_native()`` at the top of a test module: skips the module when the extension
is not importable, except under ``CI`` (set by .ci/run's environment), where a missing
extension fails the run: CI has cargo, so a native engine that did not build is a bug.
"""

from __future__ import annotations

import os

import pytest

from streams.engine import native


def require_native() -> None:
    if native.available():
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the native engine is not built ({native.IMPORT_ERROR}); "
                    "make install builds it when cargo is present", pytrace=False)
    pytest.skip(f"native engine not built ({native.IMPORT_ERROR})", allow_module_level=True)
