"""The executor interface and the local executor (this process, or a pool of spawned processes)."""

from __future__ import annotations

import concurrent.futures as cf
import functools
import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from crossfake.utils.errors import CrossfakeError

T = TypeVar("T")
R = TypeVar("R")

#: Setup functions already run in this (worker) process, by :func:`_setup_key`.
_SETUP_DONE: set[str] = set()


class WorkerDied(CrossfakeError):
    """A worker process (or Ray worker) died while running an item: a native crash or a kill.

    Items that finished before it are kept by whatever they wrote; re-running resumes.
    """


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in consecutive lists of at most ``size``, in order."""
    if size < 1:
        raise CrossfakeError(f"chunksize must be at least 1, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _setup_key(setup: Callable[[], None]) -> str:
    """A name for a setup function that is the same in every task (each task unpickles a new copy)."""
    func, args = setup, ""
    if isinstance(setup, functools.partial):
        func, args = setup.func, repr((setup.args, sorted(setup.keywords.items())))
    name = getattr(func, "__qualname__", type(func).__qualname__)
    return f"{getattr(func, '__module__', '')}.{name}{args}"


def run_chunk(fn: Callable[[T], R], setup: Callable[[], None] | None, chunk: list[T]) -> list[R]:
    """Run ``fn`` over one chunk in a worker, after ``setup`` if this process has not run it yet."""
    if setup is not None:
        key = _setup_key(setup)
        if key not in _SETUP_DONE:
            setup()
            _SETUP_DONE.add(key)
    return [fn(item) for item in chunk]


class Executor(ABC):
    """Runs a function over independent items and yields the results as they finish.

    ``fn`` and the items must be picklable (a module-level function or a :func:`functools.partial` of
    one; dataclasses, tables, paths) unless the executor runs in this process. ``fn`` must be idempotent
    per item: an executor may run an item again after a worker died.
    """

    #: the name given to ``--executor``
    name: str = ""

    @abstractmethod
    def map_unordered(
        self, fn: Callable[[T], R], items: Iterable[T], *, setup: Callable[[], None] | None = None
    ) -> Iterator[R]:
        """Yield ``fn(item)`` for every item, in the order they finish.

        Args:
            fn: the work for one item.
            items: the items; read at once.
            setup: run once in each worker process before its first item (e.g. limiting a library's
                threads); a module-level function or a ``functools.partial`` of one. Not run when the
                work runs in this process.

        Raises:
            WorkerDied: a worker process died; re-running resumes from what finished.
            Exception: what ``fn`` raised, as raised.

        Closing the iterator early (``break``, an exception in the caller) cancels the items not started.
        """

    @property
    def in_process(self) -> bool:
        """Whether the work runs in this process (so ``fn`` need not be picklable, nor ``setup`` run)."""
        return False

    def describe(self) -> dict[str, Any]:
        """What ran the work, for provenance (``prepare.json``, ``metrics_<name>.json``)."""
        return {"name": self.name}

    def for_device(self, device: str) -> Executor:
        """This executor for work on ``device`` (``cpu`` or ``cuda``): the Ray executor gives each task a GPU
        for ``cuda`` (GPU actors) unless it was given GPUs already; others return themselves."""
        return self

    def close(self) -> None:  # noqa: B027 - a no-op unless the executor started something
        """Release what the executor started (a Ray instance it started itself)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """This machine: ``workers=0`` runs every item in this process, ``workers=N`` in N spawned processes.

    Args:
        workers: worker processes; 0 runs in this process. Processes are spawned (not forked), so a
            script using workers needs the usual ``if __name__ == "__main__":``.
        chunksize: items sent to a worker at once.
    """

    name = "local"

    def __init__(self, workers: int = 0, chunksize: int = 1) -> None:
        if workers < 0:
            raise CrossfakeError(f"workers must be 0 or more, got {workers}")
        self.workers = workers
        self.chunksize = chunksize

    @property
    def in_process(self) -> bool:
        return self.workers == 0

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.workers}

    def map_unordered(
        self, fn: Callable[[T], R], items: Iterable[T], *, setup: Callable[[], None] | None = None
    ) -> Iterator[R]:
        items = list(items)
        workers = min(self.workers, len(items))
        if workers == 0:
            for item in items:
                yield fn(item)
            return
        # spawn: the same behaviour on every OS, and no fork of a process holding decoder/tqdm threads.
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=setup) as pool:
            futures = [pool.submit(run_chunk, fn, None, chunk) for chunk in chunked(items, self.chunksize)]
            try:
                for future in cf.as_completed(futures):
                    yield from future.result()
            except cf.process.BrokenProcessPool:
                raise WorkerDied("a worker process died (a crash inside a native library?)") from None
            finally:
                for f in futures:
                    f.cancel()


EXECUTORS = ("local", "ray")


def get_executor(
    name: str = "local",
    *,
    workers: int = 0,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    chunksize: int = 1,
) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``), as ``--executor`` chooses it.

    ``workers`` applies to ``local``; ``address``, ``num_cpus`` and ``num_gpus`` (per task) to ``ray``.
    """
    if name == "local":
        if address is not None:
            raise CrossfakeError("--address is for --executor ray (the local executor runs on this machine)")
        return LocalExecutor(workers, chunksize=chunksize)
    if name == "ray":
        from crossfake.executors.ray_executor import RayExecutor

        return RayExecutor(address, num_cpus=num_cpus, num_gpus=num_gpus, chunksize=chunksize)
    raise CrossfakeError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
