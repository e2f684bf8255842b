"""The camera model: pinhole projection with Brown-Conrady (OpenCV) or fisheye distortion.

A camera maps a world point X (mm) to a pixel u in four composable stages:

    world_to_camera    Xc = R(rotation) X + translation            (world -> camera frame)
    camera_to_plane    x  = (Xc_x / Xc_z, Xc_y / Xc_z)              (perspective division)
    distort            xd = D(x; distortion)                        (lens model)
    plane_to_pixel     u  = (fx xd + skew yd + cx,  fy yd + cy)     (intrinsics)

The conventions are OpenCV's and Anipose's: axis-angle rotation world -> camera, distortion
coefficients in OpenCV order (k1, k2, p1, p2, k3) or (k1, k2, k3, k4) for fisheye, pixel
coordinates with the origin at the centre of the top-left pixel. The skew term is MATLAB's
(DANNCE calibrations carry it); OpenCV calibrations have skew 0.

A `Camera` holds one camera; the same type with a leading axis on every field is a rig
(see `stack_cameras`). Functions take one camera and any leading batch of points; use
`jax.vmap` (or the `*_rig` helpers) for rigs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxpose.geometry.rotation import rotation_matrix

BROWN_CONRADY = "brown_conrady"
FISHEYE = "fisheye"
_NUM_COEFFS = {BROWN_CONRADY: 5, FISHEYE: 4}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Camera:
    """A calibrated camera. Leading axes on every field batch cameras: shape (cam,) is a rig.

    Attributes:
        rotation: (*batch, 3) axis-angle, world -> camera (as `cv2.Rodrigues`).
        translation: (*batch, 3) world -> camera, in world units (mm).
        focal: (*batch, 2) fx, fy in pixels.
        principal_point: (*batch, 2) cx, cy in pixels.
        skew: (*batch,) pixels; u gains skew * yd (MATLAB convention, 0 for OpenCV).
        distortion: (*batch, 5) k1 k2 p1 p2 k3 for Brown-Conrady, or (*batch, 4) k1..k4 for the
            fisheye model.
        image_size: (*batch, 2) width, height in pixels.
        model: "brown_conrady" or "fisheye"; static (not a traced array).
    """

    rotation: Array
    translation: Array
    focal: Array
    principal_point: Array
    skew: Array
    distortion: Array
    image_size: Array
    model: str = dataclasses.field(default=BROWN_CONRADY, metadata=dict(static=True))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.rotation.shape[:-1])

    @property
    def num_cameras(self) -> int:
        """Number of cameras in a rig (1 for a single camera)."""
        return int(np.prod(self.batch_shape)) if self.batch_shape else 1

    @property
    def dtype(self):
        return self.rotation.dtype

    def __getitem__(self, index) -> Camera:
        """Index a rig: `rig[2]` is one camera, `rig[1:3]` a smaller rig."""
        if not self.batch_shape:
            raise IndexError("a single Camera cannot be indexed; index a rig (leading cam axis)")
        return jax.tree_util.tree_map(lambda a: a[index], self)

    def __len__(self) -> int:
        if not self.batch_shape:
            raise TypeError("a single Camera has no length; a rig has a leading cam axis")
        return self.batch_shape[0]

    def astype(self, dtype) -> Camera:
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype), self)

    def intrinsic_matrix(self) -> Array:
        """(*batch, 3, 3) K = [[fx, skew, cx], [0, fy, cy], [0, 0, 1]]."""
        fx, fy = self.focal[..., 0], self.focal[..., 1]
        cx, cy = self.principal_point[..., 0], self.principal_point[..., 1]
        zero, one = jnp.zeros_like(fx), jnp.ones_like(fx)
        rows = [
            jnp.stack([fx, self.skew, cx], -1),
            jnp.stack([zero, fy, cy], -1),
            jnp.stack([zero, zero, one], -1),
        ]
        return jnp.stack(rows, -2)

    def rotation_matrix(self) -> Array:
        """(*batch, 3, 3) world -> camera rotation."""
        return rotation_matrix(self.rotation)

    def center(self) -> Array:
        """(*batch, 3) the camera centre in world coordinates, C = -R^T t."""
        r = self.rotation_matrix()
        return -jnp.einsum("...ji,...j->...i", r, self.translation)

    def projection_matrix(self) -> Array:
        """(*batch, 3, 4) P = K [R | t], valid for undistorted pixels."""
        rt = jnp.concatenate([self.rotation_matrix(), self.translation[..., None]], -1)
        return self.intrinsic_matrix() @ rt

    def __repr__(self) -> str:
        def fmt(a, digits=3):
            return np.array2string(
                np.asarray(a),
                precision=digits,
                suppress_small=True,
                separator=", ",
                max_line_width=200,
            )

        if self.batch_shape:
            lines = [f"Camera rig of {self.num_cameras} ({self.model}, {self.dtype}):"]
            flat = jax.tree_util.tree_map(
                lambda a: np.asarray(a).reshape(-1, *a.shape[len(self.batch_shape) :]), self
            )
            for i in range(self.num_cameras):
                lines.append(f"  [{i}] " + repr(flat[i]).replace("\n", "\n      "))
            return "\n".join(lines)
        w, h = np.asarray(self.image_size)
        return (
            f"Camera({self.model}, {int(round(float(w)))}x{int(round(float(h)))} px, "
            f"f={fmt(self.focal, 2)}, c={fmt(self.principal_point, 2)}, skew={float(self.skew):.3g}\n"
            f"       distortion={fmt(self.distortion, 5)}\n"
            f"       rotation={fmt(self.rotation, 5)} rad, translation={fmt(self.translation, 3)}, "
            f"centre={fmt(self.center(), 3)})"
        )


def make_camera(
    *,
    rotation: ArrayLike = (0.0, 0.0, 0.0),
    translation: ArrayLike = (0.0, 0.0, 0.0),
    focal: ArrayLike,
    principal_point: ArrayLike,
    skew: ArrayLike = 0.0,
    distortion: ArrayLike | None = None,
    image_size: ArrayLike,
    model: str = BROWN_CONRADY,
    dtype=None,
) -> Camera:
    """Build a `Camera` from plain numbers, checking shapes. `focal` may be a scalar (fx = fy).

    With `dtype=None` the fields are float64 NumPy arrays (exact, on the host); JAX converts them
    to its default precision when they enter a computation. Pass a dtype for JAX arrays.
    """
    if model not in _NUM_COEFFS:
        raise ValueError(f"unknown camera model {model!r}; expected one of {sorted(_NUM_COEFFS)}")
    ncoef = _NUM_COEFFS[model]
    focal = np.broadcast_to(np.asarray(focal, np.float64), (2,)) if np.ndim(focal) == 0 else focal
    if distortion is None:
        distortion = np.zeros(ncoef)
    fields = dict(
        rotation=(rotation, (3,)),
        translation=(translation, (3,)),
        focal=(focal, (2,)),
        principal_point=(principal_point, (2,)),
        skew=(skew, ()),
        distortion=(distortion, (ncoef,)),
        image_size=(image_size, (2,)),
    )
    out = {}
    for name, (value, shape) in fields.items():
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != shape:
            raise ValueError(
                f"camera field {name!r} must have shape {shape} for the {model} model, "
                f"got {arr.shape}"
            )
        out[name] = arr if dtype is None else jnp.asarray(arr, dtype=dtype)
    return Camera(**out, model=model)


ArrayLike = Array | np.ndarray | Sequence[float] | float


def stack_cameras(cameras: Sequence[Camera]) -> Camera:
    """Stack single cameras into a rig with a leading `cam` axis."""
    if not cameras:
        raise ValueError("cannot build a rig from zero cameras")
    models = {c.model for c in cameras}
    if len(models) != 1:
        raise ValueError(f"all cameras in a rig must share one model, got {sorted(models)}")
    leaves = jax.tree_util.tree_leaves(cameras)
    # Keep host float64 NumPy cameras as NumPy (exact); stack anything else with JAX.
    stack = np.stack if all(isinstance(a, np.ndarray) for a in leaves) else jnp.stack
    return jax.tree_util.tree_map(lambda *a: stack(a), *cameras)


def _check_single(camera: Camera, points: Array, last: int, what: str) -> None:
    if camera.rotation.ndim != 1:
        raise ValueError(
            f"expected a single camera (rotation shape (3,)), got batch shape {camera.batch_shape}; "
            "use the *_rig functions or jax.vmap for rigs"
        )
    if points.shape[-1:] != (last,):
        raise ValueError(f"{what} must have a last axis of {last}, got shape {points.shape}")


# --- stage 1: world -> camera -------------------------------------------------------------


def world_to_camera(camera: Camera, points: Array) -> Array:
    """World points (*pts, 3) -> camera-frame points (*pts, 3)."""
    points = jnp.asarray(points)
    _check_single(camera, points, 3, "points")
    return points @ camera.rotation_matrix().T + camera.translation


def camera_to_world(camera: Camera, points: Array) -> Array:
    """Camera-frame points (*pts, 3) -> world points (*pts, 3)."""
    points = jnp.asarray(points)
    _check_single(camera, points, 3, "points")
    return (points - camera.translation) @ camera.rotation_matrix()


# --- stage 2: lens distortion on the normalised image plane --------------------------------


def _coefficients(camera: Camera) -> tuple[Array, ...]:
    """The distortion coefficients as separate arrays of the camera's batch shape."""
    distortion = jnp.asarray(camera.distortion)
    return tuple(distortion[..., i] for i in range(distortion.shape[-1]))


