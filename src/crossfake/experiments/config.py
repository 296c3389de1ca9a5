"""The experiment configuration: one YAML file that says what a study trains and tests.

::

    name: report1
    description: Real + FaceSwap -> NeuralTextures, Face2Face zero-shot
    data:                     # a corpus on disk (`crossfake run --data PATH` sets root) ...
      root: null
      source: ffpp
      options: {compression: c23}
      synth: {videos: 40, frames: 16, seed: 0}   # ... or, without a root, the synthetic FF++
    prepare: {frames: 8}      # PrepareConfig fields; `cache:` to share crops between experiments
    split: report1            # a shipped split spec, a YAML path, or an inline spec mapping
    defaults:                 # merged into every method's training config
      train: {epochs: 1}
    methods:                  # entry name -> shipped training config (default: the entry's name) + overrides
      linear_probe: {}
      lora_r8: {config: lora, method: {r: 8}}
    tests:                    # test set name -> the sources (of a split) it scores
      NeuralTextures: [real, NeuralTextures]
      Face2Face: {split: test, sources: [real, Face2Face]}

Everything is validated when the file is read, including every method's training config (built with
the shipped config, ``defaults`` and the entry merged in that order), so a typo fails before any video
is decoded.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crossfake.data.manifest import REAL
from crossfake.data.preprocess import PrepareConfig
from crossfake.data.splits import SplitSpec, load_spec
from crossfake.data.synth import SynthConfig
from crossfake.training.config import TrainConfig, resolve_config_path
from crossfake.utils.config import read_yaml, validate_config
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.shipped import resolve_shipped, shipped_names

#: The face detector of the synthetic FF++ (see ExperimentConfig._synthetic_faces).
SYNTH_FACE_DETECTOR = "haar"


class SynthData(BaseModel):
    """The synthetic FF++ written into the run directory when no corpus root is given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    videos: int = Field(24, description="original videos (even, >= 8); each pair also gives two fakes per method")
    frames: int = Field(32, ge=1, description="frames per video")
    size: int = Field(256, description="frame width in pixels")
    seed: int = Field(0, ge=0)
    compression: str = "c23"

    def synth_config(self) -> SynthConfig:
        return SynthConfig(n_videos=self.videos, n_frames=self.frames, size=self.size, seed=self.seed,
                           compression=self.compression)

    @model_validator(mode="after")
    def _valid(self) -> SynthData:
        try:
            self.synth_config()
        except CrossfakeError as e:
            raise ValueError(str(e).removeprefix("synth config: ")) from None
        return self


class DataSettings(BaseModel):
    """Where the videos come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path | None = Field(None, description="corpus root; null = the synthetic FF++ of `synth` (cropped with "
                              "the Haar detector unless `prepare` names one: it needs no download)")
    source: str = Field("ffpp", description="corpus layout: ffpp or folder")
    options: dict[str, Any] = Field(default_factory=dict, description="source options, e.g. compression")
    limit: int | None = Field(None, ge=1, description="only the first N videos of each method")
    synth: SynthData = SynthData()

    @field_validator("root")
    @classmethod
    def _absolute(cls, root: Path | None) -> Path | None:
        return None if root is None else root.expanduser().absolute()


class PrepareSettings(PrepareConfig):
    """:class:`PrepareConfig` plus where the crops are kept."""

    cache: Path | None = Field(
        None, description="folder of the prepared crops and manifest (default: RUN/prepared); re-used if finished"
    )

    def prepare_config(self) -> PrepareConfig:
        return PrepareConfig(**self.model_dump(exclude={"cache"}))


class TestSet(BaseModel):
    """Rows of one split whose source is one of ``sources``: the reals and the fakes scored together."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str = "test"
    sources: list[str] = Field(min_length=1)

    @field_validator("sources")
    @classmethod
    def _real_and_fake(cls, sources: list[str]) -> list[str]:
        if REAL not in sources or len(set(sources)) < 2:
            raise ValueError(f"a test set needs '{REAL}' and at least one manipulation, got {sources}")
        return sources


