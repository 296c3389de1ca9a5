"""Tables split by a key (a video) and mapped over an executor, for per-video work on a table.

``map_shards(executor, score, rows)`` cuts ``rows`` into shards that never split a video, runs
``score(shard) -> DataFrame`` on each (in this process, a pool or Ray tasks) and puts the results back
together in the order of ``rows``: the same table whatever ran it, as long as ``score`` is a function of
its shard alone (a frame's score must not depend on which other frames share its batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from crossfake.executors.base import Executor
from crossfake.utils.errors import CrossfakeError

#: the column :func:`map_shards` numbers rows by while they are away; callers' tables must not have it
ORDER_COLUMN = "__crossfake_row__"


def shard_table(rows: pd.DataFrame, key: str = "video_id", max_rows: int = 4096) -> list[pd.DataFrame]:
    """``rows`` cut into consecutive shards of whole ``key`` groups, at most ``max_rows`` rows each.

    A group larger than ``max_rows`` is a shard of its own. Shards keep the rows' order within a group
    and list groups in order of first appearance.
    """
    if key not in rows.columns:
        raise CrossfakeError(f"cannot shard by {key!r}: the table has no such column")
    if max_rows < 1:
        raise CrossfakeError(f"max_rows must be at least 1, got {max_rows}")
    shards: list[pd.DataFrame] = []
    current: list[pd.DataFrame] = []
    size = 0
    for _, group in rows.groupby(key, sort=False, dropna=False):
        if current and size + len(group) > max_rows:
            shards.append(pd.concat(current))
            current, size = [], 0
        current.append(group)
        size += len(group)
    if current:
        shards.append(pd.concat(current))
    return shards


@dataclass(frozen=True)
class _ShardCall:
    """``fn`` over one shard, its row numbers carried through (picklable, unlike a closure)."""

    fn: Callable[[pd.DataFrame], pd.DataFrame]

    def __call__(self, shard: pd.DataFrame) -> pd.DataFrame:
        order = shard.pop(ORDER_COLUMN).to_numpy()
        out = self.fn(shard.reset_index(drop=True))
        if not isinstance(out, pd.DataFrame) or len(out) != len(order):
            got = f"{len(out)} rows" if isinstance(out, pd.DataFrame) else type(out).__name__
            raise CrossfakeError(
                f"a shard function must return one row per input row: got {got} for {len(order)}"
            )
        out = out.reset_index(drop=True)
        out[ORDER_COLUMN] = order
        return out


def map_shards(
    executor: Executor,
    fn: Callable[[pd.DataFrame], pd.DataFrame],
    rows: pd.DataFrame,
    *,
    key: str = "video_id",
    max_rows: int = 4096,
) -> pd.DataFrame:
    """``fn`` over ``rows`` shard by shard (whole ``key`` groups), results in the order of ``rows``.

    Args:
        executor: where the shards run (:class:`~crossfake.executors.LocalExecutor`,
            :class:`~crossfake.executors.RayExecutor`).
        fn: one shard (a DataFrame with a fresh index) -> one output row per input row, in its order;
            picklable for a pool or Ray (a module-level function or a ``functools.partial`` of one).
        rows: the table, e.g. a split manifest's test rows.
        key: the column a shard never splits.
        max_rows: rows per shard, at most (a single larger group excepted).

    Returns:
        The outputs of every shard, concatenated in the order of ``rows``, with a fresh index.
    """
    if ORDER_COLUMN in rows.columns:
        raise CrossfakeError(f"the table already has a column {ORDER_COLUMN!r}")
    if rows.empty:
        return fn(rows.reset_index(drop=True))
    numbered = rows.reset_index(drop=True)
    numbered[ORDER_COLUMN] = range(len(numbered))
    parts = list(executor.map_unordered(_ShardCall(fn), shard_table(numbered, key, max_rows)))
    out = pd.concat(parts, ignore_index=True).sort_values(ORDER_COLUMN, kind="stable")
    return out.drop(columns=ORDER_COLUMN).reset_index(drop=True)