def _brown_conrady(coeffs, x: Array, y: Array, *, jacobian: bool):
    k1, k2, p1, p2, k3 = coeffs
    xx, yy, xy = x * x, y * y, x * y
    r2 = xx + yy
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * xx)
    yd = y * radial + p1 * (r2 + 2.0 * yy) + 2.0 * p2 * xy
    if not jacobian:
        return xd, yd
    slope = k1 + r2 * (2.0 * k2 + 3.0 * r2 * k3)  # d radial / d r2
    j_xx = radial + 2.0 * xx * slope + 2.0 * p1 * y + 6.0 * p2 * x
    j_xy = 2.0 * xy * slope + 2.0 * p1 * x + 2.0 * p2 * y  # symmetric: d xd/dy = d yd/dx
    j_yy = radial + 2.0 * yy * slope + 6.0 * p1 * y + 2.0 * p2 * x
    return xd, yd, (j_xx, j_xy, j_xy, j_yy)


def _fisheye(coeffs, x: Array, y: Array, *, jacobian: bool):
    # OpenCV fisheye: theta = atan(r), theta_d = theta (1 + k1 t^2 + k2 t^4 + k3 t^6 + k4 t^8),
    # xd = (theta_d / r) x. theta_d / r -> 1 as r -> 0; the double where keeps gradients finite.
    k1, k2, k3, k4 = coeffs
    r2 = x * x + y * y
    small = r2 < 1e-16
    safe_r2 = jnp.where(small, 1.0, r2)
    r = jnp.sqrt(safe_r2)
    theta = jnp.arctan(r)
    t2 = theta * theta
    theta_d = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    scale = jnp.where(small, 1.0 + (k1 - 1.0 / 3.0) * r2, theta_d / r)
    if not jacobian:
        return x * scale, y * scale
    # d scale / d r2 = (d theta_d / d r - scale) / (2 r2), with d theta / d r = 1 / (1 + r2)
    dtheta_d = 1.0 + t2 * (3.0 * k1 + t2 * (5.0 * k2 + t2 * (7.0 * k3 + t2 * 9.0 * k4)))
    slope = (dtheta_d / (1.0 + safe_r2) - scale) / (2.0 * safe_r2)
    slope = jnp.where(small, k1 - 1.0 / 3.0, slope)
    j_xy = 2.0 * x * y * slope
    return (
        x * scale,
        y * scale,
        (scale + 2.0 * x * x * slope, j_xy, j_xy, scale + 2.0 * y * y * slope),
    )


