"""Audit a split: who and what is shared between train, val and test, and how much each manipulation gives.

A split leaks when a person, an identity group or a video appears on two sides. The audit counts all
three for every pair of splits, names a few examples, lists every identity group found on several sides
with its people in each (so FF++'s official split shows which pairs share a YouTube video across the
split: 605/606, 639/640, …), and also counts the *test videos that show a person seen in training* — the
figure that explains inflated cross-manipulation AUCs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

import pandas as pd

from crossfake.data.manifest import REAL, SPLIT_COLUMN, SPLITS
from crossfake.utils.errors import CrossfakeError

if TYPE_CHECKING:
    from crossfake.data.face_identity import FaceAudit

SHOW_GROUPS = 20
"""How many shared identity groups :meth:`AuditReport.format` lists (``to_dict`` has them all)."""


@dataclass
class AuditReport:
    """Result of :func:`audit_split`.

    Attributes:
        counts: videos and frames per manipulation (rows) × split (columns), plus each split's share of the
            manipulation's videos in percent.
        overlaps: one row per pair of splits with the number of shared people, identity groups and
            videos, and a few example people.
        test_seen_in_train: test videos (per manipulation) whose target or source person also appears in train.
        shared_groups: one row per identity group found in more than one split: ``group``, ``splits``
            (e.g. ``"train, test"``), ``videos`` (the group's videos in the split table) and, per split, the
            sorted ids of the group's people there (a list, empty where the group is absent). No person
            need be shared for a group to be: FF++'s 605 (train) and 606 (test) are two people's ids but
            one YouTube video.
        faces: the audit by face (:func:`crossfake.data.face_identity.audit_faces`), when one was asked
            for (``crossfake audit --faces``, ``crossfake split --merge-faces``); ``None`` otherwise.
    """

    counts: pd.DataFrame
    overlaps: pd.DataFrame
    test_seen_in_train: pd.DataFrame
    shared_groups: pd.DataFrame
    faces: FaceAudit | None = None

    @property
    def name_leaks(self) -> bool:
        """People, identity groups or videos (all known by name) shared between splits."""
        return bool((self.overlaps[["people", "groups", "videos"]] > 0).any().any())

    @property
    def leaks(self) -> bool:
        """Anything shared between splits: by name, or by face where faces were audited."""
        return self.name_leaks or (self.faces is not None and self.faces.leaks)

    def to_dict(self) -> dict:
        out = {
            "leaks": self.leaks,
            "counts": self.counts.reset_index().to_dict(orient="records"),
            "overlaps": self.overlaps.to_dict(orient="records"),
            "test_seen_in_train": self.test_seen_in_train.to_dict(orient="records"),
            "shared_groups": self.shared_groups.to_dict(orient="records"),
        }
        if self.faces is not None:
            out["faces"] = self.faces.to_dict()
        return out

    def format(self) -> str:
        lines = ["Counts per manipulation × split (videos / frames, % of the manipulation's videos):", ""]
        lines += _format_counts(self.counts)
        lines += ["", "Shared between splits (people, identity groups, videos):", ""]
        lines += [
            f"  {r.pair:<12} people {r.people:>5}   groups {r.groups:>5}   videos {r.videos:>5}"
            + (f"   e.g. {r.example_people}" if r.example_people else "")
            for r in self.overlaps.itertuples()
        ]
        lines += _format_shared_groups(self.shared_groups)
        if len(self.test_seen_in_train):
            lines += ["", "Test videos showing a person seen in training:", ""]
            lines += [
                f"  {r.manipulation:<16} {r.seen:>5} of {r.videos:<5} ({r.percent:.0f}%)"
                for r in self.test_seen_in_train.itertuples()
            ]
        verdict = ("LEAK: identities are shared between splits" if self.name_leaks
                   else "no identity shared between splits")
        lines += ["", verdict + (" (by name)" if self.faces is not None else "")]
        if self.faces is not None:
            lines += ["", self.faces.format()]
        return "\n".join(lines)


def _people(df: pd.DataFrame) -> pd.Series:
    """One row per (row, person) with corpus-qualified person ids."""
    return pd.concat([df["corpus"] + ":" + df["target_id"], df["corpus"] + ":" + df["source_id"]])


def audit_split(df: pd.DataFrame) -> AuditReport:
    """Audit a manifest that has a ``split`` column (rows with no split are ignored)."""
    if SPLIT_COLUMN not in df.columns:
        raise CrossfakeError("this manifest has no 'split' column: run `crossfake split` first")
    used = df[df[SPLIT_COLUMN].notna()]
    if used.empty:
        raise CrossfakeError("no row of this manifest is assigned to a split")
    splits = [s for s in SPLITS if s in set(used[SPLIT_COLUMN])]
    splits += sorted(set(used[SPLIT_COLUMN]) - set(splits))

    # Manipulations in a stable order: real first, then the fakes alphabetically.
    manipulations = sorted(df["manipulation"].unique(), key=lambda m: (m != REAL, m))
    videos = used.groupby(["manipulation", SPLIT_COLUMN])["video_id"].nunique().unstack(fill_value=0)
    frames = used.groupby(["manipulation", SPLIT_COLUMN]).size().unstack(fill_value=0)
    total_videos = df.groupby("manipulation")["video_id"].nunique()
    counts = pd.DataFrame(index=pd.Index(manipulations, name="manipulation"))
    for s in splits:
        v = videos.get(s, pd.Series(dtype=int)).reindex(manipulations, fill_value=0)
        counts[f"{s}_videos"] = v.astype(int)
        counts[f"{s}_frames"] = frames.get(s, pd.Series(dtype=int)).reindex(manipulations, fill_value=0).astype(int)
        counts[f"{s}_pct"] = (100.0 * v / total_videos.reindex(manipulations)).round(1)

    people = {s: set(_people(used[used[SPLIT_COLUMN] == s])) for s in splits}
    groups = {s: set(used.loc[used[SPLIT_COLUMN] == s, "identity_group"]) for s in splits}
    vids = {s: set(used.loc[used[SPLIT_COLUMN] == s, "video_id"]) for s in splits}
    rows = []
    for a, b in combinations(splits, 2):
        shared = sorted(people[a] & people[b])
        rows.append(
            {
                "pair": f"{a}-{b}",
                "people": len(shared),
                "groups": len(groups[a] & groups[b]),
                "videos": len(vids[a] & vids[b]),
                "example_people": ", ".join(shared[:5]),
            }
        )
    overlaps = pd.DataFrame(rows, columns=["pair", "people", "groups", "videos", "example_people"])
    shared_groups = _shared_groups(used, splits)

    seen_rows = []
    if "train" in people and "test" in people:
        test = used[used[SPLIT_COLUMN] == "test"].drop_duplicates("video_id")
        seen = (test["corpus"] + ":" + test["target_id"]).isin(people["train"]) | (
            test["corpus"] + ":" + test["source_id"]
        ).isin(people["train"])
        for manipulation, g in seen.groupby(test["manipulation"]):
            seen_rows.append(
                {"manipulation": manipulation, "seen": int(g.sum()), "videos": len(g), "percent": 100.0 * g.mean()}
            )
    seen_df = pd.DataFrame(seen_rows, columns=["manipulation", "seen", "videos", "percent"])
    return AuditReport(
        counts=counts, overlaps=overlaps, test_seen_in_train=seen_df, shared_groups=shared_groups
    )


def audit_test_set(df: pd.DataFrame, manipulations: list[str] | tuple[str, ...], *, train: str = "train",
                   test: str = "test") -> dict[str, int]:
    """What one test set (the ``test`` rows of ``manipulations``) shares with the ``train`` rows.

    The counts that explain an inflated test AUC, for the test set alone (not the whole split):

    - ``people`` / ``people_in_train``: people shown in the test set, and how many of them also appear in
      a training row (as target or source);
    - ``videos`` / ``videos_in_train``: test videos, and how many have frames in training too (a
      frame-level split);
    - ``videos_person_in_train``: test videos showing a person seen in training;
    - ``manipulation_frames`` / ``manipulation_frames_in_train``: frames of the test set's manipulations
      (its manipulations other than ``real``) in the test set, and in training (the test manipulation seen
      while training, as in the reports' leaky split); ``manipulation_videos_in_train`` counts their
      videos with a frame in training.
    """
    if SPLIT_COLUMN not in df.columns:
        raise CrossfakeError("this manifest has no 'split' column: run `crossfake split` first")
    fakes = [m for m in manipulations if m != REAL]
    in_test = (df[SPLIT_COLUMN] == test).fillna(False) & df["manipulation"].isin(list(manipulations))
    rows, training = df[in_test.to_numpy()], df[(df[SPLIT_COLUMN] == train).fillna(False).to_numpy()]
    train_people = set(_people(training))
    test_videos = rows.drop_duplicates("video_id")
    person_seen = (test_videos["corpus"] + ":" + test_videos["target_id"]).isin(train_people) | (
        test_videos["corpus"] + ":" + test_videos["source_id"]).isin(train_people)
    people = set(_people(rows))
    manipulated = training[training["manipulation"].isin(fakes)]
    return {
        "people": len(people),
        "people_in_train": len(people & train_people),
        "videos": len(test_videos),
        "videos_in_train": int(test_videos["video_id"].isin(set(training["video_id"])).sum()),
        "videos_person_in_train": int(person_seen.sum()),
        "manipulation_frames": int(rows["manipulation"].isin(fakes).sum()),
        "manipulation_frames_in_train": len(manipulated),
        "manipulation_videos_in_train": int(manipulated["video_id"].nunique()),
    }


def _shared_groups(used: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    """The identity groups present in more than one split, with their people per split."""
    videos = used.drop_duplicates(["video_id", SPLIT_COLUMN])
    n_splits = videos.groupby("identity_group")[SPLIT_COLUMN].nunique()
    shared = videos[videos["identity_group"].isin(n_splits.index[n_splits > 1])]
    rows = []
    for group, g in shared.groupby("identity_group", sort=True):
        row: dict[str, object] = {
            "group": group,
            "splits": ", ".join(s for s in splits if (g[SPLIT_COLUMN] == s).any()),
            "videos": g["video_id"].nunique(),
        }
        for s in splits:
            part = g[g[SPLIT_COLUMN] == s]
            row[s] = sorted(set(part["target_id"]) | set(part["source_id"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=["group", "splits", "videos", *splits])


def _format_shared_groups(shared: pd.DataFrame, limit: int = SHOW_GROUPS) -> list[str]:
    if shared.empty:
        return []
    splits = [c for c in shared.columns if c not in ("group", "splits", "videos")]
    width = max(len(g) for g in shared["group"].head(limit))
    out = ["", f"Identity groups on several sides ({len(shared)}), with their people in each split:", ""]
    for _, r in shared.head(limit).iterrows():
        sides = "   ".join(f"{s}: {', '.join(r[s])}" for s in splits if len(r[s]))
        out.append(f"  {r['group']:<{width}}   {sides}")
    if len(shared) > limit:
        out.append(f"  … and {len(shared) - limit} more (`crossfake audit --json` lists them all)")
    return out


def _format_counts(counts: pd.DataFrame) -> list[str]:
    splits = [c[: -len("_videos")] for c in counts.columns if c.endswith("_videos")]
    width = max(12, *(len(m) for m in counts.index))
    header = f"  {'manipulation':<{width}}" + "".join(f"{s:>24}" for s in splits)
    out = [header, "  " + "-" * (len(header) - 2)]
    for manipulation, r in counts.iterrows():
        cells = "".join(_cell(r, s) for s in splits)
        out.append(f"  {manipulation:<{width}}{cells}")
    return out


def _cell(row: pd.Series, split: str) -> str:
    # iterrows() upcasts the integer counts to float beside the percentages.
    text = f"{int(row[split + '_videos'])} / {int(row[split + '_frames'])} ({row[split + '_pct']:.0f}%)"
    return f"{text:>24}"
