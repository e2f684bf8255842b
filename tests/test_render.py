"""Tests for jaxpose.synth.render: board images through synthetic cameras, checked by detecting
the board with OpenCV and comparing with the exact projection of its corners."""

from __future__ import annotations

import cv2
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jaxpose.geometry.camera import FISHEYE, Camera, make_camera, stack_cameras
from jaxpose.synth import (
    Board,
    board_observations,
    board_points,
    board_trajectory,
    make_rig,
    project_points,
)
from jaxpose.synth.render import (
    board_texture,
    iter_board_images,
    render_board,
    render_board_sequence,
    scale_camera,
    write_board_images,
    write_board_videos,
)

SCALE = 0.5  # render 640x512 images of 1280x1024 cameras: fast, still plenty of pixels
CHARUCO_BOARD = Board()
CHECKER_BOARD = Board(kind="checkerboard", squares=(7, 5), square_mm=20.0)
# Markers big enough to decode at half resolution from where a hand-held board is waved.
BIG_BOARD = Board(squares=(5, 4), square_mm=40.0, marker_mm=30.0)


def _camera(model: str = "brown_conrady") -> Camera:
    """A strongly distorted 1280x1024 camera, posed as camera 0 of a seeded rig."""
    base = make_rig(2, seed=3).rig[0]
    if model == FISHEYE:
        distortion, focal = [0.05, -0.02, 0.01, -0.003], base.focal * 0.8
    else:
        distortion, focal = [-0.2, 0.06, 0.001, -0.0008, 0.0], base.focal
    return make_camera(
        rotation=base.rotation,
        translation=base.translation,
        focal=focal,
        principal_point=base.principal_point,
        distortion=distortion,
        image_size=base.image_size,
        model=model,
    )


def _pose_facing(
    camera: Camera,
    board: Board,
    distance_mm: float,
    *,
    tilt_deg=(15.0, -20.0, 10.0),
    offset_mm=(30.0, -20.0),
) -> np.ndarray:
    """(6,) board -> world pose putting the board centre `distance_mm` ahead of the camera, its
    pattern towards the camera (board x, y along image x, y before the tilt)."""
    rc = Rotation.from_rotvec(camera.rotation).as_matrix()
    rbc = Rotation.from_euler("xyz", tilt_deg, degrees=True).as_matrix()
    t_bc = np.array([*offset_mm, distance_mm]) - rbc @ board.center()
    rbw = rc.T @ rbc
    return np.r_[Rotation.from_matrix(rbw).as_rotvec(), rc.T @ (t_bc - camera.translation)]


def _behind(camera: Camera, pose: np.ndarray) -> np.ndarray:
    """The pose moved from in front of the camera to as far behind it."""
    rc = Rotation.from_rotvec(camera.rotation).as_matrix()
    depth = (rc @ pose[3:] + camera.translation)[2]
    return np.r_[pose[:3], pose[3:] - 2.0 * (depth + 50.0) * rc[2]]


