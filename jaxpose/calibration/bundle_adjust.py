"""Bundle adjustment of a whole rig and every board pose, in JAX (float64, exact derivatives).

One residual, for one detected corner:

    r = project(camera_c, R(pose_f) X_k + t(pose_f)) - u_{f,c,k}

with the full camera model of `jaxpose.geometry` (focal fx, fy, principal point, skew,
k1 k2 p1 p2 k3). `jaxpose.optim.least_squares.solve_schur_lm` batches it over all corners,
eliminates the board poses by the Schur complement and solves for the camera parameters.
Freeze masks and ties (equal fx = fy, one focal shared by all cameras, known intrinsics) are
a `slot_map`; nothing is random, so the same detections always give the same calibration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.geometry.camera import Camera, project
from jaxpose.geometry.rotation import rotate
from jaxpose.optim.least_squares import LeastSquaresResult, solve_schur_lm

# Layout of one camera's parameter vector.
SLOTS = (
    "rx",
    "ry",
    "rz",
    "tx",
    "ty",
    "tz",
    "fx",
    "fy",
    "cx",
    "cy",
    "skew",
    "k1",
    "k2",
    "p1",
    "p2",
    "k3",
)
SLOT = {name: i for i, name in enumerate(SLOTS)}
EXTRINSIC_SLOTS = ("rx", "ry", "rz", "tx", "ty", "tz")
INTRINSIC_SLOTS = tuple(s for s in SLOTS if s not in EXTRINSIC_SLOTS)


@dataclasses.dataclass(frozen=True)
class BundleAdjustOptions:
    """What bundle adjustment may change.

    Attributes:
        fix: slot names frozen for every camera (default: skew and k3), e.g. ["k3", "p1", "p2"].
        fix_intrinsics: cameras (indices) whose intrinsics are known and frozen.
        equal_focal: tie fx = fy in each camera (square pixels).
        share_focal: one focal length for every camera (implies nothing about fx = fy).
        reference: camera whose extrinsics define the world frame (frozen at identity).
        loss: robust loss on each corner's reprojection error ("linear", "huber", "cauchy").
        loss_scale_px: where that loss turns robust.
        max_iterations: Levenberg-Marquardt iteration limit.
        tolerance: stop at this relative cost decrease.
    """

    fix: tuple[str, ...] = ("skew", "k3")
    fix_intrinsics: tuple[int, ...] = ()
    equal_focal: bool = False
    share_focal: bool = False
    reference: int = 0
    loss: str = "huber"
    loss_scale_px: float = 2.0
    max_iterations: int = 100
    tolerance: float = 1e-12

    def __post_init__(self):
        # configs give lists; keep the documented (hashable) tuples
        object.__setattr__(self, "fix", tuple(self.fix))
        object.__setattr__(self, "fix_intrinsics", tuple(self.fix_intrinsics))
        unknown = [s for s in self.fix if s not in SLOT]
        if unknown:
            raise ValueError(f"unknown parameters to fix {unknown}; choose from {list(SLOTS)}")


def camera_vector(camera: Camera) -> np.ndarray:
    """A single Brown-Conrady camera -> its 16 parameters in `SLOTS` order."""
    if camera.model != "brown_conrady":
        raise NotImplementedError("bundle adjustment supports the Brown-Conrady model only (yet)")
    return np.concatenate(
        [
            np.asarray(camera.rotation),
            np.asarray(camera.translation),
            np.asarray(camera.focal),
            np.asarray(camera.principal_point),
            np.asarray(camera.skew).reshape(1),
            np.asarray(camera.distortion),
        ]
    ).astype(np.float64)


def vector_camera(params, image_size=None) -> Camera:
    """16 parameters in `SLOTS` order -> a `Camera` (traceable: used inside residuals)."""
    return Camera(
        rotation=params[0:3],
        translation=params[3:6],
        focal=params[6:8],
        principal_point=params[8:10],
        skew=params[10],
        distortion=params[11:16],
        image_size=jnp.zeros(2, params.dtype) if image_size is None else image_size,
    )


def corner_residual(camera_params, pose, data):
    """Reprojection residual (2,) of one board corner. data = (corner (3,), pixel (2,))."""
    corner, pixel = data
    point = rotate(pose[:3], corner) + pose[3:]
    return project(vector_camera(camera_params), point) - pixel


def build_slot_map(num_cameras: int, options: BundleAdjustOptions) -> np.ndarray:
    """(cam, 16) index of each slot in the free vector; -1 frozen; equal indices tied."""
    frozen = np.zeros((num_cameras, len(SLOTS)), bool)
    for name in options.fix:
        frozen[:, SLOT[name]] = True
    for c in options.fix_intrinsics:
        frozen[c, [SLOT[s] for s in INTRINSIC_SLOTS]] = True
    frozen[options.reference, [SLOT[s] for s in EXTRINSIC_SLOTS]] = True
    slot_map = np.full((num_cameras, len(SLOTS)), -1, np.int64)
    next_index = 0
    shared_focal: dict[str, int] = {}
    for c in range(num_cameras):
        for s, name in enumerate(SLOTS):
            if frozen[c, s]:
                continue
            key = name
            if name in ("fx", "fy") and c not in options.fix_intrinsics:
                if options.equal_focal:
                    key = "f"
                if options.share_focal:
                    if key in shared_focal:
                        slot_map[c, s] = shared_focal[key]
                        continue
                    shared_focal[key] = next_index
                elif options.equal_focal and name == "fy":
                    slot_map[c, s] = slot_map[c, SLOT["fx"]]
                    continue
            slot_map[c, s] = next_index
            next_index += 1
    return slot_map


@dataclasses.dataclass(frozen=True)
class BundleAdjustResult:
    """Refined cameras and board poses with their uncertainty.

    Attributes:
        cameras: (cam, 16) parameters in `SLOTS` order.
        standard_errors: (cam, 16) standard error of each parameter (0 where frozen).
        board_poses: (frame, 6) board -> world (NaN for frames not used).
        residuals: (obs, 2) final reprojection residuals in px.
        observation_camera: (obs,) camera of each residual.
        observation_frame: (obs,) frame of each residual.
        observation_corner: (obs,) board corner id of each residual.
        solver: the least-squares diagnostics.
    """

    cameras: np.ndarray
    standard_errors: np.ndarray
    board_poses: np.ndarray
    residuals: np.ndarray
    observation_camera: np.ndarray
    observation_frame: np.ndarray
    observation_corner: np.ndarray
    solver: LeastSquaresResult

    def per_camera_error(self) -> np.ndarray:
        """(cam, 2): mean and 95th percentile of the reprojection error in px."""
        err = np.linalg.norm(self.residuals, axis=-1)
        out = np.full((self.cameras.shape[0], 2), np.nan)
        for c in range(self.cameras.shape[0]):
            e = err[self.observation_camera == c]
            if e.size:
                out[c] = (e.mean(), np.percentile(e, 95))
        return out


def bundle_adjust(
    object_points: np.ndarray,
    corners: np.ndarray,
    cameras: np.ndarray,
    board_poses: np.ndarray,
    *,
    options: BundleAdjustOptions | None = None,
    callback=None,
) -> BundleAdjustResult:
    """Refine all cameras and board poses jointly.

    Args:
        object_points: (corner, 3) board corners in the board frame (mm).
        corners: (frame, cam, corner, 2) detections, NaN where missing.
        cameras: (cam, 16) starting parameters (`SLOTS` order).
        board_poses: (frame, 6) starting board -> world poses; NaN frames are left out.
        options: freeze masks, ties, robust loss.
        callback: called as callback(iteration, cost, damping).

    Returns:
        A `BundleAdjustResult`.
    """
    options = options or BundleAdjustOptions()
    num_frames, num_cams, num_corners = corners.shape[:3]
    if cameras.shape != (num_cams, len(SLOTS)):
        raise ValueError(f"cameras must be (cam={num_cams}, {len(SLOTS)}), got {cameras.shape}")
    valid_frame = np.all(np.isfinite(board_poses), -1)
    seen = np.all(np.isfinite(corners), -1) & valid_frame[:, None, None]
    f_idx, c_idx, k_idx = np.nonzero(seen)
    if f_idx.size == 0:
        raise ValueError("no board corners to adjust (every frame lacks a pose or detections)")
    used_frames = np.unique(f_idx)
    block_of_frame = np.full(num_frames, -1)
    block_of_frame[used_frames] = np.arange(len(used_frames))
    data = (
        object_points[k_idx].astype(np.float64),
        corners[f_idx, c_idx, k_idx].astype(np.float64),
    )
    slot_map = build_slot_map(num_cams, options)
    start = cameras.astype(np.float64).copy()
    # tied slots must start equal: use their mean
    for idx in np.unique(slot_map[slot_map >= 0]):
        where = slot_map == idx
        if where.sum() > 1:
            start[where] = start[where].mean()
    with jax.enable_x64(True):
        result = solve_schur_lm(
            corner_residual,
            start,
            board_poses[used_frames].astype(np.float64),
            slot_map=slot_map,
            entity=c_idx,
            block=block_of_frame[f_idx],
            data=data,
            loss=options.loss,
            loss_scale=options.loss_scale_px,
            max_iterations=options.max_iterations,
            tolerance=options.tolerance,
            callback=callback,
        )
    poses = np.full((num_frames, 6), np.nan)
    poses[used_frames] = result.local
    return BundleAdjustResult(
        cameras=result.shared,
        standard_errors=result.standard_errors,
        board_poses=poses,
        residuals=result.residuals,
        observation_camera=c_idx,
        observation_frame=f_idx,
        observation_corner=k_idx,
        solver=result,
    )


def cameras_to_vectors(rig: Camera) -> np.ndarray:
    return np.stack([camera_vector(rig[i]) for i in range(rig.num_cameras)])


def vectors_to_rig(vectors: np.ndarray, image_sizes: Sequence) -> Camera:
    """(cam, 16) parameters and (cam, 2) image sizes -> a rig of float64 NumPy cameras."""
    vectors = np.asarray(vectors, np.float64)
    sizes = np.asarray(image_sizes, np.float64)
    if vectors.ndim != 2 or vectors.shape[1] != len(SLOTS) or sizes.shape != (len(vectors), 2):
        raise ValueError(
            f"need (cam, {len(SLOTS)}) parameters and (cam, 2) image sizes, got "
            f"{vectors.shape} and {sizes.shape}"
        )
    return Camera(
        rotation=vectors[:, 0:3].copy(),
        translation=vectors[:, 3:6].copy(),
        focal=vectors[:, 6:8].copy(),
        principal_point=vectors[:, 8:10].copy(),
        skew=vectors[:, 10].copy(),
        distortion=vectors[:, 11:16].copy(),
        image_size=sizes,
    )


def camera_centres(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cam, 16) parameters -> camera centres (cam, 3) in the world and rotations (cam, 3, 3)."""
    rot = np.stack([cv2.Rodrigues(np.asarray(v[:3], np.float64))[0] for v in vectors])
    return -np.einsum("cji,cj->ci", rot, vectors[:, 3:6]), rot


def transform_world(vectors: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cameras (cam, 16) re-expressed in a new world frame X_new = r X_old + t."""
    out = np.array(vectors, np.float64)
    for c in range(len(out)):
        rc = cv2.Rodrigues(out[c, :3])[0]
        # x_cam = Rc X_old + tc = Rc r^T (X_new - t) + tc
        out[c, :3] = cv2.Rodrigues(rc @ r.T)[0].ravel()
        out[c, 3:6] = out[c, 3:6] - rc @ r.T @ t
    return out
