"""A worker as a child process: used by the demo, the benchmarks and the tests.

Running the worker in its own process (not a thread of the caller) is what
users deploy, keeps faust's event loop to itself, and lets tests SIGKILL it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from streams.config import Settings, settings_env


class WorkerProcess:
    def __init__(self, settings: Settings, log_file: Path, *, runtime: str | None = None) -> None:
        self.settings = settings
        self.log_file = log_file
        self.runtime = runtime or settings.runtime
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PFILTER_")}
        env.update(settings_env(self.settings))
        env["PFILTER_RUNTIME"] = self.runtime
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def guarantee(self) -> str:
        """The processing guarantee the child runs with (its runtime's default unless set)."""
        return self.settings.model_copy(update={"runtime": self.runtime}).guarantee

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds until /readyz said ready; raises with the log's tail otherwise."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=1.0)
                if r.status_code == 200 and r.json().get("ready"):
                    return time.monotonic() - t0
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready within {timeout}s:\n{self.tail()}")

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=5.0).text

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        return self.proc.returncode
