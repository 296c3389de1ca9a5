"""A minimal OpenAI-compatible ``/v1/chat/completions`` server around a transformers Qwen2.5-VL, for tests.

It stands in for vLLM where the HTTP backend's logprob path is tested: ``transformers serve`` (5.23, the
real server of ``tests/test_vlm_real_server.py``) accepts ``logprobs``/``top_logprobs`` but ignores them and
rejects the continuation fields with HTTP 422. This script needs only the standard library and the model: it decodes
``data:`` image URLs, applies the processor's chat template (honouring vLLM's ``continue_final_message`` /
``add_generation_prompt`` extras), generates greedily and returns the text plus per-token
``logprobs.content[i].top_logprobs`` computed from the model's real logits, as vLLM does.

Usage: ``python tests/vlm_server.py [--model tiny|PATH] [--port 0]``. It prints ``PORT <n>`` on stdout once
it listens (``--port 0`` picks a free one, so the caller has no port race) and serves until killed.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import torch
from PIL import Image

from crossfake.models.backbones.qwen_vl import build_qwen_vl


def _image(url: str) -> Image.Image:
    if not url.startswith("data:"):
        raise ValueError("only data: image URLs are supported (the server has no network)")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def _to_hf_messages(messages: list[dict]) -> tuple[list[dict], list[Image.Image]]:
    """OpenAI chat messages -> the processor's message format, with the images pulled out in order."""
    out, images = [], []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            out.append({"role": m["role"], "content": [{"type": "text", "text": content}]})
            continue
        parts = []
        for c in content:
            if c["type"] == "image_url":
                images.append(_image(c["image_url"]["url"]))
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": c["text"]})
        out.append({"role": m["role"], "content": parts})
    return out, images


class Engine:
    """The model and the greedy generation loop that records per-step log-probabilities."""

    def __init__(self, spec: str):
        bundle = build_qwen_vl(spec, dtype=torch.float32)
        self.model, self.processor = bundle.model, bundle.processor
        self.tokenizer = self.processor.tokenizer

    def _entry(self, token_id: int, logprob: float) -> dict:
        text = self.tokenizer.decode([token_id])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    @torch.no_grad()
    def complete(self, body: dict) -> dict:
        messages, images = _to_hf_messages(body["messages"])
        cont = bool(body.get("continue_final_message", False))
        text = self.processor.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=body.get("add_generation_prompt", not cont),
            continue_final_message=cont,
        )
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt")
        out = self.model.generate(
            **inputs,
            max_new_tokens=int(body.get("max_tokens") or 16),
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
        new = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
        eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        finish = "stop" if new and new[-1] == eos else "length"
        content_ids = new[:-1] if finish == "stop" else new
        choice: dict = {
            "index": 0,
            "finish_reason": finish,
            "message": {"role": "assistant", "content": self.tokenizer.decode(content_ids)},
        }
        if body.get("logprobs"):
            k = int(body.get("top_logprobs") or 0)
            content = []
            for tok, logits in zip(content_ids, out.logits, strict=False):
                logp = torch.log_softmax(logits[0].float(), dim=-1)
                top = torch.topk(logp, min(k, logp.numel())) if k else None
                entry = self._entry(tok, float(logp[tok]))
                entry["top_logprobs"] = (
                    [self._entry(int(i), float(v)) for v, i in zip(top.values, top.indices, strict=True)]
                    if top is not None
                    else []
                )
                content.append(entry)
            choice["logprobs"] = {"content": content}
        return {
            "id": f"chatcmpl-{time.time_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [choice],
            "usage": {"prompt_tokens": int(inputs["input_ids"].shape[1]), "completion_tokens": len(new)},
        }


def make_handler(engine: Engine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self._send(200, engine.complete(body))
            except (KeyError, ValueError, TypeError) as e:
                self._send(400, {"error": {"message": f"bad request: {e}", "type": "invalid_request_error"}})

        def log_message(self, format: str, *args) -> None:  # keep the test output clean
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny' or a save_pretrained folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = HTTPServer((args.host, args.port), make_handler(Engine(args.model)))
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
