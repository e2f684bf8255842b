"""Triangulation of 3D points from their views in a calibrated rig.

The public per-point functions take one point seen by the `cam` cameras of a rig:

    points_2d   (cam, 2)   distorted pixel coordinates (NaN where the view is missing)
    confidence  (cam,)     detector confidence in [0, 1]; 0 removes the view

A missing view is simply a zero weight, never a separate code path, and a point with fewer than
two usable views comes out as NaN with `ncams = 0`, without NaN leaking into gradients of other
points.

Inside, the views are kept as separate arrays per coordinate with the camera axis first,
(cam, *pts) (`Views`), and every 2x2 and 3x3 matrix as its separate entries. The same code then
triangulates one point (pts = ()) or a whole batch at once (pts = (n,)): every step is an
elementwise expression over points that XLA fuses into vectorised loops, and undistortion
iterates on whole arrays, stopping as soon as every point has converged. (Batched tiny-matrix
operations, (..., 3, 3) solves or (..., 2, 2) Jacobians, run as loops over the matrices on a
CPU; see shared/CPU-PERF.md.) Only robust view selection and nonlinear refinement are written
for one point and mapped over the batch.

Noise model: a view with confidence c has isotropic pixel noise of standard deviation
sigma_px / sqrt(c), so its squared reprojection error is weighted by c. Scaling every confidence
by one factor therefore leaves every estimate unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxpose.geometry.camera import Camera, distort_xy, undistort_xy
from jaxpose.optim.lm import levenberg_marquardt


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Triangulation:
    """Triangulated points and their quality. Leading axes are the batch (e.g. frame, kpt).

    Attributes:
        points: (*batch, 3) world coordinates; NaN where fewer than two views were usable.
        error: (*batch,) mean reprojection error in px over the views used; NaN where no point.
        ncams: (*batch,) number of views used (after outlier rejection).
        used: (*batch, cam) bool, which views contributed.
        covariance: (*batch, 3, 3) covariance of the point from the 2D noise model; NaN where no
            point or where the geometry leaves a direction unconstrained.
    """

    points: Array
    error: Array
    ncams: Array
    used: Array
    covariance: Array


# --- views: (cam, *pts) arrays, one per coordinate ----------------------------------------------


class Views(NamedTuple):
    """The views of a batch of points, each field (cam, *pts).

    Attributes:
        u, v: distorted pixel coordinates, 0 where the view is missing.
        x, y: undistorted normalised image coordinates, 0 where the view is unusable.
        weight: confidence of a usable view, 0 for a missing one, one at or below
            `min_confidence`, or one whose pixel lies outside its camera's distortion range.
    """

    u: Array
    v: Array
    x: Array
    y: Array
    weight: Array


def _per_camera(values: Array, ndim: int) -> Array:
    """(cam, *k) per-camera values -> (cam, 1, ..., 1, *k) that broadcast against (cam, *pts)
    arrays of `ndim` dimensions."""
    values = jnp.asarray(values)
    return values.reshape(values.shape[:1] + (1,) * (ndim - 1) + values.shape[1:])


def _broadcast_rig(rig: Camera, ndim: int) -> Camera:
    """The rig with every field reshaped by `_per_camera`, so that the camera functions written
    for broadcasting (`distort_xy`, `undistort_xy`) apply camera c to row c of (cam, *pts)."""
    return jax.tree_util.tree_map(lambda a: _per_camera(a, ndim), rig)


def _pixel_to_plane_xy(rig_b: Camera, u: Array, v: Array) -> tuple[Array, Array]:
    """Pixels -> normalised (still distorted) coordinates, for a broadcast rig. (Multiplying by
    per-camera reciprocals keeps this a cheap expression that XLA recomputes where needed
    instead of storing it.)"""
    y = (v - rig_b.principal_point[..., 1]) / rig_b.focal[..., 1]
    x = (u - rig_b.principal_point[..., 0] - rig_b.skew * y) / rig_b.focal[..., 0]
    return x, y


def prepare_views(
    rig: Camera, u: Array, v: Array, confidence: Array, *, min_confidence: float = 0.0
) -> Views:
    """Weigh and undistort the views of a batch of points.

    Args:
        rig: cameras with a leading `cam` axis.
        u, v: (cam, *pts) distorted pixel coordinates, NaN where a view is missing.
        confidence: (cam, *pts) per-view confidence.
        min_confidence: views at or below this confidence get weight 0.

    Returns:
        `Views` with every field (cam, *pts). Unusable views (missing, not confident enough, or
        outside the range of the distortion map) have weight 0 and coordinates 0, so that no NaN
        enters the arithmetic that follows.
    """
    missing = ~jnp.isfinite(u) | ~jnp.isfinite(v) | ~jnp.isfinite(confidence)
    weight = jnp.where(missing | (confidence <= min_confidence), 0.0, confidence)
    u = jnp.where(missing, 0.0, u)
    v = jnp.where(missing, 0.0, v)
    rig_b = _broadcast_rig(rig, u.ndim)
    x, y = undistort_xy(rig_b, *_pixel_to_plane_xy(rig_b, u, v))
    bad = ~jnp.isfinite(x) | ~jnp.isfinite(y)
    return Views(
        u=u,
        v=v,
        x=jnp.where(bad, 0.0, x),
        y=jnp.where(bad, 0.0, y),
        weight=jnp.where(bad, 0.0, weight),
    )


def normalized_coordinates(rig: Camera, points_2d: Array) -> Array:
    """Distorted pixels (cam, *pts, 2) -> undistorted normalised image coordinates (cam, *pts, 2);
    NaN where a pixel lies outside the range of its camera's distortion map."""
    points_2d = jnp.asarray(points_2d)
    rig_b = _broadcast_rig(rig, points_2d.ndim - 1)
    xy = _pixel_to_plane_xy(rig_b, points_2d[..., 0], points_2d[..., 1])
    return jnp.stack(undistort_xy(rig_b, *xy), -1)


