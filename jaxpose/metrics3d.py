"""3D reconstruction metrics against ground truth, as pose-estimation papers report them.

* MPJPE: mean Euclidean distance between estimated and true keypoints (mm), over the points
  that were reconstructed; the fraction reconstructed is reported beside it, because a method
  can lower MPJPE by leaving hard points out.
* PA-MPJPE: the same after a per-frame Procrustes alignment (rotation, translation and scale)
  of the estimate onto the truth: it measures the shape of the pose, not where it is.
* PCK-3D: the fraction of *all* true keypoints (missing estimates count as misses) within a
  distance threshold.
* Reprojection error per camera and keypoint: how far the reconstruction, projected into each
  camera, lies from that camera's 2D observations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "joint_errors",
    "procrustes_align",
    "reconstruction_metrics",
    "reprojection_table",
]


def _check(estimate: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    estimate = np.asarray(estimate, np.float64)
    truth = np.asarray(truth, np.float64)
    if estimate.shape != truth.shape or estimate.ndim != 3 or estimate.shape[-1] != 3:
        raise ValueError(
            f"estimate {estimate.shape} and truth {truth.shape} must both be (frame, kpt, 3)"
        )
    return estimate, truth


def joint_errors(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(frame, kpt) distances in the points' units; NaN where either point is missing."""
    estimate, truth = _check(estimate, truth)
    return np.linalg.norm(estimate - truth, axis=-1)


def procrustes_align(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Align each frame's estimate to its truth by a similarity transform (Umeyama).

    Args:
        estimate, truth: (frame, kpt, 3); only keypoints finite in both take part.

    Returns:
        (frame, kpt, 3) aligned estimate; a frame with fewer than 3 shared points is NaN.
    """
    estimate, truth = _check(estimate, truth)
    out = np.full_like(estimate, np.nan)
    for f in range(len(estimate)):
        ok = np.isfinite(estimate[f]).all(-1) & np.isfinite(truth[f]).all(-1)
        if ok.sum() < 3:
            continue
        x, y = estimate[f, ok], truth[f, ok]
        mx, my = x.mean(0), y.mean(0)
        xc, yc = x - mx, y - my
        u, s, vt = np.linalg.svd(yc.T @ xc)
        d = np.sign(np.linalg.det(u @ vt))
        sign = np.array([1.0, 1.0, d])
        rotation = u @ np.diag(sign) @ vt
        var = np.sum(xc**2)
        scale = np.sum(s * sign) / var if var > 0 else 1.0
        out[f] = scale * (estimate[f] - mx) @ rotation.T + my
    return out


def reconstruction_metrics(
    estimate: np.ndarray,
    truth: np.ndarray,
    *,
    bodyparts: Sequence[str] | None = None,
    pck_thresholds_mm: Sequence[float] = (1.0, 2.0, 5.0, 10.0),
) -> dict:
    """MPJPE, median, PA-MPJPE, PCK-3D and per-keypoint MPJPE of an estimate against the truth.

    Only keypoints whose truth is known count; a missing estimate counts against the
    `reconstructed` fraction and as a miss in PCK, and is left out of the distance means.

    Returns:
        A JSON-ready dict.
    """
    estimate, truth = _check(estimate, truth)
    known = np.isfinite(truth).all(-1)
    errors = joint_errors(estimate, truth)
    found = known & np.isfinite(errors)
    e = errors[found]
    aligned = procrustes_align(estimate, truth)
    pa = np.linalg.norm(aligned - truth, axis=-1)
    pa = pa[np.isfinite(pa) & found]
    names = list(bodyparts) if bodyparts is not None else [str(k) for k in range(truth.shape[1])]
    per_kpt = {}
    for k, name in enumerate(names):
        ek = errors[found[:, k], k]
        per_kpt[name] = float(np.mean(ek)) if ek.size else None
    total = max(int(known.sum()), 1)
    return {
        "mpjpe_mm": float(np.mean(e)) if e.size else None,
        "median_mm": float(np.median(e)) if e.size else None,
        "p95_mm": float(np.percentile(e, 95)) if e.size else None,
        "pa_mpjpe_mm": float(np.mean(pa)) if pa.size else None,
        "reconstructed": float(found.sum() / total),
        "pck": {f"{t:g}mm": float(np.sum(errors[found] <= t) / total) for t in pck_thresholds_mm},
        "per_keypoint_mm": per_kpt,
    }


def reprojection_table(rig, points_3d: np.ndarray, points_2d: np.ndarray) -> np.ndarray:
    """Mean reprojection error per camera and keypoint.

    Args:
        rig: cameras with a leading `cam` axis.
        points_3d: (frame, kpt, 3) reconstruction.
        points_2d: (frame, cam, kpt, 2) the observations (NaN where none).

    Returns:
        (cam, kpt) mean distance in px over the frames where both exist; NaN where never.
    """
    from jaxpose.geometry.camera import project_rig

    points_3d = np.asarray(points_3d, np.float64)
    points_2d = np.asarray(points_2d, np.float64)
    if points_2d.ndim != 4 or points_2d.shape[0] != points_3d.shape[0]:
        raise ValueError(
            f"points_2d must be (frame, cam, kpt, 2) matching points_3d {points_3d.shape}, "
            f"got {points_2d.shape}"
        )
    uv = np.array(project_rig(rig, np.nan_to_num(points_3d)), np.float64)  # (cam, frame, kpt, 2)
    uv[:, ~np.isfinite(points_3d).all(-1)] = np.nan
    d = np.linalg.norm(uv.transpose(1, 0, 2, 3) - points_2d, axis=-1)  # (frame, cam, kpt)
    with np.errstate(invalid="ignore"):
        count = np.isfinite(d).sum(0)
        table = np.where(count > 0, np.nansum(d, 0) / np.maximum(count, 1), np.nan)
    return table
