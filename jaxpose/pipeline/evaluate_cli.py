"""Hydra entry point of `jaxpose evaluate` (config: conf/evaluate.yaml)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

USAGE = (
    "Usage: jaxpose evaluate run=<run folder> [data=...] [step=...]\n"
    "       jaxpose evaluate sweep=<folder of runs> | runs=[a,b] [out=<folder>]   (see --help)"
)


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for the terminal: test and train errors, PCK, speed, where the report is."""
    lines = [
        f"evaluated {summary['architecture']} (step {summary['step']}) on whole frames at scale "
        f"{summary['input']['scale_factor']:.4g}; {summary['num_train']} train / "
        f"{summary['num_test']} test frames"
    ]
    for split in ("train", "test"):
        m = summary.get(split)
        if not m:
            continue
        pck = ", ".join(f"PCK@{t}px {_num(v)}" for t, v in m["pck_px"].items())
        lines.append(
            f"  {split:5s} RMSE {_num(m['rmse_px'])} px (mean {_num(m['mean_px'])}), "
            f"above p-cutoff {summary['pcutoff']}: RMSE {_num(m['rmse_above_cutoff_px'])} px on "
            f"{_num(m['fraction_above_cutoff'])} of {m['n']} points; {pck}"
        )
    lines.append(f"  inference {_num(summary['inference']['frames_per_s'], 1)} frames/s")
    return "\n".join(lines)


def _options(cfg: DictConfig):
    from jaxpose.train.evaluate import EvaluateOptions

    return EvaluateOptions(
        pcutoff=float(cfg.pcutoff),
        pck_px=tuple(cfg.pck_px or ()),
        pck_relative=tuple(cfg.pck_relative or ()),
        worst_frames=int(cfg.worst_frames),
        batch_size=int(cfg.batch_size),
        scale_factor=None if cfg.scale_factor is None else float(cfg.scale_factor),
        progress=bool(cfg.progress),
    )


def main(cfg: DictConfig) -> int:
    from jaxpose.data import DatasetError
    from jaxpose.io.dlc import KeypointFileError
    from jaxpose.pipeline.train_cli import enable_compilation_cache
    from jaxpose.train.checkpoint import CheckpointError
    from jaxpose.train.evaluate import (
        EVALUATION_DIR,
        EvaluationError,
        compare_runs,
        evaluate_run,
        find_runs,
    )

    chosen = [k for k in ("run", "runs", "sweep") if cfg.get(k) not in (None, "", [])]
    if len(chosen) != 1:
        what = "none" if not chosen else " and ".join(chosen)
        print(
            f"jaxpose evaluate: give exactly one of run, runs, sweep (got {what}).\n{USAGE}",
            file=sys.stderr,
        )
        return 2
    enable_compilation_cache()
    step = None if cfg.step is None else int(cfg.step)
    try:
        options = _options(cfg)
        if cfg.run is not None:
            summary = evaluate_run(cfg.run, data=cfg.data, step=step, out=cfg.out, options=options)
            print(format_summary(summary))
            out = cfg.out or Path(cfg.run) / EVALUATION_DIR
            print(f"report: {Path(out) / 'report.md'}")
            return 0
        if cfg.sweep is not None:
            runs = find_runs(cfg.sweep)
            out = cfg.out or cfg.sweep
        else:
            runs_cfg = cfg.runs
            runs = [runs_cfg] if isinstance(runs_cfg, str) else list(OmegaConf.to_object(runs_cfg))
            out = cfg.out or os.path.commonpath([str(Path(r).resolve()) for r in runs])
        rows = compare_runs(
            runs,
            out=out,
            data=cfg.data,
            step=step,
            options=options,
            reevaluate=bool(cfg.reevaluate),
        )
    except (CheckpointError, EvaluationError, DatasetError, KeypointFileError, OSError) as e:
        print(f"jaxpose evaluate: {e}", file=sys.stderr)
        return 1
    print((Path(out) / "comparison.md").read_text(encoding="utf-8"))
    failed = [r for r in rows if "error" in r]
    return 1 if failed and len(failed) == len(rows) else 0