# --- symmetric 3x3 matrices as their six entries (m00, m01, m02, m11, m12, m22) -----------------

Sym3 = tuple[Array, Array, Array, Array, Array, Array]
_SYM_INDEX = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _sym_full(m: Sym3) -> list[list[Array]]:
    m00, m01, m02, m11, m12, m22 = m
    return [[m00, m01, m02], [m01, m11, m12], [m02, m12, m22]]


def _sym_adjugate(m: Sym3) -> tuple[Sym3, Array]:
    """Adjugate and determinant of symmetric 3x3 matrices, elementwise."""
    a, b, c, d, e, f = m
    c00 = d * f - e * e
    c01 = c * e - b * f
    c02 = b * e - c * d
    c11 = a * f - c * c
    c12 = b * c - a * e
    c22 = a * d - b * b
    det = a * c00 + b * c01 + c * c02
    return (c00, c01, c02, c11, c12, c22), det


def _sym_solve(m: Sym3, rhs: tuple[Array, Array, Array]) -> tuple[tuple[Array, ...], Array]:
    """Solve symmetric 3x3 systems by the adjugate. Returns the solution and the determinant (the
    solution divides by 1 where the determinant is 0)."""
    adj, det = _sym_adjugate(m)
    full = _sym_full(adj)
    safe = jnp.where(jnp.abs(det) > 0, det, 1.0)
    return tuple(sum(full[i][j] * rhs[j] for j in range(3)) / safe for i in range(3)), det


