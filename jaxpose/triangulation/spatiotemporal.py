"""Spatiotemporal refinement: whole recordings refined by reprojection, smoothness and bone lengths.

After per-frame triangulation, every 3D keypoint of a recording is refined at once by minimising

    C(X) =  sum_{frame, kpt, cam}  c * w_r^2 * rho(|project_cam(X[frame, kpt]) - u|^2)   reprojection
          + w_t^2 sum |D^p X[:, kpt]|^2                       temporal (p-th differences in time)
          + w_l^2 sum_{frame, bone} (|X[a] - X[b]| - L_bone)^2   limb lengths
          + w_p^2 sum |X - X_init|^2                          weak prior (keeps gaps well posed)

with c the detector confidence, rho a robust loss in px^2 (Huber or Cauchy) and every weight in
pixels per millimetre (w_r is unitless): an error of 1 / w mm in a term costs as much as a 1 px
reprojection error. A term with weight 0 is not computed at all.

It never refuses a recording. Keypoints that no frame triangulates are returned as NaN, with a
warning; frames with no data at all are bridged by the temporal term (their reprojection terms
have zero weight); single views, which cannot be triangulated alone, still pull on their point.

Layout: `points_2d` is (frame, cam, kpt, 2) and `confidence` (frame, cam, kpt), as
`triangulate_frames` takes them; results are (frame, kpt, ...).

Solver. The recording is cut into chunks of `chunk_size` frames that overlap by `overlap` frames;
each chunk is solved on its own and the overlaps are blended with linear ramps, so memory is
bounded and chunk boundaries leave no step. Each chunk runs Levenberg-Marquardt on the
iteratively reweighted Gauss-Newton system H d = -g, solved by preconditioned conjugate gradients:

* Reprojection residuals each depend on one point, so their part of H is block diagonal: a 3x3
  block per (frame, kpt), built from per-observation Jacobians.
* Temporal residuals couple the frames of one keypoint: a band of half-width p in time, the same
  for x, y and z.
* Limb residuals couple the keypoints of one frame.

The preconditioner is the exact block-banded factorisation (LDL^T, 3x3 blocks, one scan over
time for all keypoints) of everything except the limb cross terms, so without a limb term the
first conjugate gradient step is already the exact Gauss-Newton step, however long the gaps
that the temporal band alone bridges. (Measured, 1000 frames, 6 cameras, 20 keypoints with
limbs, cg_tolerance 1e-4: 62 CG iterations in all and 0.19 s, against 210 and 0.76 s with
per-point 3x3 block-Jacobi; with 20-frame gaps block-Jacobi stopped short, 13 mm off in the gaps.) The matrix-vector products
of the temporal and limb terms are matrix-free (JVP and its transpose of those residuals, cheap
next to projection); bone lengths can be unknowns too. Every chunk has one shape (the last is
padded with frames of no data), so a recording compiles once; the weights are traced, so tuning
them does not recompile. It runs in JAX's default float32, in coordinates centred on each chunk
(on a 1000-frame synthetic study float32 and float64 results agreed to 0.3 um). Deterministic.

Defaults: a Cauchy reprojection loss, since gross 2D outliers bias a Huber fit (on the real DANNCE
rig with 10 % outliers, per-point Huber refinement doubled the error of robust triangulation;
Cauchy matched it). The temporal weight is per frame: at a higher frame rate the same motion has
smaller differences (by fps^order), and the limb weight assumes bones of fixed length, which real
animals only approximate (DANNCE mouse "bones" vary by 1.5-5 mm): keep it low for real data.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxpose.geometry.camera import Camera, project_rig
from jaxpose.optim.lm import robust_cost, robust_weights
from jaxpose.triangulation.api import METHODS, triangulate_frames
from jaxpose.triangulation.core import Triangulation

LOSSES = ("linear", "huber", "cauchy")
PRECONDITIONERS = ("banded", "block_jacobi")


@dataclasses.dataclass(frozen=True)
class SpatiotemporalConfig:
    """Weights and solver settings of `refine_spatiotemporal`.

    Weights are in pixels per millimetre: a residual of 1 / weight mm in that term costs as much
    as a 1 px reprojection error at confidence 1. A weight of 0 removes its term.

    Attributes:
        reprojection_weight: multiplies every reprojection residual (unitless).
        reprojection_loss: robust loss per view: "linear", "huber" or "cauchy".
        reprojection_scale_px: reprojection error where that loss turns robust.
        temporal_weight: weight of the `temporal_order`-th difference of each keypoint over
            frames (mm per frame^order). Frames are assumed evenly spaced.
        temporal_order: 1 (velocity) or 2 (acceleration). With 2, gaps are bridged by straight
            lines that continue the motion on both sides; with 1 by straight lines between
            their ends, and constant motion is penalised as well.
        limb_weight: weight of |X[a] - X[b]| - L for each bone (a, b) in each frame.
        prior_weight: pull towards the starting points (the triangulation, gaps interpolated).
            Keep it small: it only makes a keypoint that is unobserved for a whole chunk well
            posed.
        refine_bone_lengths: solve for the bone lengths of each chunk too (they start at the
            recording-wide estimate or the given lengths).
        chunk_size: frames solved together (the last chunk is padded to this length).
        overlap: frames shared by consecutive chunks, blended with linear ramps.
        max_iterations: Levenberg-Marquardt iterations per chunk at most.
        tolerance: stop when an accepted step lowers the cost by less than this fraction.
        initial_damping: starting Marquardt lambda, relative to the diagonal of H.
        cg_max_iterations: conjugate gradient iterations per step at most.
        cg_tolerance: stop conjugate gradients when the preconditioned residual norm falls to
            this fraction of its start.
        preconditioner: "banded" (exact in time, see the module docstring) or "block_jacobi"
            (per-point 3x3 blocks only; for comparison).
        inlier_threshold_px: a view counts in the output `ncams` / `error` when its final
            reprojection error is below this.
        initial_method: `triangulate_frames` method for the starting points when none is given.
    """

    reprojection_weight: float = 1.0
    reprojection_loss: str = "cauchy"
    reprojection_scale_px: float = 5.0
    temporal_weight: float = 1.0
    temporal_order: int = 2
    limb_weight: float = 0.5
    prior_weight: float = 1e-3
    refine_bone_lengths: bool = False
    chunk_size: int = 256
    overlap: int = 32
    max_iterations: int = 20
    tolerance: float = 1e-5
    initial_damping: float = 1e-3
    cg_max_iterations: int = 50
    cg_tolerance: float = 1e-2
    preconditioner: str = "banded"
    inlier_threshold_px: float = 15.0
    initial_method: str = "robust_refine"

    def __post_init__(self):
        for name in (
            "reprojection_weight",
            "temporal_weight",
            "limb_weight",
            "prior_weight",
        ):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"SpatiotemporalConfig.{name} must be >= 0, got {value}")
        for name in ("reprojection_scale_px", "inlier_threshold_px", "tolerance", "cg_tolerance"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"SpatiotemporalConfig.{name} must be > 0, got {value}")
        if self.reprojection_loss not in LOSSES:
            raise ValueError(
                f"SpatiotemporalConfig.reprojection_loss must be one of {LOSSES}, "
                f"got {self.reprojection_loss!r}"
            )
        if self.temporal_order not in (1, 2):
            raise ValueError(
                f"SpatiotemporalConfig.temporal_order must be 1 or 2, got {self.temporal_order}"
            )
        if self.preconditioner not in PRECONDITIONERS:
            raise ValueError(
                f"SpatiotemporalConfig.preconditioner must be one of {PRECONDITIONERS}, "
                f"got {self.preconditioner!r}"
            )
        if self.initial_method not in METHODS:
            raise ValueError(
                f"SpatiotemporalConfig.initial_method must be one of {METHODS}, "
                f"got {self.initial_method!r}"
            )
        if self.chunk_size < 4:
            raise ValueError(f"SpatiotemporalConfig.chunk_size must be >= 4, got {self.chunk_size}")
        if not 0 <= self.overlap <= self.chunk_size // 2:
            raise ValueError(
                f"SpatiotemporalConfig.overlap must be in [0, chunk_size // 2 = "
                f"{self.chunk_size // 2}], got {self.overlap}"
            )
        for name in ("max_iterations", "cg_max_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"SpatiotemporalConfig.{name} must be >= 1")
        if not self.initial_damping >= 0:
            raise ValueError("SpatiotemporalConfig.initial_damping must be >= 0")


@dataclasses.dataclass(frozen=True)
class SpatiotemporalResult:
    """Refined points of a recording and how the refinement went.

    Attributes:
        points: (frame, kpt, 3) refined world points (mm); NaN for keypoints never triangulated.
        error: (frame, kpt) mean reprojection error (px) over the views within
            `inlier_threshold_px`; NaN where there is none.
        ncams: (frame, kpt) number of such views. 0 marks points placed by the temporal and limb
            terms alone (gaps, frames without data).
        initial: (frame, kpt, 3) the starting points (gaps filled by interpolation over time).
        bones: (bone, 2) the bones used by the limb term.
        bone_lengths: (bone,) their lengths (mm), given or estimated from the starting points;
            NaN for a bone with no frame where both ends were triangulated (it is left out).
        chunk_bone_lengths: (chunk, bone) the refined lengths of each chunk when
            `refine_bone_lengths`, else None.
        cost_before, cost_after: total cost of all chunks at the start and at the end.
        terms_before, terms_after: that cost per term ("reprojection", "temporal", "limb",
            "prior").
        iterations: (chunk,) Levenberg-Marquardt iterations run.
        cg_iterations: (chunk,) conjugate gradient iterations summed over those.
        converged: (chunk,) whether the cost decrease fell below the tolerance (or no step could
            lower it) before `max_iterations`.
        chunk_starts: (chunk,) first frame of each chunk.
        seconds: wall time of the refinement (without the starting triangulation).
    """

    points: np.ndarray
    error: np.ndarray
    ncams: np.ndarray
    initial: np.ndarray
    bones: np.ndarray
    bone_lengths: np.ndarray
    chunk_bone_lengths: np.ndarray | None
    cost_before: float
    cost_after: float
    terms_before: dict[str, float]
    terms_after: dict[str, float]
    iterations: np.ndarray
    cg_iterations: np.ndarray
    converged: np.ndarray
    chunk_starts: np.ndarray
    seconds: float

    def summary(self) -> str:
        """A few lines for logs."""
        frames, kpts = self.points.shape[:2]
        seen = np.isfinite(self.points[..., 0])
        bridged = seen & (self.ncams == 0)
        return "\n".join(
            [
                f"spatiotemporal refinement: {frames} frames x {kpts} keypoints in "
                f"{len(self.chunk_starts)} chunks, {self.seconds:.2f} s",
                f"  cost {self.cost_before:.6g} -> {self.cost_after:.6g} "
                f"({', '.join(f'{k} {self.terms_after[k]:.4g}' for k in self.terms_after)})",
                f"  LM iterations per chunk {self.iterations.min()}-{self.iterations.max()}, "
                f"CG iterations {int(self.cg_iterations.sum())} in all, "
                f"{int(self.converged.sum())}/{len(self.converged)} chunks converged",
                f"  {bridged.sum()} points bridged (no inlier view), "
                f"{(~seen).all(0).sum()} keypoints never seen",
            ]
        )


# --- 3x3 blocks as (..., 3, 3) arrays, by broadcasting (fuses on a CPU, unlike batched dots) ---


def _mm(a: Array, b: Array) -> Array:
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], -2)


def _mv(a: Array, v: Array) -> Array:
    return jnp.sum(a * v[..., None, :], -1)


def _mt(a: Array) -> Array:
    return jnp.swapaxes(a, -1, -2)


def _inv3(a: Array) -> Array:
    """Inverse of (..., 3, 3) matrices by the adjugate (callers keep them positive definite)."""
    c = [[a[..., i, j] for j in range(3)] for i in range(3)]

    def cof(i, j):
        r = [k for k in range(3) if k != i]
        s = [k for k in range(3) if k != j]
        minor = c[r[0]][s[0]] * c[r[1]][s[1]] - c[r[0]][s[1]] * c[r[1]][s[0]]
        return minor if (i + j) % 2 == 0 else -minor

    adj = jnp.stack([jnp.stack([cof(j, i) for j in range(3)], -1) for i in range(3)], -2)
    det = c[0][0] * adj[..., 0, 0] + c[0][1] * adj[..., 1, 0] + c[0][2] * adj[..., 2, 0]
    return adj / det[..., None, None]


# --- the block-banded preconditioner ----------------------------------------------------------


def _band_factor(diag: Array, offs: Sequence[Array]) -> tuple[Array, Array]:
    """Block LDL^T factorisation of a symmetric positive definite block-banded matrix.

    The matrix has (frame, kpt)-indexed 3x3 blocks; keypoints are independent. Block (t, t) is
    diag[t] (T, K, 3, 3); block (t, t - j) is offs[j - 1][t] * I (T, K) for j = 1..p (entries
    with t < j are ignored). H = L D L^T with L unit lower block-banded:

        G_j  = H[t, t-j] - sum_{i > j} G_i M[t-j, i-j]^T      (G_i = M[t, i] D[t-i])
        M[t, j] = G_j D[t-j]^-1
        D[t] = H[t, t] - sum_j G_j M[t, j]^T

    Returns:
        mult (T, p, K, 3, 3) the multipliers M[t, j], and dinv (T, K, 3, 3) the inverses D[t]^-1.
    """
    p = len(offs)
    num_kpt = diag.shape[1]
    eye = jnp.eye(3, dtype=diag.dtype)
    zeros = jnp.zeros((num_kpt, 3, 3), diag.dtype)
    off = jnp.stack(offs, 1) if p else jnp.zeros((diag.shape[0], 0, num_kpt), diag.dtype)

    def step(carry, inputs):
        prev_mult, prev_dinv = carry  # (p, p, K, 3, 3): M rows of t-1..t-p; (p, K, 3, 3)
        d_t, off_t = inputs
        g = [None] * (p + 1)
        mult = [None] * (p + 1)
        for j in range(p, 0, -1):
            gj = off_t[j - 1][:, None, None] * eye
            for i in range(j + 1, p + 1):
                gj = gj - _mm(g[i], _mt(prev_mult[j - 1, i - j - 1]))
            g[j] = gj
            mult[j] = _mm(gj, prev_dinv[j - 1])
        d = d_t
        for j in range(1, p + 1):
            d = d - _mm(g[j], _mt(mult[j]))
        dinv = _inv3(0.5 * (d + _mt(d)))
        mult_t = jnp.stack(mult[1:], 0) if p else jnp.zeros((0, num_kpt, 3, 3), diag.dtype)
        new_mult = jnp.concatenate([mult_t[None], prev_mult[:-1]], 0)
        new_dinv = jnp.concatenate([dinv[None], prev_dinv[:-1]], 0)
        return (new_mult, new_dinv), (mult_t, dinv)

    init = (
        jnp.zeros((p, p, num_kpt, 3, 3), diag.dtype),
        jnp.broadcast_to(zeros, (p, num_kpt, 3, 3)),
    )
    _, (mult, dinv) = jax.lax.scan(step, init, (diag, off), unroll=1)
    return mult, dinv


def _band_solve(mult: Array, dinv: Array, b: Array) -> Array:
    """Solve L D L^T x = b for the factors of `_band_factor`; b, x (T, K, 3)."""
    p = mult.shape[1]

    def forward(prev_y, inputs):  # y[t] = b[t] - sum_j M[t, j] y[t-j]
        m_t, b_t = inputs
        y = b_t
        for j in range(p):
            y = y - _mv(m_t[j], prev_y[j])
        return jnp.concatenate([y[None], prev_y[:-1]], 0), y

    def backward(carry, inputs):  # x[t] = D[t]^-1 y[t] - sum_j M[t+j, j]^T x[t+j]
        prev_x, prev_m = carry  # x[t+1..t+p], M rows t+1..t+p
        m_t, dinv_t, y_t = inputs
        x = _mv(dinv_t, y_t)
        for j in range(p):
            x = x - _mv(_mt(prev_m[j, j]), prev_x[j])
        return (
            jnp.concatenate([x[None], prev_x[:-1]], 0),
            jnp.concatenate([m_t[None], prev_m[:-1]], 0),
        ), x

    zeros = jnp.zeros((p, *b.shape[1:]), b.dtype)
    _, y = jax.lax.scan(forward, zeros, (mult, b), unroll=1)
    init = (zeros, jnp.zeros((p, *mult.shape[1:]), mult.dtype))
    _, x = jax.lax.scan(backward, init, (mult, dinv, y), reverse=True, unroll=1)
    return x


def _temporal_band(mask: Array, order: int, weight: float) -> tuple[Array, list[Array]]:
    """Diagonal (T, K) and off-diagonals H[t, t-j] (T, K), j = 1..order, of the temporal part
    w^2 D^T diag(mask) D of H for one coordinate. mask (T - order, K) says which difference
    rows count (row r spans frames r..r+order)."""
    coeffs = (-1.0, 1.0) if order == 1 else (1.0, -2.0, 1.0)
    num_rows = mask.shape[0]
    num_frames = num_rows + order
    w2 = weight * weight

    def placed(values, shift):  # a (rows, K) array moved to frames shift..shift+rows
        return jnp.pad(values, ((shift, num_frames - num_rows - shift), (0, 0)))

    diag = sum(placed(w2 * mask * coeffs[a] ** 2, a) for a in range(order + 1))
    offs = [
        sum(placed(w2 * mask * coeffs[a] * coeffs[a - j], a) for a in range(j, order + 1))
        for j in range(1, order + 1)
    ]
    return diag, offs


# --- the cost -----------------------------------------------------------------------------------


def _centred_rig(rig: Camera, center: Array) -> Camera:
    """The rig in a world frame moved to `center`: X_world = center + X."""
    translation = rig.translation + jnp.einsum("cij,j->ci", rig.rotation_matrix(), center)
    return dataclasses.replace(rig, translation=translation)


def _stencil_mask(ok: Array, order: int) -> Array:
    """(T, K) -> (T - order, K): difference rows whose frames are all `ok`."""
    num = max(ok.shape[0] - order, 0)
    out = ok[:num]
    for a in range(1, order + 1):
        out = out & ok[a : a + num]
    return out


def _masks(data: dict, config: SpatiotemporalConfig) -> tuple[Array, Array]:
    """Row masks of the temporal (T - order, K) and limb (T, B) terms: rows whose points are all
    unknowns (`free`)."""
    free = data["free"]
    temporal = _stencil_mask(free, config.temporal_order)
    bones = data["bones"]
    limb = free[:, bones[:, 0]] & free[:, bones[:, 1]] & data["bone_ok"][None, :]
    return temporal, limb


def _reprojection(rig_c: Camera, x: Array, data: dict) -> tuple[Array, Array]:
    """Residuals (cam, T, K, 2) in px and their usable mask (cam, T, K)."""
    proj = project_rig(rig_c, x)
    r = proj - data["uv"]
    ok = (data["conf"] > 0) & jnp.all(jnp.isfinite(r), -1)
    return jnp.where(ok[..., None], r, 0.0), ok


def _smooth_residuals(x: Array, lengths: Array, data: dict, config: SpatiotemporalConfig):
    """The whitened temporal, limb and prior residuals (everything but reprojection) as a tuple
    of arrays; entries for disabled terms are absent."""
    temporal_mask, limb_mask = _masks(data, config)
    out = []
    if config.temporal_weight > 0:
        d = jnp.diff(x, n=config.temporal_order, axis=0)
        out.append(data["w"]["temporal_weight"] * d * temporal_mask[..., None])
    if config.limb_weight > 0 and data["bones"].shape[0]:
        a, b = data["bones"][:, 0], data["bones"][:, 1]
        diff = x[:, a] - x[:, b]  # (T, B, 3)
        # sqrt(|d|^2 + eps): no infinite gradient when two keypoints coincide
        norm = jnp.sqrt(jnp.sum(diff * diff, -1) + 1e-6)
        out.append(data["w"]["limb_weight"] * (norm - lengths) * limb_mask)
    if config.prior_weight > 0:
        out.append(data["w"]["prior_weight"] * (x - data["init"]) * data["free"][..., None])
    return tuple(out)


def _cost_terms(rig_c: Camera, x: Array, lengths: Array, data: dict, config) -> dict[str, Array]:
    """Each term of the cost for chunk-centred points x (T, K, 3)."""
    zero = jnp.zeros((), x.dtype)
    terms = dict(reprojection=zero, temporal=zero, limb=zero, prior=zero)
    if config.reprojection_weight > 0:
        r, ok = _reprojection(rig_c, x, data)
        sq = jnp.sum(r * r, -1)
        rho = jax.vmap(
            lambda s: robust_cost(
                s[None], loss=config.reprojection_loss, scale=data["w"]["reprojection_scale_px"]
            )
        )(sq.reshape(-1)).reshape(sq.shape)
        w = data["conf"] * (data["free"][None] & ok)
        terms["reprojection"] = data["w"]["reprojection_weight"] ** 2 * jnp.sum(w * rho)
    smooth = _smooth_residuals(x, lengths, data, config)
    names = []
    if config.temporal_weight > 0:
        names.append("temporal")
    if config.limb_weight > 0 and data["bones"].shape[0]:
        names.append("limb")
    if config.prior_weight > 0:
        names.append("prior")
    for name, r in zip(names, smooth, strict=True):
        terms[name] = jnp.sum(r * r)
    return terms


_cost_terms_jit = jax.jit(_cost_terms, static_argnames=("config",))


# --- one chunk: Levenberg-Marquardt with preconditioned conjugate gradients --------------------


def _dot(a, b) -> Array:
    return sum(jnp.sum(u * v) for u, v in zip(a, b, strict=True))


def _axpy(alpha, a, b):
    return tuple(alpha * u + v for u, v in zip(a, b, strict=True))


def _pcg(matvec, precond, rhs, *, max_iterations: int, tolerance: float):
    """Preconditioned conjugate gradients for SPD `matvec`, from zero, on tuples of arrays.
    Stops when sqrt(r^T M^-1 r) falls to `tolerance` times its start. Returns (x, iterations)."""
    x = tuple(jnp.zeros_like(v) for v in rhs)
    z = precond(rhs)
    rz = _dot(rhs, z)
    stop = (tolerance**2) * rz

    def cond(state):
        _, _, _, rz, k = state
        return (k < max_iterations) & (rz > stop)

    def body(state):
        x, r, p, rz, k = state
        ap = matvec(p)
        pap = _dot(p, ap)
        alpha = jnp.where(pap > 0, rz / jnp.where(pap > 0, pap, 1.0), 0.0)
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, ap, r)
        z = precond(r)
        rz_new = _dot(r, z)
        beta = rz_new / jnp.where(rz > 0, rz, 1.0)
        p = _axpy(beta, p, z)
        # a breakdown (pap <= 0: round-off at convergence) ends the loop
        rz_new = jnp.where(pap > 0, rz_new, 0.0)
        return x, r, p, rz_new, k + 1

    x, _, _, _, k = jax.lax.while_loop(cond, body, (x, rhs, z, rz, jnp.asarray(0)))
    return x, k


_NUMERIC = (
    "reprojection_weight",
    "reprojection_scale_px",
    "temporal_weight",
    "limb_weight",
    "prior_weight",
    "tolerance",
    "cg_tolerance",
    "initial_damping",
)


def _structure(config: SpatiotemporalConfig) -> SpatiotemporalConfig:
    """The config with its numbers replaced by placeholders (weights by 1 or 0: whether the term
    exists): the static part of a compiled chunk solver. The numbers travel as traced scalars,
    so that tuning a weight does not recompile."""
    return dataclasses.replace(
        config,
        reprojection_weight=float(config.reprojection_weight > 0),
        temporal_weight=float(config.temporal_weight > 0),
        limb_weight=float(config.limb_weight > 0),
        prior_weight=float(config.prior_weight > 0),
        reprojection_scale_px=1.0,
        tolerance=1.0,
        cg_tolerance=1.0,
        initial_damping=1.0,
        inlier_threshold_px=1.0,
        chunk_size=4,
        overlap=0,
    )


def _numbers(config: SpatiotemporalConfig, dtype) -> dict[str, Array]:
    return {name: jnp.asarray(getattr(config, name), dtype) for name in _NUMERIC}


@functools.partial(jax.jit, static_argnames=("config",))
def _solve_chunk(rig: Camera, data: dict, config: SpatiotemporalConfig):
    """Refine one chunk of T frames.

    `data` holds, in coordinates centred on `center` (3,) (mm): uv (cam, T, K, 2) observed
    pixels (0 where missing), conf (cam, T, K) confidence (0 where missing or unusable), init
    (T, K, 3) starting points, free (T, K) bool the unknown points (present keypoint and real
    frame: padding frames and absent keypoints stay put and enter no term), bones (B, 2) int,
    bone_ok (B,) bool bones with a length, lengths (B,) mm, and w the numbers of the config
    (`_numbers`); `config` is its `_structure`.

    Returns:
        points (T, K, 3) chunk-centred, bone lengths (B,), and a dict of statistics.
    """
    rig_c = _centred_rig(rig, data["center"])
    x0 = data["init"]
    lengths0 = data["lengths"]
    free = data["free"]
    free3 = free[..., None].astype(x0.dtype)
    use_limbs = config.limb_weight > 0 and data["bones"].shape[0] > 0
    solve_lengths = config.refine_bone_lengths and use_limbs
    len_free = data["bone_ok"].astype(x0.dtype) if solve_lengths else jnp.zeros_like(lengths0)

    def total(x, lengths):
        return sum(_cost_terms(rig_c, x, lengths, data, config).values())

    temporal_mask, limb_mask = _masks(data, config)
    eye = jnp.eye(3, dtype=x0.dtype)

    def linear_system(x, lengths):
        """Gradient g, H's block diagonal A (T, K, 3, 3), and the smooth-term JVP/VJP."""
        g_x = jnp.zeros_like(x)
        blocks = jnp.zeros((*x.shape, 3), x.dtype)
        if config.reprojection_weight > 0:
            r, ok = _reprojection(rig_c, x, data)
            sq = jnp.sum(r * r, -1)
            w = robust_weights(
                sq, loss=config.reprojection_loss, scale=data["w"]["reprojection_scale_px"]
            )
            w = data["w"]["reprojection_weight"] ** 2 * w * data["conf"] * ok * free[None]
            # per-observation Jacobians d(pixel)/d(point): three forward passes, (3, cam, T, K, 2)
            basis = jnp.broadcast_to(eye[:, None, None, :], (3, *x.shape))
            jac = jax.vmap(lambda e: jax.jvp(lambda y: project_rig(rig_c, y), (x,), (e,))[1])(basis)
            jac = jnp.where(jnp.isfinite(jac), jac, 0.0)
            jac = jnp.moveaxis(jac, 0, -1)  # (cam, T, K, 2, 3)
            wj = w[..., None, None] * jac
            blocks = jnp.sum(jnp.sum(wj[..., :, :, None] * jac[..., :, None, :], -3), 0)
            g_x = jnp.sum(jnp.sum(wj * r[..., None], -2), 0)

        smooth = functools.partial(_smooth_residuals, data=data, config=config)
        res, jvp = jax.linearize(smooth, x, lengths)
        vjp = jax.linear_transpose(jvp, x, lengths)
        gs_x, gs_l = vjp(res)
        return (g_x + gs_x, gs_l), blocks, jvp, vjp

    def precond_matrix(x, lengths, blocks):
        """H without the limb cross terms: its block diagonal (T, K, 3, 3), temporal band
        H[t, t-j] (scalar per (T, K)), and the diagonal of the bone-length part (B,)."""
        diag = blocks
        offs = []
        if config.temporal_weight > 0:
            tdiag, offs = _temporal_band(
                temporal_mask.astype(x.dtype), config.temporal_order, data["w"]["temporal_weight"]
            )
            diag = diag + tdiag[..., None, None] * eye
        len_diag = jnp.zeros_like(lengths)
        if use_limbs:
            a, b = data["bones"][:, 0], data["bones"][:, 1]
            diff = x[:, a] - x[:, b]
            u = diff / jnp.sqrt(jnp.sum(diff * diff, -1, keepdims=True) + 1e-6)
            uu = (
                (data["w"]["limb_weight"] ** 2)
                * limb_mask[..., None, None]
                * u[..., :, None]
                * u[..., None, :]
            )
            diag = diag.at[:, a].add(uu).at[:, b].add(uu)
            len_diag = data["w"]["limb_weight"] ** 2 * jnp.sum(limb_mask, 0).astype(x.dtype)
        if config.prior_weight > 0:
            diag = diag + (data["w"]["prior_weight"] ** 2) * free[..., None, None] * eye
        return diag, offs, len_diag

    def step_direction(x, lengths, lam):
        (g_x, g_l), blocks, jvp, vjp = linear_system(x, lengths)
        g_x, g_l = g_x * free3, g_l * len_free
        diag, offs, len_diag = precond_matrix(x, lengths, blocks)
        # Marquardt damping on the diagonal; a floor keeps frozen or unconstrained entries
        # (padding frames, absent keypoints) invertible.
        dvec = jnp.diagonal(diag, axis1=-2, axis2=-1)
        scale = jnp.maximum(jnp.max(dvec), 1e-30)
        damp = lam * dvec + 1e-9 * scale
        damp = jnp.where(free3 > 0, damp, scale)  # frozen: any positive value
        len_damp = jnp.where(len_free > 0, lam * len_diag + 1e-9 * scale, scale)
        p_diag = diag * free[..., None, None] + damp[..., :, None] * eye
        if config.preconditioner == "banded" and offs:
            # (the temporal band is already zero wherever a point is frozen)
            mult, dinv = _band_factor(p_diag, offs)
            solve_x = lambda v: _band_solve(mult, dinv, v)
        else:
            dinv = _inv3(p_diag)
            solve_x = lambda v: _mv(dinv, v)
        len_inv = 1.0 / (len_diag * len_free + len_damp)

        def matvec(v):
            vx, vl = v[0] * free3, v[1] * len_free
            hx = _mv(blocks, vx)
            sx, sl = vjp(jvp(vx, vl))
            out_x = (hx + sx) * free3 + damp * v[0]
            out_l = sl * len_free + len_damp * v[1]
            return out_x, out_l

        def precond(v):
            return solve_x(v[0]), len_inv * v[1]

        delta, cg_its = _pcg(
            matvec,
            precond,
            (-g_x, -g_l),
            max_iterations=config.cg_max_iterations,
            tolerance=data["w"]["cg_tolerance"],
        )
        return delta, cg_its

    cost0 = total(x0, lengths0)

    def cond(state):
        _, _, _, _, it, done, _ = state
        return (~done) & (it < config.max_iterations)

    def body(state):
        x, lengths, lam, cost, it, _, cg_total = state
        (dx, dl), cg_its = step_direction(x, lengths, lam)
        x_new, l_new = x + dx * free3, lengths + dl * len_free
        new_cost = total(x_new, l_new)
        better = jnp.isfinite(new_cost) & (new_cost < cost)
        decrease = (cost - new_cost) / jnp.maximum(cost, 1e-30)
        x = jnp.where(better, x_new, x)
        lengths = jnp.where(better, l_new, lengths)
        # converged: a small decrease, no step at all (zero gradient), or no step that helps
        done = (better & (decrease < data["w"]["tolerance"])) | (new_cost == cost) | (lam > 1e8)
        cost = jnp.where(better, new_cost, cost)
        lam = jnp.where(better, lam * 0.3, lam * 10.0)
        return x, lengths, lam, cost, it + 1, done, cg_total + cg_its

    lam0 = jnp.asarray(data["w"]["initial_damping"], x0.dtype)
    state = (x0, lengths0, lam0, cost0, jnp.asarray(0), jnp.asarray(False), jnp.asarray(0))
    x, lengths, _, cost, it, done, cg_total = jax.lax.while_loop(cond, body, state)
    stats = dict(
        cost_before=cost0,
        cost_after=cost,
        terms_before=_cost_terms(rig_c, x0, lengths0, data, config),
        terms_after=_cost_terms(rig_c, x, lengths, data, config),
        iterations=it,
        cg_iterations=cg_total,
        converged=done,
    )
    return x, lengths, stats


