"""``run.json``, the record of a finished training run: one typed model that the trainer writes and that
scoring, ``crossfake evaluate``, ``crossfake detect``, the experiment runner and the studies read.

The file is flat JSON (format ``crossfake-run/1``): the provenance keys of
:func:`crossfake.utils.provenance.provenance` beside the run's own. :class:`RunRecord` keeps the two apart
(``provenance``) and types what readers use; keys this version does not know are kept in ``extra`` and
written back. Records of older crossfake versions, without ``crop``, ``threshold_name`` or
``prediction_columns``, read with those as None; a record missing what every version wrote, or holding
the wrong type, is a :class:`CrossfakeError` naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from crossfake.data.predictions import PredictionColumns
from crossfake.utils.errors import CrossfakeError

RUN_FORMAT = "crossfake-run/1"
RUN_FILE = "run.json"

#: The keys :func:`crossfake.utils.provenance.provenance` adds (who and what produced the run, and when).
PROVENANCE_KEYS = ("crossfake_version", "created_utc", "command", "python", "platform", "packages", "git")


@dataclass(frozen=True)
class RunRecord:
    """What ``run.json`` holds.

    Attributes:
        method: the detection method (registry name), e.g. ``lora``.
        parameters: ``trainable``, ``total`` and ``trainable_percent``.
        steps: optimizer steps taken.
        best_step: the step of the checkpoint in ``best/`` (selected by validation AUC).
        best_val_auc: its validation AUC (frame level).
        threshold: the decision threshold chosen on its validation predictions.
        wall_time_s: training time over every session of the run.
        threshold_rule: how the threshold was chosen (None: not recorded).
        threshold_name: the threshold's name for people, e.g. "validation EER threshold".
        prediction_columns: the columns the method adds to a predictions table (None: a run written before
            methods declared them).
        crop: the crop specification of the training manifest (None: not recorded).
        config: the resolved training config.
        manifest, manifest_sha256: the training manifest and its digest.
        data: rows, videos and manipulations of the training and validation rows.
        lr, precision, device, num_processes, feature_cache, pseudo_fakes: how the run was trained.
        val_metrics: validation ``auc`` and ``eer`` of the selected checkpoint.
        history: one entry per validation.
        provenance: versions, git state, command line and time.
        extra: keys this version does not know, kept as they are.
    """

    method: str
    parameters: dict[str, Any]
    steps: int
    best_step: int
    best_val_auc: float
    threshold: float
    wall_time_s: float
    threshold_rule: str | None = None
    threshold_name: str | None = None
    prediction_columns: PredictionColumns | None = None
    crop: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    manifest: str | None = None
    manifest_sha256: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None
    precision: str | None = None
    device: str | None = None
    num_processes: int | None = None
    feature_cache: str | None = None
    pseudo_fakes: dict[str, Any] | None = None
    val_metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any, where: Path) -> RunRecord:
        """The record of ``raw`` (the parsed ``where``), checked key by key."""
        if not isinstance(raw, dict):
            raise CrossfakeError(f"{where}: expected a JSON object, not {type(raw).__name__}")
        check_format(raw, where)
        known = {f.name for f in fields(cls)} - {"provenance", "extra", "prediction_columns"}
        values: dict[str, Any] = {k: raw[k] for k in known if k in raw}
        for key, kind in _REQUIRED.items():
            if key not in raw:
                raise CrossfakeError(f"{where} lacks `{key}`: it is not the record of a finished run")
            if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
                raise CrossfakeError(f"{where}: `{key}` must be {_NAMES[kind]}, not {raw[key]!r:.80}")
        for key in ("crop", "config", "data", "pseudo_fakes", "val_metrics", "prediction_columns"):
            if raw.get(key) is not None and not isinstance(raw[key], dict):
                raise CrossfakeError(f"{where}: `{key}` must be a JSON object, not {raw[key]!r:.80}")
        declared = raw.get("prediction_columns")
        try:
            columns = PredictionColumns.from_dict(declared) if declared is not None else None
        except (TypeError, AttributeError) as e:
            raise CrossfakeError(f"{where}: `prediction_columns` is malformed: {e}") from None
        return cls(
            **values,
            prediction_columns=columns,
            provenance={k: raw[k] for k in PROVENANCE_KEYS if k in raw},
            extra={k: v for k, v in raw.items() if k not in known | set(PROVENANCE_KEYS) | _OWN_KEYS},
        )

    def to_json(self) -> dict[str, Any]:
        """The record as ``run.json`` stores it (flat: format, provenance, then the run's keys)."""
        out: dict[str, Any] = {"format": RUN_FORMAT, **self.provenance}
        for name in _ORDER:
            value = getattr(self, name)
            out[name] = value.to_dict() if isinstance(value, PredictionColumns) else value
        return {**out, **self.extra}


def check_format(data: dict[str, Any], where: Path) -> None:
    """Refuse a run file (``run.json``, ``last/state.json``) of another format, naming it."""
    if data.get("format") != RUN_FORMAT:
        raise CrossfakeError(
            f"{where} has format {data.get('format')!r}, expected {RUN_FORMAT!r}: it was written "
            "by an incompatible crossfake version; retrain, or load it with that version"
        )


#: The run's keys in the order run.json has always held them (provenance first, the results last).
_ORDER = ("method", "config", "manifest", "manifest_sha256", "crop", "data", "parameters", "lr", "precision", "device",
          "num_processes", "feature_cache", "pseudo_fakes", "steps", "best_step", "best_val_auc", "val_metrics",
          "threshold", "threshold_rule", "threshold_name", "prediction_columns", "history", "wall_time_s")
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "method": str,
    "parameters": dict,
    "steps": int,
    "best_step": int,
    "best_val_auc": (int, float),
    "threshold": (int, float),
    "wall_time_s": (int, float),
}
_NAMES = {str: "a string", dict: "a JSON object", int: "an integer", (int, float): "a number"}
_OWN_KEYS = {"format", "prediction_columns"}