def _sym_well_conditioned(m: Sym3, *, ratio: float) -> Array:
    """Whether symmetric positive semi-definite 3x3 matrices have smallest eigenvalue above
    `ratio` times the largest, elementwise and without trigonometry (XLA's CPU arccos and cos are
    scalar calls, slower than everything else here together). No gradient.

    The largest eigenvalue comes from Newton's method on the characteristic polynomial
    p(l) = l^3 - c2 l^2 + c1 l - c0 from the Gershgorin bound above it: p is convex there, so the
    iterates fall monotonically onto it (to within a few per cent after six steps even for a
    triple root, ample for a threshold). The test smallest > tau = ratio * largest is then
    Sylvester's criterion for m - tau I: its three leading principal minors are positive.
    """
    m00, m01, m02, m11, m12, m22 = jax.lax.stop_gradient(m)
    c2 = m00 + m11 + m22
    adj, c0 = _sym_adjugate((m00, m01, m02, m11, m12, m22))
    c1 = adj[0] + adj[3] + adj[5]
    a01, a02, a12 = jnp.abs(m01), jnp.abs(m02), jnp.abs(m12)
    lam = jnp.maximum(jnp.maximum(m00 + a01 + a02, m11 + a01 + a12), m22 + a02 + a12)
    for _ in range(6):
        p = ((lam - c2) * lam + c1) * lam - c0
        dp = (3.0 * lam - 2.0 * c2) * lam + c1
        lam = lam - p / jnp.where(dp > 0, dp, 1.0) * (dp > 0)
    tau = ratio * lam
    minor1 = m00 - tau
    minor2 = minor1 * (m11 - tau) - m01 * m01
    minor3 = -(((tau - c2) * tau + c1) * tau - c0)  # det(m - tau I) = -p(tau)
    return (minor1 > 0) & (minor2 > 0) & (minor3 > 0)


def _sym_inverse_checked(m: Sym3) -> Sym3:
    """Inverse of symmetric positive definite 3x3 matrices; NaN where one is (numerically)
    singular: an eigenvalue ratio below 1e-9 after scaling to a unit diagonal, or det <= 0.

    Closed form rather than `inv`/`eigvalsh`, which run as a loop over the matrices on a CPU.
    Scaling to a unit diagonal and one Newton-Schulz correction of the adjugate keep it about as
    accurate as LAPACK's float32 `inv` up to condition numbers of 1e5.
    """
    tiny = jnp.finfo(jnp.result_type(m[0])).tiny
    d = [jnp.sqrt(jnp.maximum(m[k], tiny)) for k in (0, 3, 5)]
    full = _sym_full(m)
    scaled = tuple(full[i][j] / (d[i] * d[j]) for i, j in _SYM_INDEX)
    adj, det = _sym_adjugate(scaled)
    ok = _sym_well_conditioned(scaled, ratio=1e-9) & (det > 0)
    inv = _sym_full(tuple(a / jnp.where(ok, det, 1.0) for a in adj))
    s = _sym_full(scaled)
    # inv + inv (I - S inv) = 2 inv - inv S inv, symmetrised
    s_inv = [[sum(s[i][k] * inv[k][j] for k in range(3)) for j in range(3)] for i in range(3)]
    inv_s_inv = [
        [sum(inv[i][k] * s_inv[k][j] for k in range(3)) for j in range(3)] for i in range(3)
    ]
    out = tuple(
        (2.0 * inv[i][j] - 0.5 * (inv_s_inv[i][j] + inv_s_inv[j][i])) / (d[i] * d[j])
        for i, j in _SYM_INDEX
    )
    return tuple(jnp.where(ok, a, jnp.nan) for a in out)


# --- DLT, projection, covariance on (cam, *pts) arrays ------------------------------------------


def _normalizing_frame(rig: Camera) -> tuple[Array, Array]:
    """A centre and scale for the rig's world frame: the point nearest every optical axis, and the
    mean camera distance to it. DLT solved in this frame has O(1) coefficients, which keeps float32
    accurate even for rigs far from the world origin or with extreme focal lengths."""
    rig = jax.lax.stop_gradient(rig)
    centers = rig.center()  # (cam, 3)
    axes = rig.rotation_matrix()[:, 2, :]  # optical axis direction in world, (cam, 3)
    eye = jnp.eye(3, dtype=centers.dtype)
    proj = eye - axes[:, :, None] * axes[:, None, :]  # projector orthogonal to each axis
    a = jnp.sum(proj, 0)
    b = jnp.einsum("cij,cj->i", proj, centers)
    # Parallel axes (a 2-camera rig looking the same way) make `a` singular: regularise
    # toward the mean camera centre.
    reg = 1e-6 * jnp.trace(a)
    center = jnp.linalg.solve(a + reg * eye, b + reg * jnp.mean(centers, 0))
    scale = jnp.mean(jnp.linalg.norm(centers - center, axis=-1))
    return center, jnp.maximum(scale, 1e-12)


