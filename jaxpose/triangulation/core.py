"""Triangulation of one 3D point from its views in a calibrated rig.

Every function here is written for a single point seen by the `cam` cameras of a rig:

    points_2d   (cam, 2)   distorted pixel coordinates (NaN where the view is missing)
    confidence  (cam,)     detector confidence in [0, 1]; 0 removes the view

and batched with `jax.vmap` (see `jaxpose.triangulation.api`). A missing view is simply a zero
weight, never a separate code path, and a point with fewer than two usable views comes out as
NaN with `ncams = 0`, without NaN leaking into gradients of other points.

Noise model: a view with confidence c has isotropic pixel noise of standard deviation
sigma_px / sqrt(c), so its squared reprojection error is weighted by c. Scaling every confidence
by one factor therefore leaves every estimate unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
from jax import Array

from jaxpose.geometry.camera import Camera, pixel_to_plane, project, undistort, world_to_camera
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


def _usable_views(
    points_2d: Array, confidence: Array, min_confidence: float
) -> tuple[Array, Array]:
    """Zero the weight of missing views and replace their NaN coordinates by 0."""
    missing = jnp.any(~jnp.isfinite(points_2d), -1) | ~jnp.isfinite(confidence)
    weight = jnp.where(missing | (confidence <= min_confidence), 0.0, confidence)
    safe_2d = jnp.where(missing[:, None], 0.0, points_2d)
    return safe_2d, weight


def normalized_coordinates(rig: Camera, points_2d: Array) -> Array:
    """Distorted pixels (cam, 2) -> undistorted normalised image coordinates (cam, 2); NaN where
    a pixel lies outside the range of its camera's distortion map."""
    return jax.vmap(lambda c, uv: undistort(c, pixel_to_plane(c, uv)))(rig, points_2d)


def _undistorted_views(rig: Camera, safe_2d: Array, weight: Array) -> tuple[Array, Array]:
    """Normalised coordinates with views that cannot be undistorted given zero weight."""
    xy = normalized_coordinates(rig, safe_2d)
    bad = jnp.any(~jnp.isfinite(xy), -1)
    return jnp.where(bad[:, None], 0.0, xy), jnp.where(bad, 0.0, weight)


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


def _adjugate3(m: Array) -> tuple[Array, Array]:
    """Adjugate and determinant of a symmetric 3x3 matrix, elementwise. Batched LAPACK calls
    (solve, inv, eigvalsh) run as a loop over tiny matrices on a CPU; these closed forms vectorise.
    """
    a, b, c = m[0, 0], m[0, 1], m[0, 2]
    d, e, f = m[1, 1], m[1, 2], m[2, 2]
    c00 = d * f - e * e
    c01 = c * e - b * f
    c02 = b * e - c * d
    c11 = a * f - c * c
    c12 = b * c - a * e
    c22 = a * d - b * b
    det = a * c00 + b * c01 + c * c02
    adj = jnp.stack(
        [jnp.stack([c00, c01, c02]), jnp.stack([c01, c11, c12]), jnp.stack([c02, c12, c22])]
    )
    return adj, det


def _solve3(m: Array, rhs: Array) -> tuple[Array, Array]:
    """Solve a symmetric 3x3 system by its adjugate (elementwise: fast when vmapped on a CPU).
    Returns the solution and the determinant (0 when singular)."""
    adj, det = _adjugate3(m)
    safe = jnp.where(jnp.abs(det) > 0, det, 1.0)
    return adj @ rhs / safe, det


