"""Tests for jaxpose.synth: seeded synthetic rigs, mouse animation, boards and studies."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import cv2
import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jaxpose.geometry.camera import make_camera, project, stack_cameras
from jaxpose.synth import (
    Board,
    Skeleton,
    SyntheticStudy,
    animate,
    board_observations,
    board_points,
    board_trajectory,
    camera_centers,
    in_view,
    look_at_rotation,
    make_rig,
    make_study,
    mouse_skeleton,
    project_points,
)

REPO = Path(__file__).resolve().parent.parent
ARENA = 200.0


@pytest.fixture(scope="module")
def study() -> SyntheticStudy:
    return make_study(num_cameras=6, num_frames=300, noise_px=2.0, outlier_fraction=0.1, seed=7)


@pytest.fixture(scope="module")
def long_motion() -> np.ndarray:
    return animate(mouse_skeleton(), 1800, seed=11)  # one minute at 30 fps


def _arrays(obj) -> dict[str, np.ndarray]:
    """Every array in a study, its rig and board poses, by name."""
    out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    out = {k: v for k, v in out.items() if isinstance(v, np.ndarray)}
    rig = obj.calibration.rig
    out.update(
        {
            f"rig.{f.name}": getattr(rig, f.name)
            for f in dataclasses.fields(rig)
            if f.name != "model"
        }
    )
    return out


def _cv2_project(camera, points: np.ndarray) -> np.ndarray:
    k = np.array(
        [
            [camera.focal[0], camera.skew, camera.principal_point[0]],
            [0.0, camera.focal[1], camera.principal_point[1]],
            [0.0, 0.0, 1.0],
        ]
    )
    uv, _ = cv2.projectPoints(
        points.reshape(-1, 1, 3), camera.rotation, camera.translation, k, camera.distortion
    )
    return uv.reshape(*points.shape[:-1], 2)


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_is_bit_identical_and_seeds_differ():
    a = make_study(num_cameras=4, num_frames=60, outlier_fraction=0.1, num_board_frames=20, seed=3)
    b = make_study(num_cameras=4, num_frames=60, outlier_fraction=0.1, num_board_frames=20, seed=3)
    c = make_study(num_cameras=4, num_frames=60, outlier_fraction=0.1, num_board_frames=20, seed=4)
    arrays_a, arrays_b, arrays_c = _arrays(a), _arrays(b), _arrays(c)
    for name, value in arrays_a.items():
        np.testing.assert_array_equal(value, arrays_b[name], err_msg=name)  # NaN == NaN here
    for name in (
        "points_3d",
        "points_2d",
        "confidence",
        "board_poses",
        "rig.rotation",
        "rig.focal",
        "rig.distortion",
    ):
        assert not np.array_equal(arrays_a[name], arrays_c[name]), name


def test_components_are_deterministic():
    sk = mouse_skeleton()
    np.testing.assert_array_equal(animate(sk, 50, seed=1), animate(sk, 50, seed=1))
    assert not np.array_equal(animate(sk, 50, seed=1), animate(sk, 50, seed=2))
    r1, r2 = make_rig(5, seed=9), make_rig(5, seed=9)
    np.testing.assert_array_equal(r1.rig.translation, r2.rig.translation)
    board = Board()
    np.testing.assert_array_equal(
        board_trajectory(board, 40, seed=5, rig=r1), board_trajectory(board, 40, seed=5, rig=r2)
    )


def test_outlier_option_leaves_the_motion_and_rig_alone():
    a = make_study(num_cameras=3, num_frames=40, num_board_frames=0, seed=2)
    b = make_study(num_cameras=3, num_frames=40, num_board_frames=0, seed=2, outlier_fraction=0.3)
    np.testing.assert_array_equal(a.points_3d, b.points_3d)
    np.testing.assert_array_equal(a.calibration.rig.rotation, b.calibration.rig.rotation)
    inlier = b.visible & ~b.outlier
    np.testing.assert_array_equal(a.points_2d[inlier], b.points_2d[inlier])


# --- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("num_cameras", [2, 6, 16])
def test_study_shapes(num_cameras):
    s = make_study(num_cameras=num_cameras, num_frames=25, num_board_frames=12, seed=0)
    f, c, k = 25, num_cameras, 20
    assert s.calibration.names == tuple(f"cam{i}" for i in range(c))
    assert s.calibration.rig.rotation.shape == (c, 3)
    assert s.calibration.rig.rotation.dtype == np.float64
    assert s.points_3d.shape == (f, k, 3)
    assert s.points_2d_true.shape == s.points_2d.shape == (f, c, k, 2)
    for name in ("visible", "outlier", "confidence"):
        assert getattr(s, name).shape == (f, c, k), name
    assert s.visible.dtype == s.outlier.dtype == bool
    corners = s.board.num_corners
    assert s.board_poses.shape == (12, 6)
    assert s.board_uv.shape == (12, c, corners, 2)
    assert s.board_visible.shape == (12, c, corners)
    assert s.num_frames == f and s.num_cameras == c and s.num_keypoints == k
    text = s.summary()
    assert f"{c} cameras" in text and "25 frames" in text


def test_study_arrays_are_read_only(study):
    with pytest.raises(ValueError, match="read-only"):
        study.points_3d[0, 0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        study.fps = 60.0


# --- the rig ----------------------------------------------------------------------------------


@pytest.mark.parametrize("num_cameras", [2, 6, 16])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_camera_sees_the_whole_arena(num_cameras, seed):
    cal = make_rig(num_cameras, seed=seed)
    rig = cal.rig
    ang = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    ring = np.stack([ARENA * np.cos(ang), ARENA * np.sin(ang), np.zeros_like(ang)], -1)
    arena = np.concatenate([ring, ring + [0, 0, 90.0], [[0.0, 0.0, 0.0]]])
    for i in range(num_cameras):
        cam = rig[i]
        uv = _cv2_project(cam, arena)  # checked with OpenCV, not our own projection
        w, h = cam.image_size
        assert np.all((uv > 0) & (uv < [w - 1, h - 1])), f"camera {i} misses part of the arena"
        depth = (Rotation.from_rotvec(cam.rotation).apply(arena) + cam.translation)[:, 2]
        assert np.all(depth > 100.0)
    assert in_view(cal, arena)[1].all()


@pytest.mark.parametrize("seed", range(5))
def test_rig_parameters_are_realistic(seed):
    rig = make_rig(8, seed=seed).rig
    centres = camera_centers(rig)
    np.testing.assert_allclose(centres, np.asarray(rig.center()), atol=1e-3)  # float32 JAX
    assert np.all(np.abs(np.hypot(centres[:, 0], centres[:, 1]) - 500.0) <= 25.0 + 1e-9)
    assert np.all((centres[:, 2] >= 250.0) & (centres[:, 2] <= 450.0))
    hfov = np.degrees(2 * np.arctan(0.5 * rig.image_size[:, 0] / rig.focal[:, 0]))
    assert np.all((hfov >= 50.0 - 1e-9) & (hfov <= 70.0 + 1e-9))
    offset = np.abs(rig.principal_point / rig.image_size - 0.5)
    assert np.all(offset <= 0.02)
    k1, k2, p1, p2, k3 = rig.distortion.T
    assert np.all((k1 >= -0.25) & (k1 <= 0.05)) and np.all(np.abs(k2) <= 0.12)
    assert np.all(np.abs(p1) < 0.01) and np.all(np.abs(p2) < 0.01) and np.all(np.abs(k3) <= 1e-3)
    # Cameras spread round the ring: no two closer than a quarter of the even spacing.
    az = np.sort(np.arctan2(centres[:, 1], centres[:, 0]))
    gaps = np.diff(np.append(az, az[0] + 2 * np.pi))
    assert gaps.min() > 0.25 * 2 * np.pi / 8


def test_look_at_rotation_aims_the_optical_axis():
    eye, target = np.array([400.0, -300.0, 350.0]), np.array([10.0, 20.0, 5.0])
    rotvec = look_at_rotation(eye, target)
    cam = make_camera(
        rotation=rotvec,
        translation=-Rotation.from_rotvec(rotvec).apply(eye),
        focal=1000.0,
        principal_point=(640.0, 512.0),
        image_size=(1280, 1024),
    )
    uv = _cv2_project(cam, np.stack([target, target + [0, 0, 50.0]]))
    np.testing.assert_allclose(uv[0], [640.0, 512.0], atol=1e-9)
    assert uv[1, 1] < uv[0, 1] - 10  # world up is image up (v decreases)
    assert abs(uv[1, 0] - uv[0, 0]) < 1e-6  # no roll: verticals stay vertical through the centre
    rolled = look_at_rotation(eye, target, roll=0.1)
    angle = (Rotation.from_rotvec(rolled) * Rotation.from_rotvec(rotvec).inv()).magnitude()
    assert angle == pytest.approx(0.1)
    with pytest.raises(ValueError, match="coincide"):
        look_at_rotation(eye, eye)
    with pytest.raises(ValueError, match="parallel"):
        look_at_rotation([0, 0, 500.0], [0, 0, 0])


def test_projection_matches_opencv_and_jaxpose(study):
    rig = study.calibration.rig
    for i in range(study.num_cameras):
        ref = _cv2_project(rig[i], study.points_3d)
        np.testing.assert_allclose(study.points_2d_true[:, i], ref, atol=1e-6, rtol=0)
    with jax.enable_x64(True):
        ours = np.asarray(project(rig[2], study.points_3d))
    np.testing.assert_allclose(study.points_2d_true[:, 2], ours, atol=1e-6, rtol=0)


def test_fisheye_projection_matches_opencv():
    rotvec = look_at_rotation([300.0, 0.0, 200.0], [0.0, 0.0, 0.0])
    cam = make_camera(
        rotation=rotvec,
        translation=[5.0, -3.0, 370.0],
        focal=(400.0, 402.0),
        principal_point=(640.0, 500.0),
        distortion=(0.05, -0.01, 0.002, -0.001),
        image_size=(1280, 1024),
        model="fisheye",
    )
    pts = np.random.default_rng(0).uniform(-150, 150, (200, 3))
    uv, _ = project_points(stack_cameras([cam]), pts)
    k = np.array([[400.0, 0.0, 640.0], [0.0, 402.0, 500.0], [0.0, 0.0, 1.0]])
    ref, _ = cv2.fisheye.projectPoints(
        pts.reshape(-1, 1, 3), cam.rotation, cam.translation, k, cam.distortion
    )
    np.testing.assert_allclose(uv[0], ref.reshape(-1, 2), atol=1e-6, rtol=0)


def test_points_folded_back_by_strong_distortion_are_not_in_view():
    # r (1 - 0.4 r^2) peaks at r = 0.91: a point at r = 1.5 projects near the image centre.
    cam = make_camera(
        focal=500.0,
        principal_point=(320.0, 240.0),
        image_size=(640, 480),
        distortion=(-0.4, 0.0, 0.0, 0.0, 0.0),
    )
    rig = stack_cameras([cam])
    folded = np.array([[1.5 * 100.0, 0.0, 100.0]])
    uv, vis = in_view(rig, folded)
    assert 0 < uv[0, 0, 0] < 640 and 0 < uv[0, 0, 1] < 480  # the formula lands in the image
    assert not vis[0, 0]
    assert in_view(rig, np.array([[0.5 * 100.0, 0.0, 100.0]]))[1][0, 0]
    assert not in_view(rig, np.array([[0.0, 0.0, -100.0]]))[1][0, 0]  # behind the camera


# --- the skeleton and its motion --------------------------------------------------------------


def test_mouse_skeleton_layout():
    sk = mouse_skeleton()
    assert sk.num_keypoints == 20 and len(set(sk.names)) == 20
    for a, b in sk.symmetric_pairs:
        assert sk.names[a].endswith("_l") and sk.names[b] == sk.names[a][:-2] + "_r"
    assert len(sk.symmetric_pairs) == 5  # ears, shoulders, forepaws, hips, hind paws
    rest = sk.rest_pose
    body = np.linalg.norm(rest[sk.index("snout")] - rest[sk.index("tail_base")])
    assert 85.0 <= body <= 115.0
    assert rest[sk.index("tail_tip")][0] < rest[sk.index("tail_base")][0] - 50.0
    # Mirroring left and right leaves the rest pose unchanged.
    mirrored = rest * [1, -1, 1]
    perm = np.arange(20)
    for a, b in sk.symmetric_pairs:
        perm[a], perm[b] = b, a
    np.testing.assert_allclose(mirrored[perm], rest)
    # One connected tree.
    assert len(sk.edges) == 19
    reached, frontier = {0}, [0]
    while frontier:
        i = frontier.pop()
        for a, b in sk.edges:
            for x, y in ((a, b), (b, a)):
                if x == i and y not in reached:
                    reached.add(y)
                    frontier.append(y)
    assert reached == set(range(20))


def test_bone_lengths_stay_constant(long_motion):
    sk = mouse_skeleton()
    lengths = sk.edge_lengths(long_motion)
    rel = lengths / sk.edge_lengths(sk.rest_pose) - 1.0
    assert np.abs(rel).max() < 0.02


def test_motion_is_smooth_and_inside_the_arena(long_motion):
    step = np.linalg.norm(np.diff(long_motion, axis=0), axis=-1)
    assert step.max() < 20.0  # mm per frame at 30 fps: no jumps
    accel = np.linalg.norm(np.diff(long_motion, 2, axis=0), axis=-1)
    assert accel.max() < 20.0
    assert np.hypot(long_motion[..., 0], long_motion[..., 1]).max() <= ARENA
    assert long_motion[..., 2].min() >= 0.0
    assert np.isfinite(long_motion).all()
    # Motion is defined in seconds: at 120 fps the steps are four times finer.
    fast = animate(mouse_skeleton(), 400, seed=11, fps=120.0)
    assert np.linalg.norm(np.diff(fast, axis=0), axis=-1).max() < 20.0 / 3


def test_mouse_walks_turns_and_trots(long_motion):
    sk = mouse_skeleton()
    neck = long_motion[:, sk.index("neck")]
    speed = np.linalg.norm(np.diff(neck[:, :2], axis=0), axis=-1) * 30.0
    assert speed.max() <= 155.0
    assert np.median(speed) > 20.0 and np.mean(speed < 5.0) > 0.02  # walks, and sometimes stops
    body = neck[:, :2] - long_motion[:, sk.index("spine_2"), :2]
    heading = np.unwrap(np.arctan2(body[:, 1], body[:, 0]))
    assert np.ptp(heading) > 2 * np.pi or np.abs(np.diff(heading)).sum() > 4 * np.pi
    # The body follows the path: the spine lies where the neck was a moment ago.
    spine = long_motion[:, sk.index("spine_2"), :2]
    past = np.linalg.norm(spine[60:, None] - neck[None, :, :2], axis=-1)
    assert np.median(past.min(-1)) < 3.0
    # Trot: diagonal paws move together, the two forepaws alternate, paws lift a few mm.
    head_low = long_motion[2:, sk.index("head"), 2] < 40.0  # rearing moves the neck too
    walking = (speed[1:] > 80.0) & head_low
    lift = {n: long_motion[2:, sk.index(n), 2][walking] for n in sk.names if "paw" in n}
    assert np.corrcoef(lift["forepaw_l"], lift["hindpaw_r"])[0, 1] > 0.5
    assert np.corrcoef(lift["forepaw_l"], lift["forepaw_r"])[0, 1] < -0.2
    rise = np.percentile(lift["hindpaw_l"], 99) - np.percentile(lift["hindpaw_l"], 1)
    assert 1.5 < rise < 8.0


def test_mouse_rears(long_motion):
    sk = mouse_skeleton()
    head = long_motion[:, sk.index("head"), 2]
    assert head.max() > 50.0 and head.max() < 100.0
    assert np.median(head) < 40.0  # rearing is occasional
    # Hind paws stay on the floor while the mouse rears.
    high = head > 55.0
    assert long_motion[high][:, sk.index("hindpaw_l"), 2].max() < 10.0


# --- 2D observations --------------------------------------------------------------------------


def test_noise_outliers_and_confidence(study):
    vis, out = study.visible, study.outlier
    inlier = vis & ~out
    err = (study.points_2d - study.points_2d_true)[inlier]
    assert err.std() == pytest.approx(2.0, rel=0.03)
    assert np.abs(err.mean(0)).max() < 0.1
    assert out.sum() / vis.sum() == pytest.approx(0.1, abs=0.01)
    assert not (out & ~vis).any()
    gross = np.linalg.norm(study.points_2d - study.points_2d_true, axis=-1)[out]
    assert gross.min() >= 50.0
    size = study.calibration.rig.image_size[None, :, None, :]
    wild = np.broadcast_to(size, study.points_2d.shape)[out]
    assert np.all((study.points_2d[out] >= 0) & (study.points_2d[out] <= wild))
    conf = study.confidence
    assert np.all(conf[~vis] == 0.0)
    assert np.all((conf[inlier] >= 0.8) & (conf[inlier] <= 1.0))
    assert np.all((conf[out] >= 0.2) & (conf[out] <= 0.9))
    assert conf[inlier].mean() > conf[out].mean() + 0.2
    assert np.isnan(study.points_2d[~vis]).all() and np.isfinite(study.points_2d[vis]).all()


def test_visibility_is_geometry_plus_random_occlusion():
    clear = make_study(
        num_cameras=5, num_frames=100, occlusion_fraction=0.0, seed=1, num_board_frames=0
    )
    _, in_image = in_view(clear.calibration, clear.points_3d, margin_px=4.0)
    np.testing.assert_array_equal(clear.visible, in_image.transpose(1, 0, 2))
    hidden = make_study(
        num_cameras=5, num_frames=100, occlusion_fraction=0.2, seed=1, num_board_frames=0
    )
    assert not (hidden.visible & ~clear.visible).any()
    kept = hidden.visible.sum() / clear.visible.sum()
    assert kept == pytest.approx(0.8, abs=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keypoints_are_seen_by_two_cameras(seed):
    s = make_study(num_cameras=4, num_frames=200, num_board_frames=0, seed=seed)
    assert np.mean(s.visible.sum(1) >= 2) > 0.98


# --- boards -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["charuco", "checkerboard"])
@pytest.mark.parametrize("squares", [(7, 5), (5, 4), (10, 7)])
def test_board_corner_count_and_order(kind, squares):
    board = Board(kind=kind, squares=squares, dictionary="DICT_4X4_50")
    corners = board.corners()
    cols, rows = squares
    assert board.pattern_size == (cols - 1, rows - 1)
    assert corners.shape == ((cols - 1) * (rows - 1), 3) == (board.num_corners, 3)
    assert np.all(corners[:, 2] == 0)
    # Row-major: x runs fastest along a row.
    np.testing.assert_allclose(corners[1] - corners[0], [board.square_mm, 0, 0])
    np.testing.assert_allclose(corners[cols - 1] - corners[0], [0, board.square_mm, 0])
    if kind == "charuco":
        np.testing.assert_array_equal(corners, board.opencv_board().getChessboardCorners())
        assert board.num_markers == len(board.opencv_board().getIds())


def test_charuco_detection_agrees_with_synthetic_observations():
    """Render the board into a synthetic view and let OpenCV find it: ids and pixels agree."""
    board = Board()
    cam = make_camera(focal=900.0, principal_point=(639.5, 511.5), image_size=(1280, 1024))
    rig = stack_cameras([cam])
    # Board 400 mm in front of the camera, pattern towards it, turned 20 degrees in its plane.
    rot = Rotation.from_euler("zy", [20, 25], degrees=True).as_matrix()
    pose = np.concatenate(
        [Rotation.from_matrix(rot).as_rotvec(), [0, 0, 400.0] - rot @ board.center()]
    )[None]
    uv, vis = board_observations(board, pose, rig, noise_px=0.0, seed=0)
    assert vis.all()
    px_per_mm = 10
    w, h = (int(s * px_per_mm) for s in board.size_mm)
    pad = 40
    image = board.opencv_board().generateImage((w + 2 * pad, h + 2 * pad), marginSize=pad)
    # Printed-board pixel -> board mm -> camera pixel (a homography for the plane z = 0).
    to_mm = np.array(
        [[1 / px_per_mm, 0, -pad / px_per_mm], [0, 1 / px_per_mm, -pad / px_per_mm], [0, 0, 1]]
    )
    k = np.array([[900.0, 0, 639.5], [0, 900.0, 511.5], [0, 0, 1]])
    homography = k @ np.column_stack([rot[:, 0], rot[:, 1], pose[0, 3:]]) @ to_mm
    # Pixel centres: the printed pixel (i, j) covers [i, i+1) so its centre is i + 0.5.
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    view = cv2.warpPerspective(
        image, homography @ shift, (1280, 1024), flags=cv2.INTER_AREA, borderValue=255
    )
    corners, ids, _, _ = cv2.aruco.CharucoDetector(board.opencv_board()).detectBoard(view)
    assert ids is not None and len(ids) == board.num_corners
    found = corners.reshape(-1, 2)[np.argsort(ids.ravel())]
    np.testing.assert_allclose(found, uv[0, 0], atol=0.6)
    # Seen from behind, the pattern is mirrored and must not count as visible.
    flip = rot @ Rotation.from_euler("y", 180, degrees=True).as_matrix()
    back = np.concatenate(
        [Rotation.from_matrix(flip).as_rotvec(), [0, 0, 400.0] - flip @ board.center()]
    )[None]
    assert not board_observations(board, back, rig, noise_px=0.0, seed=0)[1].any()


@pytest.mark.parametrize(
    "angle,seen", [(0.0, True), (60.0, True), (74.0, True), (76.0, False), (120.0, False)]
)
def test_board_visibility_respects_facing(angle, seen):
    board = Board(kind="charuco", squares=(3, 3))  # small: every corner at nearly one angle
    cam = make_camera(focal=800.0, principal_point=(640.0, 512.0), image_size=(1280, 1024))
    # Rotate the board about its own centre, 600 mm in front of the camera.
    rot = Rotation.from_euler("y", angle, degrees=True).as_matrix()
    pose = np.concatenate(
        [Rotation.from_matrix(rot).as_rotvec(), [0, 0, 600.0] - rot @ board.center()]
    )[None]
    _, vis = board_observations(board, pose, stack_cameras([cam]), noise_px=0.0, seed=0)
    assert vis.all() == seen and vis.any() == seen


def test_checkerboard_is_found_whole_or_not_at_all():
    cal = make_rig(6, seed=4)
    board = Board(kind="checkerboard")
    poses = board_trajectory(board, 150, seed=3, rig=cal)
    _, vis = board_observations(board, poses, cal, noise_px=0.5, seed=1)
    per_view = vis.sum(-1)
    assert set(np.unique(per_view)) <= {0, board.num_corners}
    assert (per_view > 0).any()
    charuco = Board()
    _, vis_c = board_observations(
        charuco, board_trajectory(charuco, 150, seed=3, rig=cal), cal, noise_px=0.5, seed=1
    )
    counts = vis_c.sum(-1)
    assert ((counts > 0) & (counts < charuco.num_corners)).any()  # partial ChArUco views happen


def test_board_trajectory_ranges_and_coverage():
    cal = make_rig(6, seed=2)
    board = Board()
    poses = board_trajectory(board, 200, seed=8, rig=cal)
    rot = Rotation.from_rotvec(poses[:, :3]).as_matrix()
    centre = rot @ board.center() + poses[:, 3:]
    assert np.all((centre[:, 2] >= 150.0 - 1e-9) & (centre[:, 2] <= 400.0 + 1e-9))
    assert np.hypot(centre[:, 0], centre[:, 1]).max() < 160.0
    normal = -rot[:, :, 2]  # the pattern faces along the board's -z
    elevation = np.degrees(np.arcsin(normal[:, 2]))
    assert elevation.min() >= -1e-9 and elevation.max() <= 50.0 + 1e-9
    step = np.linalg.norm(np.diff(centre, axis=0), axis=-1)
    assert step.max() < 40.0  # a hand-held board moves smoothly
    uv, vis = board_observations(board, poses, cal, noise_px=0.0, seed=0)
    assert np.all(vis.any(-1).mean(0) > 0.1)  # every camera gets board views
    assert np.mean(vis.any(-1).sum(1) >= 2) > 0.3  # and pairs see it together
    true_uv, _ = project_points(cal, board_points(board, poses))
    np.testing.assert_array_equal(uv[vis], true_uv.transpose(1, 0, 2, 3)[vis])


# --- config and errors ------------------------------------------------------------------------


def test_hydra_config_instantiates_the_defaults():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "conf" / "synth" / "default.yaml")
    defaults = {name: p.default for name, p in inspect.signature(make_study).parameters.items()}
    options = {k: v for k, v in OmegaConf.to_container(cfg).items() if not k.startswith("_")}
    assert options == defaults  # the config documents every option, with the same defaults
    cfg.num_frames = 20
    cfg.num_board_frames = 5
    s = instantiate(cfg)
    assert isinstance(s, SyntheticStudy) and s.points_3d.shape == (20, 20, 3)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: make_rig(1, seed=0), r"num_cameras must be in \[2, 16\]"),
        (lambda: make_rig(17, seed=0), r"num_cameras must be in \[2, 16\]"),
        (lambda: make_rig(2.5, seed=0), "num_cameras must be an integer"),
        (lambda: make_rig(4, seed=0, radius_mm=150.0), "must exceed arena_radius_mm"),
        (lambda: make_rig(4, seed=0, image_size=(1280,)), "image_size"),
        (lambda: make_study(noise_px=-1.0), "noise_px"),
        (lambda: make_study(outlier_fraction=1.5), "outlier_fraction"),
        (lambda: make_study(occlusion_fraction=1.0), "occlusion_fraction"),
        (lambda: make_study(num_frames=0), "num_frames must be >= 1"),
        (lambda: make_study(num_board_frames=-1), "num_board_frames"),
        (lambda: make_study(seed=-1), "seed"),
        (lambda: make_study(board_kind="circles"), "board kind"),
        (lambda: animate(mouse_skeleton(), 10, seed=0, arena_radius_mm=60.0), "too small"),
        (lambda: animate(mouse_skeleton(), 10, seed=0, fps=0.0), "fps"),
        (lambda: Board(marker_mm=25.0), "marker_mm"),
        (lambda: Board(dictionary="DICT_NOPE"), "dictionary"),
        (lambda: Board(squares=(12, 10)), "has only 50"),
        (lambda: Board(squares=(1, 5)), "squares"),
        (lambda: Board(kind="checkerboard").opencv_board(), "ChArUco"),
        (lambda: Skeleton(("a", "b"), ((0, 1),), np.zeros((3, 3))), "rest_pose"),
        (lambda: Skeleton(("a", "b"), ((0, 2),), np.zeros((2, 3))), "edge"),
        (lambda: Skeleton(("a", "a"), (), np.zeros((2, 3))), "unique"),
        (lambda: board_trajectory(Board(), -1, seed=0), "num_frames"),
        (
            lambda: board_observations(
                Board(), np.zeros((2, 5)), make_rig(2, seed=0), noise_px=0, seed=0
            ),
            r"\(frame, 6\)",
        ),
        (lambda: in_view(make_rig(2, seed=0), np.zeros((4, 2))), "last axis of 3"),
    ],
)
def test_invalid_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_animate_needs_the_mouse_keypoints():
    sk = Skeleton(("a", "b"), ((0, 1),), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="lacks"):
        animate(sk, 10, seed=0)
    with pytest.raises(KeyError, match="no keypoint named"):
        mouse_skeleton().index("wing_l")


def test_camera_sweep_covers_each_image():
    """The close-up sweep puts the board all over each camera's image (for intrinsics)."""
    from jaxpose.calibration.calibrate import coverage_fraction
    from jaxpose.synth.board import calibration_session, camera_sweep

    board = Board(
        kind="charuco", squares=(10, 7), square_mm=30.0, marker_mm=22.0, dictionary="DICT_4X4_250"
    )
    cal = make_rig(3, seed=2)
    poses = camera_sweep(board, cal, 24, seed=3)
    assert poses.shape == (72, 6)
    uv, visible = board_observations(board, poses, cal, noise_px=0.0, seed=0)
    sizes = np.asarray(cal.rig.image_size)
    for c in range(3):
        own = slice(24 * c, 24 * (c + 1))
        assert visible[own, c].any(-1).mean() > 0.9  # each camera sees its own sweep
        assert coverage_fraction(uv[own, c], sizes[c]) > 0.8
    session = calibration_session(board, cal, 100, seed=4, sweep_fraction=0.4)
    assert session.shape == (100, 6)
    with pytest.raises(ValueError, match="sweep_fraction"):
        calibration_session(board, cal, 10, seed=0, sweep_fraction=1.5)