Point = tuple[Array, Array, Array]


def _dlt_xy(rig: Camera, x, y, weight) -> Point:
    """Weighted DLT on undistorted normalised coordinates; returns the points as three arrays
    (*pts) of world coordinates.

    Args:
        rig: cameras with a leading `cam` axis.
        x, y, weight: (cam, *pts) arrays, or sequences of one (*pts) array per camera.

    Each view contributes two equations, rows of A X + c = 0 from x (r3.X + t3) = r1.X + t1.
    A row's residual is the normalised-plane error times the depth, so rows are scaled by
    f / depth (pixels) and sqrt(weight). The depth is first taken at the rig centre, then at
    the first estimate (one reweighting), which makes the algebraic error close to the pixel error.
    The 3x3 normal equations of each point are summed camera by camera and solved by the
    adjugate: every step is elementwise over points.
    """
    center, scale = _normalizing_frame(rig)
    rot = rig.rotation_matrix()  # (cam, 3, 3)
    # translation in the normalised world frame X = center + scale * Y
    t_n = (jnp.einsum("cij,j->ci", rot, center) + rig.translation) / scale
    focal = jnp.mean(rig.focal, -1)
    cams = range(len(x))
    rows = []
    for c in cams:
        r, t = rot[c], t_n[c]
        ax = [x[c] * r[2, j] - r[0, j] for j in range(3)]
        ay = [y[c] * r[2, j] - r[1, j] for j in range(3)]
        rows.append((ax, ay, x[c] * t[2] - t[0], y[c] * t[2] - t[1]))

    def solve(w):
        m, rhs = [0.0] * 6, [0.0] * 3
        for c in cams:
            ax, ay, bx, by = rows[c]
            wax, way = [w[c] * a for a in ax], [w[c] * a for a in ay]
            m = [m[k] + wax[i] * ax[j] + way[i] * ay[j] for k, (i, j) in enumerate(_SYM_INDEX)]
            rhs = [rhs[i] - (wax[i] * bx + way[i] * by) for i in range(3)]
        return _sym_solve(tuple(m), tuple(rhs))[0]

    depth0 = [jnp.maximum(t_n[c, 2], 1e-6) for c in cams]
    p0 = solve([weight[c] * (focal[c] / depth0[c]) ** 2 for c in cams])
    w1 = []
    for c in cams:
        depth1 = rot[c, 2, 0] * p0[0] + rot[c, 2, 1] * p0[1] + rot[c, 2, 2] * p0[2] + t_n[c, 2]
        # a wild first estimate (e.g. behind a camera) falls back to the rig-centre depth
        depth1 = jnp.where(depth1 > 1e-3, depth1, depth0[c])
        w1.append(weight[c] * (focal[c] / depth1) ** 2)
    p1 = solve(w1)
    return tuple(center[i] + scale * p1[i] for i in range(3))


def _project_xy(rig: Camera, point: Point, *, jacobian: bool = False):
    """Project points (three arrays (*pts)) into every camera, as `jaxpose.geometry.project`.

    Returns one list entry per camera: pixels u, v (*pts), and with `jacobian` also
    d(u, v)/d(point) as a 2x3 nested list of (*pts) arrays.
    """
    rot = rig.rotation_matrix()
    us, vs, jacs = [], [], []
    for c in range(len(rig)):
        cam, r, t = rig[c], rot[c], rig.translation[c]
        xc, yc, zc = (
            r[i, 0] * point[0] + r[i, 1] * point[1] + r[i, 2] * point[2] + t[i] for i in range(3)
        )
        xn, yn = xc / zc, yc / zc
        iz = 1.0 / zc
        (fx, fy), (cx, cy), skew = cam.focal, cam.principal_point, cam.skew
        if not jacobian:
            xd, yd = distort_xy(cam, xn, yn)
        else:
            xd, yd, (j_xx, j_xy, j_yx, j_yy) = distort_xy(cam, xn, yn, jacobian=True)
            # d(u, v)/d(xn, yn) = K2 D with K2 = [[fx, skew], [0, fy]], D the distortion Jacobian
            a = [[fx * j_xx + skew * j_yx, fx * j_xy + skew * j_yy], [fy * j_yx, fy * j_yy]]
            # d(xn, yn)/d(camera point) = [[1, 0, -xn], [0, 1, -yn]] / zc; d(camera point)/d(point) = R
            b = [
                [a[k][0] * iz, a[k][1] * iz, -(a[k][0] * xn + a[k][1] * yn) * iz] for k in range(2)
            ]
            jacs.append(
                [[sum(b[k][i] * r[i, j] for i in range(3)) for j in range(3)] for k in range(2)]
            )
        us.append(fx * xd + skew * yd + cx)
        vs.append(fy * yd + cy)
    return (us, vs, jacs) if jacobian else (us, vs)


