"""The network half of the embedded study: render videos, label frames, train, analyse.

`jaxpose demo` with `network.enabled=true` replaces the synthetic noisy 2D of the quick demo by
what a lab would really have: each camera's video of the (rendered) animal, a few labelled
frames per camera, a 2D network trained on them and its predictions on every frame. The 3D
steps that follow (triangulation, spatiotemporal refinement, filters, kinematics) and the
comparison with ground truth are the same as for the quick demo.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxpose.io.calibration import Calibration

__all__ = ["scale_calibration", "labelled_frame_indices", "train_and_analyze"]


def scale_calibration(calibration: Calibration, scale: float) -> Calibration:
    """The same cameras imaging at `scale` times the resolution (videos rendered smaller)."""
    import jax

    from jaxpose.geometry.camera import stack_cameras
    from jaxpose.synth.render import scale_camera

    def camera(i: int):
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[i], calibration.rig)

    cameras = [scale_camera(camera(i), scale) for i in range(len(calibration.names))]
    return Calibration(
        rig=stack_cameras(cameras), names=calibration.names, metadata=calibration.metadata
    )


def labelled_frame_indices(num_frames: int, count: int, *, seed: int) -> np.ndarray:
    """`count` frames spread over the recording (one per equal segment, seeded jitter): what a
    labeller picking frames across a session would give."""
    count = int(min(count, num_frames))
    edges = np.linspace(0, num_frames, count + 1)
    rng = np.random.default_rng(seed)
    picks = [
        int(rng.integers(int(a), max(int(a) + 1, int(b))))
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    return np.unique(np.asarray(picks, np.int64))


def _train_config(network: dict[str, Any], data: Path, out: Path) -> dict[str, Any]:
    """Compose conf/train.yaml with the demo's overrides (the same defaults `jaxpose train` uses)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from jaxpose.cli import CONF_DIR

    overrides = [f"data={data}", f"out={out}", *network.get("train_overrides", [])]
    if GlobalHydra.instance().is_initialized():  # inside `jaxpose demo`: same conf/ folder
        cfg = compose(config_name="train", overrides=overrides)
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("hydra", None)
    cfg.pop("multiview", None)
    return cfg


def train_and_analyze(
    study,
    out: Path,
    *,
    network: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    """Render every camera's video, write labelled frames, train a 2D network, analyse videos.

    Args:
        study: a `SyntheticStudy`.
        out: output folder; gets `render/` (videos, ground truth), `project/` (labelled
            frames), `model/` (the training run) and `predictions/` (DeepLabCut h5 per camera).
        network: options: `scale` (render scale of the full-resolution rig), `labelled_frames`
            (frames labelled per camera), `train_overrides` (Hydra overrides of
            conf/train.yaml), `batch_size` (analysis).

    Returns:
        Paths, timings, training summary and the 2D error of the predictions against the exact
        projections per camera.
    """
    from jaxpose.io.dlc import read_dlc
    from jaxpose.synth.animal import render_study_videos, write_labelled_frames
    from jaxpose.train.analyze import AnalyzeOptions, analyze_videos
    from jaxpose.train.trainer import train

    scale = float(network.get("scale", 0.5))
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    rendered = render_study_videos(study, out / "render", scale=scale, progress=progress)
    frames = labelled_frame_indices(
        study.points_3d.shape[0], int(network.get("labelled_frames", 30)), seed=study.seed
    )
    write_labelled_frames(
        study, out / "project", frames=list(frames), scale=scale, progress=progress
    )
    seconds["render"] = time.perf_counter() - t

    t = time.perf_counter()
    cfg = _train_config(network, out / "project", out / "model")
    cfg["train"]["progress"] = progress
    result = train(cfg)
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    videos = sorted((out / "render" / "videos").glob("*.mp4"))
    analyzed = analyze_videos(
        result.run_dir,
        videos,
        out / "predictions",
        options=AnalyzeOptions(
            batch_size=int(network.get("batch_size", 8)), progress=progress, overwrite=True
        ),
    )
    seconds["analyze"] = time.perf_counter() - t

    # 2D error of the network's predictions against the exact projections, per camera.
    names = list(rendered.camera_names)
    by_video = {Path(r.video).stem: r for r in analyzed}
    truth_2d = np.asarray(rendered.points_2d, np.float64)  # (frame, cam, kpt, 2) at render scale
    visible = np.asarray(rendered.visible, bool)
    labelled = np.zeros(truth_2d.shape[0], bool)
    labelled[frames] = True
    per_camera = {}
    for c, name in enumerate(names):
        video = Path(rendered.videos[name]).stem
        if video not in by_video or by_video[video].h5 is None:
            continue
        pred = read_dlc(by_video[video].h5)
        err = np.linalg.norm(pred.xy - truth_2d[: len(pred.xy), c], axis=-1)
        seen = visible[: len(pred.xy), c]
        held_out = seen & ~labelled[: len(pred.xy), None]
        per_camera[name] = {
            "median_px": float(np.nanmedian(err[held_out])) if held_out.any() else None,
            "mean_px": float(np.nanmean(err[held_out])) if held_out.any() else None,
            "p95_px": float(np.nanpercentile(err[held_out], 95)) if held_out.any() else None,
        }
    return {
        "scale": scale,
        "labelled_frames": [int(f) for f in frames],
        "calibration_render": str(rendered.calibration),
        "videos": [str(v) for v in videos],
        "predictions": str(out / "predictions"),
        "run_dir": str(result.run_dir),
        "train_summary": result.summary,
        "seconds": seconds,
        "errors_2d_heldout": per_camera,
        "truth_2d": truth_2d,
        "visible": visible,
    }


def per_camera_table(errors: dict[str, dict], names: Sequence[str]) -> list[tuple]:
    def f(v):
        return "n/a" if v is None else f"{v:.2f}"

    return [
        (n, f(errors[n]["mean_px"]), f(errors[n]["median_px"]), f(errors[n]["p95_px"]))
        for n in names
        if n in errors
    ]
