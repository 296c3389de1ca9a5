"""Vision-language models as deepfake detectors: prompt templates, answer parsing, verdict scores, backends."""

from crossfake.vlm.parse import ParsedAnswer, parse_answer
from crossfake.vlm.prompts import PromptTemplate, load_prompt

__all__ = ["ParsedAnswer", "PromptTemplate", "load_prompt", "parse_answer"]
