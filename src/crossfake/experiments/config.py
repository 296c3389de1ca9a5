"""The experiment configuration: one YAML file that says what a study trains and tests.

::

    name: report1
    description: Real + FaceSwap -> NeuralTextures, Face2Face zero-shot
    data:                     # a corpus on disk (`crossfake run --data PATH` sets root) ...
      root: null
      corpus: ffpp
      options: {compression: c23}
      synth: {videos: 40, frames: 16, seed: 0}   # ... or, without a root, the synthetic FF++
    prepare: {frames: 8}      # PrepareConfig fields; `cache:` to share crops between experiments
    split: report1            # a shipped split spec, a YAML path, or an inline spec mapping
    defaults:                 # merged into every method's training config
      train: {epochs: 1}
    methods:                  # entry name -> shipped training config (default: the entry's name) + overrides
      linear_probe: {}
      lora_r8: {config: lora, method: {r: 8}}
    tests:                    # test set name -> the manipulations (of a split) it scores
      NeuralTextures: [real, NeuralTextures]
      Face2Face: {split: test, manipulations: [real, Face2Face]}
    corpora:                  # other corpora to test on (cross-dataset), each a test set of its own
      celebdf: {root: /data/Celeb-DF-v2, corpus: celebdf}   # its official test list
      synth-b: {synth: {seed: 1, compression: c40}}           # no root: a synthetic FF++ of other settings

Each corpus of ``corpora`` is read by its adapter, reduced to the videos it tests on (its official test
split where it has one, else all of it), cropped with the same ``prepare`` settings and added to the split
manifest with ``split = <corpus name>``; the test set of the same name scores them (its manipulations:
``real`` and the corpus's fake manipulations). Its videos never train or validate.

Configs written before the vocabulary rename still load (with a warning): ``source:`` is read as
``corpus:``, a test set's ``sources:`` as ``manipulations:``, and ``methods`` (synthetic settings, adapter
options) as ``manipulations``.

Everything is validated when the file is read, including every method's training config (built with
the shipped config, ``defaults`` and the entry merged in that order), so a typo fails before any video
is decoded.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crossfake.data.corpora.base import CORPORA, corpus_fake_manipulations
from crossfake.data.manifest import REAL, SPLITS
from crossfake.data.preprocess import PrepareConfig
from crossfake.data.splits import SplitSpec, load_spec
from crossfake.data.synth import SynthConfig
from crossfake.data.synth.manipulations import MANIPULATIONS as SYNTH_MANIPULATIONS
from crossfake.data.synth.writer import OLD_SYNTH_KEYS
from crossfake.runs.config import TrainConfig, resolve_config_path
from crossfake.utils.config import read_yaml, renamed_keys, validate_config
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.shipped import resolve_shipped, shipped_names

#: The face detector of the synthetic FF++ (see ExperimentConfig._synthetic_faces).
SYNTH_FACE_DETECTOR = "haar"


#: Keys of an experiment config renamed by the vocabulary rename (old -> new), by where they appear. The
#: config reads old files under today's names, and the runner compares a resumed run's data settings so.
OLD_CORPUS_KEYS = {"source": "corpus"}
OLD_OPTION_KEYS = {"methods": "manipulations", "dataset": "corpus"}  # a corpus adapter's options
OLD_TEST_KEYS = {"sources": "manipulations"}


def _old_corpus_keys(data: Any, what: str) -> Any:
    """``data`` (a data/corpus mapping) with ``source`` read as ``corpus`` and the adapter options' old
    names under today's (the names before the vocabulary rename)."""
    data = renamed_keys(data, OLD_CORPUS_KEYS, what)
    if isinstance(data, Mapping) and isinstance(data.get("options"), Mapping):
        data = {**data, "options": renamed_keys(data["options"], OLD_OPTION_KEYS, f"{what} options")}
    return data


