"""Train/val/test splits of a manifest, by identity group unless asked otherwise.

A :class:`SplitSpec` says, per manipulation (``real`` or how a video was faked) and split, a percentage, as in the
reports' tables::

    manipulations:
      real:           {train: 80, val: 10, test: 10}
      FaceSwap:       {train: 90, val: 10, test: 0}
      NeuralTextures: {train: 0,  val: 0,  test: 100}

Four modes read those numbers differently:

``identity`` (default, leakage-free)
    Every identity group (see :mod:`crossfake.data.identity`) is assigned to one split first, in the
    proportions of ``identity_ratios`` (default: the ``real`` row). A manipulation then contributes the videos
    whose group lies in a split where its percentage is non-zero. So "NeuralTextures 0/0/100" means
    "the NeuralTextures videos of the test identities", and no person is seen on two sides. The other
    percentages only say *whether* a manipulation takes part in a split, not how much of it.

``literal``
    Each manipulation's videos are shuffled and cut by its own percentages, ignoring who appears in them:
    the reports' tables, counts and all. Report 1 puts 100% of NeuralTextures in test while 80% of the
    real identities train, so its test fakes show people seen in training; ``crossfake audit`` shows how
    many.

``frame``
    Like ``literal`` but row by row: frames of one video land on several sides. This is the leaky split
    of the identity-leakage study and is never a sensible default. With each manipulation's own shares a
    test-only manipulation stays out of training (people and videos leak, the manipulation does not);
    :meth:`SplitSpec.pooled` gives every manipulation the same shares, the reports' leaky split, in which the
    frames of every video, the test manipulation's included, land in train, val and test.

``official``
    The corpus's own split (FF++ ``train/val/test.json``, pairs kept together); a manipulation takes part in a
    split when its percentage there is non-zero. FF++'s official split keeps pairs together but not
    YouTube videos (605/606 straddle it), which the audit reports.

A spec naming a manipulation the manifest lacks is an error (it would silently give an empty test set),
except in ``official`` mode, whose shipped spec lists every FF++ manipulation.

Rows of a manipulation that is not listed, or whose split percentage is zero, get ``split = None``: they are
kept in the table for the record but belong to no split. Everything is deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crossfake.data.audit import AuditReport, audit_split
from crossfake.data.manifest import REAL, SPLIT_COLUMN, SPLITS, read_manifest, write_manifest
from crossfake.utils.config import read_yaml, renamed_keys, validate_config
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_json_atomic
from crossfake.utils.logging import get_logger
from crossfake.utils.provenance import file_sha256, provenance
from crossfake.utils.shipped import resolve_shipped, shipped_names

if TYPE_CHECKING:
    from crossfake.data.face_identity import FaceSettings

log = get_logger("splits")


#: Keys of a split spec renamed by the vocabulary rename (old -> new): old specs read under today's names.
OLD_SPEC_KEYS = {"sources": "manipulations"}


class SplitMode(StrEnum):
    identity = "identity"
    literal = "literal"
    frame = "frame"
    official = "official"


class Shares(BaseModel):
    """Percentages of one manipulation going to train, val and test (a remainder below 100 is left unused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: float = Field(0.0, ge=0, le=100)
    val: float = Field(0.0, ge=0, le=100)
    test: float = Field(0.0, ge=0, le=100)

    @model_validator(mode="after")
    def _at_most_100(self) -> Shares:
        if self.total > 100 + 1e-9:
            raise ValueError(f"train+val+test = {self.total:g}% exceeds 100%")
        return self

    @property
    def total(self) -> float:
        return self.train + self.val + self.test

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.train, self.val, self.test)


