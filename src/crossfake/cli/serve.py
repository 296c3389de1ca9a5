"""A local web page: upload a video or image, see its verdict, timeline, face crops and explanation.

Loads the run once and serves a page at http://HOST:PORT/ (loopback only by default) where a video or an
image can be uploaded (up to --max-upload-mb, and --max-pixels per frame). The answer shows the verdict,
the per-frame score timeline, the most suspicious frame with the faces boxed, every face crop with its
score, and for a VLM run its written explanation. Frames, faces and the verdict follow exactly the rules
of `crossfake detect` (same options). A bad upload (not a video or image, truncated, too large, no face)
gets an HTTP 4xx and a message on the page.

Nothing is kept: each upload is stored in a temporary folder that is deleted once the answer is sent,
unless --keep DIR is given (then DIR/<time>-<name>/ holds the upload, result.json and the figures).
The same judgement without the page: curl -F file=@clip.mp4 http://127.0.0.1:8000/api/detect

Needs the optional 'serve' extra: pip install 'crossfake[serve]'.

Examples:
  crossfake serve --model runs/lora
  crossfake serve --model runs/lora --port 8080 --fps 4 --keep judged/
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from pathlib import Path

from crossfake.cli.detect import add_pipeline_arguments, pipeline_from_args
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pipeline_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload accepted, in MB")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep every upload and its result in DIR")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    if args.max_upload_mb <= 0:
        raise CrossfakeError(f"--max-upload-mb must be > 0, not {args.max_upload_mb}")
    if not 0 < args.port < 65536:
        raise CrossfakeError(f"--port must be in 1..65535, not {args.port}")
    from crossfake.inference.server import create_app, serve  # needs the 'serve' extra

    _check_port(args.host, args.port)

    pipeline = pipeline_from_args(args)
    app = create_app(pipeline, max_upload_mb=args.max_upload_mb, keep_dir=args.keep)
    if not _is_loopback(args.host):
        log.warning("listening on %s: anyone who can reach this address can upload files to judge", args.host)
    kept = f"uploads kept in {args.keep}" if args.keep else "nothing kept after each answer"
    print(f"crossfake serve: {pipeline.info.run_dir} on http://{args.host}:{args.port}/ ({kept}); Ctrl-C stops")
    serve(app, host=args.host, port=args.port)
    return 0


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message now if the address cannot be listened on (uvicorn would just exit)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as e:
        raise CrossfakeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
