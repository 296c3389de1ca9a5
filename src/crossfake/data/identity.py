"""Identity groups: the unit that a leakage-free split assigns to one side.

Two videos must land in the same split when they show a common person. In FaceForensics++ a person is
tied to a video by being its target (the footage) or its source (the pasted face), and two original
sequences cut from one YouTube video show the same people (``conversion_dict.json``). So the groups are
the connected components of the graph whose nodes are identity keys (person ids, YouTube videos) and
whose edges are "appear in the same video". A fake ``a_b`` joins ``a`` and ``b``; since FF++ also has
``b_a``, the pair is one group, and any YouTube video shared with a third sequence pulls that in too.
"""

from __future__ import annotations

from collections.abc import Iterable

from crossfake.data.corpora.base import VideoRecord


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # Keep the smaller key as root so group names do not depend on insertion order.
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def record_keys(record: VideoRecord) -> tuple[str, ...]:
    """All identity keys of a record, qualified by corpus so corpora never merge by accident."""
    keys = {f"person:{record.target_id}", f"person:{record.source_id}", *record.identity_keys}
    return tuple(sorted(f"{record.corpus}:{k}" for k in keys))


def identity_groups(records: Iterable[VideoRecord]) -> dict[str, str]:
    """Map each record's ``video_id`` to its identity group name.

    A group is named after its smallest identity key (e.g. ``"ffpp:person:000"``), which is stable
    across runs and readable in an audit.
    """
    records = list(records)
    uf = _UnionFind()
    for rec in records:
        keys = record_keys(rec)
        for k in keys[1:]:
            uf.union(keys[0], k)
    return {rec.video_id: uf.find(record_keys(rec)[0]) for rec in records}
