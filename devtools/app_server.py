"""A real Streamlit server of the app on a free local port, for the browser tests and the load benchmark."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from cgcnn.errors import CGCNNError

# --------------------------------------------------------------------------------------------------- server


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AppServer:
    """``python serve.py`` (``streamlit run app.py``, warmed up) on 127.0.0.1 in a child process.

    Use as a context manager; the server is stopped (its process group) on exit.

    Args:
        home: ``CGCNN_HOME`` of the server (its run store and caches).
        port: TCP port (default: a free one).
        env: extra environment variables (e.g. ``CGCNN_WORKERS``).
        startup_timeout: seconds to wait for ``/_stcore/health``.
    """

    def __init__(
        self,
        home: Path | str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.proc = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "streamlit.log"

    def __enter__(self) -> AppServer:
        import subprocess
        import sys
        import urllib.request

        root = Path(__file__).resolve().parent.parent
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CGCNN_HOME": str(self.home), **self.env}
        cmd = [
            sys.executable, "serve.py", "--server.headless", "true",
            "--server.address", "127.0.0.1", "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        ]  # fmt: skip
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CGCNNError(f"the app exited with code {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.__exit__(None, None, None)
        raise CGCNNError(f"the app did not answer within {self.startup_timeout:.0f} s; see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
