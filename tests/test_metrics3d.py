"""3D metrics: exact values on hand-made cases, Procrustes invariance, reprojection table."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from jaxpose.metrics3d import (
    joint_errors,
    procrustes_align,
    reconstruction_metrics,
    reprojection_table,
)
from jaxpose.synth import make_study


def test_mpjpe_pck_and_missing_points():
    truth = np.zeros((2, 3, 3))
    estimate = truth.copy()
    estimate[0, 0, 0] = 3.0  # 3 mm off
    estimate[1, 2] = np.nan  # not reconstructed
    m = reconstruction_metrics(estimate, truth, bodyparts=["a", "b", "c"], pck_thresholds_mm=(1, 5))
    assert m["mpjpe_mm"] == pytest.approx(3.0 / 5)
    assert m["reconstructed"] == pytest.approx(5 / 6)
    assert m["pck"] == {"1mm": pytest.approx(4 / 6), "5mm": pytest.approx(5 / 6)}
    assert m["per_keypoint_mm"] == {"a": pytest.approx(1.5), "b": 0.0, "c": 0.0}
    with pytest.raises(ValueError, match="frame, kpt, 3"):
        joint_errors(estimate[0], truth)


def test_procrustes_removes_a_similarity_transform():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(4, 10, 3)) * 20
    r = cv2.Rodrigues(np.array([0.3, -0.2, 0.5]))[0]
    moved = 1.3 * truth @ r.T + np.array([5.0, -2.0, 7.0])
    aligned = procrustes_align(moved, truth)
    np.testing.assert_allclose(aligned, truth, atol=1e-9)
    m = reconstruction_metrics(moved, truth)
    assert m["pa_mpjpe_mm"] < 1e-9 < m["mpjpe_mm"]


def test_reprojection_table_is_zero_for_the_truth_and_sees_a_bad_camera():
    study = make_study(
        num_cameras=3, num_frames=4, num_board_frames=0, seed=0, occlusion_fraction=0
    )
    observed = study.points_2d_true.copy()
    observed[:, 2, 1] += [4.0, 3.0]  # camera 2, keypoint 1 is 5 px off
    table = reprojection_table(study.calibration.rig, study.points_3d, observed)
    assert table.shape == (3, study.points_3d.shape[1])
    assert table[2, 1] == pytest.approx(5.0, abs=1e-3)  # float32 projection
    others = np.delete(table.ravel(), 2 * table.shape[1] + 1)
    assert np.nanmax(others) < 1e-3
