"""The training configuration: one YAML file with ``method:``, ``data:``, ``train:`` and ``out:``.

Everything is validated when the file is parsed, so a typo or an impossible value fails before any model
is loaded::

    method:                 # name + the method's own options (validated by the method's config class)
      name: lora
      r: 32
    data:
      manifest: data/ffpp/split_report1.parquet   # a manifest with a `split` column
      pseudo_fakes: {kind: sbi}   # optional: fakes made from the real crops each epoch (SBI), real-only
    train:
      epochs: 1
      batch_size: 32        # lr: null -> the method's default learning rate
    out: runs/lora          # default: runs/<config file stem>

Relative paths are relative to the working directory; the run directory keeps the resolved config
(absolute paths, every default filled in) as ``config.yaml``. Dotted overrides (``train.epochs=2``,
``method.r=8``) are applied to the YAML before validation, so they are checked the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from crossfake.methods import MethodConfig, method_config
from crossfake.utils.config import read_yaml, validate_config
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.shipped import resolve_shipped, shipped_names

#: Settings that may change between an interrupted run and its resumption: they steer how the run is
#: executed, not what it computes (``max_steps`` may grow to extend a run).
RUN_CONTROL_KEYS: frozenset[str] = frozenset(
    {
        "out",
        "train.max_steps",
        "train.num_workers",
        "train.log_every",
        "train.device",
        "train.cache_dir",
        "train.eval_batch_size",
        "train.wait_hours",
    }
)


class PseudoFakeConfig(BaseModel):
    """Fakes made from the real training crops while training (e.g. SBI's self-blended images).

    Every epoch, ``ratio`` x (real training crops) pseudo-fakes (label 1) are made afresh, each from one
    real crop, as a pure function of (``train.seed``, epoch, crop). Validation rows are never touched: the
    checkpoint is still selected on the manifest's own validation fakes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(description="a registered pseudo-fake maker (crossfake.data.pseudo_fakes), e.g. sbi")
    ratio: float = Field(
        1.0, gt=0, le=1, description="pseudo-fakes per real training crop and epoch (1: one for each)"
    )
    manifest_fakes: bool = Field(
        False, description="also train on the manifest's fake rows (false: real crops + pseudo-fakes only)"
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from crossfake.data.pseudo_fakes import list_pseudo_fakes  # imports OpenCV: only when asked for

        known = list_pseudo_fakes()
        if kind not in known:
            raise ValueError(f"unknown pseudo-fake kind {kind!r}; available: {', '.join(known)}")
        return kind


class DataConfig(BaseModel):
    """Which rows of which manifest the detector is trained and selected on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest: Path = Field(
        description="split manifest (Parquet with a `split` column) from `crossfake split`"
    )
    train_split: str = Field("train", min_length=1, description="split value of the training rows")
    val_split: str = Field("val", min_length=1, description="split value of the validation rows")
    train_fraction: float = Field(
        1.0, gt=0, le=1, description="keep this fraction of the training *videos* of each manipulation (seeded)"
    )
    max_frames_per_video: int | None = Field(
        None, ge=1, description="keep at most this many evenly spaced frames per video (train and val)"
    )
    pseudo_fakes: PseudoFakeConfig | None = Field(
        None, description="add fakes made from the real training crops every epoch (null: none)"
    )

    @field_validator("manifest")
    @classmethod
    def _manifest_exists(cls, path: Path, info: ValidationInfo) -> Path:
        path = path.expanduser()
        if path.is_dir():  # a prepared folder, as `crossfake split` accepts
            path = path / "manifest.parquet"
        if (info.context or {}).get("check_paths", True) and not path.is_file():
            raise ValueError(f"no manifest at {path}: run `crossfake prepare` and `crossfake split` first")
        return path.absolute()

    @model_validator(mode="after")
    def _distinct_splits(self) -> DataConfig:
        if self.train_split == self.val_split:
            raise ValueError(f"train_split and val_split are both {self.train_split!r}")
        if "test" in (self.train_split, self.val_split):
            raise ValueError("the test split may be used neither for training nor for checkpoint selection")
        return self


class TrainOptions(BaseModel):
    """How the detector is optimised (the loop of :mod:`crossfake.training.loop`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(1, ge=1, description="passes over the training rows")
    batch_size: int = Field(32, ge=1, description="images per micro-batch (per process)")
    eval_batch_size: int | None = Field(
        None, ge=1, description="images per batch when scoring; null = batch_size"
    )
    lr: float | None = Field(None, gt=0, description="AdamW learning rate; null = the method's default")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    seed: int = Field(0, description="seeds the head's initialisation, the shuffling and train_fraction")
    eval_every: int | None = Field(
        None, ge=1, description="validate every N optimizer steps; null = per epoch"
    )
    max_steps: int | None = Field(None, ge=1, description="stop after N optimizer steps (quick tries)")
    log_every: int = Field(20, ge=1, description="log the running loss every N optimizer steps")
    num_workers: int | None = Field(None, ge=0, description="data-loading processes; null = CPUs - 1, at most 4 on the CPU, 32 on a GPU")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available")
    wait_hours: float = Field(
        6.0, gt=0, le=720, description="distributed runs: how long a process waits for the others before it gives up "
        "(the main one scores the validation set alone at the end; torch's default is 10 min with NCCL)"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on a CUDA device that supports it, fp32 otherwise"
    )
    feature_cache: bool = Field(
        True, description="methods with a frozen feature extractor: extract features once, train the head"
    )
    cache_dir: Path | None = Field(
        None, description="feature cache folder; null = $CROSSFAKE_CACHE or ~/.cache/crossfake/features"
    )


class TrainConfig(BaseModel):
    """A whole training run: the method, the data, the optimisation and the run directory.

    Build one with :meth:`from_yaml` (a file plus ``key=value`` overrides) or :meth:`parse` (a mapping);
    both raise :class:`CrossfakeError` naming the file (or where the mapping came from) and the offending key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: SerializeAsAny[MethodConfig] = Field(description="{name: <method>, <method options>...}")
    data: DataConfig
    train: TrainOptions = TrainOptions()
    out: Path | None = Field(None, description="run directory (default: runs/<config file stem>)")

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> MethodConfig:
        if isinstance(value, MethodConfig):
            return value
        if not isinstance(value, Mapping) or "name" not in value:
            raise ValueError("expected a mapping with the method's `name` and its options")
        options = dict(value)
        name = options.pop("name")
        try:
            return method_config(str(name), **options)
        except CrossfakeError as e:  # re-raised as a pydantic error so it is reported under `method`
            raise ValueError(str(e)) from None

    @field_serializer("method")
    def _dump_method(self, method: MethodConfig) -> dict[str, Any]:
        options = method.model_dump(mode="json", exclude={"method"})
        return {"name": method.method, **options}

    @field_validator("out")
    @classmethod
    def _absolute_out(cls, out: Path | None) -> Path | None:
        return None if out is None else out.expanduser().absolute()

    # -- derived settings ---------------------------------------------------------------------------

    @property
    def lr(self) -> float:
        """The learning rate in force: ``train.lr`` or, when null, the method's default."""
        return self.train.lr if self.train.lr is not None else self.method.lr

    def resolved(self) -> TrainConfig:
        """This config with its derived settings filled in (``train.lr`` = :attr:`lr`), as a run records it."""
        return self.model_copy(update={"train": self.train.model_copy(update={"lr": self.lr})})

    @property
    def eval_batch_size(self) -> int:
        """Images per batch when scoring and extracting features (default: ``train.batch_size``)."""
        return self.train.eval_batch_size or self.train.batch_size

    # -- parsing and writing ------------------------------------------------------------------------

    @classmethod
    def parse(
        cls,
        data: Any,
        where: str = "training config",
        overrides: Iterable[str] = (),
        check_paths: bool = True,
    ) -> TrainConfig:
        """Validate a mapping (e.g. loaded YAML) after applying ``key=value`` overrides.

        Args:
            data: the configuration mapping.
            where: how errors name where ``data`` came from, e.g. the file path.
            overrides: dotted ``key=value`` strings; values are YAML scalars (``2``, ``1e-4``, ``null``).
            check_paths: check that the manifest exists (off when re-reading a finished run's config).

        Raises:
            CrossfakeError: naming ``where`` and every bad key.
        """
        return validate_config(
            cls,
            data,
            where,
            overrides,
            expected="method:, data:, train:",
            context={"check_paths": check_paths},
        )

    @classmethod
    def from_yaml(
        cls, path: str | Path, overrides: Iterable[str] = (), check_paths: bool = True
    ) -> TrainConfig:
        """Read a YAML file (path, or the name of a shipped config such as ``lora``); see :meth:`parse`.

        ``out`` defaults to ``runs/<file stem>`` so that re-running the same file resumes the same run.
        """
        path = resolve_config_path(path)
        data = read_yaml(path)
        if isinstance(data, dict) and data.get("out") is None:
            data = {**data, "out": str(Path("runs") / path.stem)}
        return cls.parse(data, where=str(path), overrides=overrides, check_paths=check_paths)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready dict that :meth:`parse` reads back to an equal config."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The config as YAML, in the layout :meth:`from_yaml` reads."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def differences(self, other: TrainConfig, ignore: frozenset[str] = RUN_CONTROL_KEYS) -> list[str]:
        """Dotted keys whose values differ between two configs, except ``ignore``d ones."""
        mine, theirs = _flatten(self.to_dict()), _flatten(other.to_dict())
        keys = sorted((set(mine) | set(theirs)) - ignore)
        return [k for k in keys if mine.get(k) != theirs.get(k)]


def shipped_configs() -> list[str]:
    """Names of the example training configs shipped with crossfake (``crossfake/configs/train``)."""
    return shipped_names("train")


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file path, or the path of the shipped config of that name (``lora`` -> .../lora.yaml)."""
    return resolve_shipped("train", name_or_path, "training config")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
