"""HTTP VLM backend: against a stand-in server process that returns logprobs, and fake misbehaving ones.

The logprob path needs a server that returns ``top_logprobs``; ``transformers serve`` (5.23) ignores them,
so this file's server process is ``tests/vlm_server.py`` (stdlib ``http.server`` + the tiny Qwen2.5-VL, real
logits). The backend against the real ``transformers serve`` is ``tests/test_vlm_real_server.py``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image

from crossfake.utils.errors import CrossfakeError
from crossfake.vlm.backends import create_backend
from crossfake.vlm.backends.http import (
    HttpBackend,
    absent_logprob,
    fallback_logit,
    image_data_url,
    logit_from_alternatives,
    verdict_logit,
)
from crossfake.vlm.parse import parse_answer
from crossfake.vlm.prompts import PromptTemplate

SERVER = Path(__file__).with_name("vlm_server.py")
START_TIMEOUT = 60.0

PROMPT = PromptTemplate(
    name="test",
    version="1",
    system="You are a world-class digital forensics expert.",
    instruction="Please classify the following image as real or fake.",
    answer_prefix="<answer><verdict>",
)


def _images(n: int = 3) -> list[Image.Image]:
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (120, 120, 120)]
    return [Image.new("RGB", (64, 64), colours[i % len(colours)]) for i in range(n)]


# --- a real server process ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory) -> Iterator[str]:
    """``tests/vlm_server.py`` on a free loopback port; killed at teardown."""
    # stderr goes to a file: an undrained pipe could fill up and stall the server.
    log_path = tmp_path_factory.mktemp("vlm_server") / "stderr.log"
    stderr = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--model", "tiny", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    port: list[int] = []

    def read_port() -> None:
        # Reading in a thread lets the wait below be bounded even if the process prints nothing.
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("PORT "):
                port.append(int(line.split()[1]))
                return

    reader = threading.Thread(target=read_port, daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    try:
        if not port:
            proc.kill()
            pytest.fail(f"vlm_server did not start within {START_TIMEOUT}s: {log_path.read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        stderr.close()


@pytest.fixture(scope="module")
def tiny_local():
    from crossfake.models.backbones.qwen_vl import build_qwen_vl

    return build_qwen_vl("tiny", dtype=torch.float32)


@torch.no_grad()
def _local_logit(bundle, image: Image.Image) -> float:
    """The verdict logit computed in-process: log-softmax right after the answer prefix, over all variants."""
    processor, tokenizer = bundle.processor, bundle.processor.tokenizer
    messages = [
        {"role": "system", "content": [{"type": "text", "text": PROMPT.system}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT.instruction}]},
        {"role": "assistant", "content": [{"type": "text", "text": PROMPT.answer_prefix}]},
    ]
    text = processor.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=False, continue_final_message=True
    )
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    logp = torch.log_softmax(bundle.model(**inputs).logits[0, -1].float(), dim=-1)
    words = {tid: tokenizer.decode([tid]).strip().lower() for tid in range(len(tokenizer))}
    fake = [tid for tid, w in words.items() if w == "fake"]
    real = [tid for tid, w in words.items() if w == "real"]
    return float(torch.logsumexp(logp[fake], 0) - torch.logsumexp(logp[real], 0))


def test_scores_match_local_computation(tiny_server, tiny_local):
    # The full vocabulary as alternatives makes the server's logprobs exact, so scores must match.
    backend = create_backend(
        "http",
        base_url=tiny_server,
        model="tiny",
        max_new_tokens=1,
        top_logprobs=len(tiny_local.processor.tokenizer),
        concurrency=2,
        timeout=30,
    )
    assert isinstance(backend, HttpBackend)
    images = _images(3)
    results = backend.score(images, PROMPT, explain=False)
    expected = [_local_logit(tiny_local, im) for im in images]
    assert [r.logit for r in results] == pytest.approx(expected, abs=1e-4)
    assert all(r.text is None and r.parsed is None for r in results)


def test_explanations_and_default_top_k(tiny_server):
    backend = HttpBackend(tiny_server, "tiny", max_new_tokens=12, timeout=30)
    results = backend.score(_images(2), PROMPT, explain=True)
    for r in results:
        assert math.isfinite(r.logit)
        assert r.text is not None and r.text.startswith(PROMPT.answer_prefix)
        # A random tiny model rarely writes a well-formed answer; whatever it wrote is kept and parsed.
        assert r.parsed is not None and r.parsed.raw == r.text


# --- fake servers inside the test process -------------------------------------------------------


def _completion(content: str, logprobs: list[dict] | None = None) -> dict:
    choice: dict = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"id": "x", "object": "chat.completion", "choices": [choice]}


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[[int, dict], tuple[int, bytes]]], tuple[str, list[dict]]]]:
    """Start a loopback server whose reply to the n-th request is ``respond(n, body) -> (status, bytes)``."""
    servers: list[ThreadingHTTPServer] = []

    def start(respond: Callable[[int, dict], tuple[int, bytes]]) -> tuple[str, list[dict]]:
        seen: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                seen.append(body)
                status, data = respond(len(seen), body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", seen

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _ok(content: str, logprobs: list[dict] | None = None) -> tuple[int, bytes]:
    return 200, json.dumps(_completion(content, logprobs)).encode()


def test_request_format(fake_server):
    url, seen = fake_server(lambda n, body: _ok("fake</verdict></answer>"))
    HttpBackend(url + "/v1/", "m", retries=0).score(_images(1), PROMPT, explain=False)
    body = seen[0]
    assert body["model"] == "m" and body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    system, user, assistant = body["messages"]
    assert system == {"role": "system", "content": PROMPT.system}
    assert user["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert user["content"][1] == {"type": "text", "text": PROMPT.instruction}
    assert assistant == {"role": "assistant", "content": PROMPT.answer_prefix}


def test_timeout_retries_then_clear_error(fake_server):
    def slow(n: int, body: dict) -> tuple[int, bytes]:
        time.sleep(1.0)
        return _ok("fake")

    url, seen = fake_server(slow)
    backend = HttpBackend(url, "m", timeout=0.2, retries=2, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(CrossfakeError, match=r"no answer after 3 attempts.*last error") as info:
        backend.score(_images(1), PROMPT, explain=False)
    assert url in str(info.value)
    assert time.monotonic() - start < 3.0
    assert len(seen) == 3


@pytest.mark.parametrize(
    "reply, match",
    [
        (b"<html>Bad Gateway</html>", "not JSON"),
        (b'{"object": "list", "data": []}', "no 'choices'"),
        (b'{"choices": []}', "no 'choices'"),
    ],
)
def test_garbage_body_is_a_clear_error(fake_server, reply, match):
    url, seen = fake_server(lambda n, body: (200, reply))
    with pytest.raises(CrossfakeError, match=match):
        HttpBackend(url, "m", retries=2, backoff=0.01).score(_images(1), PROMPT, explain=False)
    assert len(seen) == 1  # garbage is not retried


def test_500_then_200_succeeds_after_retry(fake_server):
    tokens = [
        {
            "token": "fake",
            "logprob": -0.1,
            "top_logprobs": [{"token": "fake", "logprob": -0.1}, {"token": " Real", "logprob": -2.5}],
        }
    ]
    busy = (500, b'{"error": {"message": "busy"}}')
    url, seen = fake_server(lambda n, body: busy if n == 1 else _ok("fake", tokens))
    [result] = HttpBackend(url, "m", retries=2, backoff=0.01).score(_images(1), PROMPT, explain=False)
    assert len(seen) == 2
    assert result.logit == pytest.approx(2.4)


def test_400_is_immediate_with_server_message(fake_server):
    err = {"error": {"message": "top_logprobs must be <= 5", "type": "invalid_request_error"}}
    url, seen = fake_server(lambda n, body: (400, json.dumps(err).encode()))
    with pytest.raises(CrossfakeError, match="HTTP 400: top_logprobs must be <= 5"):
        HttpBackend(url, "m", retries=3, backoff=0.01).score(_images(1), PROMPT, explain=False)
    assert len(seen) == 1


def test_no_logprobs_falls_back_to_parsed_verdict(fake_server, caplog):
    answers = {
        1: "fake</verdict><confidence>0.9</confidence></answer>",
        2: "real</verdict></answer>",  # no confidence: 0.5, i.e. undecided strength
        3: "I cannot tell.",  # unparseable: 0.0 with the parse error kept
    }
    url, _ = fake_server(lambda n, body: _ok(answers[n]))
    with caplog.at_level("WARNING", logger="crossfake"):
        results = HttpBackend(url, "m").score(_images(3), PROMPT, explain=False)
    assert results[0].logit == pytest.approx(math.log(9))
    assert results[0].parsed.verdict == "fake" and results[0].text.startswith(PROMPT.answer_prefix)
    assert results[1].logit == 0.0 and results[1].parsed.verdict == "real"
    assert results[2].logit == 0.0 and not results[2].parsed.parsed and results[2].parsed.error
    assert sum("no logprobs" in r.message for r in caplog.records) == 1  # warned once


def test_answer_text_with_and_without_prefix_continuation(fake_server):
    answers = {
        1: "fake</verdict></answer>",  # a continuation of the prefix
        2: "<answer>\n  <verdict>real</verdict>\n</answer>",  # the server ignored it: from scratch
        3: "<answer><verdict>fake</verdict></answer>",  # from scratch, holding the prefix itself
        4: "<answer>\n  <verdict>real</verdict>\n</answer>",
    }  # prefix never sent (transformers serve)
    url, seen = fake_server(lambda n, body: _ok(answers[n]))
    results = HttpBackend(url, "m", logprobs=False).score(_images(3), PROMPT, explain=True)
    assert [r.text for r in results] == [PROMPT.answer_prefix + answers[1], answers[2], answers[3]]
    assert [r.parsed.verdict for r in results] == ["fake", "real", "fake"]
    [alone] = HttpBackend(url, "m", logprobs=False, continue_prefix=False).score(
        _images(1), PROMPT, explain=True
    )
    assert alone.text == answers[4] and alone.parsed.verdict == "real"
    assert "continue_final_message" not in seen[3] and len(seen[3]["messages"]) == 2  # no assistant turn


def test_concurrent_results_keep_order(fake_server):
    def by_colour(n: int, body: dict) -> tuple[int, bytes]:
        time.sleep(0.05 * (4 - n))  # later requests answer first
        data = body["messages"][1]["content"][0]["image_url"]["url"].split(",", 1)[1]
        red = Image.open(io.BytesIO(base64.b64decode(data))).getpixel((0, 0))[0]
        return _ok(f"fake</verdict><confidence>{0.1 + 0.8 * red / 255:.4f}</confidence></answer>")

    url, _ = fake_server(by_colour)
    images = _images(4)
    results = HttpBackend(url, "m", logprobs=False, concurrency=4).score(images, PROMPT, explain=True)
    confidences = [round(0.1 + 0.8 * im.getpixel((0, 0))[0] / 255, 4) for im in images]
    expected = [math.log(c / (1 - c)) for c in confidences]
    assert [r.logit for r in results] == pytest.approx(expected)


# --- scoring helpers ----------------------------------------------------------------------------


def test_logit_from_alternatives_sums_variants_and_floors_absent_side():
    alts = [
        {"token": "fake", "logprob": math.log(0.5)},
        {"token": " Fake", "logprob": math.log(0.2)},
        {"token": "Ġreal", "logprob": math.log(0.1)},
        {"token": "x", "logprob": math.log(0.05)},
    ]
    assert logit_from_alternatives(alts, "fake", "real") == pytest.approx(math.log(0.7 / 0.1))
    only_fake = [a for a in alts if "real" not in a["token"]]
    # Missing "real": half of min(smallest listed 0.05, unlisted mass 0.25).
    assert absent_logprob([a["logprob"] for a in only_fake]) == pytest.approx(math.log(0.025))
    assert logit_from_alternatives(only_fake, "fake", "real") == pytest.approx(math.log(0.7 / 0.025))
    assert logit_from_alternatives([{"token": "x", "logprob": 0.0}], "fake", "real") is None


def test_verdict_position_after_a_prefix_the_model_wrote_itself():
    def tok(t: str, alts: dict[str, float]) -> dict:
        return {
            "token": t,
            "logprob": alts.get(t, -9.0),
            "top_logprobs": [{"token": k, "logprob": v} for k, v in alts.items()],
        }

    content = [
        tok("<answer>", {"<answer>": -0.1, "fake": -3.0}),
        tok("<verdict>", {"<verdict>": -0.1}),
        tok("real", {"real": -0.2, "fake": -1.7}),
    ]
    assert verdict_logit(content, "<answer><verdict>") == pytest.approx(-1.5)
    # No verdict word generated: the position right after the prefix still ranks the two words.
    content[2] = tok("maybe", {"maybe": -0.1, "fake": -2.0, "real": -3.0})
    assert verdict_logit(content, "<answer><verdict>") == pytest.approx(1.0)


def test_fallback_logit_confidence_clipping():
    sure = parse_answer("<answer><verdict>fake</verdict><confidence>1.0</confidence></answer>")
    assert fallback_logit(sure) == pytest.approx(math.log((1 - 1e-4) / 1e-4))
    likely = parse_answer("<answer><verdict>real</verdict><confidence>0.75</confidence></answer>")
    assert fallback_logit(likely) == pytest.approx(-math.log(3))


# --- the real Qwen vocabulary in the HTTP score path --------------------------------------------


def test_http_verdict_forms_match_the_local_scorer_on_qwens_vocabulary():
    from qwen_vocab import qwen_tiktoken_path, qwen_tokenizer

    from crossfake.vlm.scoring import verdict_forms, verdict_token_ids

    path = qwen_tiktoken_path()
    if path is None:
        pytest.fail("dashscope (dev extra) is missing: it ships qwen.tiktoken")
    tok = qwen_tokenizer(path)
    fake_ids, real_ids = verdict_token_ids(tok, "fake", "real"), verdict_token_ids(tok, "real", "fake")
    assert fake_ids == [12418, 30570, 36965, 52317] and real_ids == [1931, 7951, 8800, 12768]
    forms = verdict_forms("fake", "real", tok)
    # The HTTP backend counts, as strings, exactly the tokens the local scorer sums.
    assert sorted(f for f, _ in forms) == sorted(tok.decode([i]) for i in fake_ids)
    assert sorted(r for _, r in forms) == sorted(tok.decode([i]) for i in real_ids)
    assert verdict_forms("fake", "real") == forms  # the default without a tokenizer is Qwen's

    # A top-k as a server returns it for Qwen: REAL is one token (listed), FAKE is FA + KE (never listed).
    probs = {
        " fake": 0.30,
        "fake": 0.05,
        " Fake": 0.05,
        " real": 0.20,
        "Real": 0.05,
        "REAL": 0.15,
        " REAL": 0.10,
        "FA": 0.06,
    }
    for text in probs:
        assert len(tok(text, add_special_tokens=False)["input_ids"]) == 1
    alternatives = [
        {
            "token": tok.convert_ids_to_tokens(tok(t, add_special_tokens=False)["input_ids"][0]),
            "logprob": math.log(p),
        }
        for t, p in probs.items()
    ]  # byte-level strings: "Ġfake", ...
    # Local scorer on the same distribution: logsumexp over its ids, on a full vector.
    logp = torch.full((len(tok),), -60.0)
    for a in alternatives:
        logp[tok.convert_tokens_to_ids(a["token"])] = a["logprob"]
    local = float(torch.logsumexp(logp[fake_ids], 0) - torch.logsumexp(logp[real_ids], 0))
    assert local == pytest.approx(math.log(0.40 / 0.25))
    assert logit_from_alternatives(alternatives, "fake", "real") == pytest.approx(local, abs=1e-6)
    assert logit_from_alternatives(alternatives, "fake", "real", forms) == pytest.approx(local, abs=1e-6)


# --- the tokenizer option and the score-only answer length ---------------------------------------


class _WordTokenizer:
    """A stand-in tokenizer: one token per whitespace-separated word (leading space kept), ids counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        self.calls += 1
        return {"input_ids": [hash(w) % 1000 for w in text.split()] or [0]}