def _distort_components(model: str, coeffs, x: Array, y: Array, *, jacobian: bool = False):
    """The lens map on separate x / y arrays: (xd, yd), and with `jacobian` also its 2x2
    Jacobian per point as four arrays (d xd/dx, d xd/dy, d yd/dx, d yd/dy). Written out in closed
    form on separate arrays: everything is elementwise, so XLA fuses it into one vectorised loop
    (a (..., 2, 2) Jacobian from autodiff runs as a loop over tiny matrices on a CPU)."""
    if model == FISHEYE:
        return _fisheye(coeffs, x, y, jacobian=jacobian)
    return _brown_conrady(coeffs, x, y, jacobian=jacobian)


def distort(camera: Camera, xy: Array) -> Array:
    """Undistorted normalised coordinates (*pts, 2) -> distorted normalised coordinates."""
    xy = jnp.asarray(xy)
    xd, yd = distort_xy(camera, xy[..., 0], xy[..., 1])
    return jnp.stack([xd, yd], -1)


def distort_xy(camera: Camera, x: Array, y: Array, *, jacobian: bool = False):
    """`distort` on separate coordinate arrays: x, y (*pts) -> xd, yd (*pts).

    The camera's batch shape broadcasts against `*pts` (a rig with fields shaped (cam, 1, k)
    distorts (cam, n) arrays camera by camera). With `jacobian=True` also returns the 2x2
    Jacobian of the map per point, as four arrays (d xd/dx, d xd/dy, d yd/dx, d yd/dy).
    """
    return _distort_components(camera.model, _coefficients(camera), x, y, jacobian=jacobian)


