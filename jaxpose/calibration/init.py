"""Initialisation of a multi-camera calibration from board sightings, without any manual step.

1. intrinsics per camera (OpenCV `calibrateCamera` on an even sample of that camera's views);
2. the board's pose in each camera and frame (PnP);
3. camera extrinsics through a pose graph: every pair of cameras that saw the board in the same
   frames gets a robust average of its relative pose, the graph's maximum spanning tree (edge
   weight = shared frames) is walked from the reference camera, and poses compose along it;
4. the board's pose in the world for every frame, from the camera that sees it best.

Input layout: corners (frame, cam, corner, 2) in pixels, NaN where a corner was not detected.
Everything is deterministic: the same detections give the same start, bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np


class CalibrationInputError(ValueError):
    """Board detections that cannot calibrate a rig; the message names the camera and what to do."""


@dataclasses.dataclass(frozen=True)
class Initialisation:
    """Starting values for bundle adjustment (float64, OpenCV conventions).

    Attributes:
        intrinsics: (cam, 3, 3) K matrices.
        distortion: (cam, 5) k1 k2 p1 p2 k3.
        rotation: (cam, 3) axis-angle world -> camera (camera `reference` is the identity).
        translation: (cam, 3) world -> camera, mm.
        board_poses: (frame, 6) axis-angle + translation, board -> world; NaN for frames that
            no camera saw well enough.
        camera_board: (frame, cam, 6) board -> camera poses from PnP; NaN where none.
        tree: list of (parent, child, shared_frames) edges of the spanning tree used.
    """

    intrinsics: np.ndarray
    distortion: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    board_poses: np.ndarray
    camera_board: np.ndarray
    tree: list[tuple[int, int, int]]


def _rt_to_matrix(rvec, tvec) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = cv2.Rodrigues(np.asarray(rvec, np.float64).reshape(3))[0]
    m[:3, 3] = np.asarray(tvec, np.float64).reshape(3)
    return m


def _matrix_to_rt(m: np.ndarray) -> np.ndarray:
    return np.concatenate([cv2.Rodrigues(m[:3, :3])[0].ravel(), m[:3, 3]])


def _spread(board_xy: np.ndarray) -> float:
    """How far board points are from lying on one line: the smaller singular value of their
    centred coordinates over the larger (0 for a single row or column of corners)."""
    centred = board_xy - board_xy.mean(0)
    sv = np.linalg.svd(centred, compute_uv=False)
    return float(sv[-1] / sv[0]) if sv[0] > 0 else 0.0


def _frames_with_corners(
    corners_cam: np.ndarray, min_corners: int, object_points: np.ndarray | None = None
) -> np.ndarray:
    """Frames (indices) of one camera with at least `min_corners` detected corners that do not
    all lie on one line of the board (such a view makes calibrateCamera and PnP degenerate)."""
    found = np.all(np.isfinite(corners_cam), -1)
    frames = np.nonzero(found.sum(-1) >= min_corners)[0]
    if object_points is None:
        return frames
    return np.array([f for f in frames if _spread(object_points[found[f], :2]) > 0.05], dtype=int)


def init_intrinsics(
    object_points: np.ndarray,
    corners_cam: np.ndarray,
    image_size: Sequence[int],
    *,
    camera: str,
    min_corners: int = 6,
    max_views: int = 40,
    fix_k3: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """K (3, 3) and distortion (5,) of one camera from its board views.

    Args:
        object_points: (corner, 3) board corners in the board frame.
        corners_cam: (frame, corner, 2) detections of this camera, NaN where missing.
        image_size: (width, height).
        camera: name, for error messages.
        min_corners: views with fewer corners are not used.
        max_views: at most this many views, evenly spread over the recording.
        fix_k3: keep k3 = 0 at this stage (bundle adjustment may free it).
    """
    frames = _frames_with_corners(corners_cam, min_corners, object_points)
    if len(frames) < 3:
        raise CalibrationInputError(
            f"camera {camera!r}: the board was detected with >= {min_corners} corners in only "
            f"{len(frames)} frames; at least 3 are needed (10+ recommended) to estimate its "
            "intrinsics. Record more board views for this camera, or give its intrinsics."
        )
    if len(frames) > max_views:
        frames = frames[np.linspace(0, len(frames) - 1, max_views).round().astype(int)]
    obj, img = [], []
    for f in frames:
        ok = np.all(np.isfinite(corners_cam[f]), -1)
        obj.append(object_points[ok].astype(np.float32))
        img.append(corners_cam[f][ok].astype(np.float32))
    w, h = int(image_size[0]), int(image_size[1])
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    # A planar board needs a starting K for partial (ChArUco) views: a 60-degree guess.
    k0 = np.array([[w / (2 * np.tan(np.radians(30))), 0, w / 2], [0, 0, h / 2], [0, 0, 1.0]])
    k0[1, 1] = k0[0, 0]
    try:
        rms, k, dist, _, _ = cv2.calibrateCamera(
            obj, img, (w, h), k0, np.zeros(5), flags=flags | cv2.CALIB_USE_INTRINSIC_GUESS
        )
    except cv2.error as e:
        raise CalibrationInputError(
            f"camera {camera!r}: OpenCV could not estimate intrinsics from {len(frames)} views "
            f"({e.msg.strip() if hasattr(e, 'msg') else e}); the views may be too few or all "
            "fronto-parallel: record the board at several tilts."
        ) from None
    return np.asarray(k, np.float64), np.asarray(dist, np.float64).ravel()[:5]


def board_poses_in_camera(
    object_points: np.ndarray,
    corners_cam: np.ndarray,
    k: np.ndarray,
    dist: np.ndarray,
    *,
    min_corners: int = 6,
    max_rms_px: float = 5.0,
) -> np.ndarray:
    """(frame, 6) board -> camera pose per frame by PnP; NaN where too few corners or a bad fit."""
    out = np.full((corners_cam.shape[0], 6), np.nan)
    for f in _frames_with_corners(corners_cam, min_corners, object_points):
        ok = np.all(np.isfinite(corners_cam[f]), -1)
        obj = object_points[ok].astype(np.float64)
        img = corners_cam[f][ok].astype(np.float64)
        success, rvec, tvec = cv2.solvePnP(obj, img, k, dist, flags=cv2.SOLVEPNP_IPPE)
        if not success:
            continue
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, k, dist, rvec, tvec)
        proj, _ = cv2.projectPoints(obj, rvec, tvec, k, dist)
        rms = np.sqrt(np.mean(np.sum((proj[:, 0] - img) ** 2, -1)))
        if rms <= max_rms_px and tvec[2, 0] > 0:
            out[f] = np.concatenate([rvec.ravel(), tvec.ravel()])
    return out


def _average_rotation(mats: np.ndarray) -> np.ndarray:
    """Robust mean of rotation matrices (n, 3, 3): the medoid, then the chordal L2 mean of the
    rotations within 5 degrees of it (projected back onto SO(3) by SVD)."""
    n = len(mats)
    if n == 1:
        return mats[0]
    # angle between each pair: arccos((trace(Ri^T Rj) - 1) / 2)
    tr = np.einsum("aij,bij->ab", mats, mats)
    ang = np.arccos(np.clip((tr - 1) / 2, -1, 1))
    medoid = int(np.argmin(np.sum(ang, 1)))
    close = ang[medoid] < np.radians(5.0)
    u, _, vt = np.linalg.svd(np.sum(mats[close], 0))
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def relative_pose(cam_board: np.ndarray, a: int, b: int) -> tuple[np.ndarray | None, int]:
    """Robust estimate of T_b<-a (4x4) from frames where both cameras saw the board."""
    both = np.all(np.isfinite(cam_board[:, a]), -1) & np.all(np.isfinite(cam_board[:, b]), -1)
    frames = np.nonzero(both)[0]
    if len(frames) == 0:
        return None, 0
    rel = np.stack(
        [
            _rt_to_matrix(cam_board[f, b, :3], cam_board[f, b, 3:])
            @ np.linalg.inv(_rt_to_matrix(cam_board[f, a, :3], cam_board[f, a, 3:]))
            for f in frames
        ]
    )
    r = _average_rotation(rel[:, :3, :3])
    t = np.median(rel[:, :3, 3], 0)
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, t
    return m, len(frames)


def init_extrinsics(
    cam_board: np.ndarray, names: Sequence[str], *, reference: int = 0, min_shared: int = 2
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """(cam, 4, 4) world(= reference camera) -> camera transforms through a maximum spanning tree.

    Raises:
        CalibrationInputError: a camera shares too few board frames with the rest of the rig.
    """
    num_cams = cam_board.shape[1]
    pair_pose: dict[tuple[int, int], np.ndarray] = {}
    weight = np.zeros((num_cams, num_cams), int)
    for a in range(num_cams):
        for b in range(num_cams):
            if a == b:
                continue
            m, n = relative_pose(cam_board, a, b)
            if m is not None and n >= min_shared:
                pair_pose[(a, b)] = m
                weight[a, b] = n
    # Prim's algorithm for the maximum spanning tree, from the reference camera.
    world_to_cam = {reference: np.eye(4)}
    tree: list[tuple[int, int, int]] = []
    while len(world_to_cam) < num_cams:
        best = None
        for a in world_to_cam:
            for b in range(num_cams):
                if b not in world_to_cam and weight[a, b] > 0:
                    if best is None or weight[a, b] > best[2]:
                        best = (a, b, int(weight[a, b]))
        if best is None:
            missing = [names[c] for c in range(num_cams) if c not in world_to_cam]
            shared = {
                names[c]: int(max(weight[c].max(), weight[:, c].max()))
                for c in range(num_cams)
                if c not in world_to_cam
            }
            raise CalibrationInputError(
                f"cameras {missing} share fewer than {min_shared} board frames with the cameras "
                f"connected to {names[reference]!r} (most shared frames: {shared}). Record the "
                "board where these cameras and their neighbours see it at the same time."
            )
        a, b, n = best
        world_to_cam[b] = pair_pose[(a, b)] @ world_to_cam[a]
        tree.append(best)
    return np.stack([world_to_cam[c] for c in range(num_cams)]), tree


def initialise(
    object_points: np.ndarray,
    corners: np.ndarray,
    image_sizes: np.ndarray,
    names: Sequence[str],
    *,
    known_intrinsics: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
    reference: int = 0,
    min_corners: int = 6,
    fix_k3: bool = True,
) -> Initialisation:
    """All starting values for bundle adjustment.

    Args:
        object_points: (corner, 3) board corners.
        corners: (frame, cam, corner, 2) detections, NaN where missing.
        image_sizes: (cam, 2) width, height.
        names: camera names (for messages).
        known_intrinsics: {cam index: (K, distortion)} for cameras whose intrinsics are known.
        reference: the camera that defines the world frame.
        min_corners: fewest corners for a usable view.
        fix_k3: keep k3 = 0 in the OpenCV initialisation.
    """
    num_frames, num_cams = corners.shape[:2]
    known_intrinsics = known_intrinsics or {}
    for c in range(num_cams):
        if not np.any(np.isfinite(corners[:, c])):
            raise CalibrationInputError(
                f"camera {names[c]!r}: the board was never detected. Check that this camera's "
                "images show the board, and that the board config (squares, dictionary, marker "
                "size) matches the printed board."
            )
    ks, dists = [], []
    for c in range(num_cams):
        if c in known_intrinsics:
            k, d = known_intrinsics[c]
            ks.append(np.asarray(k, np.float64))
            dists.append(np.pad(np.asarray(d, np.float64).ravel(), (0, 5))[:5])
        else:
            k, d = init_intrinsics(
                object_points,
                corners[:, c],
                image_sizes[c],
                camera=names[c],
                min_corners=min_corners,
                fix_k3=fix_k3,
            )
            ks.append(k)
            dists.append(d)
    cam_board = np.stack(
        [
            board_poses_in_camera(
                object_points, corners[:, c], ks[c], dists[c], min_corners=min_corners
            )
            for c in range(num_cams)
        ],
        1,
    )
    w2c, tree = init_extrinsics(cam_board, names, reference=reference)
    # board -> world per frame from the camera that saw the most corners
    counts = np.all(np.isfinite(corners), -1).sum(-1)  # (frame, cam)
    counts = np.where(np.all(np.isfinite(cam_board), -1), counts, -1)
    board_poses = np.full((num_frames, 6), np.nan)
    for f in range(num_frames):
        c = int(np.argmax(counts[f]))
        if counts[f, c] < 0:
            continue
        b2c = _rt_to_matrix(cam_board[f, c, :3], cam_board[f, c, 3:])
        board_poses[f] = _matrix_to_rt(np.linalg.inv(w2c[c]) @ b2c)
    return Initialisation(
        intrinsics=np.stack(ks),
        distortion=np.stack(dists),
        rotation=np.stack([cv2.Rodrigues(m[:3, :3])[0].ravel() for m in w2c]),
        translation=w2c[:, :3, 3].copy(),
        board_poses=board_poses,
        camera_board=cam_board,
        tree=tree,
    )
