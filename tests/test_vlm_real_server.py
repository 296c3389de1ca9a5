"""The HTTP VLM backend against a real OpenAI-compatible server: ``transformers serve`` in its own process.

One server per module: ``transformers serve FOLDER`` (transformers 5.23, FastAPI + uvicorn + openai's
types) on a free loopback port, serving the tiny random Qwen2.5-VL written by ``save_pretrained`` (model,
processor, tokenizer, chat template) into a folder, fully offline (``HF_HUB_OFFLINE=1``). In front of it a
real proxy process (``tests/vlm_proxy.py``) counts the requests in flight, logs which image each request
asked about, and injects 503s and delays on demand.

What ``transformers serve`` 5.23 supports, read from its source (``transformers/cli/serving/``) and checked
here: ``/v1/chat/completions`` with ``image_url`` data URLs; ``logprobs``/``top_logprobs`` are accepted
and ignored (listed as unsupported: no ``logprobs`` in the answer); vLLM's ``continue_final_message`` /
``add_generation_prompt`` are rejected with HTTP 422 (not in its request schema), so the backend runs with
``continue_prefix=False``: the model answers from scratch after the generation prompt. One inference
thread answers requests in turn (continuous batching is for text-only models). The backend's score is
therefore the parsed-answer fallback, and with random weights the answer is noise: score 0.0 with the
parse error kept, the documented behaviour. The logprob path against a served model is covered by
``tests/test_vlm_http.py`` (a stand-in server that returns real logprobs, and Qwen2.5-VL's real vocabulary).

Marked slow: the server takes 15-70 s to start on a loaded machine, and the journal test runs the CLI thrice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from crossfake.utils.errors import CrossfakeError
from crossfake.vlm.backends.http import HttpBackend, fallback_logit, image_data_url
from crossfake.vlm.backends.serve import stop, transformers_serve
from crossfake.vlm.parse import parse_answer
from crossfake.vlm.prompts import PromptTemplate

HERE = Path(__file__).parent
START_TIMEOUT = 180.0  # model load + FastAPI start on a loaded 2-core machine
PROMPT = PromptTemplate(
    name="test",
    version="1",
    system="You are a world-class digital forensics expert.",
    instruction="Please classify the following image as real or fake.",
    answer_prefix="<answer><verdict>",
)
NEW_TOKENS = 8

pytestmark = pytest.mark.slow


def _images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (64, 48), ((37 * i) % 256, (91 * i + 40) % 256, 200 - 13 * i)) for i in range(n)]


def _get(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _post(url: str, payload: dict, timeout: float = 60.0) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """The tiny random Qwen2.5-VL (seed 0) as a ``save_pretrained`` folder: weights, processor, template."""
    from crossfake.models.backbones.qwen_vl import save_tiny

    return save_tiny(tmp_path_factory.mktemp("served") / "tiny-qwen25-vl")


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory) -> Iterator[str]:
    """``transformers serve`` on the model folder, on a free loopback port; its root URL."""
    log = tmp_path_factory.mktemp("serve_log") / "serve.log"
    with transformers_serve(model_dir, log, timeout=START_TIMEOUT, threads=1) as url:
        yield url


@pytest.fixture(scope="module")
def proxy_url(server: str, tmp_path_factory) -> Iterator[str]:
    """``tests/vlm_proxy.py`` in front of the server (a separate process); its root URL."""
    log = tmp_path_factory.mktemp("proxy_log") / "proxy.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "vlm_proxy.py"), "--upstream", server],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    port: list[int] = []

    def read_port() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("PORT "):
                port.append(int(line.split()[1]))
                return

    reader = threading.Thread(target=read_port, daemon=True)
    reader.start()
    reader.join(30)
    try:
        if not port:
            pytest.fail(f"vlm_proxy did not start within 30 s: {log.read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        stop(proc)


@pytest.fixture
def proxy(proxy_url: str) -> str:
    """The proxy with an empty log and plan, once requests left by an earlier test are answered."""
    deadline = time.monotonic() + 30
    while _stats(proxy_url)["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
    _post(proxy_url + "/_proxy/reset", {})
    _post(proxy_url + "/_proxy/plan", {"steps": [], "hold": 0.0})
    return proxy_url


def _plan(proxy: str, steps: list[dict], hold: float = 0.0) -> None:
    _post(proxy + "/_proxy/plan", {"steps": steps, "hold": hold})


def _stats(proxy: str) -> dict:
    return _get(proxy + "/_proxy/stats")


def _backend(url: str, model_dir: Path, **options) -> HttpBackend:
    options = {
        "timeout": 60.0,
        "retries": 0,
        "max_new_tokens": NEW_TOKENS,
        "continue_prefix": False,
        **options,
    }
    return HttpBackend(url, str(model_dir), **options)


def _key(image: Image.Image) -> str:
    return hashlib.sha256(image_data_url(image).encode()).hexdigest()


# --- what the server supports -------------------------------------------------------------------


def test_server_ignores_logprobs_and_rejects_prefix_continuation(proxy, model_dir):
    backend = _backend(proxy, model_dir, logprobs=True)
    status, answer = _post(backend.url, backend.request_body(image_data_url(_images(1)[0]), PROMPT, False))
    assert status == 200 and answer["object"] == "chat.completion"
    assert "logprobs" not in answer["choices"][0]  # asked for, not returned
    # vLLM's continuation fields: HTTP 422, raised at once (a 4xx is not retried).
    strict = _backend(proxy, model_dir, continue_prefix=True, retries=3, backoff=0.01)
    with pytest.raises(CrossfakeError, match=r"HTTP 422: .*continue_final_message"):
        strict.score(_images(1), PROMPT, explain=False)
    assert [r["status"] for r in _stats(proxy)["requests"]] == [200, 422]


# --- the same weights, the same answers ---------------------------------------------------------


@pytest.fixture(scope="module")
def local(model_dir: Path):
    from crossfake.models.backbones.qwen_vl import build_qwen_vl

    return build_qwen_vl(f"local-dir:{model_dir}", dtype=torch.float32)


@torch.no_grad()
def _local_answer(bundle, image: Image.Image) -> str:
    """Greedy answer of the in-process model to the chat the backend sends (no prefix: answered afresh)."""
    processor = bundle.processor
    text = processor.apply_chat_template(PROMPT.messages(), tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    out = bundle.model.generate(
        **inputs, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id
    )
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_served_answers_equal_local_greedy_answers_and_score_from_them(proxy, model_dir, local, caplog):
    images = _images(3)
    with caplog.at_level("WARNING", logger="crossfake"):
        results = _backend(proxy, model_dir, concurrency=3).score(images, PROMPT, explain=True)
    expected = [_local_answer(local, im) for im in images]
    # Same weights (float32, CPU, greedy): token for token the same text.
    assert [r.text for r in results] == expected
    assert len(set(expected)) > 1  # the answers depend on the image: a mix-up of rows would show
    for r in results:
        # No logprobs: the score is the parsed answer's (module docstring of http.py), exactly.
        assert r.parsed == parse_answer(r.text)
        assert r.logit == fallback_logit(r.parsed, PROMPT.positive, PROMPT.negative)
        # Random weights write noise: unparsed, scored 0.0 (undecided), the parse error kept.
        assert not r.parsed.parsed and r.logit == 0.0 and r.parsed.error
    assert sum("returned no logprobs" in rec.message for rec in caplog.records) == 1  # warned once
    # With the served model's tokenizer the forms counted in logprobs are its single-token pairs.
    from crossfake.vlm.scoring import verdict_forms

    forms = _backend(proxy, model_dir, tokenizer=str(model_dir)).verdict_forms("fake", "real")
    assert forms == verdict_forms("fake", "real", local.processor.tokenizer) and ("fake", "real") in forms


def test_scoring_only_asks_a_short_answer(proxy, model_dir):
    [result] = _backend(proxy, model_dir, max_new_tokens=256).score(_images(1), PROMPT, explain=False)
    assert result.logit == 0.0 and result.text is not None  # fallback: the text it scored is kept
    # Not 256, nor 16: the model writes the prefix itself (continue_prefix=False), so the prefix's 17 bytes
    # (a bound on its tokens) plus the 16 tokens of a score.
    [request] = _stats(proxy)["requests"]
    assert request["max_tokens"] == len(PROMPT.answer_prefix.encode()) + 16 == 33


# --- concurrency, retries ----------------------------------------------------------------------


@pytest.mark.parametrize("bound", [1, 3])
def test_requests_in_flight_never_exceed_the_bound(proxy, model_dir, bound):
    images = _images(6)
    _plan(proxy, [], hold=0.15)  # every request lasts >= 0.15 s, so concurrent ones overlap
    start = time.monotonic()
    results = _backend(proxy, model_dir, concurrency=bound).score(images, PROMPT, explain=True)
    elapsed = time.monotonic() - start
    stats = _stats(proxy)
    assert stats["max_in_flight"] == bound  # never more, and the bound is used
    assert sorted(r["image"] for r in stats["requests"]) == sorted(_key(im) for im in images)
    assert elapsed >= 0.15 * math.ceil(len(images) / bound) * 0.9
    # In order, whatever the order of completion: the answer of image i is the one asked about image i.
    alone = _backend(proxy, model_dir).score(images[::4], PROMPT, explain=True)
    assert [r.text for r in results[::4]] == [r.text for r in alone]


def test_5xx_is_retried_with_exponential_backoff(proxy, model_dir):
    image = _images(1)[0]
    [expected] = _backend(proxy, model_dir).score([image], PROMPT, explain=True)
    _post(proxy + "/_proxy/reset", {})
    _plan(proxy, [{"status": 503}, {"status": 503}])
    [result] = _backend(proxy, model_dir, retries=3, backoff=0.3).score([image], PROMPT, explain=True)
    assert result.text == expected.text
    log = _stats(proxy)["requests"]
    assert [r["status"] for r in log] == [503, 503, 200] and {r["image"] for r in log} == {_key(image)}
    gaps = [b["start"] - a["end"] for a, b in zip(log, log[1:], strict=False)]
    assert gaps[0] >= 0.3 * 0.9 and gaps[1] >= 0.6 * 0.9  # backoff * 2**i


def test_timeout_is_retried(proxy, model_dir):
    _plan(proxy, [{"delay": 4.0}])  # the first attempt answers after the client gave up
    start = time.monotonic()
    [result] = _backend(proxy, model_dir, timeout=2.0, retries=2, backoff=0.05).score(
        _images(1), PROMPT, explain=False
    )
    assert time.monotonic() - start >= 2.0 and result.text is not None
    images = [r["image"] for r in _stats(proxy)["requests"]]  # logged on arrival: the retry is there
    assert len(images) >= 2 and len(set(images)) == 1


def test_retries_exhausted_is_a_clear_error(proxy, model_dir):
    _plan(proxy, [{"status": 503}] * 3)
    with pytest.raises(
        CrossfakeError, match=r"no answer after 3 attempts; last error: HTTP 503: injected 503"
    ):
        _backend(proxy, model_dir, retries=2, backoff=0.01).score(_images(1), PROMPT, explain=False)
    assert [r["status"] for r in _stats(proxy)["requests"]] == [503] * 3


# --- the journal: a killed scoring run resumes ---------------------------------------------------


def _crossfake(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from crossfake.cli.main import main; sys.exit(main())", *args]


def _journalled(run_dir: Path) -> list[str]:
    ids = []
    for path in sorted(run_dir.glob(".*.parts/*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                ids.append(json.loads(line)["sample_id"])
            except (ValueError, KeyError):
                pass  # a line cut by the kill
    return ids


def test_killed_scoring_run_resumes_without_asking_again(proxy, model_dir, tmp_path):
    from test_training import make_tiny_split

    from crossfake.data.manifest import read_manifest

    manifest = make_tiny_split(tmp_path / "data")
    config = tmp_path / "vlm_http.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "method": {
                    "name": "vlm_zero_shot",
                    "backend": "http",
                    "max_new_tokens": NEW_TOKENS,
                    "backend_options": {
                        "base_url": proxy,
                        "model": str(model_dir),
                        "continue_prefix": False,
                        "concurrency": 2,
                        "timeout": 60,
                        "retries": 2,
                        "backoff": 0.1,
                    },
                },
                "data": {"manifest": str(manifest)},
                "train": {"batch_size": 4, "num_workers": 0},
            }
        )
    )
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        _crossfake("train", str(config), "--out", str(run), "--no-progress"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    uninterrupted = pd.read_parquet(run / "val_predictions.parquet")  # val scored once, never stopped

    _post(proxy + "/_proxy/reset", {})
    _plan(proxy, [], hold=0.25)  # slow enough to be killed mid-run
    evaluate = _crossfake("evaluate", str(run), "--split", "val", "--batch-size", "4", "--no-progress")
    proc = subprocess.Popen(evaluate, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_journalled(run)) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    journalled = _journalled(run)
    assert 8 <= len(journalled) < len(uninterrupted), "the run was not stopped mid-way"
    assert not (run / "predictions_val.parquet").exists()

    rows = read_manifest(manifest).set_index("sample_id")
    root = manifest.parent

    def key(sample_id: str) -> str:
        return _key(Image.open(root / rows.loc[sample_id, "path"]).convert("RGB"))

    _post(proxy + "/_proxy/reset", {})
    _plan(proxy, [], hold=0.0)
    done = subprocess.run(evaluate, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    asked = [r["image"] for r in _stats(proxy)["requests"]]
    assert not {key(s) for s in journalled} & set(asked)  # no journalled row asked again
    assert sorted(asked) == sorted(key(s) for s in uninterrupted["sample_id"] if s not in set(journalled))
    resumed = pd.read_parquet(run / "predictions_val.parquet")
    columns = [c for c in uninterrupted.columns if c in resumed.columns]
    assert {"sample_id", "score", "logit", "raw_answer", "parse_error"} <= set(columns)
    pd.testing.assert_frame_equal(resumed[columns], uninterrupted[columns])
    assert not list(run.glob(".*.parts"))  # the journal is removed once complete