def _solve2(jac, rx: Array, ry: Array) -> tuple[Array, Array]:
    """J^-1 r for per-point 2x2 matrices J given as four arrays (Cramer's rule, elementwise)."""
    a, b, c, d = jac
    det = a * d - b * c
    det = jnp.where(jnp.abs(det) < 1e-30, 1e-30, det)
    return (d * rx - b * ry) / det, (a * ry - c * rx) / det


def undistort(camera: Camera, xy_distorted: Array, *, iterations: int = 20) -> Array:
    """Distorted normalised coordinates (*pts, 2) -> undistorted ones, inverting `distort`.

    Damped Newton iterations (each step halved until the residual drops), started at the
    distorted point: quadratic convergence, and no divergence where strong radial terms bend the
    mapping. Points with no preimage (outside the range of a strongly distorting lens) come out
    as NaN. The result is differentiable by the implicit function theorem: the iterations run
    without gradient and one final Newton step carries the exact derivative
    d(undistort)/d(.) = -J^-1 d(distort)/d(.). See `undistort_xy`.
    """
    xy_distorted = jnp.asarray(xy_distorted)
    x, y = undistort_xy(camera, xy_distorted[..., 0], xy_distorted[..., 1], iterations=iterations)
    return jnp.stack([x, y], -1)


