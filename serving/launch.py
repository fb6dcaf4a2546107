"""Start ``bentoml serve`` for an artifact as a child process on 127.0.0.1, and stop it cleanly."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from serving.client import PRMClient
from serving.settings import ServeConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(model_dir: str | Path, host: str, port: int,
                  settings: ServeConfig | None = None) -> tuple[list[str], dict]:
    """The ``bentoml serve`` command line and environment for an artifact folder; ``settings`` go to the
    service processes as their ``PRM_*`` variables (unset ones keep what the environment says)."""
    exe = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or shutil.which("bentoml")
    cmd = [exe or "bentoml", "serve", "serving.service:PRMService", "--host", host, "--port", str(port)]
    env = dict(os.environ, **(settings.to_env() if settings else {}), PRM_MODEL_DIR=str(Path(model_dir).resolve()),
               BENTOML_DO_NOT_TRACK="True")
    return cmd, env


@contextlib.contextmanager
def served(model_dir: str | Path, port: int = 0, host: str = "127.0.0.1", ready_timeout: float = 180.0,
           log_path: str | Path | None = None, settings: ServeConfig | None = None) -> Iterator[PRMClient]:
    """Run the service for ``model_dir`` while the block runs; yields a ready ``PRMClient``."""
    port = port or free_port()
    cmd, env = serve_command(model_dir, host, port, settings)
    log_file = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            cwd=str(Path(__file__).resolve().parent.parent), start_new_session=True)
    client = PRMClient(f"http://{host}:{port}")
    try:
        client.wait_ready(ready_timeout, process=proc)
        yield client
    finally:
        client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log_path:
            log_file.close()
