"""How many worker processes a stage starts when its config leaves the number open.

One rule for every pool (``crossfake prepare``'s video workers, the image loaders of training and
scoring), so that "the default" means the same thing everywhere and is written down once.
"""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset), else the CPU count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


#: Most worker processes a default starts (each holds its prefetched batches in memory).
MAX_WORKERS = 32


def default_workers(gpu: bool = False) -> int:
    """Worker processes when the config says null: every available CPU but one; at most 4 unless they feed
    a GPU (``gpu``), at most :data:`MAX_WORKERS` then. Processes launched together on one machine
    (``accelerate launch``/``torchrun`` set ``LOCAL_WORLD_SIZE``) share its CPUs: each counts its share.

    The main process keeps one CPU (it runs the model, or collects and writes the workers' results); on a
    single CPU that leaves 0, which every caller reads as "work in the main process". On the CPU the model
    is the bottleneck (ViT-B/32: ~15 crops/s per core against ~250 crops/s per core for decoding and
    preprocessing a crop, see ``benchmarks/bench_data_path.py``), so more loaders only take cores from it.
    A GPU scores ViT-B/32 crops 10,000/s and more: every core is needed to feed it.
    """
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(0, min(MAX_WORKERS if gpu else 4, available_cpus() // local - 1))
