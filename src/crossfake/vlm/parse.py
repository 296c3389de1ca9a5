"""Read a VLM's XML answer (``<answer><verdict>…</verdict><confidence>…</confidence>…</answer>``), tolerantly.

Models wrap the XML in prose or code fences, change the case of tags and values, stop mid-answer, give
confidence as ``85%`` or ``high``, or answer twice. :func:`parse_answer` never raises and never invents a
verdict:

- ``parsed`` is True iff a verdict was read: a closed ``<verdict>`` element (any case) whose text is
  ``real`` or ``fake`` (any case). Several answers count only if their verdicts agree (the first is used).
- ``error`` is the first problem found, or None for a complete, well-formed answer. With ``parsed`` True it
  describes a lesser fault (unreadable confidence, no closing ``</answer>``), whose field is then None/empty.
- ``confidence`` is a number in [0, 1]: ``0.85``; ``85%``; or a bare number in (1, 100], read as a percent.
  Words (``high``) are not guessed at: confidence None and an error.
- ``artifacts`` splits ``<artifacts>`` on semicolons, newlines or ``<item>`` elements; ``none`` means [].

Regular expressions over the text rather than an XML parser: a truncated or prose-wrapped answer is not
a well-formed document, and the fields are flat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VERDICTS = ("real", "fake")

_FLAGS = re.IGNORECASE | re.DOTALL
_ANSWER = re.compile(r"<answer\s*>(.*?)(?:</answer\s*>|(?=<answer\s*>)|$)", _FLAGS)
_NUMBER = re.compile(r"^([0-9]*\.?[0-9]+)\s*(%?)$")
_NONE_WORDS = {"", "none", "no artifacts", "n/a", "nothing", "-"}


@dataclass(frozen=True)
class ParsedAnswer:
    """What was read from one answer (see the module docstring for the rules)."""

    parsed: bool
    verdict: str | None
    confidence: float | None
    artifacts: list[str] = field(default_factory=list)
    reasoning: str | None = None
    raw: str = ""
    error: str | None = None


def _element(body: str, tag: str) -> tuple[str | None, bool]:
    """(text of the first ``<tag>`` element, whether it was closed); (None, False) when absent."""
    closed = re.search(rf"<{tag}\s*>(.*?)</{tag}\s*>", body, _FLAGS)
    if closed:
        return closed.group(1).strip(), True
    opened = re.search(rf"<{tag}\s*>(.*?)(?=<|$)", body, _FLAGS)
    return (opened.group(1).strip(), False) if opened else (None, False)


def parse_confidence(text: str) -> float | None:
    """``0.85``, ``85%`` or ``85`` -> 0.85; None for words or numbers outside [0, 1] / [0, 100]%."""
    match = _NUMBER.match(text.strip())
    if not match:
        return None
    value, percent = float(match.group(1)), bool(match.group(2))
    if percent or value > 1:
        value /= 100
    return value if 0.0 <= value <= 1.0 else None


def _artifacts(text: str | None) -> list[str]:
    if text is None:
        return []
    items = re.findall(r"<item\s*>(.*?)</item\s*>", text, _FLAGS) or re.split(r"[;\n]", text)
    cleaned = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", item).strip() for item in items]
    return [item for item in cleaned if item.lower().rstrip(".") not in _NONE_WORDS]


def parse_answer(text: str | None) -> ParsedAnswer:
    """Parse one model answer; never raises (see the module docstring).

    Args:
        text: the whole answer, including the answer prefix the model was forced to start with.
    """
    raw = text or ""
    if not raw.strip():
        return ParsedAnswer(False, None, None, raw=raw, error="empty answer")
    # Without <answer> (the model skipped the wrapper) the whole text is searched for the fields.
    bodies = [m.group(1) for m in _ANSWER.finditer(raw)] or [raw]
    verdicts = [_element(body, "verdict") for body in bodies]
    found = [(v.strip().lower(), closed) for v, closed in verdicts if v is not None]
    if not found:
        return ParsedAnswer(False, None, None, raw=raw, error="no <verdict> element")
    word, closed = found[0]
    if not closed:
        return ParsedAnswer(False, None, None, raw=raw, error="answer truncated inside <verdict>")
    if word not in VERDICTS:
        return ParsedAnswer(False, None, None, raw=raw, error=f"verdict {word[:40]!r} is neither real nor fake")
    others = {w for w, _ in found[1:]}
    if others - {word}:
        return ParsedAnswer(
            False, None, None, raw=raw, error=f"{len(found)} answers with conflicting verdicts {sorted(others | {word})}"
        )

    body = bodies[0]
    errors: list[str] = []
    conf_text, _ = _element(body, "confidence")
    confidence = None
    if conf_text is None:
        errors.append("no <confidence> element")
    else:
        confidence = parse_confidence(conf_text)
        if confidence is None:
            errors.append(f"confidence {conf_text[:40]!r} is not a number in [0, 1] or a percentage")
    artifacts_text, _ = _element(body, "artifacts")
    reasoning, _ = _element(body, "reasoning")
    if _ANSWER.search(raw) and not re.search(r"</answer\s*>", raw, re.IGNORECASE):
        errors.append("no closing </answer> (truncated?)")
    return ParsedAnswer(
        True,
        word,
        confidence,
        artifacts=_artifacts(artifacts_text),
        reasoning=reasoning or None,
        raw=raw,
        error="; ".join(errors) or None,
    )
