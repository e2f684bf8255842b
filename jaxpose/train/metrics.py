"""Per-step training metrics: one CSV row per step and TensorBoard scalars (tensorboardX).

`<run>/metrics.csv` has a header row and one row per optimisation step. A resumed run keeps the
rows up to the step it resumed from, drops any later ones (the run may have logged steps past its
last checkpoint before it stopped), and appends, so that every step appears exactly once.
TensorBoard events go to `<run>/tb/`; a resumed writer purges the events after the resumed step.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from jaxpose.io.atomic import atomic_path

__all__ = ["MetricsWriter", "read_metrics"]


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a `metrics.csv` as dicts of floats (empty cells become NaN), in file order."""
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {k: float(v) if v != "" else math.nan for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


class MetricsWriter:
    """Writes per-step metrics to `<run>/metrics.csv` and TensorBoard events in `<run>/tb/`.

    Args:
        run_dir: the run folder.
        columns: metric names after the leading ``step`` column, in CSV order.
        resume_step: when resuming, the step of the restored checkpoint: rows after it are
            dropped from the CSV and TensorBoard purges its later events. ``None`` starts a new
            file (an existing one is replaced).
        tensorboard: also write TensorBoard events.
        flush_every: flush both outputs every this many rows (rows are buffered in between).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        columns: Sequence[str],
        resume_step: int | None = None,
        tensorboard: bool = True,
        flush_every: int = 10,
    ):
        self.path = Path(run_dir) / "metrics.csv"
        self.columns = ["step", *columns]
        self.flush_every = max(int(flush_every), 1)
        self._pending = 0
        kept: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                kept = [row for row in csv.DictReader(f) if int(float(row["step"])) <= resume_step]
        # Rewrite (atomically) with the kept rows, then append row by row.
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, self.columns, restval="", extrasaction="ignore")
                writer.writeheader()
                writer.writerows(kept)
        self._file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.DictWriter(self._file, self.columns, restval="", extrasaction="ignore")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            start = 0 if resume_step is None else resume_step + 1
            # The suffix keeps two writers started within one second from sharing a file name.
            self._tb = SummaryWriter(
                str(Path(run_dir) / "tb"),
                purge_step=start if resume_step is not None else None,
                filename_suffix=f".from_step{start}",
                flush_secs=30,
            )

    def write(self, step: int, values: Mapping[str, float]) -> None:
        """Adds the row of one step; ``values`` keys outside ``columns`` go to TensorBoard only."""
        row = {"step": int(step)}
        for key in self.columns[1:]:
            if key in values:
                row[key] = f"{float(values[key]):.7g}"
        self._csv.writerow(row)
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"train/{key}", float(value), int(step))
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()

    def scalars(self, step: int, values: Mapping[str, float], *, prefix: str) -> None:
        """TensorBoard-only scalars (e.g. ``prefix='eval'`` for final errors)."""
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"{prefix}/{key}", float(value), int(step))

    def flush(self) -> None:
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()
        self._pending = 0

    def close(self) -> None:
        if self._file.closed:
            return
        self.flush()
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
