"""The roles of the columns a method adds to a predictions table, beside the ones every table has.

Every predictions table has ``sample_id, video_id, corpus, manipulation, label, score, logit``. A method may add
more (a VLM: its verdict, confidence, artefacts, written reasoning, the raw answer); it declares which
column plays which role in a :class:`PredictionColumns`, the trainer records the declaration in
``run.json`` and the experiment runner in ``experiment.json``, and reports and ``crossfake detect`` read it
there, so they show any method's explanation without knowing the method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PredictionColumns:
    """What a method adds to the predictions table beside ``logit`` and ``score``, by role.

    Attributes:
        explanation: the free-text column a person reads as the reason for a score (None: none).
        details: short columns shown beside the explanation (a verdict, a confidence, artefacts).
        raw: columns that show an answer as it came, for rows whose answer could not be read.
        parsed: a boolean column, false where the answer could not be read (None: no such column).
    """

    explanation: str | None = None
    details: tuple[str, ...] = ()
    raw: tuple[str, ...] = ()
    parsed: str | None = None

    @property
    def explains(self) -> bool:
        return self.explanation is not None

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictionColumns:
        return cls(
            explanation=data.get("explanation"),
            details=tuple(data.get("details") or ()),
            raw=tuple(data.get("raw") or ()),
            parsed=data.get("parsed"),
        )