def undistort_xy(
    camera: Camera, x_distorted: Array, y_distorted: Array, *, iterations: int = 20
) -> tuple[Array, Array]:
    """`undistort` on separate coordinate arrays: xd, yd (*pts) -> x, y (*pts), NaN where a point
    has no preimage.

    The camera's batch shape broadcasts against `*pts` as in `distort_xy`. All points iterate
    together as whole arrays, with closed-form 2x2 Newton steps, until none improves any more:
    typical lenses take 1-4 iterations, points near the fold of a strong radial map more (at most
    `iterations` Newton steps, each with up to four step lengths tried).
    """
    coeffs = _coefficients(camera)
    x_distorted, y_distorted = jnp.asarray(x_distorted), jnp.asarray(y_distorted)
    shape = jnp.broadcast_shapes(x_distorted.shape, y_distorted.shape, *(c.shape for c in coeffs))
    x_distorted = jnp.broadcast_to(x_distorted, shape)
    y_distorted = jnp.broadcast_to(y_distorted, shape)
    return _undistort(camera.model, iterations, coeffs, x_distorted, y_distorted)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _undistort(model: str, iterations: int, coeffs, tx: Array, ty: Array) -> tuple[Array, Array]:
    """Damped Newton on whole arrays; tx, ty already broadcast to the output shape."""
    # Newton's convergence floor: a few ulps of the coordinates (squared, as every norm here).
    scale2 = jnp.maximum(1.0, tx * tx + ty * ty)
    floor2 = (16 * jnp.finfo(tx.dtype).eps) ** 2 * scale2

    def sq_residual(x, y):
        xd, yd = _distort_components(model, coeffs, x, y)
        return (xd - tx) ** 2 + (yd - ty) ** 2

    def newton_step(x, y, step_size):
        xd, yd, jac = _distort_components(model, coeffs, x, y, jacobian=True)
        rx, ry = xd - tx, yd - ty
        r2 = rx * rx + ry * ry
        dx, dy = _solve2(jac, rx, ry)
        # Damping: a point whose step does not lower the residual stays where it is and tries
        # half the step next time (1, 1/2, 1/4, 1/8: the largest of these that lowers the
        # residual wins, as in a backtracking line search); one that has tried all four is stuck
        # (e.g. at the fold of a strong radial map, with no preimage). The full step nearly
        # always succeeds, so every iteration is one pass over the arrays.
        trying = step_size >= 0.125
        cand_x, cand_y = x - step_size * dx, y - step_size * dy
        norm = sq_residual(cand_x, cand_y)
        ok = trying & jnp.isfinite(norm) & (norm < r2)
        x, y = jnp.where(ok, cand_x, x), jnp.where(ok, cand_y, y)
        norm = jnp.where(ok, norm, r2)
        step_size = jnp.where(ok, 1.0, jnp.where(trying, 0.5 * step_size, step_size))
        # iterate on while some point above the floor still improves or has steps to try
        return x, y, step_size, norm, jnp.any((norm > floor2) & (step_size >= 0.125))

    def iterate(x, y):
        # the state after the first step again (cheaper to redo than to store)
        _, _, step_size, norm, active = newton_step(tx, ty, jnp.ones_like(tx))

        def step(state):
            i, x, y, step_size, _, _ = state
            return i + 1, *newton_step(x, y, step_size)

        def not_done(state):
            return (state[0] < 4 * iterations) & state[-1]

        state = jax.lax.while_loop(not_done, step, (1, x, y, step_size, norm, active))
        return state[1], state[2]

    # The first step starts at the distorted point itself. For a typical lens in float32 it is
    # the only one needed, and the loop for the rest never runs.
    x, y, _, _, active = newton_step(tx, ty, jnp.ones_like(tx))
    x, y = jax.lax.cond(active, iterate, lambda x, y: (x, y), x, y)
    # The floor is absolute (cheap to reach for every point), so one last full Newton step
    # polishes the result to the precision of the arithmetic, relative to the point itself.
    xd, yd, jac = _distort_components(model, coeffs, x, y, jacobian=True)
    rx, ry = xd - tx, yd - ty
    dx, dy = _solve2(jac, rx, ry)
    # A point outside the range of the distortion map (e.g. an image corner under strong barrel
    # distortion with k1 alone) has no preimage: Newton stalls at the fold. Say so with NaN
    # rather than return a point that does not reproject to the input.
    converged = rx * rx + ry * ry <= 1e-10 * scale2  # a residual of 1e-5; float32 floor ~1e-7
    return jnp.where(converged, x - dx, jnp.nan), jnp.where(converged, y - dy, jnp.nan)


