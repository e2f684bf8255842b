"""Hydra entry point of `jaxpose triangulate` (config: conf/triangulate.yaml)."""

from __future__ import annotations

import sys

from omegaconf import DictConfig, ListConfig, OmegaConf


def _predictions(value):
    if isinstance(value, DictConfig):
        return dict(OmegaConf.to_container(value))
    if isinstance(value, ListConfig):
        return list(OmegaConf.to_container(value))
    return value


def postprocess_options(cfg: DictConfig):
    """The steps after triangulation, from the command's config."""
    from jaxpose.pipeline.pose3d import PostprocessOptions

    def plain(value):
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value

    kinematics = None
    if cfg.kinematics.enabled:
        kinematics = {k: plain(v) for k, v in cfg.kinematics.items() if k != "enabled"}
    return PostprocessOptions(
        fps=float(cfg.fps),
        skeleton=tuple(tuple(pair) for pair in plain(cfg.skeleton)),
        spatiotemporal=(plain(cfg.spatiotemporal.options) or {})
        if cfg.spatiotemporal.enabled
        else None,
        filters=tuple(plain(cfg.filters)),
        kinematics=kinematics,
        zarr=bool(cfg.zarr),
        plots=bool(cfg.plots),
        videos=_predictions(cfg.videos),
        overlay_frames=cfg.overlay_frames,
    )


def main(cfg: DictConfig) -> int:
    from hydra.utils import instantiate

    from jaxpose.io.calibration import CalibrationError
    from jaxpose.io.dlc import KeypointFileError
    from jaxpose.pipeline.triangulate import InputError, format_summary, run_triangulate

    missing = [k for k in ("calibration", "predictions", "out") if OmegaConf.is_missing(cfg, k)]
    if missing:
        print(
            f"jaxpose triangulate: missing {', '.join(missing)}.\n"
            "Usage: jaxpose triangulate calibration=<calibration.toml> "
            "predictions=<folder> out=<folder>   (see --help)",
            file=sys.stderr,
        )
        return 2
    try:
        summary = run_triangulate(
            cfg.calibration,
            _predictions(cfg.predictions),
            cfg.out,
            triangulator=instantiate(cfg.triangulation),
            bodyparts=None if cfg.bodyparts is None else list(cfg.bodyparts),
            refine_calibration=(
                dict(OmegaConf.to_container(cfg.refine_calibration.options))
                if cfg.refine_calibration.enabled
                else None
            ),
            postprocess=postprocess_options(cfg),
            progress=bool(cfg.progress),
        )
    except (InputError, CalibrationError, KeypointFileError, ValueError) as e:
        print(f"jaxpose triangulate: {e}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0