def _eigenvalue_range3(m: Array) -> tuple[Array, Array]:
    """Smallest and largest eigenvalues of a symmetric 3x3 matrix in closed form (the
    trigonometric solution of the characteristic cubic). Accurate to about eps * |m| when the
    smallest is isolated (the rank-deficient case a conditioning test looks for), to about
    sqrt(eps) * |m| when the two smallest coincide. For tests of conditioning only: no gradient."""
    m = jax.lax.stop_gradient(m)
    q = jnp.trace(m) / 3.0
    off = m[0, 1] ** 2 + m[0, 2] ** 2 + m[1, 2] ** 2
    shifted = m - q * jnp.eye(3, dtype=m.dtype)
    p2 = (shifted[0, 0] ** 2 + shifted[1, 1] ** 2 + shifted[2, 2] ** 2 + 2.0 * off) / 6.0
    p = jnp.sqrt(p2)
    isotropic = p <= 1e-30 * jnp.maximum(jnp.abs(q), 1e-30)  # m = q I: all eigenvalues are q
    safe_p = jnp.where(isotropic, 1.0, p)
    half_det = _adjugate3(shifted / safe_p)[1] / 2.0
    phi = jnp.arccos(jnp.clip(half_det, -1.0, 1.0)) / 3.0
    largest = q + 2.0 * p * jnp.cos(phi)
    smallest = q + 2.0 * p * jnp.cos(phi + 2.0 * jnp.pi / 3.0)
    return jnp.where(isotropic, q, smallest), jnp.where(isotropic, q, largest)


def _dlt_normalized(rig: Camera, xy: Array, weight: Array) -> Array:
    """Weighted DLT on undistorted normalised coordinates (cam, 2); returns the point (3,).

    Each view contributes two equations, rows of A X + c = 0 from x (r3.X + t3) = r1.X + t1.
    A row's residual is the normalised-plane error times the depth, so rows are scaled by
    f / depth (pixels) and sqrt(weight). The depth is first taken at the rig centre, then at
    the first estimate (one reweighting), which makes the algebraic error close to the pixel error.
    """
    center, scale = _normalizing_frame(rig)
    rot = rig.rotation_matrix()  # (cam, 3, 3)
    # translation in the normalised world frame X = center + scale * Y
    t_n = (jnp.einsum("cij,j->ci", rot, center) + rig.translation) / scale
    focal = jnp.mean(rig.focal, -1)

    x, y = xy[:, 0], xy[:, 1]
    rows = jnp.stack([x[:, None] * rot[:, 2] - rot[:, 0], y[:, None] * rot[:, 2] - rot[:, 1]], 1)
    consts = jnp.stack([x * t_n[:, 2] - t_n[:, 0], y * t_n[:, 2] - t_n[:, 1]], 1)  # (cam, 2)

    def solve(depth):
        w = weight * (focal / depth) ** 2  # (cam,)
        m = jnp.einsum("c,cki,ckj->ij", w, rows, rows)
        rhs = -jnp.einsum("c,cki,ck->i", w, rows, consts)
        return _solve3(m, rhs)

    y0, _ = solve(jnp.maximum(t_n[:, 2], 1e-6))
    depth1 = jnp.einsum("ci,i->c", rot[:, 2], y0) + t_n[:, 2]
    # a wild first estimate (e.g. behind a camera) falls back to the rig-centre depth
    depth1 = jnp.where(depth1 > 1e-3, depth1, jnp.maximum(t_n[:, 2], 1e-6))
    y1, det = solve(depth1)
    return center + scale * y1


def reprojection_errors(rig: Camera, point: Array, points_2d: Array) -> Array:
    """Pixel distance (cam,) between the projection of `point` (3,) and each view's 2D point."""
    proj = jax.vmap(project, in_axes=(0, None))(rig, point)
    return jnp.linalg.norm(proj - points_2d, axis=-1)


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
    safe_2d, weight = _usable_views(points_2d, confidence, min_confidence)
    xy, weight = _undistorted_views(rig, safe_2d, weight)
    valid = jnp.sum(weight > 0) >= 2
    # An invalid point solves a dummy well-posed system so nothing infinite reaches a gradient.
    point = _dlt_normalized(rig, xy, jnp.where(valid, weight, jnp.ones_like(weight)))
    return jnp.where(valid, point, jnp.nan)


