"""Shared test fixtures: where the third-party data lives, and CPU settings for stable timings."""

from __future__ import annotations

import os
from pathlib import Path

# OpenBLAS threads fight XLA's pool on a 2-core machine (see shared/CPU-PERF.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# No persistent compilation cache in the test run (subprocesses inherit this): a clean-clone CI
# run starts cold anyway, and reading back one cached executable (an eager lax.cond of the
# triangulation, written by an earlier test) aborted the whole process in XLA.
os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("JAXPOSE_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"


def data_path(*parts: str) -> Path:
    """Path into ../shared/data; skips the test with a clear reason when the data set is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"third-party data not found at {path} (set JAXPOSE_SHARED to the shared/ folder)"
        )
    return path


@pytest.fixture
def shared_data():
    return data_path


def run_benchmark(script: str, *args: str, timeout: float = 300):
    """Run `benchmarks/<script>` with `args` in a subprocess from the repository root; fails the
    test with the script's output when it exits non-zero. Returns the CompletedProcess."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. A whole-suite run holds thousands of
    XLA:CPU executables, each with its own code mappings; late in the run compiling one more
    crashed the process (segfault or abort in XLA), while each file alone passes."""
    yield
    import jax

    jax.clear_caches()