def _information(jacs, weight, sigma_px: float) -> Sym3:
    """J^T W J / sigma^2 summed over cameras, from per-camera 2x3 Jacobians of (*pts) arrays and
    weights (cam, *pts)."""
    info = [0.0] * 6
    for c, jac in enumerate(jacs):
        scale = weight[c] / (sigma_px * sigma_px)
        info = [
            info[k] + scale * (jac[0][i] * jac[0][j] + jac[1][i] * jac[1][j])
            for k, (i, j) in enumerate(_SYM_INDEX)
        ]
    return tuple(info)


def _stack_last(arrays) -> Array:
    """`jnp.stack(arrays, -1)` written as a chain of selects. XLA fuses a stack into the loop that
    computes its operands as one branch per operand, and shares nothing between branches: with
    operands that come out of a long common computation (the DLT), that recomputation measured
    15-50x slower. Selects evaluate every operand once per element, in one branch."""
    arrays = jnp.broadcast_arrays(*arrays)
    which = jax.lax.broadcasted_iota(jnp.int32, (*arrays[0].shape, len(arrays)), arrays[0].ndim)
    out = arrays[-1][..., None]
    for k in range(len(arrays) - 2, -1, -1):
        out = jnp.where(which == k, arrays[k][..., None], out)
    return out


def _stack_sym(m: Sym3) -> Array:
    """Six entries (*pts) -> (*pts, 3, 3)."""
    return _stack_last([_stack_last(row) for row in _sym_full(m)])


# --- per-point public functions -----------------------------------------------------------------


def _split_point_views(points_2d: Array, confidence: Array) -> tuple[Array, Array, Array]:
    points_2d = jnp.asarray(points_2d)
    return points_2d[..., 0], points_2d[..., 1], jnp.asarray(confidence)


def reprojection_errors(rig: Camera, point: Array, points_2d: Array) -> Array:
    """Pixel distance (cam,) between the projection of `point` (3,) and each view's 2D point."""
    point = jnp.asarray(point)
    points_2d = jnp.asarray(points_2d)
    u, v = map(jnp.stack, _project_xy(rig, (point[0], point[1], point[2])))
    return jnp.sqrt((u - points_2d[..., 0]) ** 2 + (v - points_2d[..., 1]) ** 2)


def triangulate_dlt(
    rig: Camera, points_2d: Array, confidence: Array, *, min_confidence: float = 0.0
) -> Array:
    """Confidence-weighted linear triangulation (DLT) of one point.

    Args:
        rig: cameras with a leading `cam` axis.
        points_2d: (cam, 2) distorted pixel coordinates, NaN where missing.
        confidence: (cam,) weights; views at or below `min_confidence` are ignored.

    Returns:
        (3,) world point, NaN when fewer than two views are usable.
    """
    views = prepare_views(
        rig, *_split_point_views(points_2d, confidence), min_confidence=min_confidence
    )
    valid = jnp.sum(views.weight > 0, 0) >= 2
    # An invalid point solves a dummy well-posed system so nothing infinite reaches a gradient.
    weight = jnp.where(valid, views.weight, 1.0)
    point = jnp.stack(_dlt_xy(rig, views.x, views.y, weight), -1)
    return jnp.where(valid, point, jnp.nan)


