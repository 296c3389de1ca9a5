"""The local web page of ``crossfake serve``: upload a video or image, see its verdict.

A small FastAPI app (the ``serve`` extra: fastapi, uvicorn, python-multipart) with three routes:

- ``GET /``: the page (``static/index.html``, plain HTML and JavaScript, no build step, nothing fetched
  from the internet);
- ``GET /api/info``: the model, its threshold, the sampling settings and the upload limits;
- ``POST /api/detect``: a multipart upload (field ``file``) -> JSON with the verdict, the per-frame
  results, the timeline and annotated key frame as PNG data URLs, the face crops with their scores and a
  VLM's explanation. Usable without the page: ``curl -F file=@clip.mp4 http://127.0.0.1:8000/api/detect``.

Bad input is an HTTP 4xx with ``{"error": message}``, never a stack trace: 413 for an upload over the
size limit (checked while it streams in, before it is stored whole) or an image with too many pixels, 415
for a file that is not a video or image, 422 for an unreadable (truncated, corrupt) file or one without a
face, 400 for a request without a file. An unexpected failure is a 500 with a one-line message; its
traceback goes to the server's log only.

Privacy: the upload is written to a temporary folder that is deleted when the response is sent; with
``keep_dir`` each request's upload, ``result.json`` and figures are kept in ``keep_dir/<time>-<name>/``.
Requests are judged one at a time (the model is shared).
"""

from __future__ import annotations

import base64
import re
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from crossfake.inference.detect import NO_FACE, DetectionResult, DetectPipeline
from crossfake.inference.media import IMAGE_SUFFIXES, MEDIA_SUFFIXES, VIDEO_SUFFIXES, InputError
from crossfake.inference.render import annotated_png, png_bytes, timeline_png
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_bytes_atomic, write_json_atomic
from crossfake.utils.logging import get_logger

log = get_logger("serve")

DEFAULT_MAX_UPLOAD_MB = 200.0
MAX_CROPS = 60  # face crops sent back to the page (evenly spaced over the video beyond that)

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise CrossfakeError(
        f"crossfake serve needs the 'serve' extra ({e.name} is missing): pip install 'crossfake[serve]'"
    ) from None


class UploadTooLarge(Exception):
    """Raised inside the upload stream once more than the limit has arrived."""


