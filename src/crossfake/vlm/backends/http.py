"""VLM backend for any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, SGLang, Ollama, ...).

Each image is one request: the template's system text, a user turn with the image (a PNG ``data:`` URL in
an ``image_url`` part) and the instruction, and a final assistant turn holding the template's
``answer_prefix``. vLLM and SGLang continue that turn when asked with ``continue_final_message: true,
add_generation_prompt: false`` (sent unless ``continue_prefix=False``, for strict servers that reject
unknown fields); servers that ignore it answer from scratch, and the scorer then looks for the prefix in
the answer instead.

**Score.** The request asks for ``logprobs`` with ``top_logprobs`` alternatives per generated token. The
verdict position is the first generated token after the prefix whose text is a case/space variant of the
template's ``positive``/``negative`` word (``"fake"``/``"real"``); when the model wrote neither, it is the
first position after the prefix, where the verdict was due, provided its alternatives list one of them.
There ``logit = log p(positive forms) - log p(negative forms)``, each a logsumexp over the listed
alternatives that spell one of the counted forms. The forms come in case/space pairs, as in the local
scorer (:func:`crossfake.vlm.scoring.verdict_forms`): with ``tokenizer`` (the served model's, by path or
hub id) the pairs in which both words are single tokens, exactly the tokens the local backend sums; without
it ``fake``/``real``, `` fake``/`` real``, ``Fake``/``Real``, `` Fake``/`` Real`` — Qwen2.5-VL's single-token
pairs. Upper case is left out by default because ``REAL`` is one token but ``FAKE`` two in that
vocabulary: counting ``REAL`` would add a form to one side only. A side missing from the top-k has
probability at most the smallest listed one and at most the unlisted mass; it is given half that bound
(:func:`absent_logprob`).

**Fallback.** Without usable logprobs (the server sends none — ``transformers serve`` ignores ``logprobs``
— or no verdict position is found) the logit comes from the parsed answer: ``±log(c / (1 - c))`` for the
stated verdict and confidence ``c`` (0.5, hence 0, when no confidence is given). An answer that does not
parse scores 0.0 (undecided) and keeps the parse error in ``parsed.error``; a warning is logged once per
backend and cause. The parsed text is the prefix
plus the continuation when the prefix was sent for continuation (unless the answer holds the prefix
itself, or only parses without it: a server that ignored the request answered from scratch), and the
answer alone when it was not (``continue_prefix=False``: the model never saw the prefix).

**Servers.** ``transformers serve`` (5.23) rejects the continuation fields with HTTP 422 and ignores
``logprobs``: use ``continue_prefix=False``; scores then come from the parsed answer.

**Errors.** Timeouts, connection errors, 429 and 5xx are retried ``retries`` times with exponential backoff
(``backoff * 2**i`` seconds), then raise :class:`CrossfakeError` naming the URL and the last error. Other
4xx statuses raise at once with the server's message; a body that is not a chat completion raises too.
Uses only ``urllib.request``, so the backend adds no dependency.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import math
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger
from crossfake.vlm.backends import register_backend
from crossfake.vlm.backends.base import VLMResult
from crossfake.vlm.parse import ParsedAnswer, parse_answer
from crossfake.vlm.prompts import PromptTemplate

log = get_logger("vlm.http")

# Byte-level BPE markers some servers leave in token strings (GPT-2 "Ġ", SentencePiece "▁").
_SPACE_MARKERS = ("Ġ", "▁")
# Keeps the absent-side estimate finite when the listed alternatives hold (numerically) all the mass.
LOGPROB_FLOOR = -50.0
# Confidences are clipped to this distance from 0 and 1 so the fallback logit stays finite.
_CONF_EPS = 1e-4
SCORE_TOKENS = 16
"""New tokens asked for with ``explain=False`` after the answer prefix: the verdict, and some slack."""


def _norm(token: str) -> str:
    return _text(token).strip().lower()


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def absent_logprob(listed: list[float]) -> float:
    """Log-probability given to a verdict word missing from a position's top-k alternatives.

    An unlisted token is no likelier than the least likely listed one, nor than all unlisted tokens
    together; half the tighter of the two bounds sits strictly inside them.

    Args:
        listed: log-probabilities of every alternative the server listed at that position.
    """
    unlisted = 1.0 - sum(math.exp(v) for v in listed)
    bound = min(min(listed), math.log(unlisted) if unlisted > 0 else LOGPROB_FLOOR)
    return max(bound - math.log(2.0), LOGPROB_FLOOR)


def _text(token: str) -> str:
    for marker in _SPACE_MARKERS:
        token = token.replace(marker, " ")
    return token


def default_forms(positive: str, negative: str) -> list[tuple[str, str]]:
    """The case/space pairs counted without a tokenizer (:func:`crossfake.vlm.scoring.verdict_forms`)."""
    from crossfake.vlm.scoring import verdict_forms

    return verdict_forms(positive, negative)


def logit_from_alternatives(
    alternatives: list[dict], positive: str, negative: str, forms: list[tuple[str, str]] | None = None
) -> float | None:
    """``log p(positive forms) - log p(negative forms)`` from one position's ``top_logprobs`` entries.

    Args:
        alternatives: ``{"token": str, "logprob": float}`` entries (OpenAI ``top_logprobs`` format).
        positive: the positive verdict word (``"fake"``).
        negative: the negative verdict word (``"real"``).
        forms: the (positive, negative) spellings counted, exactly (case and leading space matter; the
            tokenizer markers ``Ġ``/``▁`` read as a space); default :func:`default_forms`.

    Returns:
        The logit, or ``None`` when no counted form is listed (the position says nothing about the verdict).
    """
    forms = default_forms(positive, negative) if forms is None else forms
    pos_forms, neg_forms = {p for p, _ in forms}, {n for _, n in forms}
    pos = [float(a["logprob"]) for a in alternatives if _text(a["token"]) in pos_forms]
    neg = [float(a["logprob"]) for a in alternatives if _text(a["token"]) in neg_forms]
    if not pos and not neg:
        return None
    absent = absent_logprob([float(a["logprob"]) for a in alternatives])
    return (_logsumexp(pos) if pos else absent) - (_logsumexp(neg) if neg else absent)


def verdict_logit(
    content: list[dict],
    prefix: str,
    positive: str = "fake",
    negative: str = "real",
    forms: list[tuple[str, str]] | None = None,
) -> float | None:
    """The verdict logit from a completion's ``logprobs.content`` (see the module docstring).

    Args:
        content: per generated token, ``{"token", "logprob", "top_logprobs": [...]}``.
        prefix: the answer prefix; if the server did not continue it, the model may have written it itself,
            and the verdict is searched after it.
        positive: the positive verdict word.
        negative: the negative verdict word.
        forms: the spellings counted (:func:`logit_from_alternatives`).

    Returns:
        The logit, or ``None`` when no position carries the verdict words.
    """
    start, offset = 0, 0
    generated = "".join(c["token"] for c in content)
    at = generated.find(prefix.strip()) if prefix.strip() else -1
    if at >= 0:
        end = at + len(prefix.strip())
        while start < len(content) and offset < end:
            offset += len(content[start]["token"])
            start += 1
    words = {positive.lower(), negative.lower()}
    for c in content[start:]:
        if _norm(c["token"]) in words:
            alternatives = list(c.get("top_logprobs") or [])
            # The sampled token need not be among the alternatives (top_logprobs may be small or 0).
            if not any(a["token"] == c["token"] for a in alternatives):
                alternatives.append(c)
            return logit_from_alternatives(alternatives, positive, negative, forms)
    if start < len(content):
        alternatives = list(content[start].get("top_logprobs") or [])
        return logit_from_alternatives(alternatives, positive, negative, forms)
    return None


def fallback_logit(parsed: ParsedAnswer, positive: str = "fake", negative: str = "real") -> float:
    """``±log(c / (1 - c))`` from a parsed verdict and confidence; 0.0 when the answer has no verdict.

    The confidence is read as the probability of the stated verdict; a missing one counts as 0.5.
    """
    verdict = (parsed.verdict or "").strip().lower() if parsed.parsed else ""
    if verdict not in (positive.lower(), negative.lower()):
        return 0.0
    c = 0.5 if parsed.confidence is None else min(max(float(parsed.confidence), _CONF_EPS), 1 - _CONF_EPS)
    logit = math.log(c / (1 - c))
    return logit if verdict == positive.lower() else -logit


def image_data_url(image: Image.Image) -> str:
    """The image as a ``data:image/png;base64,...`` URL (PNG: lossless, so the server sees our pixels)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _server_message(body: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body text (shortened)."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        err = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return text[:500] or "(empty body)"
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err) if err else text[:500]


