"""A seeded hand-held calibration board waved through a rig, and what each camera sees of it.

The `Board` type lives in `jaxpose.calibration.board` (re-exported here). Board frame (OpenCV's):
origin at the top-left outer corner of the printed board, x to the right along a row of squares,
y down the columns, z = x cross y pointing into the board, away from a camera that sees the
pattern. Inner corners are numbered row-major: corner
id = row * (cols - 1) + col sits at ((col + 1) * square, (row + 1) * square, 0), exactly
`cv2.aruco.CharucoBoard.getChessboardCorners()`, and the order `cv2.findChessboardCorners`
reports for a pattern size of (cols - 1, rows - 1) seen upright.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation

from jaxpose.calibration.board import CHARUCO, CHECKERBOARD, Board
from jaxpose.geometry.camera import Camera
from jaxpose.io.calibration import Calibration
from jaxpose.synth.rig import _as_numpy_rig, camera_centers, in_view

__all__ = [
    "CHARUCO",
    "CHECKERBOARD",
    "Board",
    "board_observations",
    "board_points",
    "board_trajectory",
]


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _smooth_keys(values: np.ndarray, num_frames: int, step: int) -> np.ndarray:
    """Cubic-spline a (keys, d) array of key values spaced `step` frames apart onto num_frames."""
    keys = np.arange(len(values)) * step
    spline = CubicSpline(keys, values, axis=0, bc_type="natural")
    return spline(np.arange(num_frames, dtype=np.float64))


def _facing_rotation(normal: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(frame, 3, 3) board -> world rotations whose pattern faces along `normal` (frame, 3).

    The pattern side is the board's -z side, so board z = -normal; board x is horizontal and
    the board upright (x to the right and y down for a camera facing it) before the in-plane
    `roll` (radians) turns it about the normal.
    """
    z = -normal / np.linalg.norm(normal, axis=-1, keepdims=True)
    x = np.cross(z, np.array([0.0, 0.0, 1.0]))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    x, y = c * x + s * y, -s * x + c * y
    return np.stack([x, y, z], -1)  # columns are the board axes in world coordinates


def _key_positions(
    rng: np.random.Generator,
    num_keys: int,
    spread_mm: float,
    height_mm: tuple[float, float],
    rig: Camera | Calibration | None,
) -> np.ndarray:
    """(keys, 3) board centres in a cylinder; with a rig, only where >= 2 cameras see them.

    Cameras aimed at the arena floor do not see the top of a tall cylinder; a person waving a
    board watches the cameras' live view and keeps it where cameras can see it.
    """
    out = np.empty((num_keys, 3))
    if rig is not None:
        rig = _as_numpy_rig(rig)
        margin = 0.15 * float(np.min(rig.image_size))
    for k in range(num_keys):
        for _ in range(100):
            radius = spread_mm * np.sqrt(rng.uniform())
            where = rng.uniform(-np.pi, np.pi)
            p = np.array([radius * np.cos(where), radius * np.sin(where), rng.uniform(*height_mm)])
            if rig is None:
                break
            if in_view(rig, p, margin_px=margin)[1].sum() >= 2:
                break
        out[k] = p
    return out


