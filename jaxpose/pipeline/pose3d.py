"""After triangulation: spatiotemporal refinement, filters, kinematics, and the files people read.

`postprocess_3d` takes what `jaxpose triangulate` has (the rig, each camera's 2D predictions
and the triangulated points) and, each step optional and set by config:

1. refines the whole recording by robust reprojection + temporal + bone-length terms
   (`jaxpose.triangulation.refine_spatiotemporal`);
2. runs a filter chain over the 3D trajectories (`jaxpose.filters.apply_filters`);
3. computes kinematics (joint angles, speeds, distances) and writes `kinematics.csv`;
4. writes the final poses as pose-3d CSV + h5 (and a Zarr store for long recordings), the
   reprojection-error table per camera and keypoint, a 3D skeleton plot, and overlay videos
   of the reprojected skeleton on each camera's video when the videos are given.

`jaxpose triangulate` keeps the raw triangulation on disk beside the final result
(`pose3d_raw.csv`), so a filter that went wrong never costs the data.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxpose.data.project import body_part_pairs
from jaxpose.io.atomic import atomic_write_text
from jaxpose.io.calibration import Calibration
from jaxpose.io.pose3d import Pose3D, write_pose3d

__all__ = ["PostprocessOptions", "postprocess_3d", "resolve_bones", "find_videos"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


@dataclasses.dataclass(frozen=True)
class PostprocessOptions:
    """What to do after triangulation (every step optional).

    Attributes:
        fps: frame rate of the recording (speeds, filters in Hz, time column).
        skeleton: bones as (name, name) pairs; used by the limb term, plots and overlays.
        spatiotemporal: keyword options of `SpatiotemporalConfig`, or None to skip.
        filters: a filter chain for `apply_filters` (list of {kind: ..., ...}); empty: none.
        kinematics: keyword options of `kinematics_from_config` (angles, distances, speeds,
            accelerations), or None to skip.
        zarr: also write `pose3d.zarr` (TensorStore, chunked; for long recordings).
        plots: write the reprojection-error heat map and the 3D skeleton plot.
        videos: folder (or {camera: file}) of the cameras' videos for overlay videos; None: no
            overlays.
        overlay_frames: at most this many frames per overlay video (None: all).
    """

    fps: float = 30.0
    skeleton: tuple[tuple[str, str], ...] = ()
    spatiotemporal: Mapping[str, Any] | None = None
    filters: Sequence[Any] = ()
    kinematics: Mapping[str, Any] | None = None
    zarr: bool = False
    plots: bool = True
    videos: str | os.PathLike | Mapping[str, Any] | None = None
    overlay_frames: int | None = None


def resolve_bones(
    skeleton: Sequence[Sequence[str]], bodyparts: Sequence[str]
) -> list[tuple[int, int]]:
    """Bone name pairs -> index pairs; a pair naming an unknown body part is an error
    (a ValueError naming the bone)."""
    return body_part_pairs(skeleton, bodyparts, option="skeleton", where="the predictions")


def find_videos(videos, names: Sequence[str]) -> dict[str, Path]:
    """Match each camera to its video: a folder (a video's name must contain the camera name as
    a whole word, as for predictions) or an explicit {camera: path} mapping. Cameras without a
    video are left out with a warning; a camera with several candidate videos is an error."""
    from jaxpose.pipeline.triangulate import InputError, _token_pattern

    if isinstance(videos, Mapping):
        found = {str(k): Path(v) for k, v in videos.items()}
    else:
        folder = Path(videos)
        if not folder.is_dir():
            raise InputError(f"videos: {folder} is not a folder of the cameras' videos")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        found = {}
        for name in names:
            candidates = [f for f in files if _token_pattern(name).search(f.name)]
            if len(candidates) > 1:
                raise InputError(
                    f"camera {name!r}: several videos in {folder} match: "
                    f"{[f.name for f in candidates]}; pass videos={{camera: file}} instead"
                )
            if candidates:
                found[name] = candidates[0]
    missing = [n for n in names if n not in found]
    if missing:
        warnings.warn(f"no video for cameras {missing}: no overlay for them", stacklevel=2)
    for name, path in found.items():
        if not path.exists():
            raise InputError(f"video for camera {name!r} not found: {path}")
    return found


def _video_frames(path: Path, limit: int | None):
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"could not open video {path}")
    count = 0
    try:
        while limit is None or count < limit:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield frame
    finally:
        capture.release()


def _check_video(path: Path, camera: str, image_size: np.ndarray, num_frames: int) -> float:
    """A calibration made at another resolution is an error; a video of another length is a
    warning. Returns the video's frame rate (NaN when the container does not say)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"camera {camera!r}: could not open video {path}")
    w = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    h = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    capture.release()
    cw, ch = (int(round(float(v))) for v in image_size)
    if (w, h) != (cw, ch):
        from jaxpose.pipeline.triangulate import InputError

        raise InputError(
            f"camera {camera!r}: video {path} is {w}x{h} but the calibration says {cw}x{ch}; "
            "calibrate at the videos' resolution (or scale the calibration) before overlaying"
        )
    if n > 0 and n != num_frames:
        warnings.warn(
            f"camera {camera!r}: video {path} has {n} frames but the predictions have "
            f"{num_frames}; overlays use the first {min(n, num_frames)}",
            stacklevel=3,
        )
    return fps if fps > 0 and np.isfinite(fps) else float("nan")


