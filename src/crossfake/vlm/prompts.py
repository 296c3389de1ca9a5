"""Prompt templates for vision-language detectors, as versioned YAML files.

A template is the system text, the user instruction (shown after the image), the ``answer_prefix`` the
assistant's answer starts with up to the verdict word, and the two verdict words. The prefix is what
makes a score possible: the model is teacher-forced through it and the probabilities of the next token
(``positive`` vs ``negative``) give the logit (:mod:`crossfake.vlm.scoring`).

Shipped templates live in ``crossfake/configs/prompts/<name>_v<version>.yaml`` and are loaded by that file
name (``forensic_xml_v1``); any other YAML file is loaded by path. A run records :attr:`PromptTemplate.id`
(``name_v<version>``), so changing a prompt means adding a file with a new version, never editing one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crossfake.utils.config import read_yaml, validate_config
from crossfake.utils.shipped import resolve_shipped, shipped_names


class PromptTemplate(BaseModel):
    """One versioned prompt: system and instruction text, the answer prefix and the verdict words."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    system: str | None = Field(None, description="system message; None for none")
    instruction: str = Field(min_length=1, description="user text, placed after the image")
    answer_prefix: str = Field("", description="the assistant answer's start, up to the verdict word")
    positive: str = Field("fake", min_length=1, description="verdict word of the positive (fake) class")
    negative: str = Field("real", min_length=1, description="verdict word of the negative (real) class")

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # YAML reads `version: 1` as an int; versions are labels, compared as text.
        return str(value) if isinstance(value, int) else value

    @property
    def id(self) -> str:
        """``name_v<version>``: what run outputs record."""
        return f"{self.name}_v{self.version}"

    def messages(self) -> list[dict[str, Any]]:
        """The chat (system, then a user turn holding one image and the instruction) for ``apply_chat_template``.

        The image is a ``{"type": "image"}`` placeholder: the processor receives the pixels separately.
        The answer prefix is not included; scoring appends it after the generation prompt.
        """
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        messages.append(
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.instruction}]}
        )
        return messages


def prompt_path(name_or_path: str | Path) -> Path:
    """The file of a shipped template (``forensic_xml_v1``) or an existing YAML path."""
    return resolve_shipped("prompts", name_or_path, "prompt template")


def shipped_prompts() -> list[str]:
    """Names of the templates shipped in ``crossfake/configs/prompts``."""
    return shipped_names("prompts")


def load_prompt(name_or_path: str | Path) -> PromptTemplate:
    """Read and validate a prompt template by shipped name or path.

    Raises:
        CrossfakeError: the template is missing, not YAML, or invalid (naming the file and the field).
    """
    path = prompt_path(name_or_path)
    return validate_config(PromptTemplate, read_yaml(path), f"prompt template {path}",
                           expected="the template's fields")
