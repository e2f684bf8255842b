"""Compare a calibration with ground truth: align world frames, then measure camera errors.

A calibration's world frame is a free choice (the reference camera, a board on the floor), so
before comparing camera poses with the truth the estimate is moved by the rigid transform that
best maps its camera centres onto the true ones (Kabsch; no scale: the board fixes it).
"""

from __future__ import annotations

import cv2
import numpy as np

from jaxpose.calibration.bundle_adjust import (
    camera_centres,
    cameras_to_vectors,
    transform_world,
    vectors_to_rig,
)
from jaxpose.io.calibration import Calibration


def rigid_align(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R (3, 3), t (3,) minimising sum |R src_i + t - dst_i|^2."""
    ms, md = src.mean(0), dst.mean(0)
    u, _, vt = np.linalg.svd((src - ms).T @ (dst - md))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, md - r @ ms


def align_to(estimate: Calibration, truth: Calibration) -> Calibration:
    """The estimate moved into the truth's world frame (matching cameras by name)."""
    truth = truth.subset(estimate.names)
    est = cameras_to_vectors(estimate.rig)
    tru = cameras_to_vectors(truth.rig)
    r, t = rigid_align(camera_centres(est)[0], camera_centres(tru)[0])
    rig = vectors_to_rig(transform_world(est, r, t), np.asarray(estimate.rig.image_size))
    meta = dict(estimate.metadata)
    meta["world"] = "aligned to the ground truth by the rigid transform of camera centres"
    return Calibration(rig, estimate.names, meta)


def calibration_errors(estimate: Calibration, truth: Calibration) -> dict[str, float]:
    """Worst-camera errors after alignment: focal (%), principal point (px), rotation (deg),
    camera centre (mm), and k1 (absolute)."""
    aligned = align_to(estimate, truth)
    truth = truth.subset(estimate.names)
    est = cameras_to_vectors(aligned.rig)
    tru = cameras_to_vectors(truth.rig)
    ce, re = camera_centres(est)
    ct, rt = camera_centres(tru)
    angles = [
        np.degrees(np.linalg.norm(cv2.Rodrigues(re[i] @ rt[i].T)[0])) for i in range(len(est))
    ]
    return {
        "focal_pct": float(100 * np.abs(est[:, 6:8] / tru[:, 6:8] - 1).max()),
        "principal_px": float(np.abs(est[:, 8:10] - tru[:, 8:10]).max()),
        "rotation_deg": float(max(angles)),
        "centre_mm": float(np.linalg.norm(ce - ct, axis=1).max()),
        "k1_abs": float(np.abs(est[:, 11] - tru[:, 11]).max()),
    }