def check_videos(
    videos: Mapping[str, Path], calibration: Calibration, num_frames: int, fps: float
) -> None:
    """Check every camera's video before any long step: its size against the calibration
    (error), its length against the predictions (warning), and the frame rates, which must
    agree across cameras (error: the cameras were not recorded together) and should agree with
    `fps`, the rate used for speeds and filters (warning)."""
    from jaxpose.pipeline.triangulate import InputError

    rates = {}
    for c, name in enumerate(calibration.names):
        if name in videos:
            size = np.asarray(calibration.rig.image_size)[c]
            rates[name] = _check_video(videos[name], name, size, num_frames)
    known = {k: v for k, v in rates.items() if np.isfinite(v)}
    if not known:
        return
    low, high = min(known.values()), max(known.values())
    if high > low * 1.001:
        listed = ", ".join(f"{k} {v:g}" for k, v in known.items())
        raise InputError(
            f"the cameras' videos have different frame rates ({listed} fps): synchronised "
            "cameras record at one rate; re-encode the odd ones or drop them from the study"
        )
    if abs(low - fps) > 0.001 * low:
        warnings.warn(
            f"the videos run at {low:g} fps but fps={fps:g} is used for speeds, filters and "
            f"overlays; pass fps={low:g} if that is the recording's rate",
            stacklevel=3,
        )