def _pairs(num_cameras: int) -> Array:
    return jnp.array(list(itertools.combinations(range(num_cameras), 2)), dtype=jnp.int32)


def _select_views(rig: Camera, views: Views, *, threshold_px: float) -> Array:
    """`select_views` for the views (cam,) of one point."""
    num_cameras = views.x.shape[0]
    weight = views.weight
    if num_cameras < 3:
        return weight > 0
    pairs = _pairs(num_cameras)

    def propose(pair):
        mask = jnp.zeros(num_cameras, bool).at[pair].set(True)
        w_pair = jnp.where(mask, weight, 0.0)
        point = _dlt_xy(rig, views.x, views.y, w_pair)
        u, v = map(jnp.stack, _project_xy(rig, point))
        err = jnp.sqrt((u - views.u) ** 2 + (v - views.v) ** 2)
        err = jnp.where(jnp.isfinite(err), err, jnp.inf)
        cost = jnp.sum(weight * jnp.minimum(err, threshold_px) ** 2)
        usable = jnp.all(w_pair[pair] > 0)
        cost = jnp.where(usable, cost, jnp.inf)
        return cost, err

    costs, errs = jax.vmap(propose)(pairs)  # (pairs,), (pairs, cam)
    best = jnp.argmin(costs)
    inlier = (errs[best] < threshold_px) & (weight > 0)
    # With no finite proposal (fewer than two views) keep what there is.
    return jnp.where(jnp.isfinite(costs[best]), inlier, weight > 0)


def select_views(
    rig: Camera,
    xy: Array,
    safe_2d: Array,
    weight: Array,
    *,
    threshold_px: float,
) -> Array:
    """Robust view selection for one point: which views (cam,) are inliers.

    Every pair of usable views proposes a point (two-view DLT); each proposal is scored by the
    truncated, confidence-weighted squared reprojection error over all views (MSAC), and the
    views within `threshold_px` of the best proposal are kept. Exhaustive over pairs, so it is
    deterministic and batches without a Python loop (8 cameras: 28 proposals).

    Args:
        rig: cameras with a leading `cam` axis.
        xy: (cam, 2) undistorted normalised coordinates (finite; 0 where unusable).
        safe_2d: (cam, 2) distorted pixels (finite; 0 where missing).
        weight: (cam,) view weights, 0 for unusable views.
        threshold_px: inlier threshold.
    """
    views = Views(u=safe_2d[:, 0], v=safe_2d[:, 1], x=xy[:, 0], y=xy[:, 1], weight=weight)
    return _select_views(rig, views, threshold_px=threshold_px)


def point_covariance(rig: Camera, point: Array, weight: Array, *, sigma_px: float = 1.0) -> Array:
    """Covariance (3, 3) of a triangulated point from first-order error propagation.

    The views have independent isotropic pixel noise of standard deviation
    sigma_px / sqrt(weight); the information matrix is J^T W J with J the (2 cam, 3) Jacobian of
    the projections. Directions the views do not constrain give NaN (the information matrix,
    scaled to a unit diagonal, has an eigenvalue ratio below 1e-9 or a determinant <= 0).
    """
    point = jnp.asarray(point)
    _, _, jac = _project_xy(rig, (point[0], point[1], point[2]), jacobian=True)
    info = _information(jac, jnp.asarray(weight), sigma_px)
    return _stack_sym(_sym_inverse_checked(info))


# --- the whole method on Views ------------------------------------------------------------------


def _for_each_point(fn, *arrays: Array):
    """Apply a function written for one point's (cam, ...) arrays to (cam, *pts) arrays with
    pts = () or (n,); results come back with the point axis last."""
    if arrays[0].ndim == 1:
        return fn(*arrays)
    return jax.vmap(fn, in_axes=1, out_axes=-1)(*arrays)


class _Validity(NamedTuple):
    used: Array  # (cam, *pts) bool, the view contributes
    ncams: Array  # (*pts,) int32
    valid: Array  # (*pts,) at least two views
    # (cam, *pts) the weights, or all ones for an invalid point: it solves a dummy, well-posed
    # problem so that no NaN or infinity appears in the arithmetic (nor in any gradient)
    safe_weight: Array