def _load_tokenizer(name: str):
    """The ``tokenizer`` option's tokenizer, read once when the backend is built."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    except Exception as e:  # noqa: BLE001 (OSError, ValueError, ImportError...: all mean "cannot load it")
        raise CrossfakeError(
            f"http backend: cannot load tokenizer {name!r} ({type(e).__name__}: {e}); expected the served "
            "model's tokenizer: a local folder with its tokenizer files or a hub id (already cached when "
            "HF_HUB_OFFLINE=1), or no `tokenizer` option to count Qwen2.5-VL's verdict forms"
        ) from e


class _Retryable(Exception):
    """A failure worth another attempt (timeout, connection, 429/5xx)."""


@register_backend("http")
class HttpBackend:
    """Scores images with a model behind an OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: server root, with or without ``/v1`` (``http://127.0.0.1:8000`` or ``.../v1``).
        model: the ``model`` field of the request (the served model's name).
        api_key_env: environment variable holding a bearer token; unset means no ``Authorization`` header.
        timeout: seconds per request attempt.
        retries: extra attempts after a timeout, connection error, 429 or 5xx.
        backoff: seconds before the first retry, doubled each retry.
        max_new_tokens: answer length with ``explain=True``, and the most asked for in any case. Scoring
            alone asks for ``SCORE_TOKENS`` (16) after the prefix: 16 new tokens when the prefix is continued,
            and the prefix's length plus 16 when it is not (``continue_prefix=False``: the model writes the
            prefix itself), the prefix's length being its token count with ``tokenizer``, else its UTF-8
            byte count (a token spans at least one byte, so that bounds it).
        logprobs: ask for log-probabilities (otherwise always score from the parsed answer).
        concurrency: requests in flight at once for a batch.
        top_logprobs: alternatives per token (OpenAI and vLLM allow at most 20 by default).
        continue_prefix: send the answer prefix as a final assistant turn with vLLM's
            ``continue_final_message``/``add_generation_prompt`` fields (``False`` for ``transformers serve``,
            which rejects them: the model then answers from scratch and the prefix is not prepended).
        tokenizer: the served model's tokenizer (folder or hub id, read with ``AutoTokenizer``; cached files
            only under ``HF_HUB_OFFLINE=1``): the verdict forms counted are its single-token pairs, as in
            the local scorer. Default: the forms of Qwen2.5-VL's vocabulary (module docstring).
    """

    name = "http"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_new_tokens: int = 256,
        logprobs: bool = True,
        concurrency: int = 1,
        top_logprobs: int = 20,
        continue_prefix: bool = True,
        tokenizer: str | None = None,
    ):
        if concurrency < 1 or retries < 0 or timeout <= 0:
            raise CrossfakeError(
                f"http backend: need concurrency >= 1, retries >= 0, timeout > 0 "
                f"(got {concurrency}, {retries}, {timeout})"
            )
        root = base_url.rstrip("/")
        self.url = (root if root.endswith("/v1") else root + "/v1") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_new_tokens = max_new_tokens
        self.logprobs = logprobs
        self.concurrency = concurrency
        self.top_logprobs = top_logprobs
        self.continue_prefix = continue_prefix
        self.tokenizer = tokenizer
        self._tokenizer = _load_tokenizer(tokenizer) if tokenizer else None
        self._forms: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def score(self, images: list[Image.Image], prompt: PromptTemplate, explain: bool) -> list[VLMResult]:
        """One :class:`VLMResult` per image, in order; requests run ``concurrency`` at a time.

        With ``explain=False`` only a short answer is requested (the verdict token is all the score needs)
        and ``text``/``parsed`` are ``None`` unless the score had to fall back to the parsed answer.
        """
        urls = [image_data_url(im) for im in images]
        if self.concurrency == 1 or len(urls) < 2:
            return [self._score_one(u, prompt, explain) for u in urls]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(urls))) as pool:
            return list(pool.map(lambda u: self._score_one(u, prompt, explain), urls))

    def request_body(self, image_url: str, prompt: PromptTemplate, explain: bool) -> dict:
        """The JSON body for one image (public so callers can log or replay it)."""
        user = [
            {"type": "image_url", "image_url": {"url": image_url}},
            {"type": "text", "text": prompt.instruction},
        ]
        messages: list[dict] = [{"role": "system", "content": prompt.system}] if prompt.system else []
        messages.append({"role": "user", "content": user})
        body: dict = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_new_tokens
            if explain
            else min(self.max_new_tokens, self.score_tokens(prompt)),
            "temperature": 0.0,
        }
        if prompt.answer_prefix and self.continue_prefix:
            messages.append({"role": "assistant", "content": prompt.answer_prefix})
            body.update(continue_final_message=True, add_generation_prompt=False)
        if self.logprobs:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        return body

    def score_tokens(self, prompt: PromptTemplate) -> int:
        """New tokens a score-only answer needs (``max_new_tokens`` in the class docstring)."""
        prefix = prompt.answer_prefix or ""
        if self.continue_prefix or not prefix:
            return SCORE_TOKENS
        if self._tokenizer is not None:
            with self._lock:  # a fast tokenizer may not be used by two threads at once
                written = len(self._tokenizer(prefix, add_special_tokens=False)["input_ids"])
        else:
            written = len(prefix.encode("utf-8"))
        return written + SCORE_TOKENS

    def verdict_forms(self, positive: str, negative: str) -> list[tuple[str, str]]:
        """The (positive, negative) spellings counted in the logprobs (class docstring, ``tokenizer``)."""
        with self._lock:
            if (positive, negative) not in self._forms:
                from crossfake.vlm.scoring import verdict_forms

                self._forms[positive, negative] = verdict_forms(positive, negative, self._tokenizer)
            return self._forms[positive, negative]

    def _answer_text(self, content: str, prefix: str) -> str:
        """The whole answer to parse (module docstring, **Fallback**)."""
        if not prefix.strip() or not self.continue_prefix or prefix.strip() in content:
            return content
        continued = prefix + content
        if not parse_answer(continued).parsed and parse_answer(content).parsed:
            return content  # the server ignored the continuation and the model wrote a whole answer
        return continued

    def _score_one(self, image_url: str, prompt: PromptTemplate, explain: bool) -> VLMResult:
        choice = self._post(self.request_body(image_url, prompt, explain))
        content = (choice.get("message") or {}).get("content")
        if not isinstance(content, str):
            raise CrossfakeError(
                f"{self.url}: the completion has no message content: {json.dumps(choice)[:300]}"
            )
        prefix = prompt.answer_prefix or ""
        # A continued answer comes back without the prefix; the parser needs the whole answer.
        text = self._answer_text(content, prefix)
        tokens = (choice.get("logprobs") or {}).get("content") or []
        logit = None
        if tokens:
            forms = self.verdict_forms(prompt.positive, prompt.negative)
            logit = verdict_logit(tokens, prefix, prompt.positive, prompt.negative, forms)
        if logit is not None:
            parsed = parse_answer(text) if explain else None
            return VLMResult(logit=logit, text=text if explain else None, parsed=parsed)
        self._warn_once(
            "no-logprobs" if not tokens else "no-verdict",
            f"{self.url}: "
            + (
                "the server returned no logprobs"
                if not tokens
                else "no verdict token among the returned logprobs"
            )
            + "; scoring from the parsed verdict and confidence instead (coarser, ties likely)",
        )
        parsed = parse_answer(text)
        if not parsed.parsed:
            log.debug("unparseable answer scored 0.0: %s", parsed.error)
        logit = fallback_logit(parsed, prompt.positive, prompt.negative)
        return VLMResult(logit=logit, text=text, parsed=parsed)

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning(message)

    def _post(self, body: dict) -> dict:
        """POST with retries; returns ``choices[0]`` of a valid completion."""
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                raw = self._attempt(request)
            except _Retryable as e:
                last = str(e)
                log.debug("%s: attempt %d/%d failed: %s", self.url, attempt + 1, self.retries + 1, last)
                continue
            return self._choice(raw)
        raise CrossfakeError(f"{self.url}: no answer after {self.retries + 1} attempts; last error: {last}")

    def _attempt(self, request: urllib.request.Request) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            message = _server_message(e.read())
            if e.code == 429 or e.code >= 500:
                raise _Retryable(f"HTTP {e.code}: {message}") from e
            raise CrossfakeError(f"{self.url}: HTTP {e.code}: {message}") from e
        except urllib.error.URLError as e:
            raise _Retryable(f"connection failed: {e.reason}") from e
        except (TimeoutError, OSError, http.client.HTTPException) as e:
            # Read timeouts and dropped connections surface here rather than as URLError.
            raise _Retryable(f"{type(e).__name__}: {e or 'timed out'}") from e

    def _choice(self, raw: bytes) -> dict:
        try:
            payload = json.loads(raw)
        except ValueError as e:
            snippet = raw[:200].decode("utf-8", errors="replace")
            raise CrossfakeError(f"{self.url}: the server's answer is not JSON: {snippet!r}") from e
        if isinstance(payload, dict) and payload.get("error"):
            raise CrossfakeError(f"{self.url}: server error: {_server_message(raw)}")
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not choices or not isinstance(choices[0], dict):
            snippet = raw[:200].decode("utf-8", errors="replace")
            raise CrossfakeError(f"{self.url}: not a chat completion (no 'choices'): {snippet!r}")
        return choices[0]