def _pairs(num_cameras: int) -> Array:
    return jnp.array(list(itertools.combinations(range(num_cameras), 2)), dtype=jnp.int32)


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
    """
    num_cameras = xy.shape[0]
    if num_cameras < 3:
        return weight > 0
    pairs = _pairs(num_cameras)

    def propose(pair):
        mask = jnp.zeros(num_cameras, bool).at[pair].set(True)
        w_pair = jnp.where(mask, weight, 0.0)
        point = _dlt_normalized(rig, xy, w_pair)
        err = reprojection_errors(rig, point, safe_2d)
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


def point_covariance(rig: Camera, point: Array, weight: Array, *, sigma_px: float = 1.0) -> Array:
    """Covariance (3, 3) of a triangulated point from first-order error propagation.

    The views have independent isotropic pixel noise of standard deviation
    sigma_px / sqrt(weight); the information matrix is J^T W J with J the (2 cam, 3) Jacobian of
    the projections. Directions the views do not constrain give NaN (the information matrix,
    scaled to a unit diagonal, has an eigenvalue ratio below 1e-9 or a determinant <= 0).
    """
    jac = jax.vmap(jax.jacfwd(project, argnums=1), in_axes=(0, None))(rig, point)  # (cam, 2, 3)
    info = jnp.einsum("c,cki,ckj->ij", weight, jac, jac) / (sigma_px * sigma_px)
    # Closed form rather than `inv`/`eigvalsh`, which run as a loop over the 3x3 matrices on a
    # CPU (4x slower here). Scaling to a unit diagonal and one Newton-Schulz correction of the
    # adjugate keep it about as accurate as LAPACK's float32 `inv` up to condition numbers of 1e5.
    eye = jnp.eye(3, dtype=info.dtype)
    d = jnp.sqrt(jnp.maximum(jnp.diagonal(info), jnp.finfo(info.dtype).tiny))
    scaled = info / (d[:, None] * d[None, :])
    smallest, largest = _eigenvalue_range3(scaled)
    adj, det = _adjugate3(scaled)
    ok = (smallest > 1e-9 * jnp.maximum(largest, 1e-30)) & (det > 0)
    inv = adj / jnp.where(ok, det, 1.0)
    inv = inv + inv @ (eye - scaled @ inv)
    inv = 0.5 * (inv + inv.T) / (d[:, None] * d[None, :])
    return jnp.where(ok, inv, jnp.nan)


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
    safe_2d, weight = _usable_views(points_2d, confidence, min_confidence)
    xy, weight = _undistorted_views(rig, safe_2d, weight)
    if robust:
        inlier = select_views(rig, xy, safe_2d, weight, threshold_px=threshold_px)
        weight = jnp.where(inlier, weight, 0.0)
    used = weight > 0
    ncams = jnp.sum(used)
    valid = ncams >= 2
    # Invalid points run the same arithmetic on a dummy, well-posed problem so that no NaN or
    # infinity appears in the computation (and so none reaches any gradient).
    safe_weight = jnp.where(valid, weight, jnp.ones_like(weight))
    point = _dlt_normalized(rig, xy, safe_weight)
    point = jnp.where(jnp.all(jnp.isfinite(point)), point, 0.0)

    if refine:

        def residual(p):
            return jax.vmap(project, in_axes=(0, None))(rig, p) - safe_2d

        refined = levenberg_marquardt(
            residual,
            point,
            weights=safe_weight,
            iterations=refine_iterations,
            loss=refine_loss,
            loss_scale=refine_loss_scale_px,
        )
        # With two views and one of them wrong, the reprojection minimum can lie at infinity or
        # behind a camera: keep the linear estimate then.
        depths = jax.vmap(lambda c: world_to_camera(c, refined)[2])(rig)
        sane = jnp.all(jnp.isfinite(refined)) & jnp.all(
            jnp.where(safe_weight > 0, depths > 0, True)
        )
        point = jnp.where(sane, refined, point)

    err = reprojection_errors(rig, point, safe_2d)
    mean_err = jnp.sum(jnp.where(used, err, 0.0)) / jnp.maximum(ncams, 1)
    cov = point_covariance(rig, point, safe_weight, sigma_px=sigma_px)
    nan = jnp.asarray(jnp.nan, point.dtype)
    return Triangulation(
        points=jnp.where(valid, point, nan),
        error=jnp.where(valid, mean_err, nan),
        ncams=jnp.where(valid, ncams, 0).astype(jnp.int32),
        used=used & valid,
        covariance=jnp.where(valid, cov, nan),
    )
