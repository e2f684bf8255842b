"""Calibrate a rig from board detections: initialise, bundle-adjust, choose the world frame,
check every camera, and package the result as an Anipose-compatible `Calibration`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np

from jaxpose.calibration.bundle_adjust import (
    SLOT,
    SLOTS,
    BundleAdjustOptions,
    BundleAdjustResult,
    bundle_adjust,
    transform_world,
    vectors_to_rig,
)
from jaxpose.calibration.init import CalibrationInputError, initialise
from jaxpose.io.calibration import Calibration


@dataclasses.dataclass(frozen=True)
class CalibrationReport:
    """Quality of a calibration, per camera.

    Attributes:
        names: camera names.
        mean_error_px: (cam,) mean reprojection error.
        p95_error_px: (cam,) 95th percentile reprojection error.
        frames_seen: (cam,) board frames used per camera.
        corners_seen: (cam,) corners used per camera.
        coverage: (cam,) fraction of a 6x6 grid of image cells where corners were seen.
        shared_frames: (cam, cam) frames where both cameras saw the board.
        warnings: plain-language warnings about under-constrained cameras.
    """

    names: tuple[str, ...]
    mean_error_px: np.ndarray
    p95_error_px: np.ndarray
    frames_seen: np.ndarray
    corners_seen: np.ndarray
    coverage: np.ndarray
    shared_frames: np.ndarray
    warnings: tuple[str, ...]

    def table(self, standard_errors: np.ndarray | None = None) -> str:
        header = ["camera", "mean px", "p95 px", "frames", "corners", "coverage"]
        if standard_errors is not None:
            header += ["se f px", "se c px"]
        rows = []
        for i, n in enumerate(self.names):
            row = [
                n,
                f"{self.mean_error_px[i]:.3f}",
                f"{self.p95_error_px[i]:.3f}",
                str(self.frames_seen[i]),
                str(self.corners_seen[i]),
                f"{100 * self.coverage[i]:.0f}%",
            ]
            if standard_errors is not None:
                row += [
                    f"{standard_errors[i, SLOT['fx']]:.2f}",
                    f"{max(standard_errors[i, SLOT['cx']], standard_errors[i, SLOT['cy']]):.2f}",
                ]
            rows.append(row)
        widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
        lines = [
            "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
            "  ".join("-" * w for w in widths),
        ]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    calibration: Calibration
    adjustment: BundleAdjustResult
    report: CalibrationReport
    corners: np.ndarray  # (frame, cam, corner, 2) the detections used


def coverage_fraction(points: np.ndarray, image_size: Sequence[float], grid: int = 6) -> float:
    """Fraction of a grid x grid partition of the image holding at least one point."""
    pts = points[np.all(np.isfinite(points), -1)]
    if pts.size == 0:
        return 0.0
    w, h = float(image_size[0]), float(image_size[1])
    ix = np.clip((pts[:, 0] / w * grid).astype(int), 0, grid - 1)
    iy = np.clip((pts[:, 1] / h * grid).astype(int), 0, grid - 1)
    return len(set(zip(ix.tolist(), iy.tolist(), strict=True))) / grid**2


def make_report(
    names: Sequence[str],
    corners: np.ndarray,
    image_sizes: np.ndarray,
    ba: BundleAdjustResult,
    *,
    min_frames: int = 10,
    min_coverage: float = 0.3,
    min_shared: int = 5,
) -> CalibrationReport:
    num_cams = len(names)
    err = ba.per_camera_error()
    seen = np.zeros((corners.shape[0], num_cams), bool)
    seen[ba.observation_frame, ba.observation_camera] = True
    frames_seen = seen.sum(0)
    corners_seen = np.bincount(ba.observation_camera, minlength=num_cams)
    coverage = np.array([coverage_fraction(corners[:, c], image_sizes[c]) for c in range(num_cams)])
    shared = (seen[:, :, None] & seen[:, None, :]).sum(0)
    warnings = []
    for c, n in enumerate(names):
        if frames_seen[c] < min_frames:
            warnings.append(
                f"camera {n!r} saw the board in only {frames_seen[c]} frames (fewer than "
                f"{min_frames}): its intrinsics are poorly constrained; record more board views."
            )
        if coverage[c] < min_coverage:
            warnings.append(
                f"camera {n!r}: corners cover only {100 * coverage[c]:.0f}% of the image "
                "(a 6x6 grid); distortion near the edges is extrapolated. Move the board into "
                "the corners and edges of this camera's view."
            )
        others = np.delete(shared[c], c)
        if num_cams > 1 and others.max(initial=0) < min_shared:
            warnings.append(
                f"camera {n!r} shares at most {others.max(initial=0)} board frames with any other "
                "camera: its position relative to the rig is weakly determined."
            )
        if np.isfinite(err[c, 0]) and err[c, 0] > 2.0:
            warnings.append(
                f"camera {n!r}: mean reprojection error {err[c, 0]:.2f} px is high; check for "
                "mis-detections, a wrong board size, or rolling-shutter motion blur."
            )
    return CalibrationReport(
        names=tuple(names),
        mean_error_px=err[:, 0],
        p95_error_px=err[:, 1],
        frames_seen=frames_seen,
        corners_seen=corners_seen,
        coverage=coverage,
        shared_frames=shared,
        warnings=tuple(warnings),
    )


def calibrate(
    board,
    corners: np.ndarray,
    image_sizes: np.ndarray,
    names: Sequence[str],
    *,
    options: BundleAdjustOptions | None = None,
    known_intrinsics: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    world: str | int = "camera",
    seed: int = 0,
    min_corners: int = 6,
    reject_outliers: bool = True,
    outlier_factor: float = 5.0,
    outlier_min_px: float = 1.0,
    callback=None,
) -> CalibrationResult:
    """Calibrate a rig from synchronised board detections.

    Args:
        board: a `Board` (its `corners()` give the object points in mm).
        corners: (frame, cam, corner, 2) detections, NaN where a corner was not found.
        image_sizes: (cam, 2) width, height of each camera.
        names: camera names.
        options: bundle adjustment options (freeze masks, ties, robust loss).
        known_intrinsics: {camera name: (K, distortion)} to fix those cameras' intrinsics.
        world: "camera" (the reference camera's frame, default) or a frame index whose board
            pose becomes the world frame (board on the floor).
        seed: recorded in the metadata; the procedure itself has no randomness.
        min_corners: views with fewer corners are not used for initialisation.
        reject_outliers: after a first bundle adjustment, drop corners whose reprojection error
            exceeds max(outlier_min_px, outlier_factor x the median error), then adjust again.
        outlier_factor, outlier_min_px: that threshold.
        callback: bundle adjustment progress callback(iteration, cost, damping).

    Raises:
        CalibrationInputError: a camera with no detections, too few views, or not connected to
            the rest of the rig through shared board views.
    """
    options = options or BundleAdjustOptions()
    corners = np.asarray(corners, np.float64)
    image_sizes = np.asarray(image_sizes, np.float64)
    names = tuple(names)
    num_frames, num_cams, num_corners = corners.shape[:3]
    object_points = board.corners()
    if num_corners != len(object_points):
        raise CalibrationInputError(
            f"detections have {num_corners} corners per frame but the board {board} has "
            f"{len(object_points)}: the board config does not match the detections."
        )
    if image_sizes.shape != (num_cams, 2) or len(names) != num_cams:
        raise ValueError(f"need one image size and one name per camera ({num_cams})")
    # corners outside the image mean a wrong image size (or detections from another camera)
    for c in range(num_cams):
        pts = corners[:, c][np.all(np.isfinite(corners[:, c]), -1)]
        if pts.size and (pts.max(0) > image_sizes[c] + 1).any():
            raise CalibrationInputError(
                f"camera {names[c]!r}: detected corners reach {pts.max(0).round(1).tolist()} px, "
                f"outside its image size {image_sizes[c].astype(int).tolist()}: the image sizes "
                "do not match the detections."
            )
    known = {}
    for name, (k, d) in (known_intrinsics or {}).items():
        if name not in names:
            raise CalibrationInputError(
                f"known intrinsics for unknown camera {name!r}; cameras: {list(names)}"
            )
        known[names.index(name)] = (np.asarray(k), np.asarray(d))
    if known:
        options = dataclasses.replace(
            options, fix_intrinsics=tuple(sorted(set(options.fix_intrinsics) | set(known)))
        )
    init = initialise(
        object_points,
        corners,
        image_sizes,
        names,
        known_intrinsics=known,
        reference=options.reference,
        min_corners=min_corners,
        fix_k3="k3" in options.fix,
    )
    start = np.concatenate(
        [
            init.rotation,
            init.translation,
            init.intrinsics[:, [0, 1], [0, 1]],
            init.intrinsics[:, [0, 1], [2, 2]],
            init.intrinsics[:, 0, 1:2],
            init.distortion,
        ],
        1,
    )
    ba = bundle_adjust(
        object_points, corners, start, init.board_poses, options=options, callback=callback
    )
    rejected = np.zeros(num_cams, int)
    if reject_outliers:
        # Corner detectors have heavy tails (oblique or blurred views): a robust loss limits
        # their pull, but a second pass without them removes it.
        err = np.linalg.norm(ba.residuals, axis=-1)
        threshold = max(outlier_min_px, outlier_factor * float(np.median(err)))
        bad = err > threshold
        if bad.any():
            corners = corners.copy()
            corners[
                ba.observation_frame[bad], ba.observation_camera[bad], ba.observation_corner[bad]
            ] = np.nan
            rejected = np.bincount(ba.observation_camera[bad], minlength=num_cams)
            ba = bundle_adjust(
                object_points,
                corners,
                ba.cameras,
                ba.board_poses,
                options=options,
                callback=callback,
            )
    cams = ba.cameras
    if world != "camera":
        frame = int(world)
        if not np.all(np.isfinite(ba.board_poses[frame])):
            raise CalibrationInputError(
                f"world frame: board frame {frame} was not seen well enough to define the world; "
                "pick a frame where the board lies flat in view of at least one camera."
            )
        # the board's frame becomes the world: X_board = R_wb^T (X_world - t_wb)
        r_wb = cv2.Rodrigues(ba.board_poses[frame, :3])[0]
        cams = transform_world(cams, r_wb.T, -r_wb.T @ ba.board_poses[frame, 3:])
    report = make_report(names, corners, image_sizes, ba)
    rig = vectors_to_rig(cams, image_sizes)
    se = ba.standard_errors
    metadata = {
        "software": "jaxpose",
        "board": dataclasses.asdict(board) if dataclasses.is_dataclass(board) else str(board),
        "seed": seed,
        "world": "camera " + names[options.reference]
        if world == "camera"
        else f"board frame {world}",
        "units": "mm",
        "error": float(np.mean(np.linalg.norm(ba.residuals, axis=-1))),
        "per_camera": {
            n: {
                "mean_error_px": float(report.mean_error_px[i]),
                "p95_error_px": float(report.p95_error_px[i]),
                "frames": int(report.frames_seen[i]),
                "standard_errors": {s: float(se[i, j]) for j, s in enumerate(SLOTS)},
            }
            for i, n in enumerate(names)
        },
        "iterations": int(ba.solver.iterations),
        "outliers_rejected": {n: int(rejected[i]) for i, n in enumerate(names)},
        "converged": bool(ba.solver.converged),
    }
    return CalibrationResult(Calibration(rig, names, metadata), ba, report, corners)
