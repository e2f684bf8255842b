"""Pictures of 3D results: skeleton overlays on each camera's video, 3D skeleton plots, error maps.

People check a reconstruction by looking at it: the reprojected skeleton should sit on the
animal in every camera, the 3D skeleton should look like the animal, and the reprojection
error table should have no camera or body part that stands out. These functions make those
pictures from the arrays the pipeline already has.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from jaxpose.geometry.camera import Camera
from jaxpose.io.atomic import atomic_path

__all__ = [
    "keypoint_colours",
    "draw_skeleton",
    "write_overlay_video",
    "plot_skeleton_3d",
    "plot_error_table",
    "plot_trajectories",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def keypoint_colours(num_keypoints: int) -> np.ndarray:
    """(kpt, 3) BGR uint8 colours spread around the hue circle, the same in every picture."""
    hues = (np.arange(num_keypoints) * 180 // max(num_keypoints, 1)).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 220), np.full_like(hues, 255)], -1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]


def draw_skeleton(
    image: np.ndarray,
    points_2d: np.ndarray,
    edges: Sequence[tuple[int, int]],
    *,
    detections: np.ndarray | None = None,
    radius: int = 3,
    thickness: int = 1,
) -> np.ndarray:
    """Draw a skeleton (and optionally the 2D detections as crosses) on a copy of a BGR image.

    Args:
        image: (H, W, 3) uint8 BGR (or (H, W) grey).
        points_2d: (kpt, 2) pixels; NaN points and their bones are skipped.
        edges: bones as keypoint index pairs.
        detections: (kpt, 2) the network's 2D predictions, drawn as crosses in the same colours,
            so a wrong view stands out from the reprojection.
    """
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    colours = keypoint_colours(len(points_2d))
    shift = 4  # sub-pixel drawing: coordinates in 1/16 px
    scale = 1 << shift

    def ok(p):
        return np.all(np.isfinite(p)) and np.all(np.abs(p) < 1e5)

    for a, b in edges:
        if ok(points_2d[a]) and ok(points_2d[b]):
            pa = tuple(int(round(v * scale)) for v in points_2d[a])
            pb = tuple(int(round(v * scale)) for v in points_2d[b])
            cv2.line(canvas, pa, pb, (230, 230, 230), thickness, cv2.LINE_AA, shift)
    for k, p in enumerate(points_2d):
        if ok(p):
            centre = tuple(int(round(v * scale)) for v in p)
            cv2.circle(canvas, centre, radius * scale, colours[k].tolist(), -1, cv2.LINE_AA, shift)
    if detections is not None:
        for k, p in enumerate(detections):
            if ok(p):
                centre = tuple(int(round(v)) for v in p)
                cv2.drawMarker(
                    canvas, centre, colours[k].tolist(), cv2.MARKER_CROSS, 2 * radius + 3, 1
                )
    return canvas


def write_overlay_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    camera: Camera,
    points_3d: np.ndarray,
    edges: Sequence[tuple[int, int]],
    *,
    fps: float,
    detections: np.ndarray | None = None,
    label: str | None = None,
) -> Path:
    """Write one camera's video with the 3D skeleton projected onto it.

    Args:
        path: output .mp4 (written atomically).
        frames: the camera's frames in order, (H, W, 3) uint8 BGR each.
        camera: that camera (its own pixels, as calibrated).
        points_3d: (frame, kpt, 3) world points; NaN where not reconstructed.
        edges: bones.
        fps: frame rate of the output.
        detections: (frame, kpt, 2) 2D predictions of this camera, drawn as crosses.
        label: text in the top-left corner (e.g. camera name).

    Returns:
        The path written.
    """
    from jaxpose.geometry.camera import project

    points_3d = np.asarray(points_3d, np.float64)
    uv = np.asarray(project(camera, np.nan_to_num(points_3d)), np.float64)
    uv[~np.all(np.isfinite(points_3d), -1)] = np.nan
    path = Path(path)
    writer = None
    written = 0
    with atomic_path(path) as tmp:
        try:
            for f, frame in enumerate(frames):
                if f >= len(points_3d):
                    break
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise OSError(f"OpenCV could not open a video writer for {path}")
                det = None if detections is None else detections[f]
                canvas = draw_skeleton(frame, uv[f], edges, detections=det)
                if label:
                    cv2.putText(
                        canvas,
                        f"{label}  frame {f}",
                        (6, 16),
                        cv2.FONT_HERSHEY_SIMPLEX,
                        0.45,
                        (255, 255, 255),
                        1,
                        cv2.LINE_AA,
                    )
                writer.write(canvas)
                written += 1
        finally:
            if writer is not None:
                writer.release()
        if written == 0:
            raise ValueError(f"no frames to write to {path}")
    return path


def plot_skeleton_3d(
    path: str | os.PathLike,
    points_3d: np.ndarray,
    edges: Sequence[tuple[int, int]],
    *,
    truth: np.ndarray | None = None,
    frames: Sequence[int] | None = None,
    title: str = "3D skeleton",
    units: str = "mm",
) -> Path:
    """Plot the 3D skeleton at a few frames (and the ground truth, dashed, when known).

    Args:
        points_3d: (frame, kpt, 3).
        truth: (frame, kpt, 3) ground truth, or None.
        frames: which frames to draw (default: four spread over the recording).
    """
    plt = _pyplot()
    points_3d = np.asarray(points_3d, np.float64)
    n = len(points_3d)
    frames = (
        list(frames) if frames is not None else sorted({int(i) for i in np.linspace(0, n - 1, 4)})
    )
    colours = keypoint_colours(points_3d.shape[1])[:, ::-1] / 255.0
    fig = plt.figure(figsize=(4.2 * len(frames), 4.4))
    finite = points_3d[np.isfinite(points_3d).all(-1)]
    lo, hi = (finite.min(0), finite.max(0)) if len(finite) else (np.zeros(3), np.ones(3))
    centre, half = (lo + hi) / 2, max(float(np.max(hi - lo)) / 2, 1e-6)
    for i, f in enumerate(frames):
        ax = fig.add_subplot(1, len(frames), i + 1, projection="3d")
        for sets, style in ((points_3d, "-"), (truth, "--")):
            if sets is None:
                continue
            p = np.asarray(sets, np.float64)[f]
            for a, b in edges:
                if np.isfinite(p[[a, b]]).all():
                    ax.plot(
                        *p[[a, b]].T, style, color="0.3" if style == "-" else "tab:green", lw=1.2
                    )
            if style == "-":
                ok = np.isfinite(p).all(-1)
                ax.scatter(*p[ok].T, c=colours[ok], s=14, depthshade=False)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_zlim(centre[2] - half, centre[2] + half)
        ax.set_title(f"frame {f}", fontsize=9)
        ax.set_xlabel(f"x ({units})", fontsize=7)
        ax.set_ylabel(f"y ({units})", fontsize=7)
        ax.set_zlabel(f"z ({units})", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title + ("  (dashed green: ground truth)" if truth is not None else ""))
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_error_table(
    path: str | os.PathLike,
    errors: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    title: str,
    units: str = "px",
) -> Path:
    """A heat map of an error table (e.g. reprojection error per camera x keypoint), annotated."""
    plt = _pyplot()
    errors = np.asarray(errors, np.float64)
    fig, ax = plt.subplots(figsize=(0.55 * len(columns) + 2.5, 0.42 * len(rows) + 1.6))
    shown = np.ma.masked_invalid(errors)
    image = ax.imshow(shown, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    top = np.nanmax(errors) if np.isfinite(errors).any() else 1.0
    for (r, c), v in np.ndenumerate(errors):
        if np.isfinite(v):
            ax.text(
                c,
                r,
                f"{v:.1f}",
                ha="center",
                va="center",
                fontsize=6,
                color="w" if v < 0.6 * top else "k",
            )
    fig.colorbar(image, ax=ax, label=units)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_trajectories(
    path: str | os.PathLike,
    series: dict[str, np.ndarray],
    *,
    fps: float,
    ylabel: str,
    title: str,
) -> Path:
    """Line plot of named time series (e.g. a keypoint's height raw vs filtered vs truth)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for name, values in series.items():
        values = np.asarray(values, np.float64)
        ax.plot(np.arange(len(values)) / fps, values, lw=1.0, label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig, plt, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
