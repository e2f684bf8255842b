"""Hydra entry point of `jaxpose analyze` (config: conf/analyze.yaml)."""

from __future__ import annotations

import math
import sys

from omegaconf import DictConfig, OmegaConf

USAGE = (
    "Usage: jaxpose analyze run=<run folder> videos=<video file or folder> out=<folder> "
    "[key=value ...]   (see --help)"
)


def main(cfg: DictConfig) -> int:
    from jaxpose.data import DatasetError
    from jaxpose.pipeline.train_cli import enable_compilation_cache
    from jaxpose.train.analyze import AnalyzeOptions, VideoError, analyze_videos
    from jaxpose.train.checkpoint import CheckpointError
    from jaxpose.train.evaluate import EvaluationError

    missing = [k for k in ("run", "videos", "out") if OmegaConf.is_missing(cfg, k)]
    if missing:
        print(f"jaxpose analyze: missing {', '.join(missing)}.\n{USAGE}", file=sys.stderr)
        return 2
    enable_compilation_cache()
    videos = cfg.videos
    videos = videos if isinstance(videos, str) else list(OmegaConf.to_object(videos))
    try:
        options = AnalyzeOptions(
            batch_size=int(cfg.batch_size),
            chunk_frames=int(cfg.chunk_frames),
            scale_factor=None if cfg.scale_factor is None else float(cfg.scale_factor),
            labelled_video=bool(cfg.labelled_video),
            pcutoff=float(cfg.pcutoff),
            save_csv=bool(cfg.save_csv),
            overwrite=bool(cfg.overwrite),
            keep_partial=bool(cfg.keep_partial),
            stop_after_chunks=None if cfg.stop_after_chunks is None else int(cfg.stop_after_chunks),
            progress=bool(cfg.progress),
        )
        results = analyze_videos(
            cfg.run,
            videos,
            cfg.out,
            step=None if cfg.step is None else int(cfg.step),
            data=cfg.data,
            options=options,
            extensions=tuple(cfg.extensions),
        )
    except (CheckpointError, VideoError, EvaluationError, DatasetError, OSError) as e:
        print(f"jaxpose analyze: {e}", file=sys.stderr)
        return 1
    for r in results:
        if r.skipped:
            print(f"{r.video}: already analysed ({r.h5}); overwrite=true analyses it again")
        elif not r.complete:
            print(f"{r.video}: stopped after {r.frames} frames; run again to resume")
        else:
            speed = "" if math.isnan(r.frames_per_s) else f" at {r.frames_per_s:.1f} frames/s"
            print(f"{r.video}: {r.frames} frames{speed} -> {r.h5}")
    return 0
