"""Calibration: initialisation, bundle adjustment, freeze masks, world frame, real stereo data."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.io

from jaxpose.calibration.bundle_adjust import (
    SLOT,
    BundleAdjustOptions,
    build_slot_map,
    cameras_to_vectors,
)
from jaxpose.calibration.calibrate import calibrate
from jaxpose.calibration.init import CalibrationInputError
from jaxpose.synth import make_rig
from jaxpose.synth.board import Board, board_trajectory
from jaxpose.synth.board import board_observations as observe_board
from tests.conftest import data_path

BOARD = Board(
    kind="charuco", squares=(10, 7), square_mm=30.0, marker_mm=22.0, dictionary="DICT_4X4_250"
)


def synthetic(num_cameras=3, frames=120, noise=0.3, seed=1):
    cal = make_rig(num_cameras, seed=seed)
    poses = board_trajectory(BOARD, frames, seed=seed + 1, rig=cal)
    uv, _ = observe_board(BOARD, poses, cal, noise_px=noise, seed=seed + 2)
    return cal, np.asarray(uv), np.asarray(cal.rig.image_size)


def relative_errors(truth_rig, estimate, reference=0, same_frame=False):
    """Errors of an estimate (cam, 16) expressed in the reference camera's frame (or compared
    directly when both are in the same world frame)."""
    truth = cameras_to_vectors(truth_rig)
    rt = np.stack([cv2.Rodrigues(v[:3])[0] for v in truth])
    re = np.stack([cv2.Rodrigues(v[:3])[0] for v in estimate])
    r0, t0 = rt[reference], truth[reference, 3:6]
    if same_frame:
        r0, t0 = np.eye(3), np.zeros(3)
    centres_t = -np.einsum("cji,cj->ci", rt, truth[:, 3:6]) @ r0.T + t0
    centres_e = -np.einsum("cji,cj->ci", re, estimate[:, 3:6])
    rot_t = np.einsum("cij,jk->cik", rt, r0.T)
    angles = [
        np.degrees(np.linalg.norm(cv2.Rodrigues(re[i] @ rot_t[i].T)[0])) for i in range(len(truth))
    ]
    return {
        "focal_rel": np.abs(estimate[:, 6:8] / truth[:, 6:8] - 1).max(),
        "principal_px": np.abs(estimate[:, 8:10] - truth[:, 8:10]).max(),
        "centre_mm": np.linalg.norm(centres_t - centres_e, axis=1).max(),
        "rotation_deg": max(angles),
    }


@pytest.fixture(scope="module")
def rig3():
    return synthetic()


@pytest.fixture(scope="module")
def result3(rig3):
    cal, uv, sizes = rig3
    return calibrate(BOARD, uv, sizes, cal.names)


def test_synthetic_rig_recovered(rig3, result3):
    cal, _, _ = rig3
    err = relative_errors(cal.rig, result3.adjustment.cameras)
    print(f"synthetic 3-camera rig (geometric corners, 0.3 px noise): {err}")
    # 120 frames is a small data set: the bounds are loose, and the intrinsics must agree with
    # the truth within 4 of their own standard errors (the uncertainty is honest).
    assert err["focal_rel"] < 0.002
    assert err["principal_px"] < 3.0
    assert err["centre_mm"] < 2.0
    assert err["rotation_deg"] < 0.2
    truth = cameras_to_vectors(cal.rig)
    est, se = result3.adjustment.cameras, result3.adjustment.standard_errors
    for name in ("fx", "fy", "cx", "cy", "k1", "k2"):
        i = SLOT[name]
        assert np.all(np.abs(est[:, i] - truth[:, i]) < 4 * se[:, i] + 1e-9), name
    assert np.all(result3.report.mean_error_px < 0.5)
    assert result3.calibration.metadata["converged"]


def test_same_input_same_result(rig3, result3):
    cal, uv, sizes = rig3
    again = calibrate(BOARD, uv, sizes, cal.names)
    # acceptance: the same result to 1e-6 (summation order in threaded scatter-adds may differ
    # in the last bits)
    np.testing.assert_allclose(again.adjustment.cameras, result3.adjustment.cameras, atol=1e-6)


def test_standard_errors_scale_with_noise(rig3, result3):
    cal, _, sizes = synthetic(noise=0.6)
    cal2, uv2, _ = synthetic(noise=0.6)
    noisier = calibrate(BOARD, uv2, sizes, cal2.names)
    se1 = result3.adjustment.standard_errors[:, SLOT["fx"]]
    se2 = noisier.adjustment.standard_errors[:, SLOT["fx"]]
    assert np.all(se1 > 0)
    np.testing.assert_allclose(se2 / se1, 2.0, rtol=0.25)
    # frozen parameters have no uncertainty; the reference camera's extrinsics are frozen
    assert np.all(result3.adjustment.standard_errors[0, :6] == 0)
    assert np.all(result3.adjustment.standard_errors[:, SLOT["skew"]] == 0)


def test_known_intrinsics_are_kept(rig3):
    cal, uv, sizes = rig3
    cam1 = cal.rig[1]
    (fx, fy), (cx, cy) = np.asarray(cam1.focal), np.asarray(cam1.principal_point)
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    res = calibrate(
        BOARD,
        uv,
        sizes,
        cal.names,
        known_intrinsics={cal.names[1]: (k, np.asarray(cam1.distortion))},
    )
    got = res.adjustment.cameras[1]
    np.testing.assert_array_equal(got[6:8], np.asarray(cam1.focal))
    np.testing.assert_array_equal(got[11:16], np.asarray(cam1.distortion))


def test_slot_map_ties_and_freezes():
    m = build_slot_map(3, BundleAdjustOptions(equal_focal=True, share_focal=True))
    assert len({m[c, SLOT["fx"]] for c in range(3)} | {m[c, SLOT["fy"]] for c in range(3)}) == 1
    assert np.all(m[0, :6] == -1) and np.all(m[:, SLOT["skew"]] == -1)
    m = build_slot_map(2, BundleAdjustOptions(equal_focal=True))
    assert m[0, SLOT["fx"]] == m[0, SLOT["fy"]] != m[1, SLOT["fx"]]
    with pytest.raises(ValueError, match="unknown parameters"):
        BundleAdjustOptions(fix=("k9",))


def test_equal_focal_option(rig3):
    cal, uv, sizes = rig3
    res = calibrate(BOARD, uv, sizes, cal.names, options=BundleAdjustOptions(equal_focal=True))
    cams = res.adjustment.cameras
    np.testing.assert_array_equal(cams[:, SLOT["fx"]], cams[:, SLOT["fy"]])


def test_world_on_board_frame(rig3, result3):
    cal, uv, sizes = rig3
    frame = int(np.argmax(np.all(np.isfinite(result3.adjustment.board_poses), -1)))
    res = calibrate(BOARD, uv, sizes, cal.names, world=frame)
    # the board's corners, in the new world frame, are the board's own coordinates
    rig = res.calibration.rig
    c = int(np.argmax(np.isfinite(uv[frame, :, :, 0]).sum(-1)))
    seen = np.all(np.isfinite(uv[frame, c]), -1)
    proj, _ = cv2.projectPoints(
        BOARD.corners()[seen],
        np.asarray(rig.rotation[c]),
        np.asarray(rig.translation[c]),
        np.asarray(rig[c].intrinsic_matrix()),
        np.asarray(rig.distortion[c]),
    )
    assert np.median(np.linalg.norm(proj[:, 0] - uv[frame, c, seen], axis=-1)) < 1.5


def test_camera_never_detected(rig3):
    cal, uv, sizes = rig3
    uv = uv.copy()
    uv[:, 2] = np.nan
    with pytest.raises(CalibrationInputError, match=f"camera '{cal.names[2]}'.*never detected"):
        calibrate(BOARD, uv, sizes, cal.names)


def test_camera_not_connected(rig3):
    cal, uv, sizes = rig3
    uv = uv.copy()
    both = np.isfinite(uv[:, 2, :, 0]).any(-1)
    uv[both, :2] = np.nan  # camera 2 sees the board only when no other camera does
    with pytest.raises(CalibrationInputError, match=cal.names[2]):
        calibrate(BOARD, uv, sizes, cal.names)


def test_wrong_board_size(rig3):
    cal, uv, sizes = rig3
    small = Board(
        kind="charuco", squares=(8, 7), square_mm=30.0, marker_mm=22.0, dictionary="DICT_4X4_250"
    )
    with pytest.raises(CalibrationInputError, match="board config does not match"):
        calibrate(small, uv, sizes, cal.names)


def test_image_size_mismatch(rig3):
    cal, uv, sizes = rig3
    sizes = sizes.copy()
    sizes[1] = sizes[1] / 2
    with pytest.raises(CalibrationInputError, match=f"camera '{cal.names[1]}'.*image size"):
        calibrate(BOARD, uv, sizes, cal.names)


# --- real stereo chessboard --------------------------------------------------------------------


def _stereo_detections():
    folder = data_path("opencv-stereo")
    corners = np.full((14, 2, 54, 2), np.nan)
    for i in range(14):
        for c, side in enumerate(("left", "right")):
            gray = cv2.imread(str(folder / f"{side}{i + 1:02d}.jpg"), cv2.IMREAD_GRAYSCALE)
            ok, pts = cv2.findChessboardCorners(gray, (9, 6))
            assert ok
            pts = cv2.cornerSubPix(
                gray,
                pts,
                (11, 11),
                (-1, -1),
                (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 30, 0.01),
            )
            corners[i, c] = pts.reshape(-1, 2)
    return folder, corners


CHESS = Board(kind="checkerboard", squares=(10, 7), square_mm=30.0)


def test_real_stereo_beats_opencv_stereo_calibrate():
    """Acceptance: RMS reprojection error no higher than OpenCV's stereoCalibrate on the same
    detections; baseline in mm."""
    _, corners = _stereo_detections()
    sizes = np.array([[640, 480], [640, 480]])
    res = calibrate(
        CHESS,
        corners,
        sizes,
        ["left", "right"],
        options=BundleAdjustOptions(fix=("skew",), loss="linear"),
    )
    rms = np.sqrt(np.mean(np.sum(res.adjustment.residuals**2, -1)))
    obj = [CHESS.corners().astype(np.float32)] * 14
    left = [corners[i, 0].astype(np.float32) for i in range(14)]
    right = [corners[i, 1].astype(np.float32) for i in range(14)]
    _, k1, d1, _, _ = cv2.calibrateCamera(obj, left, (640, 480), None, None)
    _, k2, d2, _, _ = cv2.calibrateCamera(obj, right, (640, 480), None, None)
    rms_cv, *_ = cv2.stereoCalibrate(
        obj, left, right, k1, d1, k2, d2, (640, 480), flags=cv2.CALIB_FIX_INTRINSIC
    )
    baseline = float(np.linalg.norm(np.asarray(res.calibration.rig[1].center())))
    print(
        f"opencv-stereo: jaxpose RMS {rms:.4f} px, OpenCV stereoCalibrate RMS {rms_cv:.4f} px, "
        f"baseline {baseline:.2f} mm"
    )
    assert rms <= rms_cv
    assert 95 < baseline < 105


def test_real_stereo_intrinsics_within_bouguet_uncertainty():
    """With the Bouguet toolbox's own corner detections, the intrinsics fall within its stated
    uncertainty (fc_error, cc_error, about 3 sigma)."""
    folder, corners = _stereo_detections()
    bouguet = corners.copy()
    mats = [scipy.io.loadmat(folder / f"Calib_Results_{s}.mat") for s in ("left", "right")]
    for c, m in enumerate(mats):
        for i in range(14):
            x = m[f"x_{i + 1}"].T  # (54, 2) in Bouguet's order: match to ours by position
            d = np.linalg.norm(corners[i, c][:, None] - x[None], axis=-1)
            bouguet[i, c] = x[d.argmin(1)]
    res = calibrate(
        CHESS,
        bouguet,
        np.array([[640, 480], [640, 480]]),
        ["left", "right"],
        options=BundleAdjustOptions(fix=("skew", "k3"), loss="linear"),
    )
    rig = res.calibration.rig
    for c, m in enumerate(mats):
        f, pp = np.asarray(rig.focal[c]), np.asarray(rig.principal_point[c])
        print(
            f"camera {c}: f {f.round(2)} vs {m['fc'].ravel().round(2)} +- "
            f"{m['fc_error'].ravel().round(2)}; c {pp.round(2)} vs {m['cc'].ravel().round(2)} "
            f"+- {m['cc_error'].ravel().round(2)}"
        )
        assert np.all(np.abs(f - m["fc"].ravel()) <= m["fc_error"].ravel())
        assert np.all(np.abs(pp - m["cc"].ravel()) <= m["cc_error"].ravel())


def test_real_four_camera_rig_fixes_side_camera():
    """sleap-anipose-minimal-session: calibrate from the stored board detections. The stored
    `side` camera is a copy of `top` (about 125 px off); ours reprojects like the others."""
    import h5py

    from jaxpose.geometry import project_rig
    from jaxpose.io import load_calibration

    folder = data_path("sleap-anipose-minimal-session", "tests", "data", "minimal_session")
    with h5py.File(folder / "calibration.metadata.h5") as f:
        corners = np.moveaxis(f["detected_corners"][:], 0, 1)  # (frame, cam, corner, 2)
    stored = load_calibration(folder / "calibration.toml")
    board = Board(
        kind="charuco", squares=(8, 11), square_mm=24.0, marker_mm=18.75, dictionary="DICT_4X4_1000"
    )
    res = calibrate(board, corners, np.array([[1280, 1024]] * 4), stored.names)
    print("sleap-anipose 4-camera rig:\n" + res.report.table(res.adjustment.standard_errors))
    side = stored.names.index("side")
    assert np.all(res.report.mean_error_px < 1.0)
    assert res.report.mean_error_px[side] < 2 * np.median(res.report.mean_error_px)
    # the corners triangulated by the other three cameras reproject into the side camera
    import jax

    from jaxpose.triangulation import triangulate

    others = [i for i in range(4) if i != side]
    rig = res.calibration.rig
    with jax.enable_x64(True):
        pts = triangulate(
            rig[np.array(others)], corners[:, others].transpose(0, 2, 1, 3), method="dlt"
        ).points
        proj = np.asarray(project_rig(rig[side : side + 1], np.asarray(pts)))[0]
    err = np.linalg.norm(proj - corners[:, side], axis=-1)
    print(
        f"side camera: median error of corners triangulated by the other cameras "
        f"{np.nanmedian(err):.2f} px"
    )
    assert np.nanmedian(err) < 2.0
    assert abs(float(rig.focal[side, 0]) - float(stored.rig.focal[side, 0])) > 100  # not the copy


def test_keypoint_refinement_recovers_perturbed_extrinsics():
    """A calibration with camera 2 rotated by 0.5 degree and shifted by 8 mm is pulled back to
    the truth by the animal's keypoints, and the board's scale is kept."""
    from jaxpose.calibration.bundle_adjust import vectors_to_rig
    from jaxpose.calibration.refine_keypoints import refine_with_keypoints
    from jaxpose.io import Calibration
    from jaxpose.synth import make_study

    study = make_study(num_cameras=4, num_frames=60, noise_px=0.5, num_board_frames=2, seed=3)
    truth = cameras_to_vectors(study.calibration.rig)
    bad = truth.copy()
    r = cv2.Rodrigues(bad[2, :3])[0] @ cv2.Rodrigues(np.array([0.0, np.radians(0.5), 0.0]))[0]
    bad[2, :3] = cv2.Rodrigues(r)[0].ravel()
    bad[2, 3:6] += (8.0, -4.0, 3.0)
    sizes = np.asarray(study.calibration.rig.image_size)
    start = Calibration(vectors_to_rig(bad, sizes), study.calibration.names)
    out = refine_with_keypoints(start, study.points_2d, study.confidence, min_confidence=0.5)
    before = relative_errors(study.calibration.rig, bad, same_frame=True)
    after = relative_errors(
        study.calibration.rig, cameras_to_vectors(out.calibration.rig), same_frame=True
    )
    print(
        f"keypoint refinement: before {before}, after {after}, "
        f"reprojection {out.error_before_px:.2f} -> {out.error_after_px:.2f} px"
    )
    assert after["rotation_deg"] < before["rotation_deg"] / 5
    assert after["centre_mm"] < before["centre_mm"] / 3
    assert out.error_after_px < out.error_before_px
    assert abs(out.scale_correction - 1) < 0.05


def test_report_files(tmp_path, rig3, result3):
    from jaxpose.calibration.report import write_report

    cal, _, sizes = rig3
    paths = write_report(result3, tmp_path, sizes)
    md = paths["markdown"].read_text()
    assert "mean px" in md and cal.names[0] in md
    for key in ("residuals", "coverage"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_charuco_photos_single_camera():
    """opencv-stereo/charuco: detect the ChArUco board in OpenCV's 4 tutorial photos and
    calibrate the camera (full model, as OpenCV's default); compare with OpenCV's stored
    calibration of that camera within our standard errors. Four views are few: the report
    must say so."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from jaxpose.calibration.detect import detect_folder
    from jaxpose.cli import CONF_DIR

    folder = data_path("opencv-stereo", "charuco")
    board = instantiate(OmegaConf.load(CONF_DIR / "board" / "charuco_opencv_tutorial.yaml"))
    det = detect_folder(
        board, [folder / f"img_0{i}.jpg" for i in range(4)], camera="tutorial", progress=False
    )
    assert list(det.counts()) == [24, 24, 24, 24]
    res = calibrate(
        board,
        det.corners[:, None],
        np.array([det.image_size]),
        ["tutorial"],
        options=BundleAdjustOptions(fix=("skew",), loss="linear"),
    )
    store = cv2.FileStorage(str(folder / "tutorial_camera_charuco.yml"), cv2.FILE_STORAGE_READ)
    k = store.getNode("camera_matrix").mat()
    cam, se = res.adjustment.cameras[0], res.adjustment.standard_errors[0]
    rms = np.sqrt(np.mean(np.sum(res.adjustment.residuals**2, -1)))
    print(
        f"ChArUco photos: f {cam[6:8].round(1)} (stored {k[0, 0]:.1f}, {k[1, 1]:.1f}), "
        f"c {cam[8:10].round(1)} (stored {k[0, 2]:.1f}, {k[1, 2]:.1f}), RMS {rms:.3f} px "
        f"(stored 0.182), se f {se[6:8].round(1)}"
    )
    stored = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
    assert np.all(np.abs(cam[6:10] - stored) < 3 * se[6:10])
    assert rms < 0.25
    assert any("only 4 frames" in w for w in res.report.warnings)


def test_collinear_view_does_not_break_initialisation(rig3):
    """A view whose corners all lie in one board column (the board's edge in view) is
    degenerate for calibrateCamera and PnP; it must be skipped, not poison the start."""
    cal, uv, sizes = rig3
    uv = uv.copy()
    cols = BOARD.pattern_size[0]
    column = np.zeros(BOARD.num_corners, bool)
    column[::cols] = True  # corners 0, 9, 18, ...: one column
    for f in range(0, uv.shape[0], 3):  # many such views in camera 0
        keep = uv[f, 0].copy()
        uv[f, 0] = np.nan
        uv[f, 0, column] = keep[column]
    res = calibrate(BOARD, uv, sizes, cal.names)
    err = relative_errors(cal.rig, res.adjustment.cameras)
    assert err["focal_rel"] < 0.005 and err["centre_mm"] < 3.0