def postprocess_3d(
    out: str | os.PathLike,
    calibration: Calibration,
    points_2d: np.ndarray,
    confidence: np.ndarray,
    triangulated: Pose3D,
    *,
    options: PostprocessOptions,
    progress: bool = True,
) -> dict:
    """Run the optional steps after triangulation and write their files.

    Args:
        out: output folder.
        calibration: the cameras used.
        points_2d: (frame, cam, kpt, 2) each camera's predictions.
        confidence: (frame, cam, kpt) their likelihoods.
        triangulated: the triangulation (the caller keeps it on disk as `pose3d_raw.*`).
        options: which steps to run.

    Returns:
        A JSON-ready summary of what was done and written.
    """
    from jaxpose.filters import apply_filters
    from jaxpose.metrics3d import reprojection_table

    out = Path(out)
    bodyparts = list(triangulated.bodyparts)
    bones = resolve_bones(options.skeleton, bodyparts)
    summary: dict[str, Any] = {"steps": [], "outputs": {}}
    outputs = summary["outputs"]
    pose = triangulated
    videos = {}
    if options.videos is not None:  # checked before the long steps, not after them
        videos = find_videos(options.videos, calibration.names)
        check_videos(videos, calibration, len(triangulated.points), options.fps)

    if options.spatiotemporal is not None:
        from jaxpose.triangulation.spatiotemporal import SpatiotemporalConfig, refine_spatiotemporal

        config = SpatiotemporalConfig(**dict(options.spatiotemporal))
        refined = refine_spatiotemporal(
            calibration.rig.astype(np.float32),
            points_2d.astype(np.float32),
            confidence.astype(np.float32),
            initial=np.asarray(triangulated.points, np.float32),
            bones=bones or None,
            config=config,
            progress=progress,
        )
        pose = dataclasses.replace(
            pose,
            points=np.asarray(refined.points, np.float64),
            error=np.asarray(refined.error, np.float64),
            ncams=np.asarray(refined.ncams),
            covariance=None,
        )
        summary["steps"].append("spatiotemporal")
        summary["spatiotemporal"] = {
            "cost_before": float(refined.cost_before),
            "cost_after": float(refined.cost_after),
            "seconds": float(refined.seconds),
            "chunks": int(len(refined.chunk_starts)),
        }

    if options.filters:
        filtered = apply_filters(
            pose.points, list(options.filters), fps=options.fps, confidence=pose.score
        )
        pose = dataclasses.replace(pose, points=np.asarray(filtered, np.float64), covariance=None)
        summary["steps"].append("filters")
        summary["filters"] = [
            dict(f) if isinstance(f, Mapping) else dataclasses.asdict(f) for f in options.filters
        ]

    # The CSV has no covariance columns (Anipose's layout); the h5 keeps them.
    outputs["csv"] = str(
        write_pose3d(out / "pose3d.csv", dataclasses.replace(pose, covariance=None))
    )
    outputs["h5"] = str(write_pose3d(out / "pose3d.h5", pose))
    if options.zarr:
        from jaxpose.io.zarr import write_zarr

        arrays = {
            "points": pose.points.astype(np.float32),
            "error": pose.error.astype(np.float32),
            "ncams": pose.ncams.astype(np.int32),
            "score": pose.score.astype(np.float32),
        }
        attrs = {
            "bodyparts": bodyparts,
            "fps": options.fps,
            "units": pose.units,
            "cameras": list(calibration.names),
        }
        outputs["zarr"] = str(write_zarr(out / "pose3d.zarr", arrays, attributes=attrs))

    if options.kinematics is not None:
        from jaxpose.kinematics import kinematics_from_config, write_kinematics_csv

        kin = kinematics_from_config(pose, fps=options.fps, **dict(options.kinematics))
        outputs["kinematics"] = str(write_kinematics_csv(out / "kinematics.csv", kin))
        summary["steps"].append("kinematics")
        summary["kinematics_columns"] = list(kin.names)

    table = reprojection_table(calibration.rig, pose.points, points_2d)
    summary["reprojection_px"] = {
        name: {
            bp: (None if not np.isfinite(v) else float(v))
            for bp, v in zip(bodyparts, row, strict=True)
        }
        for name, row in zip(calibration.names, table, strict=True)
    }
    if options.plots:
        from jaxpose.viz import plot_error_table, plot_skeleton_3d

        outputs["reprojection_png"] = str(
            plot_error_table(
                out / "plots" / "reprojection.png",
                table,
                calibration.names,
                bodyparts,
                title="Mean reprojection error per camera and keypoint",
            )
        )
        if np.isfinite(pose.points).any():
            outputs["skeleton_png"] = str(
                plot_skeleton_3d(
                    out / "plots" / "skeleton_3d.png", pose.points, bones, units=pose.units
                )
            )

    if options.videos is not None:
        from jaxpose.viz import write_overlay_video

        overlays = {}
        for c, name in enumerate(calibration.names):
            if name not in videos:
                continue
            camera = _camera(calibration, c)
            overlays[name] = str(
                write_overlay_video(
                    out / "overlays" / f"{name}.mp4",
                    _video_frames(videos[name], options.overlay_frames),
                    camera,
                    pose.points,
                    bones,
                    fps=options.fps,
                    detections=points_2d[:, c],
                    label=name,
                )
            )
        outputs["overlays"] = overlays
    return summary


def _camera(calibration: Calibration, index: int):
    import jax

    return jax.tree_util.tree_map(lambda a: np.asarray(a)[index], calibration.rig)


def write_summary(out: Path, summary: dict) -> None:
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
