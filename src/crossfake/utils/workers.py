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


def default_workers() -> int:
    """Worker processes when the config says null: every available CPU but one, at most 4.

    The main process keeps one CPU (it runs the model, or collects and writes the workers' results); on a
    single CPU that leaves 0, which every caller reads as "work in the main process". Past 4 workers,
    crop decoding and face detection stop being the bottleneck of a GPU run and each extra process costs
    memory.
    """
    return max(0, min(4, available_cpus() - 1))
