"""A fault-injecting HTTP proxy in front of an OpenAI-compatible server, run as its own process by tests.

It forwards every ``POST /v1/...`` to ``--upstream`` unchanged and answers with the upstream's status and
body, so the client talks to the real server through it. On the way it

- counts the requests in flight (received, not yet answered) and keeps the maximum: what the server saw;
- logs every request on arrival: the sha256 of its first ``image_url`` (which image was asked), its
  ``max_tokens``, start and end times, the status returned (None while in flight) and whether it was forwarded;
- applies a plan of faults, one step per request in arrival order, set by the test: ``{"status": 503}``
  answers that status at once (not forwarded), ``{"delay": 2.0}`` waits that long before forwarding (a
  client with a shorter timeout gives up), ``{}`` forwards as usual; ``--hold S`` delays every forwarded
  request by S seconds (so that concurrent requests overlap for sure).

Control (JSON): ``GET /_proxy/stats`` -> ``{"max_in_flight", "in_flight", "requests": [...]}``;
``POST /_proxy/plan`` with ``{"steps": [...], "hold": S}`` replaces the plan (and the hold if given);
``POST /_proxy/reset`` clears the log, the maximum and the plan.

Usage: ``python tests/vlm_proxy.py --upstream http://127.0.0.1:8000 [--port 0] [--hold 0]``; prints
``PORT <n>`` once it listens and serves until killed. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self, upstream: str, hold: float) -> None:
        self.upstream = upstream.rstrip("/")
        self.hold = hold
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: list[dict] = []
        self.steps: list[dict] = []

    def reset(self) -> None:
        with self.lock:
            self.max_in_flight = self.in_flight
            self.requests, self.steps = [], []


def image_key(body: bytes) -> str | None:
    """sha256 of the first ``image_url`` of a chat request (hex), or None."""
    try:
        for message in json.loads(body).get("messages", []):
            for part in message.get("content") if isinstance(message.get("content"), list) else []:
                if part.get("type") == "image_url":
                    return hashlib.sha256(part["image_url"]["url"].encode()).hexdigest()
    except (ValueError, AttributeError, KeyError, TypeError):
        pass
    return None


def max_tokens(body: bytes) -> int | None:
    """The ``max_tokens`` a chat request asked for, or None."""
    try:
        return json.loads(body).get("max_tokens")
    except (ValueError, AttributeError):
        return None


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, data: bytes, content_type: str = "application/json") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (its timeout) before the answer
                pass
            self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/_proxy/stats":
                with state.lock:
                    stats = {
                        "max_in_flight": state.max_in_flight,
                        "in_flight": state.in_flight,
                        "requests": [dict(r) for r in state.requests],
                    }
                self._send(200, json.dumps(stats).encode())
            else:
                self._forward(b"", "GET")

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/_proxy/reset":
                state.reset()
                self._send(200, b"{}")
            elif self.path == "/_proxy/plan":
                plan = json.loads(body)
                with state.lock:
                    state.steps = list(plan.get("steps", []))
                    state.hold = float(plan.get("hold", state.hold))
                self._send(200, b"{}")
            else:
                self._forward(body, "POST")

        def _forward(self, body: bytes, method: str) -> None:
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                step = state.steps.pop(0) if state.steps else {}
                hold = state.hold
            entry = {
                "path": self.path,
                "image": image_key(body) if body else None,
                "max_tokens": max_tokens(body) if body else None,
                "start": time.time(),
                "forwarded": "status" not in step,
                "status": None,
                "end": None,
            }
            with state.lock:
                # Logged on arrival: a reset drops it even if it is answered later (a killed client's).
                state.requests.append(entry)
            try:
                if "status" in step:
                    status = int(step["status"])
                    data = json.dumps({"error": {"message": f"injected {status}", "type": "proxy"}}).encode()
                else:
                    time.sleep(float(step.get("delay", 0.0)) + hold)
                    status, data = self._upstream(body, method)
            finally:
                with state.lock:
                    state.in_flight -= 1
            with state.lock:
                entry.update(end=time.time(), status=status)
            self._send(status, data)

        def _upstream(self, body: bytes, method: str) -> tuple[int, bytes]:
            headers = {
                k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")
            }
            request = urllib.request.Request(
                state.upstream + self.path,
                data=body if method == "POST" else None,
                headers=headers,
                method=method,
            )
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()
            except OSError as e:
                return 502, json.dumps({"error": {"message": f"proxy: upstream failed: {e}"}}).encode()

        def log_message(self, format: str, *args) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the server's root URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--hold", type=float, default=0.0, help="seconds added before forwarding each request"
    )
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(State(args.upstream, args.hold)))
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