class ExperimentConfig(BaseModel):
    """A validated experiment (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[\w.-]+$")
    description: str = ""
    data: DataSettings = DataSettings()
    prepare: PrepareSettings = PrepareSettings()
    split: str | dict[str, Any] = Field(description="split spec: shipped name, YAML path or inline mapping")
    defaults: dict[str, Any] = Field(default_factory=dict, description="merged into every method's config")
    methods: dict[str, dict[str, Any]] = Field(min_length=1)
    tests: dict[str, TestSet] = Field(min_length=1)
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples of the report's CIs")

    @field_validator("methods", mode="before")
    @classmethod
    def _entries(cls, methods: Any) -> Any:
        if isinstance(methods, Mapping):
            bad = [name for name in methods if not str(name).replace("-", "_").isidentifier()]
            if bad:
                raise ValueError(f"method entry names must be identifiers (letters, digits, _ and -): {bad}")
            return {name: dict(entry or {}) for name, entry in methods.items()}
        return methods

    @field_validator("tests", mode="before")
    @classmethod
    def _shorthand(cls, tests: Any) -> Any:
        if isinstance(tests, Mapping):  # NAME: [sources]  ==  NAME: {split: test, sources: [...]}
            return {k: {"sources": v} if isinstance(v, list) else v for k, v in tests.items()}
        return tests

    @field_validator("split")
    @classmethod
    def _spec(cls, split: str | dict[str, Any]) -> str | dict[str, Any]:
        try:
            _load_split(split)
        except CrossfakeError as e:
            raise ValueError(str(e)) from None
        return split

    @model_validator(mode="after")
    def _synthetic_faces(self) -> ExperimentConfig:
        """The synthetic FF++ is cropped with Haar unless ``prepare`` names a face detector: its drawn faces
        are found by Haar in 99-100% of frames, and Haar needs no download, so the demo runs offline."""
        if self.data.root is None and "face_detector" not in self.prepare.crop.model_fields_set:
            crop = self.prepare.crop.model_copy(update={"face_detector": SYNTH_FACE_DETECTOR})
            self.__dict__["prepare"] = self.prepare.model_copy(update={"crop": crop})  # frozen: set once here
        return self

    @model_validator(mode="after")
    def _training_configs(self) -> ExperimentConfig:
        for name in self.methods:
            try:
                self.train_config(name, manifest=Path("split.parquet"), out=Path("methods") / name,
                                  check_paths=False)
            except CrossfakeError as e:
                raise ValueError(str(e)) from None
        spec = self.split_spec()
        for test_name, test in self.tests.items():
            missing = [s for s in test.sources if s not in spec.sources]
            if missing:
                raise ValueError(f"tests.{test_name}: sources {missing} are not in the split spec "
                                 f"(it has {sorted(spec.sources)})")
        return self

    # -- derived -------------------------------------------------------------------------------------

    def split_spec(self) -> SplitSpec:
        return _load_split(self.split)

    def train_config(self, name: str, *, manifest: Path, out: Path, check_paths: bool = True) -> TrainConfig:
        """The training config of method entry ``name``: shipped config <- defaults <- entry."""
        entry = dict(self.methods[name])
        config_name = entry.pop("config", name)
        path = resolve_config_path(config_name)
        base = read_yaml(path) or {}
        merged = deep_merge(deep_merge(base, self.defaults), entry)
        merged["data"] = {**merged.get("data", {}), "manifest": str(manifest)}
        merged["out"] = str(out)
        return TrainConfig.parse(merged, where=f"methods.{name} (from {config_name})", check_paths=check_paths)

    # -- reading and writing -------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: Any, where: str = "experiment config", overrides: Iterable[str] = ()) -> ExperimentConfig:
        return validate_config(cls, data, where, overrides, expected="name:, split:, methods:, tests:")

    @classmethod
    def from_yaml(cls, name_or_path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
        path = resolve_experiment_path(name_or_path)
        return cls.parse(read_yaml(path), where=str(path), overrides=overrides)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, mapping by mapping (``top`` wins on leaves)."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def shipped_experiments() -> list[str]:
    return shipped_names("experiments")


def resolve_experiment_path(name_or_path: str | Path) -> Path:
    """An experiment file path, or the shipped experiment of that name (``report1`` -> .../report1.yaml)."""
    return resolve_shipped("experiments", name_or_path, "experiment config")


def _load_split(split: str | Mapping[str, Any]) -> SplitSpec:
    if isinstance(split, Mapping):
        return SplitSpec.parse(dict(split), where="split")
    return load_spec(split)

