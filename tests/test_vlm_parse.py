"""parse_answer on the answers VLMs really give: well-formed, wrapped, truncated, mis-cased or nonsense."""

from __future__ import annotations

import pytest

from crossfake.vlm.parse import ParsedAnswer, parse_answer, parse_confidence

GOOD = (
    "<answer><verdict>fake</verdict><confidence>0.85</confidence>"
    "<artifacts>blending seams; unnatural skin texture</artifacts>"
    "<reasoning>Seams along the jaw.</reasoning></answer>"
)

# (answer, parsed, verdict, confidence, error substring or None for no error)
CASES = [
    ("well-formed", GOOD, True, "fake", 0.85, None),
    ("extra prose", f"Sure! Here is my analysis:\n{GOOD}\nLet me know if you need more.", True, "fake", 0.85, None),
    ("code fence", f"```xml\n{GOOD}\n```", True, "fake", 0.85, None),
    ("wrong case", "<Answer><Verdict>FAKE</Verdict><CONFIDENCE>0.7</CONFIDENCE></Answer>", True, "fake", 0.7,
     None),
    ("spaces in verdict", "<answer><verdict> Real \n</verdict><confidence>0.6</confidence></answer>", True,
     "real", 0.6, None),
    ("missing confidence", "<answer><verdict>real</verdict><reasoning>ok</reasoning></answer>", True, "real",
     None, "no <confidence>"),
    ("percent confidence", "<answer><verdict>fake</verdict><confidence>85%</confidence></answer>", True, "fake",
     0.85, None),
    ("bare percent number", "<answer><verdict>fake</verdict><confidence>90</confidence></answer>", True, "fake",
     0.9, None),
    ("word confidence", "<answer><verdict>fake</verdict><confidence>high</confidence></answer>", True, "fake",
     None, "not a number"),
    ("confidence above 100", "<answer><verdict>fake</verdict><confidence>250</confidence></answer>", True,
     "fake", None, "not a number"),
    ("truncated after verdict", "<answer><verdict>real</verdict><confidence>0.4", True, "real", 0.4,
     "no closing </answer>"),
    ("truncated inside verdict", "<answer><verdict>fa", False, None, None, "truncated inside <verdict>"),
    ("empty", "", False, None, None, "empty"),
    ("whitespace only", "  \n ", False, None, None, "empty"),
    ("prose, no XML", "I think it's fake.", False, None, None, "no <verdict>"),
    ("garbage", "<<<>>> </verdict> ### \x00 ~~", False, None, None, "no <verdict>"),
    ("two agreeing answers", GOOD + GOOD, True, "fake", 0.85, None),
    ("two conflicting answers", GOOD + GOOD.replace(">fake<", ">real<"), False, None, None, "conflicting"),
    ("other verdict", "<answer><verdict>uncertain</verdict><confidence>0.5</confidence></answer>", False,
     None, None, "neither real nor fake"),
    ("no answer wrapper", "<verdict>real</verdict><confidence>0.2</confidence>", True, "real", 0.2, None),
]


@pytest.mark.parametrize(("text", "parsed", "verdict", "confidence", "error"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_parse_answer_table(
    text: str, parsed: bool, verdict: str | None, confidence: float | None, error: str | None
) -> None:
    result = parse_answer(text)
    assert isinstance(result, ParsedAnswer)
    assert result.raw == text  # the model's words are always kept
    assert result.parsed is parsed and result.verdict == verdict
    assert result.confidence == (pytest.approx(confidence) if confidence is not None else None)
    if error is None:
        assert result.error is None
    else:
        assert result.error is not None and error in result.error
    if not parsed:  # never a silent default verdict
        assert result.verdict is None and result.confidence is None


def test_fields_of_a_full_answer() -> None:
    result = parse_answer(GOOD)
    assert result.artifacts == ["blending seams", "unnatural skin texture"]
    assert result.reasoning == "Seams along the jaw."


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("<artifacts>none</artifacts>", []),
        ("<artifacts>1. asymmetric irises\n2. blur</artifacts>", ["asymmetric irises", "blur"]),
        ("<artifacts><item>seams</item><item>lighting</item></artifacts>", ["seams", "lighting"]),
    ],
)
def test_artifact_lists(text: str, items: list[str]) -> None:
    assert parse_answer(f"<answer><verdict>fake</verdict>{text}</answer>").artifacts == items


def test_none_input_and_confidence_helper() -> None:
    assert parse_answer(None).error == "empty answer"
    assert parse_confidence("0.5") == 0.5 and parse_confidence("50 %") == 0.5 and parse_confidence("-1") is None
