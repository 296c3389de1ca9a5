"""The Ray executor (extra ``distributed``): items run as Ray tasks on a local instance or a cluster.

Ray is imported when a :class:`RayExecutor` is made, never by importing crossfake. On a cluster every
node needs crossfake installed (the same version) and the folders the work reads and writes (a corpus,
``prepare``'s output) at the same path: tasks write their outputs themselves and return only small
results. Paths given to a task must be absolute, since a Ray worker does not run in the driver's folder.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from crossfake.executors.base import Executor, WorkerDied, chunked, run_chunk
from crossfake.utils.errors import CrossfakeError

T = TypeVar("T")
R = TypeVar("R")

INSTALL_HINT = "pip install 'crossfake[distributed]'"


def ray_available() -> bool:
    """Whether Ray is installed (the ``distributed`` extra)."""
    return importlib.util.find_spec("ray") is not None


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`CrossfakeError` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise CrossfakeError(
            f"the ray executor needs Ray, which is not installed ({e}): {INSTALL_HINT}, "
            "or use the local executor (--executor local)"
        ) from None
    return ray


def _check_address(address: str | None) -> None:
    if address is None or address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise CrossfakeError(
            f"Ray address {address!r}: expected 'auto' (the cluster this machine belongs to), 'local' "
            "(a new instance here), 'ray://HOST:PORT' (Ray client, port 10001 by default) or 'HOST:PORT' "
            "(the head node's GCS, port 6379)"
        )


class RayExecutor(Executor):
    """Runs items as Ray tasks, ``chunksize`` items per task, and yields results as they finish.

    Args:
        address: the cluster: ``None`` (Ray's default: ``$RAY_ADDRESS``, else a cluster started on this
            machine, else a new local instance), ``"auto"``, ``"local"`` (always a new local instance),
            ``"ray://HOST:PORT"`` (Ray client) or ``"HOST:PORT"``. If Ray is already initialised in this
            process, that connection is used whatever the address.
        num_cpus: CPUs each task reserves (the cluster runs ``CPUs / num_cpus`` tasks at once).
        num_gpus: GPUs each task reserves (fractions share a GPU), e.g. 1 for scoring on GPU nodes.
        chunksize: items per task; raise it when items take milliseconds (task overhead is ~1 ms).
        max_in_flight: tasks submitted but not finished, at most; default twice the tasks the cluster
            can run at once (at least 4), so a 100,000-video corpus does not queue 100,000 tasks.
        max_retries: times Ray reruns a task whose worker died before it gives up (:class:`WorkerDied`).
        keep_workers: let a worker run any number of tasks, so what it caches (a face detector, a model
            on its GPU) serves every task it gets; Ray's own default ends a worker after each GPU task.
        init_options: further keyword arguments of ``ray.init`` when this executor connects
            (``runtime_env``, ``num_cpus`` of a local instance, ...).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        chunksize: int = 1,
        max_in_flight: int | None = None,
        max_retries: int = 3,
        keep_workers: bool = True,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        _check_address(address)
        if num_cpus < 0 or num_gpus < 0 or (num_cpus == 0 and num_gpus == 0):
            raise CrossfakeError(
                f"a Ray task needs some CPUs or GPUs, got num_cpus={num_cpus}, num_gpus={num_gpus}"
            )
        if chunksize < 1:
            raise CrossfakeError(f"chunksize must be at least 1, got {chunksize}")
        if max_in_flight is not None and max_in_flight < 1:
            raise CrossfakeError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.ray = import_ray()
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.chunksize = chunksize
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.keep_workers = keep_workers
        self.init_options = dict(init_options or {})
        self._started = False  # this executor called ray.init, so close() shuts it down

    # -- connection -------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect to the cluster (or start a local instance) unless Ray is initialised already."""
        ray = self.ray
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"logging_level": logging.WARNING, **self.init_options}
        if self.address in (None, "local"):
            options.setdefault("include_dashboard", False)
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise CrossfakeError(
                f"could not connect to Ray at {self.address or 'the default address'}: {e}"
            ) from None
        self._started = True

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False

    def for_device(self, device: str) -> RayExecutor:
        if device != "cuda" or self.num_gpus:
            return self
        self.connect()  # the connection is this executor's, to close; the copy only uses it
        gpu = copy.copy(self)
        gpu.num_gpus = 1
        gpu._started = False
        return gpu

    def _capacity(self) -> int:
        resources = self.ray.cluster_resources()
        slots = [resources.get("CPU", 0) / self.num_cpus] if self.num_cpus else []
        if self.num_gpus:
            slots.append(resources.get("GPU", 0) / self.num_gpus)
        return max(int(min(slots)) if slots else 1, 1)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": self.name,
            "address": self.address,
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "chunksize": self.chunksize,
            "ray": self.ray.__version__,
        }
        if self.ray.is_initialized():
            resources = self.ray.cluster_resources()
            info["cluster"] = {
                "nodes": len([n for n in self.ray.nodes() if n.get("Alive")]),
                "CPU": resources.get("CPU", 0),
                "GPU": resources.get("GPU", 0),
            }
        return info

    # -- work -------------------------------------------------------------------------------------------

    def map_unordered(
        self, fn: Callable[[T], R], items: Iterable[T], *, setup: Callable[[], None] | None = None
    ) -> Iterator[R]:
        items = list(items)
        if not items:
            return
        self.connect()
        ray = self.ray
        options: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "max_retries": self.max_retries,
        }
        if self.keep_workers:
            options["max_calls"] = 0  # no limit (a setting of ray.remote, not of .options())
        remote = ray.remote(**options)(run_chunk)
        fn_ref, setup_ref = ray.put(fn), ray.put(setup)  # pickled once, not once per task
        chunks = iter(chunked(items, self.chunksize))
        limit = self.max_in_flight or max(2 * self._capacity(), 4)
        pending: list[Any] = []

        def submit() -> None:
            for chunk in chunks:
                pending.append(remote.remote(fn_ref, setup_ref, chunk))
                if len(pending) >= limit:
                    return

        try:
            submit()
            while pending:
                done, _ = ray.wait(pending, num_returns=1)
                pending.remove(done[0])
                try:
                    results = ray.get(done[0])
                except ray.exceptions.RayTaskError as e:
                    raise e.as_instanceof_cause() from None  # what fn raised, with the remote traceback
                except ray.exceptions.RayError as e:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise WorkerDied(f"a Ray worker died ({type(e).__name__}: {first})") from None
                submit()
                yield from results
        finally:
            for ref in pending:
                try:
                    ray.cancel(ref)
                except Exception:  # already finished, or the cluster is gone: nothing to cancel
                    pass
