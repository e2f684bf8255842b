"""A complete seeded synthetic study: rig, animated mouse, noisy 2D detections and a board.

`make_study()` is the embedded default data set for the demo and the tests: everything a real
session provides (calibration frames of a board, 2D keypoints with confidences from every camera)
together with the exact ground truth (3D keypoints, exact projections, outlier masks).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxpose.io.calibration import Calibration
from jaxpose.synth.board import Board, board_observations, board_trajectory
from jaxpose.synth.rig import in_view, make_rig, project_points
from jaxpose.synth.skeleton import Skeleton, animate, mouse_skeleton

# Outliers land at least this far from the true point, so an outlier is a gross error.
_OUTLIER_MIN_PX = 50.0


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticStudy:
    """A synthetic multi-camera recording with exact ground truth. Arrays are read-only.

    Attributes:
        calibration: the rig and its camera names.
        skeleton: keypoint names, edges and rest pose.
        points_3d: (frame, kpt, 3) exact 3D keypoints, mm.
        points_2d_true: (frame, cam, kpt, 2) exact projections (NaN behind the camera).
        points_2d: (frame, cam, kpt, 2) observations: exact + Gaussian noise, gross outliers
            uniform over the image, NaN where not visible.
        visible: (frame, cam, kpt) bool: in front of the camera, inside the image with a
            margin, and not occluded.
        outlier: (frame, cam, kpt) bool: the observation is a gross outlier (visible only).
        confidence: (frame, cam, kpt) in [0, 1]: 0.8-1 for inliers, 0.2-0.9 for outliers,
            0 where not visible.
        fps: frames per second.
        board: the calibration board.
        board_poses: (board_frame, 6) board -> world poses (axis-angle, translation mm).
        board_uv: (board_frame, cam, corner, 2) observed corners, NaN where not visible.
        board_visible: (board_frame, cam, corner) bool.
        noise_px: standard deviation of the pixel noise on each coordinate.
        outlier_fraction: requested fraction of visible observations that are outliers.
        seed: the seed everything was drawn from.
    """

    calibration: Calibration
    skeleton: Skeleton
    points_3d: np.ndarray
    points_2d_true: np.ndarray
    points_2d: np.ndarray
    visible: np.ndarray
    outlier: np.ndarray
    confidence: np.ndarray
    fps: float
    board: Board
    board_poses: np.ndarray
    board_uv: np.ndarray
    board_visible: np.ndarray
    noise_px: float = 0.0
    outlier_fraction: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    @property
    def num_frames(self) -> int:
        return self.points_3d.shape[0]

    @property
    def num_cameras(self) -> int:
        return len(self.calibration.names)

    @property
    def num_keypoints(self) -> int:
        return self.points_3d.shape[1]

    def summary(self) -> str:
        """A few lines describing the study, for logs and the demo."""
        vis = self.visible
        views = vis.sum(1)  # (frame, kpt)
        inliers = vis & ~self.outlier
        err = np.linalg.norm(self.points_2d - self.points_2d_true, axis=-1)[inliers]
        noise = f"{np.sqrt(np.mean(err**2) / 2):.2f}" if err.size else "n/a"
        cols, rows = self.board.squares
        board = f"  board: {self.board.kind} {cols}x{rows} squares of {self.board.square_mm:g} mm, "
        if len(self.board_poses):
            per_frame = self.board_visible.any(-1).sum(1).mean()
            board += f"{len(self.board_poses)} frames, {per_frame:.1f} cameras per frame"
        else:
            board += "no frames"
        return "\n".join(
            [
                f"SyntheticStudy(seed={self.seed}): {self.num_cameras} cameras, "
                f"{self.num_frames} frames at {self.fps:g} fps "
                f"({self.num_frames / self.fps:.1f} s), {self.num_keypoints} keypoints",
                f"  2D: {vis.mean():.1%} of views visible, {np.mean(views >= 2):.1%} of keypoints "
                f"seen by >= 2 cameras, noise {noise} px (asked {self.noise_px:g}), "
                f"outliers {self.outlier.sum() / max(vis.sum(), 1):.1%} of visible "
                f"(asked {self.outlier_fraction:.1%})",
                board,
            ]
        )


def _fraction(name: str, value: float, *, closed: bool) -> float:
    value = float(value)
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value}")
    return value


def make_study(
    *,
    num_cameras: int = 6,
    num_frames: int = 300,
    noise_px: float = 1.0,
    outlier_fraction: float = 0.0,
    occlusion_fraction: float = 0.05,
    num_board_frames: int = 100,
    seed: int = 0,
    fps: float = 30.0,
    board_kind: str = "charuco",
    board: Board | None = None,
    margin_px: float = 4.0,
    board_noise_px: float | None = None,
) -> SyntheticStudy:
    """Generate a seeded synthetic study: the same arguments give bit-identical arrays.

    Args:
        num_cameras: cameras in the rig, 2 to 16 (`make_rig`).
        num_frames: frames of mouse behaviour, >= 1.
        noise_px: standard deviation of the Gaussian noise on each pixel coordinate, >= 0.
        outlier_fraction: fraction of visible observations replaced by a gross outlier (a
            uniform point in the image at least 50 px from the truth), in [0, 1].
        occlusion_fraction: fraction of in-view observations hidden at random (self-occlusion),
            in [0, 1).
        num_board_frames: frames of the hand-held calibration board, >= 0.
        seed: the one seed all randomness derives from.
        fps: frame rate; motion is defined in seconds.
        board_kind: "charuco" or "checkerboard" (a default-sized board of that kind).
        board: a specific board (overrides board_kind), e.g. the one printed for a real rig.
        margin_px: a keypoint closer than this to the image border is not visible.
        board_noise_px: pixel noise on the board corners; None means `noise_px`. Sub-pixel
            corner detection is far more precise than keypoint labels, so a study of keypoint
            noise can keep the board realistic (about 0.1 to 0.5 px).

    Returns:
        A `SyntheticStudy`.

    Raises:
        ValueError: naming the argument that is out of range.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not noise_px >= 0:
        raise ValueError(f"noise_px must be >= 0, got {noise_px}")
    board_noise_px = noise_px if board_noise_px is None else board_noise_px
    if not board_noise_px >= 0:
        raise ValueError(f"board_noise_px must be >= 0, got {board_noise_px}")
    outlier_fraction = _fraction("outlier_fraction", outlier_fraction, closed=True)
    occlusion_fraction = _fraction("occlusion_fraction", occlusion_fraction, closed=False)
    if isinstance(num_board_frames, bool) or not isinstance(num_board_frames, (int, np.integer)):
        raise ValueError(f"num_board_frames must be an integer, got {num_board_frames!r}")
    if num_board_frames < 0:
        raise ValueError(f"num_board_frames must be >= 0, got {num_board_frames}")
    board = board if board is not None else Board(kind=board_kind)

    # Independent streams per component: changing one option (say the outlier fraction) leaves
    # everything drawn before it, and the other components, unchanged.
    streams = np.random.SeedSequence(seed).spawn(5)
    rig_seed, motion_seed, obs_seed, board_seed, board_obs_seed = (
        int(s.generate_state(1)[0]) for s in streams
    )
    calibration = make_rig(num_cameras, seed=rig_seed)
    skeleton = mouse_skeleton()
    points_3d = animate(skeleton, num_frames, seed=motion_seed, fps=fps)

    uv, in_image = in_view(calibration, points_3d, margin_px=margin_px)  # (cam, frame, kpt, ..)
    uv, in_image = uv.transpose(1, 0, 2, 3), in_image.transpose(1, 0, 2)
    _, depth = project_points(calibration, points_3d)
    points_2d_true = np.where(depth.transpose(1, 0, 2)[..., None] > 0, uv, np.nan)

    # Draw every random array at full shape, in a fixed order, whatever the options.
    rng = np.random.default_rng(obs_seed)
    shape = in_image.shape
    occluded = rng.random(shape) < occlusion_fraction
    noise = noise_px * rng.standard_normal(shape + (2,))
    is_outlier = rng.random(shape) < outlier_fraction
    inlier_conf = rng.uniform(0.8, 1.0, shape)
    outlier_conf = rng.uniform(0.2, 0.9, shape)
    size = calibration.rig.image_size[None, :, None, :]
    wild = rng.uniform(0.0, 1.0, shape + (2,)) * (size - 1.0)
    for _ in range(20):  # redraw the outliers that landed near the truth
        near = np.linalg.norm(wild - uv, axis=-1) < _OUTLIER_MIN_PX
        if not near.any():
            break
        limit = np.broadcast_to(size, wild.shape)[near] - 1.0
        wild[near] = rng.uniform(0.0, 1.0, (int(near.sum()), 2)) * limit

    visible = in_image & ~occluded
    outlier = visible & is_outlier
    observed = np.where(outlier[..., None], wild, uv + noise)
    observed[~visible] = np.nan
    confidence = np.where(outlier, outlier_conf, inlier_conf) * visible

    poses = board_trajectory(board, num_board_frames, seed=board_seed, rig=calibration)
    board_uv, board_visible = board_observations(
        board, poses, calibration, noise_px=board_noise_px, seed=board_obs_seed
    )
    return SyntheticStudy(
        calibration=calibration,
        skeleton=skeleton,
        points_3d=points_3d,
        points_2d_true=points_2d_true,
        points_2d=observed,
        visible=visible,
        outlier=outlier,
        confidence=confidence,
        fps=float(fps),
        board=board,
        board_poses=poses,
        board_uv=board_uv,
        board_visible=board_visible,
        noise_px=float(noise_px),
        outlier_fraction=outlier_fraction,
        seed=int(seed),
    )
