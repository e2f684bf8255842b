"""What every benchmark script needs before NumPy and JAX load, and the bits they all print.

Import it first (``from _bench import REPO``; the scripts run as ``python benchmarks/<name>.py``,
so this folder is on ``sys.path``): it pins OpenBLAS to one thread (its threads fight XLA's pool
on a 2-core machine, see shared/CPU-PERF.md), points JAX at the persistent compilation cache in
``.jax_cache/`` so that re-runs skip compilation, and puts the repository on ``sys.path`` so a
plain checkout runs without installing.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def warn_if_busy(what: str = "times will be high") -> tuple[float, float, float]:
    """Print a warning when other processes already load the cores; returns the load average."""
    load = os.getloadavg()
    if load[0] > 0.5:
        print(
            f"warning: load average {load[0]:.1f} at the start: other processes share "
            f"these {os.cpu_count()} cores, so {what} and noisy"
        )
    return load


def run_meta(argv: list[str] | None) -> dict:
    """When, how and on what a benchmark ran (the start of every result file's ``meta``)."""
    import jax
    import numpy as np

    return dict(
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        command=" ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        jax=jax.__version__,
        backend=jax.devices()[0].platform,
        numpy=np.__version__,
        python=platform.python_version(),
        machine=platform.platform(),
        cpu_count=os.cpu_count(),
    )


def save_result(path: str | os.PathLike, result, *, quiet: bool = False) -> None:
    """Write a benchmark's result as JSON, atomically (a killed run leaves the previous file
    whole), creating the folder; NumPy scalars become floats. Prints where it went unless
    ``quiet``."""
    import json

    from jaxpose.io.atomic import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1, default=float) + "\n")
    if not quiet:
        print(f"wrote {path}")
