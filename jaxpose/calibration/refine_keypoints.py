"""Refine a board calibration with the animal itself: bundle adjustment over cameras and
triangulated keypoints, using only confident detections.

The board fixes the metric scale; keypoints alone cannot (a rig twice as large seeing an animal
twice as large gives the same images). After the solve, camera centres and points are
rescaled about the reference camera so that the rig keeps the board calibration's size.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxpose.calibration.bundle_adjust import (
    SLOT,
    BundleAdjustOptions,
    build_slot_map,
    camera_centres,
    cameras_to_vectors,
    vector_camera,
    vectors_to_rig,
)
from jaxpose.geometry.camera import project
from jaxpose.io.calibration import Calibration
from jaxpose.optim.least_squares import solve_schur_lm
from jaxpose.triangulation.api import Triangulator


def point_residual(camera_params, point, pixel):
    """Reprojection residual (2,) of one keypoint view."""
    return project(vector_camera(camera_params), point) - pixel


@dataclasses.dataclass(frozen=True)
class KeypointRefinement:
    calibration: Calibration
    points_used: int
    views_used: int
    error_before_px: float
    error_after_px: float
    scale_correction: float


def refine_with_keypoints(
    calibration: Calibration,
    points_2d: np.ndarray,
    confidence: np.ndarray,
    *,
    min_confidence: float = 0.9,
    refine_intrinsics: bool = False,
    reference: int = 0,
    loss: str = "huber",
    loss_scale_px: float = 3.0,
    max_points: int = 20000,
    seed: int = 0,
    triangulator: Triangulator | None = None,
) -> KeypointRefinement:
    """Refine extrinsics (and optionally intrinsics) from synchronised keypoint detections.

    Args:
        calibration: the board calibration to start from (its scale is kept).
        points_2d: (frame, cam, kpt, 2) detections, NaN where missing.
        confidence: (frame, cam, kpt) detection confidence.
        min_confidence: views below this confidence are not used.
        refine_intrinsics: also refine focal, principal point, k1, k2, p1, p2.
        reference: camera whose pose stays fixed.
        loss, loss_scale_px: robust loss on each view's reprojection error.
        max_points: at most this many 3D points (a seeded, reproducible subsample).
        seed: for that subsample.
        triangulator: for the starting 3D points (default: robust + refine).
    """
    points_2d = np.asarray(points_2d, np.float64)
    conf = np.where(np.isfinite(points_2d[..., 0]), np.asarray(confidence, np.float64), 0.0)
    conf = np.where(conf >= min_confidence, conf, 0.0)
    triangulator = triangulator or Triangulator()
    tri = triangulator(
        calibration.rig.astype(np.float32), points_2d.astype(np.float32), conf.astype(np.float32)
    )
    pts = np.asarray(tri.points, np.float64)  # (frame, kpt, 3)
    used = np.asarray(tri.used)  # (frame, kpt, cam)
    ok = np.all(np.isfinite(pts), -1) & (used.sum(-1) >= 2)
    f_idx, k_idx = np.nonzero(ok)
    if len(f_idx) < 10:
        raise ValueError(
            f"only {len(f_idx)} keypoints are seen confidently (>= {min_confidence}) by two or "
            "more cameras; lower min_confidence or use more frames"
        )
    if len(f_idx) > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(len(f_idx), max_points, replace=False))
        f_idx, k_idx = f_idx[pick], k_idx[pick]
    # observations: every used view of every selected point
    block, cam = np.nonzero(used[f_idx, k_idx])
    pixels = points_2d[f_idx[block], cam, k_idx[block]]
    weights = conf[f_idx[block], cam, k_idx[block]]

    start = cameras_to_vectors(calibration.rig)
    fix = ("skew", "k3") if refine_intrinsics else ()
    opts = BundleAdjustOptions(
        fix=fix,
        reference=reference,
        fix_intrinsics=() if refine_intrinsics else tuple(range(start.shape[0])),
    )
    slot_map = build_slot_map(start.shape[0], opts)
    with jax.enable_x64(True):
        res = solve_schur_lm(
            point_residual,
            start,
            pts[f_idx, k_idx],
            slot_map=slot_map,
            entity=cam,
            block=block,
            data=pixels,
            weights=weights,
            loss=loss,
            loss_scale=loss_scale_px,
            max_iterations=50,
        )
    before = np.linalg.norm(_reproject(start, pts[f_idx, k_idx][block], cam) - pixels, axis=-1)
    refined = res.shared.copy()
    # restore the board's metric scale about the reference camera
    c0, _ = camera_centres(start)
    c1, rot1 = camera_centres(refined)
    d0 = np.linalg.norm(c0 - c0[reference], axis=-1).sum()
    d1 = np.linalg.norm(c1 - c1[reference], axis=-1).sum()
    scale = d0 / d1 if d1 > 0 else 1.0
    c_scaled = c1[reference] + scale * (c1 - c1[reference])
    refined[:, 3:6] = -np.einsum("cij,cj->ci", rot1, c_scaled)
    after = np.linalg.norm(res.residuals, axis=-1)
    rig = vectors_to_rig(refined, np.asarray(calibration.rig.image_size))
    meta = dict(calibration.metadata)
    meta["keypoint_refinement"] = {
        "points": int(len(f_idx)),
        "views": int(len(block)),
        "min_confidence": float(min_confidence),
        "refine_intrinsics": bool(refine_intrinsics),
        "error_before_px": float(np.mean(before)),
        "error_after_px": float(np.mean(after)),
        "scale_correction": float(scale),
    }
    return KeypointRefinement(
        calibration=Calibration(rig, calibration.names, meta),
        points_used=int(len(f_idx)),
        views_used=int(len(block)),
        error_before_px=float(np.mean(before)),
        error_after_px=float(np.mean(after)),
        scale_correction=float(scale),
    )


def _reproject(vectors: np.ndarray, points: np.ndarray, cam: np.ndarray) -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(jax.vmap(point_residual)(vectors[cam], points, np.zeros((len(cam), 2))))


__all__ = ["KeypointRefinement", "refine_with_keypoints", "SLOT"]
