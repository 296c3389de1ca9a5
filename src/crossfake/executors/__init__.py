"""Where per-video work runs: in this process, a local process pool, or a Ray cluster.

Pipelines hand an :class:`Executor` a picklable function and a list of items and read the results back
as they finish (:meth:`Executor.map_unordered`); they never import Ray. Work is split so that every item
is independent and idempotent (one video, or one video's rows), which is what makes the outputs of every
executor identical and lets an interrupted run resume.

- :class:`LocalExecutor` (the default): ``workers=0`` runs in this process, ``workers=N`` in N spawned
  processes on this machine.
- :class:`RayExecutor` (extra ``distributed``: ``pip install crossfake[distributed]``): one Ray task per
  item or per ``chunksize`` items, on a local Ray instance or a cluster (``address="auto"`` or
  ``"ray://host:10001"``). Ray is imported only when it is used.

:func:`map_shards` splits a table by a key column (``video_id``) and maps a per-shard function over it.
Batch scoring (:func:`crossfake.scoring.score_run` with ``executor=``) hands out row ranges of whole
batches instead, so that its batches and resumable part files are those of scoring in one process.
"""

from crossfake.executors.base import Executor, LocalExecutor, WorkerDied, get_executor
from crossfake.executors.ray_executor import RayExecutor, ray_available
from crossfake.executors.shards import map_shards, shard_table

__all__ = [
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "WorkerDied",
    "get_executor",
    "map_shards",
    "ray_available",
    "shard_table",
]