class SynthData(BaseModel):
    """The synthetic FF++ written into the run directory when no corpus root is given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    videos: int = Field(24, description="original videos (even, >= 8); each pair also gives two fakes per "
                        "manipulation")
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
                              "the Haar face detector unless `prepare` names one: it needs no download)")
    corpus: str = Field("ffpp", description="corpus layout: ffpp, folder, dfdc, celebdf, dfd or wilddeepfake")
    options: dict[str, Any] = Field(default_factory=dict, description="corpus adapter options, e.g. compression")
    limit: int | None = Field(None, ge=1, description="only the first N videos of each manipulation")
    synth: SynthData = SynthData()

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return _old_corpus_keys(data, "data")

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
    """Rows of one split whose manipulation is one of ``manipulations``: the reals and the fakes scored
    together."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: str = "test"
    manipulations: list[str] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return renamed_keys(data, OLD_TEST_KEYS, "test set")

    @field_validator("manipulations")
    @classmethod
    def _real_and_fake(cls, manipulations: list[str]) -> list[str]:
        if REAL not in manipulations or len(set(manipulations)) < 2:
            raise ValueError(f"a test set needs '{REAL}' and at least one manipulation, got {manipulations}")
        return manipulations


class CorpusSynth(BaseModel):
    """A synthetic FF++ that stands in for a second corpus: other people (seed), other settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    videos: int = Field(16, description="original videos (even, >= 8)")
    frames: int = Field(16, ge=1, description="frames per video")
    size: int = Field(224, description="frame width in pixels")
    seed: int = Field(1, ge=0, description="not the training corpus's seed: other identities")
    compression: str = Field("c40", description="c23, c40 or raw")
    manipulations: list[str] = Field(default_factory=lambda: list(SYNTH_MANIPULATIONS),
                                     description="its manipulations")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return renamed_keys(data, OLD_SYNTH_KEYS, "corpus synth")

    def synth_config(self) -> SynthConfig:
        return SynthConfig(n_videos=self.videos, n_frames=self.frames, size=self.size, seed=self.seed,
                           compression=self.compression, manipulations=tuple(self.manipulations))

    @model_validator(mode="after")
    def _valid(self) -> CorpusSynth:
        try:
            self.synth_config()
        except CrossfakeError as e:
            raise ValueError(str(e).removeprefix("synth config: ")) from None
        return self


class CorpusSettings(BaseModel):
    """Another corpus a cross-dataset experiment tests on (it never trains on it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path | None = Field(None, description="corpus root; null = the synthetic FF++ of `synth`")
    corpus: str = Field("ffpp", description="its layout: celebdf, dfdc, dfd, wilddeepfake, ffpp or folder")
    options: dict[str, Any] = Field(default_factory=dict, description="corpus adapter options, e.g. compression")
    use: Literal["auto", "test", "all"] = Field(
        "auto", description="videos tested: its official test split (test), every video (all), or test where "
        "the corpus has one, else all (auto)")
    limit: int | None = Field(None, ge=1, description="only the first N videos of each manipulation")
    fakes: list[str] | None = Field(None, description="the manipulations of its fakes (default: the adapter's, "
                                    "or the `manipulations` option)")
    synth: CorpusSynth = CorpusSynth()
    cache: Path | None = Field(None, description="folder of its crops (default: RUN/corpora/<name>/prepared)")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return _old_corpus_keys(data, "corpus")

    @field_validator("root", "cache")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser().absolute()

    @model_validator(mode="after")
    def _corpus_and_options(self) -> CorpusSettings:
        if self.corpus not in CORPORA:
            raise ValueError(f"unknown corpus {self.corpus!r}; known: {', '.join(CORPORA.names())}")
        if self.root is None and self.corpus != "ffpp":
            raise ValueError(f"a {self.corpus} corpus needs its root (only an ffpp corpus may be synthetic)")
        try:
            inspect.signature(CORPORA.get(self.corpus)).bind(Path("."), **self.options)
        except TypeError as e:
            raise ValueError(f"invalid options for corpus {self.corpus!r}: {e}") from None
        self.fake_manipulations()
        return self

    def fake_manipulations(self) -> list[str]:
        """The ``manipulation`` of its fakes: ``fakes``, else the adapter's fixed ones, else the
        ``manipulations`` option, else (synthetic) the synthetic corpus's manipulations."""
        found = (self.fakes or corpus_fake_manipulations(self.corpus) or self.options.get("manipulations")
                 or (self.synth.manipulations if self.root is None else None))
        if not found:
            raise ValueError(f"which manipulations are the {self.corpus} corpus's fakes? give `fakes: [...]` or "
                             "the `manipulations` option")
        if REAL in found:
            raise ValueError(f"fakes: {REAL!r} is the manipulation of the real videos, not a fake one")
        return list(dict.fromkeys(found))


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
    corpora: dict[str, CorpusSettings] = Field(
        default_factory=dict, description="other corpora to test on: name -> corpus; each adds a test set <name>")

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
        if isinstance(tests, Mapping):  # NAME: [...]  ==  NAME: {split: test, manipulations: [...]}
            return {k: {"manipulations": v} if isinstance(v, list) else v for k, v in tests.items()}
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
            if test.split in self.corpora:  # another corpus's test set: checked by _corpus_tests
                continue
            missing = [m for m in test.manipulations if m not in spec.manipulations]
            if missing:
                raise ValueError(f"tests.{test_name}: manipulations {missing} are not in the split spec "
                                 f"(it has {sorted(spec.manipulations)})")
        return self

    @model_validator(mode="after")
    def _corpus_tests(self) -> ExperimentConfig:
        """Every corpus gets the test set of its name (split = its name, manipulations = real + its fakes)."""
        tests = dict(self.tests)
        for name, corpus in self.corpora.items():
            if name in SPLITS or not re.fullmatch(r"[\w.-]+", name):
                raise ValueError(f"corpora: {name!r} cannot name a corpus (letters, digits, '_', '.', '-'; not "
                                 f"{', '.join(SPLITS)})")
            if name == self.data.corpus:
                raise ValueError(f"corpora: {name!r} is the training corpus's name; call the other corpus "
                                 "something else")
            manipulations = [REAL, *corpus.fake_manipulations()]
            test = tests.get(name)
            if test is None:
                tests[name] = TestSet(split=name, manipulations=manipulations)
            elif test.split != name:
                raise ValueError(f"tests.{name}: corpus {name!r} is scored by the test set of its name, which "
                                 f"must read split {name!r}, not {test.split!r}")
            elif unknown := [m for m in test.manipulations if m not in manipulations]:
                raise ValueError(f"tests.{name}: manipulations {unknown} are not in corpus {name} "
                                 f"(it has {manipulations})")
        corpus_splits = {t.split for t in tests.values()} - set(SPLITS) - set(self.corpora)
        if corpus_splits:
            raise ValueError(f"tests read split(s) {sorted(corpus_splits)}, which are neither "
                             f"{', '.join(SPLITS)} nor a corpus of `corpora`")
        self.__dict__["tests"] = tests  # frozen: set once here
        return self

    @model_validator(mode="after")
    def _distinct_caches(self) -> ExperimentConfig:
        """``prepare`` rewrites a cache's ``manifest.parquet`` from the videos it is given: a corpus cache
        that is the training corpus's cache, or another corpus's, would overwrite that manifest."""
        owners: dict[Path, str] = {}
        if self.prepare.cache is not None:
            owners[self.prepare.cache.expanduser().resolve()] = "prepare.cache"
        for name, corpus in self.corpora.items():
            if corpus.cache is None:
                continue
            key, where = corpus.cache.resolve(), f"corpora.{name}.cache"
            if key in owners:
                raise ValueError(f"{where} and {owners[key]} are the same folder ({key}): each corpus needs a "
                                 "cache of its own (prepare rewrites a cache's manifest.parquet from its videos)")
            owners[key] = where
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


def with_corpora(config: ExperimentConfig, roots: Mapping[str, str | Path]) -> ExperimentConfig:
    """``config`` testing on exactly the corpora ``roots`` (name -> root), e.g. from ``--corpus``: a name the
    config has keeps its settings (options, use, ...) with the root replaced; any other name is read by the
    corpus adapter of that name. The config's other corpora (the synthetic stand-in) and their test sets go."""
    data = config.to_dict()
    old = data.pop("corpora")
    data["tests"] = {k: t for k, t in data["tests"].items() if t["split"] not in old}
    corpora = {}
    for name, root in roots.items():
        entry = old.get(name) or {"corpus": name}
        if name not in old and name not in CORPORA:
            raise CrossfakeError(f"--corpus {name}: no corpus of that name in {config.name} and no corpus adapter "
                                 f"{name!r} (adapters: {', '.join(CORPORA.names())})")
        corpora[name] = {**entry, "root": str(Path(root).expanduser().absolute())}
        if name in config.tests and config.tests[name].split == name:
            data["tests"][name] = config.tests[name].model_dump()
    data["corpora"] = corpora
    return ExperimentConfig.parse(data, where=f"experiment {config.name} with --corpus")


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

