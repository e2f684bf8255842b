"""Hydra entry point of `jaxpose train` (config: conf/train.yaml)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

DEFAULT_CACHE = Path.home() / ".cache" / "jaxpose" / "jax"


def enable_compilation_cache(default: Path = DEFAULT_CACHE) -> Path | None:
    """Persistent XLA compilation cache (a re-run compiles in ~1 s instead of 10-20 s).

    ``JAX_COMPILATION_CACHE_DIR``, when set, wins (JAX reads it itself); else ``default``.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    import jax

    try:
        default.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # read-only home: run without a cache rather than fail
    jax.config.update("jax_compilation_cache_dir", str(default))
    return default


def _run_dir(cfg: DictConfig) -> str:
    """``out``, or in a multirun this job's own sub-folder of ``out`` (hydra.sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return str(hydra_cfg.runtime.output_dir)
    return str(cfg.out)


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"trained {summary['backbone']} + {summary['head']} for {summary['steps']} steps "
        f"in {summary['wall_time_s']:.0f} s ({summary['steps_per_s']:.2f} steps/s, "
        f"{summary['images_per_s']:.1f} images/s); final loss {summary['final_loss']}",
    ]
    for part in ("train", "test"):
        errors = summary.get(part)
        if errors and errors["n"]:
            lines.append(
                f"  {part:5s} error (original px, {errors['n']} points): "
                f"RMSE {errors['rmse_px']:.2f}, mean {errors['mean_px']:.2f}, "
                f"median {errors['median_px']:.2f}"
            )
    lines.append(f"run folder: {summary['run_dir']}")
    return "\n".join(lines)


def main(cfg: DictConfig) -> int:
    from jaxpose.data import DatasetError
    from jaxpose.train.checkpoint import CheckpointError
    from jaxpose.train.trainer import TrainConfig, TrainError, train

    missing = [k for k in ("data", "out") if OmegaConf.is_missing(cfg, k)]
    if missing:
        print(
            f"jaxpose train: missing {', '.join(missing)}.\n"
            "Usage: jaxpose train data=<DLC project or CollectedData.csv> out=<run folder> "
            "[key=value ...]   (see --help)",
            file=sys.stderr,
        )
        return 2
    enable_compilation_cache()
    if cfg.multiview.enabled:
        return _main_multiview(cfg)
    try:
        mapping = OmegaConf.to_container(cfg, resolve=True)
        mapping.pop("multiview", None)  # the single-view trainer's options only
        mapping["out"] = _run_dir(cfg)
        result = train(TrainConfig.from_mapping(mapping))
    except (TrainError, CheckpointError, DatasetError, FileNotFoundError) as e:
        print(f"jaxpose train: {e}", file=sys.stderr)
        return 1
    if result.summary is not None:
        print(format_summary(result.summary))
    return 0


def _main_multiview(cfg: DictConfig) -> int:
    """`jaxpose train multiview.enabled=true`: joint 2D+3D training on a multi-camera project."""
    from jaxpose.train.multiview import MultiViewError, MultiViewTrainConfig, train_multiview

    mapping = OmegaConf.to_container(cfg, resolve=True)
    train = mapping["train"]
    options = {
        "project": str(cfg.data),
        "out": _run_dir(cfg),
        "backbone": mapping["backbone"],
        "head": mapping["head"],
        "seed": int(cfg.seed),
        "steps": train["steps"],
        "lr": train["lr"],
        "warmup_steps": train["warmup_steps"],
        "resume": train["resume"],
        "progress": train["progress"],
        **(mapping["multiview"]["options"] or {}),
    }
    try:
        result = train_multiview(MultiViewTrainConfig(**options))
    except (MultiViewError, FileNotFoundError, TypeError) as e:
        print(f"jaxpose train (multi-view): {e}", file=sys.stderr)
        return 1
    print(
        f"trained {options['backbone']['name']} on {cfg.data} (multi-view) to step "
        f"{result.step} in {result.wall_time_s:.0f} s; run folder: {result.run_dir}"
    )
    return 0