def _truth(camera: Camera, board: Board, pose: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """(corner, 2) exact pixels of the board corners in the camera rendered at `scale`."""
    uv, depth = project_points(
        stack_cameras([scale_camera(camera, scale)]), board_points(board, pose[None])
    )
    assert np.all(depth > 0)
    return uv[0, 0]


def _detect_charuco(board: Board, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    detector = cv2.aruco.CharucoDetector(board.opencv_board())
    corners, ids, _, _ = detector.detectBoard(image)
    if ids is None:
        return np.zeros((0, 2)), np.zeros(0, int)
    return corners.reshape(-1, 2).astype(np.float64), ids.ravel().astype(int)


# --- the texture ----------------------------------------------------------------------------


def _texture_corners(board: Board, affine: np.ndarray) -> np.ndarray:
    xy1 = np.c_[board.corners()[:, :2], np.ones(board.num_corners)]
    return (xy1 @ affine.T)[:, :2]


@pytest.mark.parametrize(
    "board, pixels_per_mm",
    [
        (CHARUCO_BOARD, 8.0),
        (CHARUCO_BOARD, 5.3),
        (Board(squares=(6, 4)), 8.0),  # even row count: the two ChArUco layouts differ
        (Board(squares=(6, 4), legacy_pattern=True), 8.0),
    ],
)
def test_charuco_texture_corners_map_to_board_frame(board, pixels_per_mm):
    image, affine = board_texture(board, pixels_per_mm=pixels_per_mm, margin_mm=12.0)
    assert image.dtype == np.uint8 and image.ndim == 2
    corners, ids = _detect_charuco(board, image)
    assert len(ids) == board.num_corners
    np.testing.assert_allclose(corners, _texture_corners(board, affine)[ids], atol=0.05)
    # The margin is paper white; the pattern's top-left square is black, except on the legacy
    # layout of an even row count, which has a marker there.
    assert image[0].min() == 255 and image[:, 0].min() == 255
    half = 0.5 * board.square_mm
    u, v = (affine @ [half, half, 1.0]).round().astype(int)[:2]
    assert image[v, u] == (255 if board.legacy_pattern else 0)


def _detect_aruco(board: Board, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(marker, 4, 2) corners and (marker,) ids, refined to subpixel."""
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.ArucoDetector(board.opencv_board().getDictionary(), params)
    corners, ids, _ = detector.detectMarkers(image)
    if ids is None:
        return np.zeros((0, 4, 2)), np.zeros(0, int)
    return np.asarray(corners, np.float64).reshape(-1, 4, 2), np.ravel(ids).astype(int)


GRID_BOARD = Board(kind="aruco_grid", squares=(4, 3), square_mm=40.0, marker_mm=30.0)


def test_aruco_grid_texture_and_render_match_board_frame():
    board = GRID_BOARD
    image, affine = board_texture(board, pixels_per_mm=4.0)
    corners, ids = _detect_aruco(board, image)
    assert sorted(ids) == list(range(board.num_markers))
    expected = _texture_corners(board, affine).reshape(-1, 4, 2)
    np.testing.assert_allclose(corners, expected[ids], atol=0.1)

    camera = _camera()
    pose = _pose_facing(camera, board, 350.0)
    rendered = render_board(camera, board, pose, supersample=2, image_scale=SCALE)
    corners, ids = _detect_aruco(board, rendered)
    assert len(ids) == board.num_markers
    truth = _truth(camera, board, pose).reshape(-1, 4, 2)
    err = np.linalg.norm(corners - truth[ids], axis=-1)
    assert np.median(err) < 0.3, err


def test_checkerboard_texture_corners_map_to_board_frame():
    image, affine = board_texture(CHECKER_BOARD, pixels_per_mm=4.0)
    found, corners = cv2.findChessboardCorners(image, CHECKER_BOARD.pattern_size)
    assert found
    corners = cv2.cornerSubPix(
        image,
        corners,
        (5, 5),
        (-1, -1),
        (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4),
    ).reshape(-1, 2)
    xy1 = np.c_[CHECKER_BOARD.corners()[:, :2], np.ones(CHECKER_BOARD.num_corners)]
    # findChessboardCorners reports corners in Board's id order (see Board's docstring).
    np.testing.assert_allclose(corners, (xy1 @ affine.T)[:, :2], atol=0.05)


# --- one image ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["brown_conrady", FISHEYE])
def test_rendered_charuco_corners_match_projection(model):
    camera = _camera(model)
    board = CHARUCO_BOARD
    pose = _pose_facing(camera, board, 250.0, offset_mm=(50.0, 30.0))
    truth = _truth(camera, board, pose)
    # The board spans the image off-centre, where the lens bends lines by several pixels.
    pinhole = make_camera(
        focal=camera.focal * SCALE,
        principal_point=(camera.principal_point + 0.5) * SCALE - 0.5,
        image_size=camera.image_size * SCALE,
        rotation=camera.rotation,
        translation=camera.translation,
    )
    bent = project_points(stack_cameras([pinhole]), board_points(board, pose[None]))[0][0, 0]
    assert np.abs(bent - truth).max() > 5.0

    clean = render_board(camera, board, pose, supersample=2, image_scale=SCALE)
    assert clean.shape == (512, 640) and clean.dtype == np.uint8
    corners, ids = _detect_charuco(board, clean)
    assert len(ids) >= 20
    err = np.linalg.norm(corners - truth[ids], axis=-1)
    assert np.median(err) < 0.3, err
    assert np.percentile(err, 90) < 0.5, err

    noisy = render_board(
        camera,
        board,
        pose,
        blur_sigma_px=1.0,
        noise_std=3.0,
        gain=0.8,
        bias=10.0,
        vignetting=0.3,
        seed=4,
        image_scale=SCALE,
    )
    corners, ids = _detect_charuco(board, noisy)
    assert len(ids) >= 20
    err = np.linalg.norm(corners - truth[ids], axis=-1)
    assert np.median(err) < 1.0, err


def test_rendered_checkerboard_corners_match_projection():
    camera = _camera()
    board = CHECKER_BOARD
    pose = _pose_facing(camera, board, 250.0)
    truth = _truth(camera, board, pose)
    for options, tol in [
        (dict(supersample=2), 0.3),
        (dict(blur_sigma_px=1.0, noise_std=3.0, seed=1), 1.0),
    ]:
        image = render_board(camera, board, pose, image_scale=SCALE, **options)
        found, corners = cv2.findChessboardCornersSB(image, board.pattern_size)
        assert found, options
        corners = corners.reshape(-1, 2)
        # A 7x5 board looks the same turned half round, and the SB detector starts from the
        # opposite end to Board's ids; take the order that fits (a mirrored render fits neither).
        err = min(
            (np.linalg.norm(c - truth, axis=-1) for c in (corners, corners[::-1])),
            key=np.median,
        )
        assert np.median(err) < tol, (options, err)


def test_board_seen_from_behind_is_background_only():
    camera = _camera()
    board = CHARUCO_BOARD
    front = _pose_facing(camera, board, 250.0, tilt_deg=(0.0, 0.0, 0.0))
    back = _pose_facing(camera, board, 250.0, tilt_deg=(0.0, 180.0, 0.0))
    expected = np.random.default_rng(0).integers(30, 200, (512, 640)).astype(np.uint8)
    background = expected.astype(np.float64)
    seen = render_board(camera, board, front, background=background, image_scale=SCALE)
    assert np.mean(seen != expected) > 0.1  # the pattern side covers a good part of the view
    behind = render_board(camera, board, back, background=background, image_scale=SCALE)
    np.testing.assert_array_equal(behind, expected)
    # And a board behind the camera is not seen either.
    image = render_board(
        camera, board, _behind(camera, front), background=background, image_scale=SCALE
    )
    np.testing.assert_array_equal(image, expected)


def test_pixels_where_the_lens_has_no_inverse_are_background():
    # k1 alone, strongly barrel: the radial map folds inside the image, so the image corners have
    # no preimage; a huge board filling the view must leave them at the background level.
    camera = make_camera(
        focal=300.0,
        principal_point=(159.5, 119.5),
        distortion=[-0.5, 0.0, 0.0, 0.0, 0.0],
        image_size=(320, 240),
    )
    board = Board(squares=(7, 5), square_mm=400.0, marker_mm=300.0)
    pose = np.r_[0.0, 0.0, 0.0, -0.5 * np.array(board.size_mm), 300.0]
    image = render_board(camera, board, pose, background=77.0)
    assert image[0, 0] == image[-1, -1] == image[0, -1] == image[-1, 0] == 77
    assert np.mean(image == 77) < 0.5  # the board fills the rest


def test_render_is_deterministic_and_seeded():
    camera = _camera()
    pose = _pose_facing(camera, CHARUCO_BOARD, 250.0)
    options = dict(blur_sigma_px=0.7, noise_std=4.0, image_scale=0.25)
    a = render_board(camera, CHARUCO_BOARD, pose, seed=5, **options)
    b = render_board(camera, CHARUCO_BOARD, pose, seed=5, **options)
    c = render_board(camera, CHARUCO_BOARD, pose, seed=6, **options)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.5
    # JAX float32 fields give the same image as float64 NumPy ones, up to float32 rounding of the
    # intrinsics (which moves a handful of edge pixels by a grey level).
    as_jax = Camera(
        **{k: jnp.asarray(v) for k, v in vars(camera).items() if k != "model"},
        model=camera.model,
    )
    d = render_board(as_jax, CHARUCO_BOARD, pose, seed=5, **options)
    assert np.abs(d.astype(int) - a).max() <= 2


def test_lighting_changes_intensity():
    camera = _camera()
    pose = _pose_facing(camera, CHARUCO_BOARD, 250.0)
    render = lambda **kw: render_board(camera, CHARUCO_BOARD, pose, image_scale=0.25, **kw)
    base = render().astype(float)
    assert render(gain=1.3).mean() > base.mean() + 15
    assert render(gain=0.7).mean() < base.mean() - 15
    assert render(bias=-20.0).mean() < base.mean() - 15
    dark = render(vignetting=0.5).astype(float)
    h, w = base.shape
    centre, corners = np.s_[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10], np.s_[:10, :10]
    assert np.allclose(dark[centre], base[centre], atol=3)
    assert dark[corners].mean() < 0.7 * base[corners].mean()
    # The default background is a texture, not a flat grey.
    empty = render_board(camera, CHARUCO_BOARD, _behind(camera, pose), image_scale=0.25)
    assert empty.std() > 15


def test_scale_camera_maps_pixel_centres():
    camera = _camera()
    points = np.random.default_rng(1).uniform(-50, 50, (20, 3))
    full = project_points(stack_cameras([camera]), points)[0][0]
    half = project_points(stack_cameras([scale_camera(camera, 0.5)]), points)[0][0]
    np.testing.assert_allclose(half, (full + 0.5) * 0.5 - 0.5, atol=1e-9)
    assert tuple(scale_camera(camera, 0.5).image_size) == (640.0, 512.0)


def test_bad_inputs_raise():
    camera = _camera()
    pose = _pose_facing(camera, CHARUCO_BOARD, 250.0)
    with pytest.raises(ValueError, match="pose"):
        render_board(camera, CHARUCO_BOARD, pose[:3])
    with pytest.raises(ValueError, match="supersample"):
        render_board(camera, CHARUCO_BOARD, pose, supersample=0)
    with pytest.raises(ValueError, match="single camera"):
        render_board(make_rig(2, seed=0).rig, CHARUCO_BOARD, pose)
    with pytest.raises(ValueError, match="texture"):
        render_board(camera, CHARUCO_BOARD, pose, texture=np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="pixels_per_mm"):
        board_texture(CHARUCO_BOARD, pixels_per_mm=0)


# --- sequences ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene():
    calibration = make_rig(2, seed=1)
    poses = board_trajectory(BIG_BOARD, 40, seed=2, rig=calibration)[::8]
    return calibration, poses


def test_sequence_agrees_with_board_observations(scene):
    calibration, poses = scene
    images = render_board_sequence(
        calibration, BIG_BOARD, poses, seed=3, image_scale=SCALE, progress=False
    )
    assert images.shape == (len(poses), 2, 512, 640) and images.dtype == np.uint8
    scaled = stack_cameras([scale_camera(calibration.rig[i], SCALE) for i in range(2)])
    truth, visible = board_observations(BIG_BOARD, poses, scaled, noise_px=0.0, seed=0)
    errors, detected = [], 0
    for f in range(len(poses)):
        for c in range(2):
            corners, ids = _detect_charuco(BIG_BOARD, images[f, c])
            detected += len(ids)
            assert np.all(visible[f, c, ids])  # nothing found where the corner is not seen
            errors.append(np.linalg.norm(corners - truth[f, c, ids], axis=-1))
    errors = np.concatenate(errors)
    assert detected >= 0.6 * visible.sum()
    assert np.median(errors) < 0.5, errors


def test_written_images_are_the_rendered_sequence(scene, tmp_path):
    calibration, poses = scene
    options = dict(seed=7, image_scale=0.25, progress=False)
    images = render_board_sequence(calibration, BIG_BOARD, poses, **options)
    again = np.stack(
        [im for _, _, im in iter_board_images(calibration, BIG_BOARD, poses, **options)]
    )
    np.testing.assert_array_equal(again, images.reshape(-1, *images.shape[2:]))
    folders = write_board_images(tmp_path, calibration, BIG_BOARD, poses, **options)
    assert list(folders) == list(calibration.names)
    for c, name in enumerate(calibration.names):
        files = sorted(folders[name].iterdir())
        assert [p.name for p in files] == [f"frame_{f:04d}.png" for f in range(len(poses))]
        for f, path in enumerate(files):
            np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), images[f, c])
    # Different frames get different lighting and noise.
    assert not np.array_equal(images[0, 0], images[1, 0])


def test_written_videos_read_back(scene, tmp_path):
    calibration, poses = scene
    options = dict(seed=7, image_scale=0.25, progress=False)
    paths = write_board_videos(tmp_path, calibration, BIG_BOARD, poses, fps=15.0, **options)
    images = render_board_sequence(calibration, BIG_BOARD, poses, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam0.mp4", "cam1.mp4"]
    for c, name in enumerate(calibration.names):
        capture = cv2.VideoCapture(str(paths[name]))
        assert capture.isOpened()
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(poses)
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        capture.release()
        assert len(frames) == len(poses)
        assert frames[0].shape == (256, 320)
        # Lossy, but the same pictures.
        for f, frame in enumerate(frames):
            assert np.abs(frame.astype(float) - images[f, c]).mean() < 6.0