class SplitSpec(BaseModel):
    """A validated split specification (see the module docstring for what each mode does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    description: str = ""
    mode: SplitMode = SplitMode.identity
    seed: int = 0
    manipulations: dict[str, Shares] = Field(..., min_length=1, description="per-manipulation percentages")
    identity_ratios: Shares | None = Field(
        None, description="identity mode: share of identity groups per split (default: the 'real' row)"
    )

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return renamed_keys(data, OLD_SPEC_KEYS, "split spec")

    @field_validator("manipulations")
    @classmethod
    def _some_share(cls, v: dict[str, Shares]) -> dict[str, Shares]:
        empty = [k for k, s in v.items() if s.total == 0]
        if len(empty) == len(v):
            raise ValueError("every manipulation has 0% in every split")
        return v

    @model_validator(mode="after")
    def _ratios(self) -> SplitSpec:
        if self.mode == SplitMode.identity and self.group_ratios().total == 0:
            raise ValueError("identity mode needs identity_ratios or a 'real' manipulation with a non-zero share")
        return self

    def group_ratios(self) -> Shares:
        if self.identity_ratios is not None:
            return self.identity_ratios
        return self.manipulations.get(REAL, Shares())

    def pooled(self, manipulations: Iterable[str]) -> SplitSpec:
        """The reports' leaky split of ``manipulations``: frame by frame, every one cut by the same shares.

        Both reports' leaky runs scattered the frames of every video of every manipulation at random over
        train, val and test, the test manipulation's included: a detector then trains on the very
        manipulation (and videos, and people) it is tested on. Here every one of ``manipulations`` gets
        :meth:`group_ratios` (the ``real`` row unless ``identity_ratios`` says otherwise); the other
        manipulations are left out.
        """
        manipulations = list(dict.fromkeys(manipulations))
        unknown = [m for m in manipulations if m not in self.manipulations]
        if unknown:
            raise CrossfakeError(f"split spec {self.name!r} has no manipulation(s) {unknown} "
                                 f"(it has {sorted(self.manipulations)})")
        ratios = self.group_ratios().model_dump()
        return SplitSpec.parse({
            "name": f"{self.name}-pooled-frame", "mode": SplitMode.frame.value, "seed": self.seed,
            "description": f"{self.name}'s manipulations {', '.join(manipulations)} split frame by frame at "
                           "random, each by the same shares (the reports' leaky split)",
            "manipulations": {m: ratios for m in manipulations},
        }, where=f"the pooled frame split of {self.name}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> SplitSpec:
        return cls.parse(read_yaml(Path(path)), where=str(path))

    @classmethod
    def parse(cls, data: object, where: str = "split spec") -> SplitSpec:
        return validate_config(cls, data, where, expected="'manipulations:'")


def builtin_specs() -> list[str]:
    """Names of the split specs shipped with crossfake (``crossfake/configs/splits/*.yaml``)."""
    return shipped_names("splits")


def load_spec(name_or_path: str | Path) -> SplitSpec:
    """Load a YAML file by path or a shipped spec by name (e.g. ``report1``; a folder named like it does
    not shadow it)."""
    return SplitSpec.from_yaml(resolve_shipped("splits", name_or_path, "split spec"))


# -- assignment -------------------------------------------------------------------------------------


def _cut(n: int, shares: tuple[float, float, float]) -> np.ndarray:
    """Split labels for ``n`` shuffled items: exact counts by largest remainder, the rest unused (-1)."""
    quotas = np.array(shares) / 100.0 * n
    counts = np.floor(quotas).astype(int)
    used = int(round(sum(shares) / 100.0 * n))
    for i in np.argsort(-(quotas - counts), kind="stable")[: max(used - counts.sum(), 0)]:
        counts[i] += 1
    labels = np.full(n, -1)
    labels[: counts.sum()] = np.repeat(np.arange(3), counts)
    return labels


def _rng(seed: int, key: str) -> np.random.Generator:
    # Each manipulation gets its own stream so adding one to a spec does not reshuffle the others.
    return np.random.default_rng([seed, *key.encode("utf-8")])


def _assign_groups(groups: pd.Series, ratios: Shares, seed: int) -> dict[str, int]:
    """Assign each identity group to a split so video counts follow ``ratios`` as closely as possible.

    Groups are visited in a seeded random order; each goes to the split furthest below its target share.
    Weighting by videos (not groups) keeps the real-video proportions close to e.g. 80/10/10 even though
    a YouTube-linked group holds more videos than a plain pair.
    """
    sizes = groups.value_counts()
    # The visiting order is a permutation of the sorted names: it must not depend on value_counts' order,
    # or one lost video (a group one video smaller) would reshuffle every group.
    names = np.array(sorted(sizes.index))
    order = names[_rng(seed, "identity-groups").permutation(len(names))]
    target = np.array(ratios.as_tuple()) / ratios.total
    filled = np.zeros(3)
    out: dict[str, int] = {}
    for g in order:
        deficit = target * (filled.sum() + sizes[g]) - filled
        deficit[target == 0] = -np.inf
        k = int(np.argmax(deficit))
        out[g] = k
        filled[k] += sizes[g]
    return out


def assign_splits(manifest: pd.DataFrame, spec: SplitSpec) -> pd.DataFrame:
    """Return a copy of ``manifest`` with a ``split`` column (``train``/``val``/``test`` or missing)."""
    df = manifest.copy()
    missing = sorted(set(spec.manipulations) - set(df["manipulation"].unique()))
    if missing and spec.mode == SplitMode.official:
        # The official split lists every FF++ manipulation; a download with fewer is still valid.
        log.warning("split spec %r: manipulation(s) %s not in the manifest", spec.name, missing)
    elif missing:
        # A spec that asks for a test set the data cannot give is an error, not an empty test set.
        raise CrossfakeError(
            f"split spec {spec.name!r} names manipulation(s) {missing} absent from the manifest; "
            f"present: {sorted(df['manipulation'].unique())}"
        )
    labels = np.full(len(df), -1)
    listed = df["manipulation"].isin(list(spec.manipulations)).to_numpy()
    if spec.mode == SplitMode.identity:
        videos = df.loc[listed].drop_duplicates("video_id")
        group_split = _assign_groups(videos["identity_group"], spec.group_ratios(), spec.seed)
        labels[listed] = df.loc[listed, "identity_group"].map(group_split).to_numpy()
    elif spec.mode == SplitMode.official:
        if df.loc[listed, "official_split"].isna().all():
            raise CrossfakeError("mode 'official' needs the corpus's split files; this manifest has none")
        index = {s: i for i, s in enumerate(SPLITS)}
        labels[listed] = df.loc[listed, "official_split"].map(index).fillna(-1).astype(int).to_numpy()
    else:
        unit = "sample_id" if spec.mode == SplitMode.frame else "video_id"
        for manipulation, shares in spec.manipulations.items():
            rows = df["manipulation"] == manipulation
            units = np.sort(df.loc[rows, unit].unique())
            units = units[_rng(spec.seed, manipulation).permutation(len(units))]
            per_unit = dict(zip(units, _cut(len(units), shares.as_tuple()), strict=True))
            labels[rows.to_numpy()] = df.loc[rows, unit].map(per_unit).to_numpy()

    # Identity and official modes assign whole groups; a manipulation takes part only where its share > 0.
    if spec.mode in (SplitMode.identity, SplitMode.official):
        for manipulation, shares in spec.manipulations.items():
            rows = (df["manipulation"] == manipulation).to_numpy()
            for k, share in enumerate(shares.as_tuple()):
                if share == 0:
                    labels[rows & (labels == k)] = -1
    names = np.array([*SPLITS, None], dtype=object)
    df[SPLIT_COLUMN] = pd.array(names[labels], dtype="string")
    return df


def train_fraction(df: pd.DataFrame, fraction: float, seed: int = 0) -> pd.DataFrame:
    """Keep ``fraction`` of the training *videos* of each manipulation (val and test untouched).

    Used by the train-size ablation; sampling whole videos keeps the split identity-safe.
    """
    if not 0 < fraction <= 1:
        raise CrossfakeError(f"train fraction must be in (0, 1], got {fraction}")
    train = df[SPLIT_COLUMN] == "train"
    keep: set[str] = set()
    for manipulation, rows in df[train].groupby("manipulation"):
        videos = np.sort(rows["video_id"].unique())
        n = max(1, int(round(fraction * len(videos))))
        keep.update(videos[_rng(seed, f"fraction-{manipulation}").permutation(len(videos))[:n]])
    return df[~train | df["video_id"].isin(keep)].reset_index(drop=True)


def split_manifest(
    manifest_path: str | Path, spec: SplitSpec, out: str | Path, merge_faces: FaceSettings | None = None
) -> tuple[pd.DataFrame, AuditReport]:
    """Split the manifest at ``manifest_path`` by ``spec`` into ``out`` and audit it.

    Writes ``out`` (crop paths rebased so they stay valid from there) and its sidecar ``out.json``: the
    resolved spec, the input manifest's path and sha256 (how ``crossfake detect`` finds the crop settings
    in its ``prepare.json``), the audit and provenance. Returns the split table and its audit.

    With ``merge_faces`` (identity mode only) the identity groups whose faces match are merged before the
    groups are assigned (:func:`crossfake.data.face_identity.merge_face_groups`), so no person is on two
    sides by face either; the split table's ``identity_group`` holds the merged groups, and the audit (in
    the sidecar too) has the merges and an audit by face of the result.
    """
    manifest_path, out = Path(manifest_path), Path(out)
    df = read_manifest(manifest_path)
    merges = None
    if merge_faces is not None:
        from crossfake.data.face_identity import audit_faces, merge_face_groups

        if spec.mode != SplitMode.identity:
            raise CrossfakeError(f"--merge-faces merges identity groups, which only mode 'identity' assigns; "
                                 f"split spec {spec.name!r} has mode {spec.mode.value!r}")
        df, merges = merge_face_groups(df, audit_faces(df, merge_faces))
        log.info("merged %d set(s) of identity groups by face", len(merges))
    split = assign_splits(df, spec)
    write_manifest(split, out)
    report = audit_split(split)
    if merges is not None:
        split.attrs["root"] = df.attrs["root"]  # the crops (and the embedding cache) are the input's
        report.faces = audit_faces(split, merge_faces)
        report.faces.merges = merges
    write_json_atomic(out.with_suffix(".json"), provenance({
        "spec": spec.model_dump(mode="json"),
        "manifest": str(manifest_path.resolve()),
        "manifest_sha256": file_sha256(manifest_path),
        "audit": report.to_dict(),
    }))
    return split, report
