"""Start ``transformers serve`` on a local Qwen2.5-VL folder: an OpenAI-compatible server for the HTTP backend.

The HTTP backend (:mod:`.http`) talks to any OpenAI-compatible server (vLLM, SGLang, ...). Where none is
installed, transformers' own server serves a ``save_pretrained`` folder; this module starts it on a free
loopback port, offline, waits until ``/health`` answers and stops it on exit. The test of the HTTP backend
against a real server and ``benchmarks/bench_vlm.py --backend http`` both start it through here.

``transformers serve`` ignores ``logprobs`` and rejects vLLM's prefix continuation (HTTP 422), so a backend
talking to it runs with ``continue_prefix=False`` and scores from the parsed answer.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from crossfake.utils.errors import CrossfakeError


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def transformers_serve(
    model_dir: str | Path,
    log: str | Path,
    *,
    timeout: float = 180.0,
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = None,
) -> Iterator[str]:
    """Run ``transformers serve MODEL_DIR`` in its own process; yields its root URL (``http://127.0.0.1:PORT``).

    Args:
        model_dir: a ``save_pretrained`` folder (model, processor, tokenizer, chat template).
        log: file the server's output goes to (its tail is in the error if it does not come up).
        timeout: seconds to wait for ``/health`` (model load and FastAPI start).
        device, dtype: passed to ``transformers serve``.
        threads: the server's torch threads (``OMP_NUM_THREADS``); None: as this process's environment.

    Raises:
        CrossfakeError: the ``transformers`` command or ``openai`` (which it imports) is missing, or the
            server exited or did not answer within ``timeout``; with the log's tail.
    """
    cli = Path(sys.executable).with_name("transformers")
    if not cli.is_file():
        raise CrossfakeError(f"no `transformers` command beside {sys.executable}: pip install transformers")
    try:
        import openai  # noqa: F401  (transformers serve imports its types)
    except ImportError:
        raise CrossfakeError("transformers serve needs `openai` (in crossfake's dev extra): "
                             "pip install -e '.[dev]'") from None
    log = Path(log)
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [str(cli), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
               "--device", device, "--dtype", dtype, "--log-level", "info"]
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url + "/health", log, "transformers serve", timeout)
        yield url
    finally:
        stop(proc)


def wait_ready(proc: subprocess.Popen, url: str, log: Path, what: str, timeout: float) -> None:
    """Poll ``url`` until it answers; a clear error with ``log``'s tail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CrossfakeError(f"{what} exited with code {proc.returncode} before it was ready; "
                                 f"log tail ({log}):\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2.0).read()
            return
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise CrossfakeError(f"{what} not ready at {url} within {timeout:.0f} s; log tail ({log}):\n"
                         f"{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Terminate ``proc``, killing it if it has not exited after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