def board_trajectory(
    board: Board,
    num_frames: int,
    *,
    seed: int,
    rig: Camera | Calibration | None = None,
    height_mm: tuple[float, float] = (150.0, 400.0),
    spread_mm: float = 120.0,
    max_tilt_deg: float = 50.0,
) -> np.ndarray:
    """Poses of a hand-held board waved smoothly through the capture volume.

    The board centre wanders within `spread_mm` of the arena axis at heights in `height_mm`
    (with a rig: only where at least two cameras see it).
    The pattern faces outward toward the cameras' ring: its normal sweeps in azimuth (toward one
    camera after another, or midway between neighbours, when `rig` is given; at random
    otherwise) and tilts up to `max_tilt_deg` above the horizontal, and the board turns in its
    own plane by up to +-30 degrees. Key poses (a fraction of a second apart, so a rig's every
    camera is faced within `num_frames`) are joined by cubic splines.

    Args:
        board: the board.
        num_frames: number of frames, >= 0.
        seed: seed for `numpy.random.default_rng`.
        rig: optional rig (or `Calibration`) to aim the board at.
        height_mm: (low, high) range of the board centre's height, mm.
        spread_mm: how far the board centre strays from the arena axis, mm.
        max_tilt_deg: largest elevation of the pattern normal above the horizontal, degrees.

    Returns:
        (frame, 6) float64 board -> world poses: axis-angle (3) then translation (3), mm.
    """
    num_frames = _check_count("num_frames", num_frames, 0)
    if not 0.0 <= max_tilt_deg < 90.0:
        raise ValueError(f"max_tilt_deg must be in [0, 90), got {max_tilt_deg}")
    lo, hi = (float(h) for h in height_mm)
    if not lo <= hi:
        raise ValueError(f"height_mm must be (low, high) with low <= high, got {height_mm}")
    if num_frames == 0:
        return np.zeros((0, 6))
    rng = np.random.default_rng(seed)
    if rig is not None:
        centres = camera_centers(rig)[:, :2]
        cam_az = np.sort(np.arctan2(centres[:, 1], centres[:, 0]))
        # Face each camera in turn, and the gap between neighbours so both see the board: the
        # person holding it turns steadily round the ring, starting anywhere, either way.
        gaps = np.diff(np.append(cam_az, cam_az[0] + 2 * np.pi)) / 2
        ring = np.stack([cam_az, cam_az + gaps], -1).ravel()
        step = int(np.clip(num_frames // (len(ring) + 1), 6, 25))
        num_keys = num_frames // step + 2
        order = rng.integers(len(ring)) + rng.choice([-1, 1]) * np.arange(num_keys)
        az = np.unwrap(ring[order % len(ring)]) + rng.normal(0.0, 0.15, num_keys)
    else:
        step = 25  # frames between key poses (under a second at 30 fps)
        num_keys = num_frames // step + 2
        az = rng.uniform(-np.pi, np.pi, num_keys)
    az = np.unwrap(az)  # turn the short way between key azimuths
    tilt = np.deg2rad(rng.uniform(0.0, max_tilt_deg, num_keys))
    roll = np.deg2rad(rng.uniform(-30.0, 30.0, num_keys))
    centre = _key_positions(rng, num_keys, spread_mm, (lo, hi), rig)
    keys = np.concatenate([np.stack([az, tilt, roll], -1), centre], -1)
    az, tilt, roll, x, y, z = _smooth_keys(keys, num_frames, step).T
    # Splines overshoot a little between keys; keep the promised ranges.
    tilt = np.clip(tilt, 0.0, np.deg2rad(max_tilt_deg))
    z = np.clip(z, lo, hi)
    normal = np.stack([np.cos(tilt) * np.cos(az), np.cos(tilt) * np.sin(az), np.sin(tilt)], -1)
    rot = _facing_rotation(normal, roll)
    centre = np.stack([x, y, z], -1)
    translation = centre - rot @ board.center()
    return np.concatenate([Rotation.from_matrix(rot).as_rotvec(), translation], -1)


def camera_sweep(
    board: Board,
    rig: Camera | Calibration,
    frames_per_camera: int,
    *,
    seed: int,
    size_fraction: tuple[float, float] = (0.3, 0.55),
    max_tilt_deg: float = 40.0,
) -> np.ndarray:
    """Board poses held close in front of each camera in turn, spread over its whole field of
    view, as people do to calibrate intrinsics: the board's centre visits a stratified grid of
    image positions (edges and corners included), tilted up to `max_tilt_deg` toward random
    directions, at distances where it spans `size_fraction` of the image width.

    Args:
        board: the board.
        rig: the cameras.
        frames_per_camera: poses per camera.
        seed: seed for `numpy.random.default_rng`.
        size_fraction: (low, high) apparent board width as a fraction of the image width.
        max_tilt_deg: largest angle between the board normal and the line of sight, degrees.

    Returns:
        (cam * frames_per_camera, 6) board -> world poses, camera by camera.
    """
    frames_per_camera = _check_count("frames_per_camera", frames_per_camera, 0)
    cams = _as_numpy_rig(rig)
    rng = np.random.default_rng(seed)
    rot_wc = Rotation.from_rotvec(np.asarray(cams.rotation)).as_matrix()  # world -> camera
    centres = camera_centers(cams)
    width_mm = board.size_mm[0]
    poses = []
    for c in range(rot_wc.shape[0]):
        (fx, fy), (cx, cy) = np.asarray(cams.focal[c]), np.asarray(cams.principal_point[c])
        w, h = np.asarray(cams.image_size[c])
        # stratified positions over a 4 x 3 grid of image cells, cycling through the cells
        cells = rng.permutation(12)[np.arange(frames_per_camera) % 12]
        u = ((cells % 4) + rng.uniform(0, 1, frames_per_camera)) / 4 * 0.8 * w + 0.1 * w
        v = ((cells // 4) + rng.uniform(0, 1, frames_per_camera)) / 3 * 0.8 * h + 0.1 * h
        frac = rng.uniform(*size_fraction, frames_per_camera)
        dist = fx * width_mm / (frac * w)
        ray = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)
        ray /= np.linalg.norm(ray, axis=-1, keepdims=True)
        centre = centres[c] + (dist[:, None] * ray) @ rot_wc[c]  # camera -> world
        to_cam = centres[c] - centre
        to_cam /= np.linalg.norm(to_cam, axis=-1, keepdims=True)
        # tilt the normal away from the line of sight about a random perpendicular axis
        axis = np.cross(to_cam, rng.normal(size=(frames_per_camera, 3)))
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        angle = np.deg2rad(rng.uniform(0.0, max_tilt_deg, frames_per_camera))
        normal = Rotation.from_rotvec(axis * angle[:, None]).apply(to_cam)
        roll = np.deg2rad(rng.uniform(-30.0, 30.0, frames_per_camera))
        rot = _facing_rotation(normal, roll)
        translation = centre - rot @ board.center()
        poses.append(np.concatenate([Rotation.from_matrix(rot).as_rotvec(), translation], -1))
    return np.concatenate(poses) if poses else np.zeros((0, 6))


def calibration_session(
    board: Board,
    rig: Camera | Calibration,
    num_frames: int,
    *,
    seed: int,
    sweep_fraction: float = 0.4,
) -> np.ndarray:
    """A whole calibration recording: a share of frames with the board close to each camera in
    turn (`camera_sweep`, for intrinsics), the rest waved through the shared volume
    (`board_trajectory`, for the cameras' relative poses).

    Returns:
        (num_frames, 6) board -> world poses.
    """
    num_frames = _check_count("num_frames", num_frames, 0)
    if not 0.0 <= sweep_fraction <= 1.0:
        raise ValueError(f"sweep_fraction must be in [0, 1], got {sweep_fraction}")
    num_cams = _as_numpy_rig(rig).rotation.shape[0]
    per_camera = int(round(sweep_fraction * num_frames / num_cams))
    sweep = camera_sweep(board, rig, per_camera, seed=seed + 1)
    shared = board_trajectory(board, num_frames - len(sweep), seed=seed, rig=rig)
    return np.concatenate([shared, sweep])


def board_points(board: Board, poses: np.ndarray) -> np.ndarray:
    """(frame, corner, 3) world positions of the board corners at poses (frame, 6)."""
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 2 or poses.shape[-1] != 6:
        raise ValueError(f"poses must have shape (frame, 6), got {poses.shape}")
    rot = Rotation.from_rotvec(poses[:, :3]).as_matrix() if len(poses) else np.zeros((0, 3, 3))
    return np.einsum("fij,nj->fni", rot, board.corners()) + poses[:, None, 3:]


def board_observations(
    board: Board,
    poses: np.ndarray,
    rig: Camera | Calibration,
    *,
    noise_px: float,
    seed: int,
    max_angle_deg: float = 75.0,
    margin_px: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """What each camera detects of the board: noisy corner pixels and a visibility mask.

    A corner is visible when it is in front of the camera, inside the image (with `margin_px`),
    and the pattern faces the camera: the angle between the pattern normal and the direction to
    the camera is below `max_angle_deg`. A checkerboard is found whole or not at all (as
    `cv2.findChessboardCorners`), so its view is visible only if every corner is.

    Args:
        board: the board.
        poses: (frame, 6) board -> world poses, as `board_trajectory`.
        rig: the rig (or a `Calibration`).
        noise_px: standard deviation of the Gaussian pixel noise on each coordinate.
        seed: seed for `numpy.random.default_rng`.
        max_angle_deg: the steepest view at which the pattern is still detected.
        margin_px: distance to keep from the image border.

    Returns:
        uv: (frame, cam, corner, 2) float64 observed pixels, NaN where not visible.
        visible: (frame, cam, corner) bool.
    """
    if not noise_px >= 0:
        raise ValueError(f"noise_px must be >= 0, got {noise_px}")
    if not 0 < max_angle_deg <= 90:
        raise ValueError(f"max_angle_deg must be in (0, 90], got {max_angle_deg}")
    rig = _as_numpy_rig(rig)
    world = board_points(board, poses)  # (frame, corner, 3)
    uv, visible = in_view(rig, world, margin_px=margin_px)  # (cam, frame, corner, ...)
    uv, visible = uv.transpose(1, 0, 2, 3), visible.transpose(1, 0, 2)
    if len(world):
        # Pattern normal is the board's -z axis.
        normal = -Rotation.from_rotvec(np.asarray(poses)[:, :3]).as_matrix()[:, :, 2]
        to_cam = camera_centers(rig)[None, :, None, :] - world[:, None]  # (f, cam, n, 3)
        cos = np.einsum("fcni,fi->fcn", to_cam, normal) / np.linalg.norm(to_cam, axis=-1)
        visible &= cos > np.cos(np.deg2rad(max_angle_deg))
    if board.kind == CHECKERBOARD:
        visible &= visible.all(-1, keepdims=True)
    rng = np.random.default_rng(seed)
    observed = uv + noise_px * rng.standard_normal(uv.shape)
    observed[~visible] = np.nan
    return observed, visible