def test_tokenizer_is_loaded_once_when_the_backend_is_built(monkeypatch, tmp_path):
    import transformers

    loaded: list[str] = []
    tok = _WordTokenizer()
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda name: loaded.append(name) or tok)
    backend = HttpBackend("http://127.0.0.1:9", "m", tokenizer="some/tokenizer")
    assert loaded == ["some/tokenizer"]  # at construction, not in the scoring pool
    assert ("FAKE", "REAL") in backend.verdict_forms("fake", "real")  # its forms, not Qwen's default
    backend.verdict_forms("fake", "real")
    assert loaded == ["some/tokenizer"]
    monkeypatch.undo()
    with pytest.raises(CrossfakeError, match=r"cannot load tokenizer '.*nowhere'.*expected the served model's"):
        HttpBackend("http://127.0.0.1:9", "m", tokenizer=str(tmp_path / "nowhere"))


def test_score_only_answer_leaves_room_for_a_prefix_the_model_writes(monkeypatch):
    import transformers

    url, image = "http://127.0.0.1:9", image_data_url(_images(1)[0])
    continued = HttpBackend(url, "m", max_new_tokens=256).request_body(image, PROMPT, explain=False)
    assert continued["max_tokens"] == 16  # the prefix is sent: only the verdict is written
    fresh = HttpBackend(url, "m", max_new_tokens=256, continue_prefix=False)
    # The model writes "<answer><verdict>" itself: its 17 bytes bound its tokens, then the 16 of a score.
    assert fresh.request_body(image, PROMPT, explain=False)["max_tokens"] == 17 + 16
    assert fresh.request_body(image, PROMPT, explain=True)["max_tokens"] == 256
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda name: _WordTokenizer())
    counted = HttpBackend(url, "m", max_new_tokens=256, continue_prefix=False, tokenizer="t")
    two_words = PROMPT.model_copy(update={"answer_prefix": "The class"})
    assert counted.request_body(image, two_words, explain=False)["max_tokens"] == 2 + 16
    assert HttpBackend(url, "m", max_new_tokens=8, continue_prefix=False).request_body(
        image, PROMPT, explain=False
    )["max_tokens"] == 8  # max_new_tokens caps it