def _validity(weight: Array) -> _Validity:
    used = weight > 0
    ncams = sum(used[c].astype(jnp.int32) for c in range(used.shape[0]))
    valid = ncams >= 2
    return _Validity(used, ncams, valid, jnp.where(valid, weight, 1.0))


def _unless_all_invalid(stage):
    """Run `stage(rig, *args, views)` only when some point of the batch has two usable views, and
    return zeros otherwise (the results of invalid points are masked out at the end).

    Besides skipping empty batches (e.g. padding), this makes the stage a step of its own in
    XLA:CPU: a conditional's operands and results are stored arrays. Without it, XLA fuses each
    cheap-but-long expression a stage hands the next (the undistorted views, the DLT point, the
    information matrix) into every one of its consumers and evaluates it again there: measured
    3-10x slower for 8 cameras.
    """

    @functools.wraps(stage)
    def run(rig: Camera, *args, **options):
        def skip(rig, *args):
            shapes = jax.eval_shape(lambda r, *a: stage(r, *a, **options), rig, *args)
            return jax.tree_util.tree_map(lambda t: jnp.zeros(t.shape, t.dtype), shapes)

        views = args[-1]
        if not isinstance(views.weight, jax.core.Tracer):
            # Eager call: run the stage op by op. Building the conditional here would compile
            # it as one eager XLA program, which crashed XLA:CPU late in a long test session.
            return stage(rig, *args, **options)
        return jax.lax.cond(
            jnp.any(_validity(views.weight).valid),
            lambda rig, *args: stage(rig, *args, **options),
            skip,
            rig,
            *args,
        )

    return run


def _robust_weights(rig: Camera, views: Views, *, threshold_px: float) -> Array:
    """The view weights (cam, *pts) with outlier views (MSAC over view pairs) set to 0."""

    def select(u, v, x, y, w):
        return _select_views(rig, Views(u, v, x, y, w), threshold_px=threshold_px)

    return jnp.where(_for_each_point(select, *views), views.weight, 0.0)


@_unless_all_invalid
def _dlt_stage(rig: Camera, views: Views) -> Point:
    """The weighted DLT point of every point (0 where none is defined)."""
    point = _dlt_xy(rig, views.x, views.y, _validity(views.weight).safe_weight)
    finite = jnp.isfinite(point[0]) & jnp.isfinite(point[1]) & jnp.isfinite(point[2])
    return tuple(jnp.where(finite, p, 0.0) for p in point)


@_unless_all_invalid
def _refine_stage(
    rig: Camera, point: Point, views: Views, *, iterations: int, loss: str, loss_scale_px: float
) -> Point:
    """Levenberg-Marquardt on the confidence-weighted reprojection error, point by point."""

    def refine_one(p, u, v, w):
        def residual(q):
            pu, pv = map(jnp.stack, _project_xy(rig, (q[0], q[1], q[2])))
            return jnp.stack([pu - u, pv - v], -1)

        refined = levenberg_marquardt(
            residual, p, weights=w, iterations=iterations, loss=loss, loss_scale=loss_scale_px
        )
        # With two views and one of them wrong, the reprojection minimum can lie at infinity
        # or behind a camera: keep the linear estimate then.
        rot = rig.rotation_matrix()
        depths = rot[:, 2, :] @ refined + rig.translation[:, 2]
        sane = jnp.all(jnp.isfinite(refined)) & jnp.all(jnp.where(w > 0, depths > 0, True))
        return jnp.where(sane, refined, p)

    safe_weight = _validity(views.weight).safe_weight
    refined = _for_each_point(refine_one, jnp.stack(point, 0), views.u, views.v, safe_weight)
    return refined[0], refined[1], refined[2]


@_unless_all_invalid
def _quality_stage(
    rig: Camera, point: Point, views: Views, *, sigma_px: float
) -> tuple[Array, Sym3]:
    """Mean reprojection error over the views used, and the information matrix of the point."""
    validity = _validity(views.weight)
    u, v, jac = _project_xy(rig, point, jacobian=True)
    err_sum = 0.0
    for c in range(len(rig)):
        err = jnp.sqrt((u[c] - views.u[c]) ** 2 + (v[c] - views.v[c]) ** 2)
        err_sum = err_sum + jnp.where(validity.used[c], err, 0.0)
    mean_err = err_sum / jnp.maximum(validity.ncams, 1)
    return mean_err, _information(jac, validity.safe_weight, sigma_px)