@jax.jit
def _view_errors(rig: Camera, x: Array, uv: Array, conf: Array, threshold: Array):
    """Mean inlier reprojection error (T, K) and inlier count for points x (T, K, 3) (world)."""
    center = jnp.nanmedian(x.reshape(-1, 3), 0)
    center = jnp.where(jnp.isfinite(center), center, 0.0)
    rig_c = _centred_rig(rig, center)
    finite = jnp.all(jnp.isfinite(x), -1)
    xs = jnp.where(finite[..., None], x - center, 0.0)
    err = jnp.linalg.norm(project_rig(rig_c, xs) - uv, axis=-1)  # (cam, T, K)
    inlier = (conf > 0) & (err < threshold) & finite[None]
    n = jnp.sum(inlier, 0)
    mean = jnp.sum(jnp.where(inlier, err, 0.0), 0) / jnp.maximum(n, 1)
    return jnp.where(n > 0, mean, jnp.nan), n.astype(jnp.int32)


# --- the public API -----------------------------------------------------------------------------


def fill_gaps(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill the non-finite points of each keypoint by linear interpolation over frames, holding
    the first and last known values at the ends.

    Args:
        points: (frame, kpt, 3).

    Returns:
        filled (frame, kpt, 3), NaN only for keypoints with no finite frame; present (kpt,)
        bool, which keypoints have one.
    """
    points = np.asarray(points, np.float64)
    finite = np.all(np.isfinite(points), -1)
    present = finite.any(0)
    filled = points.copy()
    frames = np.arange(points.shape[0])
    for k in np.flatnonzero(present & ~finite.all(0)):
        known = finite[:, k]
        for c in range(3):
            filled[:, k, c] = np.interp(frames, frames[known], points[known, k, c])
    filled[:, ~present] = np.nan
    return filled, present


def estimate_bone_lengths(points: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """Median length (bone,) of each bone (a, b) over the frames where both ends are finite;
    NaN for a bone with no such frame. points (frame, kpt, 3), bones (bone, 2) int."""
    bones = np.asarray(bones, int).reshape(-1, 2)
    if not len(bones):
        return np.zeros(0)
    lengths = np.linalg.norm(points[:, bones[:, 0]] - points[:, bones[:, 1]], axis=-1)
    out = np.full(len(bones), np.nan)
    for i in range(len(bones)):
        finite = np.isfinite(lengths[:, i])
        if finite.any():
            out[i] = np.median(lengths[finite, i])
    return out


def _check_inputs(rig, points_2d, confidence, initial, bones, bone_lengths):
    if rig.rotation.ndim != 2:
        raise ValueError(
            f"refine_spatiotemporal needs a rig (cameras with a leading cam axis), got batch "
            f"shape {rig.batch_shape}"
        )
    num_cameras = rig.rotation.shape[0]
    points_2d = np.asarray(points_2d)
    if points_2d.ndim != 4 or points_2d.shape[1] != num_cameras or points_2d.shape[-1] != 2:
        raise ValueError(
            f"points_2d must have shape (frame, cam={num_cameras}, kpt, 2), got "
            f"{points_2d.shape}; (frame, kpt, cam, 2) arrays need np.moveaxis(a, 2, 1)"
        )
    num_frames, _, num_kpt, _ = points_2d.shape
    if num_frames == 0 or num_kpt == 0:
        raise ValueError(f"points_2d has no frames or no keypoints: shape {points_2d.shape}")
    if confidence is None:
        confidence = np.all(np.isfinite(points_2d), -1).astype(np.float64)
    confidence = np.asarray(confidence)
    if confidence.shape != points_2d.shape[:-1]:
        raise ValueError(
            f"confidence must have shape (frame, cam, kpt) = {points_2d.shape[:-1]}, got "
            f"{confidence.shape}"
        )
    if initial is not None:
        initial = np.asarray(initial.points if isinstance(initial, Triangulation) else initial)
        if initial.shape != (num_frames, num_kpt, 3):
            raise ValueError(
                f"initial points must have shape (frame, kpt, 3) = {(num_frames, num_kpt, 3)}, "
                f"got {initial.shape}"
            )
    bones = np.asarray(bones if bones is not None else [], dtype=np.int64).reshape(-1, 2)
    for i, (a, b) in enumerate(bones):
        if not (0 <= a < num_kpt and 0 <= b < num_kpt) or a == b:
            raise ValueError(
                f"bone {i} = ({a}, {b}) must join two different keypoints in [0, {num_kpt})"
            )
    if bone_lengths is not None:
        bone_lengths = np.asarray(bone_lengths, np.float64)
        if bone_lengths.shape != (len(bones),):
            raise ValueError(
                f"bone_lengths must have one entry per bone ({len(bones)}), got shape "
                f"{bone_lengths.shape}"
            )
        bad = np.flatnonzero(~(bone_lengths > 0))
        if bad.size:
            raise ValueError(
                f"bone_lengths must be positive and finite; bone {int(bad[0])} "
                f"{tuple(bones[bad[0]])} has {bone_lengths[bad[0]]}"
            )
    return points_2d, confidence, initial, bones, bone_lengths


def _chunk_data(
    uv: np.ndarray,
    conf: np.ndarray,
    init: np.ndarray,
    present: np.ndarray,
    bones: np.ndarray,
    bone_ok: np.ndarray,
    lengths: np.ndarray,
    numbers: dict,
    *,
    size: int,
) -> tuple[dict, np.ndarray]:
    """The `_solve_chunk` data of a run of frames, padded to `size` frames with frames of no data.

    Args:
        uv: (cam, T, K, 2) pixels, 0 where unusable; conf (cam, T, K), 0 where unusable.
        init: (T, K, 3) world starting points, finite for every present keypoint.
        present: (K,) keypoints that have a starting point.
        bones, bone_ok, lengths: (B, 2), (B,), (B,) the limb term's bones.
        numbers: `_numbers(config)`.

    Returns:
        The data dict, and the centre (3,) subtracted from its points.
    """
    dtype = numbers["tolerance"].dtype
    num_cameras, count, num_kpt = conf.shape
    pad = size - count
    center = np.median(init[:, present].reshape(-1, 3), 0) if present.any() else np.zeros(3)
    init = np.where(present[None, :, None], init - center, 0.0)
    if pad:
        init = np.concatenate([init, np.repeat(init[-1:], pad, 0)])
        uv = np.concatenate([uv, np.zeros((num_cameras, pad, num_kpt, 2))], 1)
        conf = np.concatenate([conf, np.zeros((num_cameras, pad, num_kpt))], 1)
    frame_ok = np.arange(size) < count
    data = dict(
        uv=jnp.asarray(uv, dtype),
        conf=jnp.asarray(conf, dtype),
        init=jnp.asarray(init, dtype),
        free=jnp.asarray(frame_ok[:, None] & present[None, :]),
        bones=jnp.asarray(bones, jnp.int32),
        bone_ok=jnp.asarray(bone_ok),
        lengths=jnp.asarray(lengths, dtype),
        center=jnp.asarray(center, dtype),
        w=numbers,
    )
    return data, center


def spatiotemporal_cost(
    rig: Camera,
    points: Array,
    points_2d: Array | np.ndarray,
    confidence: Array | np.ndarray | None = None,
    *,
    bones: Sequence[tuple[int, int]] | np.ndarray | None = None,
    bone_lengths: Sequence[float] | np.ndarray | None = None,
    initial: Array | np.ndarray | None = None,
    config: SpatiotemporalConfig = SpatiotemporalConfig(),
) -> dict[str, Array]:
    """The cost that `refine_spatiotemporal` minimises, term by term, for points of one run of
    frames (no chunking). Differentiable in `points` and the rig.

    Args:
        rig: cameras with a leading `cam` axis.
        points: (frame, kpt, 3) world points (mm); non-finite points are left out of every term.
        points_2d: (frame, cam, kpt, 2) pixels, NaN where missing.
        confidence: (frame, cam, kpt); default 1 wherever points_2d is finite.
        bones: (a, b) keypoint pairs of the limb term.
        bone_lengths: (bone,) mm; default the median lengths of `points`.
        initial: (frame, kpt, 3) the points the prior term pulls towards (none: no prior term).
        config: the weights.

    Returns:
        {"reprojection", "temporal", "limb", "prior"}: scalar costs (px^2), 0 for a disabled term.
    """
    points = jnp.asarray(points)
    points_2d, confidence, _, bones, bone_lengths = _check_inputs(
        rig, points_2d, confidence, None, bones, bone_lengths
    )
    if points.shape != (points_2d.shape[0], points_2d.shape[2], 3):
        raise ValueError(
            f"points must have shape (frame, kpt, 3) = "
            f"{(points_2d.shape[0], points_2d.shape[2], 3)}, got {points.shape}"
        )
    if bone_lengths is None:
        bone_lengths = estimate_bone_lengths(np.asarray(jax.lax.stop_gradient(points)), bones)
    bone_ok = np.isfinite(bone_lengths)
    uv, conf = _observations(points_2d, confidence)
    dtype = points.dtype
    free = jnp.all(jnp.isfinite(points), -1)
    x = jnp.where(free[..., None], points, 0.0)
    if initial is None:
        init, structure = jax.lax.stop_gradient(x), dataclasses.replace(config, prior_weight=0.0)
    else:
        init, structure = jnp.nan_to_num(jnp.asarray(initial, dtype)), config
    data = dict(
        uv=jnp.asarray(uv, dtype),
        conf=jnp.asarray(conf, dtype),
        init=init,
        free=free,
        bones=jnp.asarray(bones, jnp.int32),
        bone_ok=jnp.asarray(bone_ok),
        lengths=jnp.asarray(np.where(bone_ok, bone_lengths, 1.0), dtype),
        w=_numbers(config, dtype),
    )
    return _cost_terms_jit(rig.astype(dtype), x, data["lengths"], data, _structure(structure))


def _observations(points_2d: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frame, cam, kpt, ...) -> uv (cam, frame, kpt, 2) with 0 where unusable, and confidence
    (cam, frame, kpt) with 0 where unusable (missing, non-finite or not positive)."""
    uv = np.moveaxis(np.asarray(points_2d, np.float64), 1, 0)
    conf = np.moveaxis(np.asarray(confidence, np.float64), 1, 0)
    usable = np.all(np.isfinite(uv), -1) & np.isfinite(conf) & (conf > 0)
    return np.where(usable[..., None], uv, 0.0), np.where(usable, conf, 0.0)


def _chunk_starts(num_frames: int, size: int, overlap: int) -> list[int]:
    """First frames of chunks of `size` frames, consecutive ones sharing `overlap` frames, the
    last one reaching the end of the recording (padded past it)."""
    starts = [0]
    while starts[-1] + size < num_frames:
        starts.append(starts[-1] + size - overlap)
    return starts


def _blend_weights(length: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """Per-frame weights (length,) of a chunk: ramps over the overlaps it shares with its
    neighbours, so that the weights of two overlapping chunks add up to 1 on every frame."""
    w = np.ones(length)
    if overlap:
        ramp = (np.arange(overlap) + 0.5) / overlap
        if not first:
            w[:overlap] = ramp
        if not last:
            w[-overlap:] = ramp[::-1]
    return w


def refine_spatiotemporal(
    rig: Camera,
    points_2d: Array | np.ndarray,
    confidence: Array | np.ndarray | None = None,
    *,
    initial: Triangulation | np.ndarray | None = None,
    bones: Sequence[tuple[int, int]] | np.ndarray | None = None,
    bone_lengths: Sequence[float] | np.ndarray | None = None,
    config: SpatiotemporalConfig = SpatiotemporalConfig(),
    progress: bool = True,
) -> SpatiotemporalResult:
    """Refine the 3D keypoints of a whole recording by robust reprojection error, temporal
    smoothness and bone-length consistency (see the module docstring for the cost).

    Args:
        rig: cameras with a leading `cam` axis.
        points_2d: (frame, cam, kpt, 2) distorted pixels, NaN where a view is missing; the
            layout of `triangulate_frames`.
        confidence: (frame, cam, kpt) view confidence; default 1 wherever points_2d is finite.
        initial: starting points (frame, kpt, 3) or a `Triangulation` of them; default
            `triangulate_frames(..., method=config.initial_method)`. NaN points are filled by
            interpolation over frames.
        bones: (a, b) keypoint pairs for the limb term (none: no limb term).
        bone_lengths: (bone,) lengths in mm; default the median over the recording of the
            starting points' lengths.
        config: weights and solver settings.
        progress: show a progress bar over chunks.

    Returns:
        A `SpatiotemporalResult`.

    Raises:
        ValueError: bad shapes, a bone index out of range, a non-positive bone length.

    Warns:
        UserWarning: keypoints that no frame triangulates (returned as NaN), bones left out for
        lack of a length.
    """
    points_2d, confidence, initial, bones, bone_lengths = _check_inputs(
        rig, points_2d, confidence, initial, bones, bone_lengths
    )
    dtype = jnp.result_type(float)  # float32 unless x64 is enabled
    np_dtype = np.dtype(dtype)
    num_frames, num_cameras, num_kpt, _ = points_2d.shape
    if initial is None:
        initial = triangulate_frames(
            rig.astype(dtype),
            points_2d.astype(np_dtype),
            confidence.astype(np_dtype),
            method=config.initial_method,
            chunk_size=config.chunk_size * 4,
            progress=progress,
        ).points
    started = time.perf_counter()
    raw = np.asarray(initial, np.float64)
    filled, present = fill_gaps(raw)
    if not present.all():
        warnings.warn(
            f"keypoints {np.flatnonzero(~present).tolist()} are triangulated in no frame "
            f"(fewer than two usable views everywhere): they stay NaN",
            stacklevel=2,
        )
    if bone_lengths is None:
        bone_lengths = estimate_bone_lengths(raw, bones)
    bone_ok = np.isfinite(bone_lengths) & present[bones[:, 0]] & present[bones[:, 1]]
    if len(bones) and not bone_ok.all() and config.limb_weight > 0:
        warnings.warn(
            f"bones {[tuple(int(i) for i in b) for b in bones[~bone_ok]]} have no length (no "
            f"frame triangulates both ends): the limb term leaves them out",
            stacklevel=2,
        )

    # (cam, frame, kpt) layout inside, as `project_rig` returns
    uv, conf = _observations(points_2d, confidence)
    conf = conf * present[None, None, :]

    # (a recording shorter than 4 frames is padded: the temporal stencils need a few frames)
    size = min(config.chunk_size, max(num_frames, 4))
    overlap = min(config.overlap, size // 2)
    starts = _chunk_starts(num_frames, size, overlap)
    rig_d = rig.astype(dtype)
    structure, numbers = _structure(config), _numbers(config, dtype)
    lengths = np.where(bone_ok, bone_lengths, 1.0)
    iterator = starts
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(starts, desc="spatiotemporal refinement", unit="chunk")

    acc = np.zeros((num_frames, num_kpt, 3))
    acc_w = np.zeros(num_frames)
    stats, chunk_lengths = [], []
    for n, start in enumerate(iterator):
        stop = min(start + size, num_frames)
        count = stop - start
        data, center = _chunk_data(
            uv[:, start:stop],
            conf[:, start:stop],
            filled[start:stop],
            present,
            bones,
            bone_ok,
            lengths,
            numbers,
            size=size,
        )
        x, chunk_len, chunk_stats = _solve_chunk(rig_d, data, structure)
        x = np.asarray(x, np.float64)[:count] + center
        w = _blend_weights(count, overlap, first=n == 0, last=n == len(starts) - 1)
        acc[start:stop] += w[:, None, None] * x
        acc_w[start:stop] += w
        stats.append(jax.tree_util.tree_map(np.asarray, chunk_stats))
        chunk_lengths.append(np.where(bone_ok, np.asarray(chunk_len, np.float64), np.nan))

    points = acc / acc_w[:, None, None]
    points[:, ~present] = np.nan

    error = np.empty((num_frames, num_kpt))
    ncams = np.empty((num_frames, num_kpt), np.int32)
    for start in range(0, num_frames, size):
        stop = min(start + size, num_frames)
        pad = size - (stop - start)  # one shape for every call: one compilation
        e, c = _view_errors(
            rig_d,
            jnp.asarray(np.pad(points[start:stop], ((0, pad), (0, 0), (0, 0))), dtype),
            jnp.asarray(np.pad(uv[:, start:stop], ((0, 0), (0, pad), (0, 0), (0, 0))), dtype),
            jnp.asarray(np.pad(conf[:, start:stop], ((0, 0), (0, pad), (0, 0))), dtype),
            jnp.asarray(config.inlier_threshold_px, dtype),
        )
        error[start:stop] = np.asarray(e)[: stop - start]
        ncams[start:stop] = np.asarray(c)[: stop - start]

    terms = ("reprojection", "temporal", "limb", "prior")
    return SpatiotemporalResult(
        points=points,
        error=error,
        ncams=ncams,
        initial=filled,
        bones=bones,
        bone_lengths=np.where(bone_ok, bone_lengths, np.nan),
        chunk_bone_lengths=np.stack(chunk_lengths)
        if config.refine_bone_lengths and len(bones)
        else None,
        cost_before=float(sum(s["cost_before"] for s in stats)),
        cost_after=float(sum(s["cost_after"] for s in stats)),
        terms_before={k: float(sum(s["terms_before"][k] for s in stats)) for k in terms},
        terms_after={k: float(sum(s["terms_after"][k] for s in stats)) for k in terms},
        iterations=np.array([int(s["iterations"]) for s in stats]),
        cg_iterations=np.array([int(s["cg_iterations"]) for s in stats]),
        converged=np.array([bool(s["converged"]) for s in stats]),
        chunk_starts=np.asarray(starts),
        seconds=time.perf_counter() - started,
    )