def _data_url(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _safe_name(filename: str) -> str:
    """A file name that is safe in a folder: the upload's own name, reduced to plain characters."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).name).strip("._")
    return name[:100] or "upload"


def result_payload(result: DetectionResult, name: str) -> dict[str, Any]:
    """What ``POST /api/detect`` answers: the result, its figures and its face crops."""
    record = result.to_dict()
    record["path"] = name  # the server's temporary path means nothing to the user
    crops = [
        {"frame": f.index, "time": round(f.time, 3), "face": i, "score": face.score, "box": list(face.box)}
        for f in result.frames
        for i, face in enumerate(f.faces)
    ]
    if len(crops) > MAX_CROPS:
        crops = [crops[round(k * (len(crops) - 1) / (MAX_CROPS - 1))] for k in range(MAX_CROPS)]
    for crop in crops:
        thumbnail = result.thumbnails.get((crop["frame"], crop["face"]))
        crop["image"] = _data_url(png_bytes(thumbnail)) if thumbnail is not None else None
    return {
        "result": record,
        "annotated": _data_url(annotated_png(result)),
        "timeline": _data_url(timeline_png(result)) if result.kind == "video" else None,
        "crops": crops,
    }


def create_app(
    pipeline: DetectPipeline, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, keep_dir: Path | None = None
) -> FastAPI:
    """The web app around a loaded pipeline (see the module docstring)."""
    max_bytes = int(max_upload_mb * 2**20)
    lock = threading.Lock()
    page = (resources.files("crossfake.inference") / "static" / "index.html").read_text(encoding="utf-8")
    info = {
        **pipeline.describe(),
        "max_upload_mb": max_upload_mb,
        "max_upload_bytes": max_bytes,
        "max_megapixels": pipeline.max_pixels / 1e6,
        "video_types": sorted(VIDEO_SUFFIXES),
        "image_types": sorted(IMAGE_SUFFIXES),
        "keeps_uploads": keep_dir is not None,
    }
    app = FastAPI(title="crossfake detect", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/api/info")
    def api_info() -> dict[str, Any]:
        return info

    @app.post("/api/detect")
    async def api_detect(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:  # multipart overhead
            return error(413, f"the upload is {int(declared) / 2**20:.1f} MB; the limit is {max_upload_mb:g} MB")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(400, "send the file as multipart/form-data in the field 'file'")
        received = 0

        async def limited() -> AsyncIterator[bytes]:
            nonlocal received
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_bytes + 64 * 1024:
                    raise UploadTooLarge
                yield chunk

        try:
            form = await MultiPartParser(request.headers, limited(), max_files=1, max_fields=4).parse()
        except UploadTooLarge:
            return error(413, f"the upload is larger than the limit of {max_upload_mb:g} MB")
        except MultiPartException as e:
            return error(400, f"malformed upload: {e.message}")
        upload = form.get("file")
        try:
            if not isinstance(upload, UploadFile) or not upload.filename:
                return error(400, "no file in the upload (expected the multipart field 'file')")
            suffix = Path(upload.filename).suffix.lower()
            if suffix not in MEDIA_SUFFIXES:
                return error(
                    415,
                    f"{upload.filename}: not a supported type; upload a video "
                    f"({', '.join(sorted(VIDEO_SUFFIXES))}) or an image ({', '.join(sorted(IMAGE_SUFFIXES))})",
                )
            if (upload.size or 0) > max_bytes:
                return error(413, f"{upload.filename} is {upload.size / 2**20:.1f} MB; the limit is {max_upload_mb:g} MB")
            name = _safe_name(upload.filename)
            workdir = Path(tempfile.mkdtemp(prefix="crossfake-serve-"))
            try:
                path = workdir / f"upload{suffix}"
                with path.open("wb") as f:
                    await run_in_threadpool(shutil.copyfileobj, upload.file, f)
                status, body = await run_in_threadpool(judge, path, upload.filename, name)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            return JSONResponse(body, status_code=status)
        finally:
            await form.close()

    def judge(path: Path, filename: str, name: str) -> tuple[int, dict[str, Any]]:
        """Run the pipeline on a stored upload: (HTTP status, JSON body)."""
        with lock:
            try:
                result = pipeline.detect(path, keep_images=True)
            except InputError as e:
                log.info("%s: %s", filename, e)
                return e.status, {"error": str(e).replace(str(path), filename)}
            except CrossfakeError as e:
                return 422, {"error": str(e).replace(str(path), filename)}
            except Exception as e:  # a bug: the traceback goes to the log, a short message to the page
                log.exception("judging %s failed", filename)
                return 500, {"error": f"internal error while judging {filename} ({type(e).__name__}); see the server log"}
        payload = result_payload(result, filename)
        log.info("%s: %s", filename, result.message())
        if keep_dir is not None:
            keep(path, name, payload, result)
        if result.verdict == NO_FACE:
            return 422, {**payload, "error": f"{filename}: {result.message()}"}
        return 200, payload

    def keep(path: Path, name: str, payload: dict[str, Any], result: DetectionResult) -> None:
        folder = keep_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
        n = 1
        while folder.exists():
            n += 1
            folder = folder.with_name(f"{time.strftime('%Y%m%d-%H%M%S')}-{n}-{name}")
        folder.mkdir(parents=True)
        shutil.copy(path, folder / name)
        write_json_atomic(folder / "result.json", payload["result"])
        for key in ("annotated", "timeline"):
            if payload[key]:
                write_bytes_atomic(folder / f"{key}.png", base64.b64decode(payload[key].split(",", 1)[1]))
        log.info("kept %s and its result in %s", name, folder)

    return app


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run ``app`` with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