def _result(point: Point, mean_err: Array, info: Sym3, weight: Array) -> Triangulation:
    """Covariance from the information matrix, NaN where no point, and the output layout."""
    validity = _validity(weight)
    valid = validity.valid
    nan = jnp.asarray(jnp.nan, point[0].dtype)
    cov = _sym_inverse_checked(info)
    return Triangulation(
        points=_stack_last([jnp.where(valid, p, nan) for p in point]),
        error=jnp.where(valid, mean_err, nan),
        ncams=jnp.where(valid, validity.ncams, 0).astype(jnp.int32),
        used=jnp.moveaxis(validity.used & valid, 0, -1),
        covariance=_stack_sym(tuple(jnp.where(valid, a, nan) for a in cov)),
    )


def triangulate_views(
    rig: Camera,
    views: Views,
    *,
    robust: bool = True,
    refine: bool = True,
    threshold_px: float = 15.0,
    refine_iterations: int = 8,
    refine_loss: str = "huber",
    refine_loss_scale_px: float = 5.0,
    sigma_px: float = 1.0,
) -> Triangulation:
    """Triangulate the points of prepared views: weighted DLT, optional robust view selection,
    optional refinement.

    Args:
        rig: cameras with a leading `cam` axis.
        views: `Views` (from `prepare_views`) with fields (cam,) for one point or (cam, n) for a
            batch of n points.
        Other arguments as `triangulate_point`.

    Returns:
        A `Triangulation` with batch shape () or (n,).
    """
    if views.x.ndim > 2:
        raise ValueError(f"views must be (cam,) or (cam, n) arrays, got {views.x.shape}")
    if robust:
        views = views._replace(weight=_robust_weights(rig, views, threshold_px=threshold_px))
    point = _dlt_stage(rig, views)
    if refine:
        point = _refine_stage(
            rig,
            point,
            views,
            iterations=refine_iterations,
            loss=refine_loss,
            loss_scale_px=refine_loss_scale_px,
        )
    mean_err, info = _quality_stage(rig, point, views, sigma_px=sigma_px)
    return _result(point, mean_err, info, views.weight)


def triangulate_point(
    rig: Camera,
    points_2d: Array,
    confidence: Array,
    *,
    robust: bool = True,
    refine: bool = True,
    threshold_px: float = 15.0,
    min_confidence: float = 0.0,
    refine_iterations: int = 8,
    refine_loss: str = "huber",
    refine_loss_scale_px: float = 5.0,
    sigma_px: float = 1.0,
) -> Triangulation:
    """Triangulate one point: weighted DLT, optional robust view selection, optional refinement.

    Args:
        rig: cameras with a leading `cam` axis.
        points_2d: (cam, 2) distorted pixels, NaN where missing.
        confidence: (cam,) confidence per view.
        robust: reject outlier views by reprojection error (MSAC over view pairs).
        refine: Levenberg-Marquardt on the confidence-weighted reprojection error.
        threshold_px: inlier threshold for view selection.
        min_confidence: views at or below this confidence are ignored.
        refine_iterations: LM iterations (static).
        refine_loss: robust loss of the refinement ("linear", "huber", "cauchy").
        refine_loss_scale_px: where that loss turns robust.
        sigma_px: pixel noise at confidence 1, for the covariance.

    Returns:
        A `Triangulation` with no batch axes.
    """
    views = prepare_views(
        rig, *_split_point_views(points_2d, confidence), min_confidence=min_confidence
    )
    return triangulate_views(
        rig,
        views,
        robust=robust,
        refine=refine,
        threshold_px=threshold_px,
        refine_iterations=refine_iterations,
        refine_loss=refine_loss,
        refine_loss_scale_px=refine_loss_scale_px,
        sigma_px=sigma_px,
    )