@_undistort.defjvp
def _undistort_jvp(model, iterations, primals, tangents):
    # Implicit function theorem: distort(coeffs, x) = xd, so J dx = dxd - (d distort/d coeffs) dc
    # with J the distortion Jacobian at the solution. The iterations themselves are never
    # differentiated, and the result (computed without any extra step) stays a plain array that
    # XLA need not recompute inside every consumer.
    coeffs, tx, ty = primals
    d_coeffs, d_tx, d_ty = tangents
    x, y = _undistort(model, iterations, coeffs, tx, ty)
    converged = jnp.isfinite(x) & jnp.isfinite(y)
    safe_x, safe_y = jnp.where(converged, x, 0.0), jnp.where(converged, y, 0.0)

    def distort_at_solution(c):
        return _distort_components(model, c, safe_x, safe_y)

    _, (dx_c, dy_c) = jax.jvp(distort_at_solution, (coeffs,), (d_coeffs,))
    _, _, jac = _distort_components(model, coeffs, safe_x, safe_y, jacobian=True)
    dx, dy = _solve2(jac, d_tx - dx_c, d_ty - dy_c)
    return (x, y), (jnp.where(converged, dx, 0.0), jnp.where(converged, dy, 0.0))


# --- stage 3: intrinsics --------------------------------------------------------------------


def plane_to_pixel(camera: Camera, xy: Array) -> Array:
    """Normalised (distorted) coordinates (*pts, 2) -> pixels (*pts, 2)."""
    x, y = xy[..., 0], xy[..., 1]
    u = camera.focal[0] * x + camera.skew * y + camera.principal_point[0]
    v = camera.focal[1] * y + camera.principal_point[1]
    return jnp.stack([u, v], -1)


def pixel_to_plane(camera: Camera, uv: Array) -> Array:
    """Pixels (*pts, 2) -> normalised (still distorted) coordinates (*pts, 2)."""
    y = (uv[..., 1] - camera.principal_point[1]) / camera.focal[1]
    x = (uv[..., 0] - camera.principal_point[0] - camera.skew * y) / camera.focal[0]
    return jnp.stack([x, y], -1)


# --- the whole model ------------------------------------------------------------------------


def project(camera: Camera, points: Array) -> Array:
    """World points (*pts, 3) -> distorted pixel coordinates (*pts, 2), as `cv2.projectPoints`.

    Points behind the camera are projected as the formula says (no masking); check depth with
    `world_to_camera` where it matters.
    """
    xc = world_to_camera(camera, points)
    xy = xc[..., :2] / xc[..., 2:3]
    return plane_to_pixel(camera, distort(camera, xy))


def undistort_points(camera: Camera, uv: Array, *, normalized: bool = False) -> Array:
    """Distorted pixels (*pts, 2) -> undistorted pixels (or normalised coordinates).

    With `normalized=False` this is `cv2.undistortPoints(uv, K, dist, P=K)` iterated to
    convergence; with `normalized=True` it is the same without `P` (coordinates on the z = 1
    plane).
    """
    uv = jnp.asarray(uv)
    _check_single(camera, uv, 2, "pixel coordinates")
    xy = undistort(camera, pixel_to_plane(camera, uv))
    return xy if normalized else plane_to_pixel(camera, xy)


def backproject(camera: Camera, uv: Array) -> tuple[Array, Array]:
    """Pixels (*pts, 2) -> world rays: origin (*pts, 3) (the camera centre) and unit direction."""
    xy = undistort_points(camera, uv, normalized=True)
    d_cam = jnp.concatenate([xy, jnp.ones_like(xy[..., :1])], -1)
    d_world = d_cam @ camera.rotation_matrix()
    d_world = d_world / jnp.linalg.norm(d_world, axis=-1, keepdims=True)
    origin = jnp.broadcast_to(camera.center(), d_world.shape)
    return origin, d_world


def depth(camera: Camera, points: Array) -> Array:
    """Depth (*pts,) of world points along the optical axis (positive in front of the camera)."""
    return world_to_camera(camera, points)[..., 2]


# --- rigs -------------------------------------------------------------------------------------


def project_rig(rig: Camera, points: Array) -> Array:
    """World points (*pts, 3) seen by every camera of a rig -> (cam, *pts, 2)."""
    return jax.vmap(project, in_axes=(0, None))(rig, points)


def undistort_points_rig(rig: Camera, uv: Array, *, normalized: bool = False) -> Array:
    """Per-camera pixels (cam, *pts, 2) -> undistorted (cam, *pts, 2)."""
    return jax.vmap(lambda c, p: undistort_points(c, p, normalized=normalized))(rig, uv)
