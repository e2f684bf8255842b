"""Kalman filter and Rauch-Tung-Striebel smoother for keypoint trajectories, in JAX.

Each keypoint is tracked on its own with a linear-Gaussian motion model over its `coord`
coordinates (2 or 3). The state of one keypoint stacks position, velocity and, for the
constant-acceleration model, acceleration, each a `coord`-vector:

    s_t = [p_t, v_t(, a_t)]                                   (coord * order,)
    s_{t+1} = F s_t + w_t,   w_t ~ N(0, Q)                     motion model
    z_t = H s_t + e_t,       e_t ~ N(0, R_t),  H = [I, 0(, 0)] observation of the position

Time runs in frames (dt = 1) so that the state's entries have comparable magnitudes in float32;
velocities are converted to per second on output when `fps` is given. F and Q are the exact
discretisations of the continuous white-noise acceleration and Wiener-process acceleration models
(Bar-Shalom, Li and Kirubarajan, "Estimation with Applications to Tracking and Navigation",
ch. 6): for constant velocity the acceleration is white noise of spectral density q, so the
velocity random-walks by sqrt(q) units/frame each frame; for constant acceleration the jerk is,
and the acceleration random-walks by sqrt(q) units/frame^2 per frame. Here q = process_sigma^2,
for each coordinate independently.

R_t comes per observation from the detector confidence c (isotropic, standard deviation
measurement_sigma / c ** confidence_exponent) or from a given (coord, coord) covariance such as
triangulation's. Missing observations (NaN, zero confidence, non-finite covariance) skip the
update step, so the forward pass predicts across gaps and the backward (RTS) pass interpolates
them, with variances that grow towards the gap's middle.

Each keypoint starts from a diffuse prior (zero velocity, wide variances) at the mean of its
observations, on which its data are centred. The filter uses the Joseph form of the covariance
update and symmetrises covariances after each step, which keeps them positive definite in
float32. With isotropic noise (confidence or a constant sigma) the coordinates decouple exactly
and run as independent 1-D tracks; a full covariance runs the coupled model.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxpose.filters.gaps import (
    as_confidence,
    as_trajectory,
    check_max_gap,
    gap_lengths,
    point_valid,
)

MODELS = {"constant_velocity": 2, "constant_acceleration": 3}


class KalmanResult(NamedTuple):
    """Kalman estimates of a trajectory.

    Attributes:
        position: (frame, kpt, coord) estimated positions; NaN for keypoints never observed and in
            gaps longer than `max_gap`.
        variance: (frame, kpt, coord) variance of each position coordinate (units^2).
        velocity: (frame, kpt, coord) estimated velocities, units/s when fps was given, else
            units/frame.
        covariance: (frame, kpt, coord, coord) full position covariance.
    """

    position: np.ndarray
    variance: np.ndarray
    velocity: np.ndarray
    covariance: np.ndarray


def motion_model(model: str, *, coord: int, process_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Transition F and process noise Q of a per-coordinate kinematic model, with dt = 1 frame.

    Args:
        model: "constant_velocity" (state position, velocity) or "constant_acceleration"
            (position, velocity, acceleration).
        coord: number of coordinates per keypoint.
        process_sigma: sqrt of the spectral density q of the white noise driving the motion
            (acceleration for constant velocity, jerk for constant acceleration); per frame, the
            velocity (acceleration) random-walks by process_sigma units/frame (units/frame^2).

    Returns:
        F, Q: (coord * order, coord * order) each, state ordered [position, velocity(, acc)] with
        every block a `coord`-vector.
    """
    if model not in MODELS:
        raise ValueError(f"unknown Kalman motion model {model!r}; expected one of {tuple(MODELS)}")
    if not (np.isfinite(process_sigma) and process_sigma > 0):
        raise ValueError(f"process_sigma must be a positive number, got {process_sigma!r}")
    q = float(process_sigma) ** 2
    if model == "constant_velocity":
        f1 = np.array([[1.0, 1.0], [0.0, 1.0]])
        q1 = q * np.array([[1 / 3, 1 / 2], [1 / 2, 1.0]])
    else:
        f1 = np.array([[1.0, 1.0, 0.5], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
        q1 = q * np.array([[1 / 20, 1 / 8, 1 / 6], [1 / 8, 1 / 3, 1 / 2], [1 / 6, 1 / 2, 1.0]])
    eye = np.eye(coord)
    return np.kron(f1, eye), np.kron(q1, eye)


def _symmetrize(m: Array) -> Array:
    return 0.5 * (m + m.T)


def kalman_filter(
    z: Array, r: Array, valid: Array, *, f: Array, q: Array, m0: Array, p0: Array
) -> tuple[Array, Array, Array, Array]:
    """Forward Kalman filter for one track.

    Args:
        z: (frame, obs) observations of the first `obs` state entries.
        r: (frame, obs, obs) observation noise covariances.
        valid: (frame,) bool; False skips the update (z and r may then hold anything, NaN too).
        f: (state, state) transition.
        q: (state, state) process noise covariance.
        m0: (state,) prior mean of the state at frame 0, before its observation.
        p0: (state, state) prior covariance at frame 0.

    Returns:
        filtered means (frame, state) and covariances (frame, state, state), i.e. given the
        observations up to and including each frame; and predicted means and covariances, given
        the observations before each frame (frame 0: the prior).
    """
    obs = z.shape[-1]
    eye = jnp.eye(m0.shape[0], dtype=m0.dtype)
    h = eye[:obs]

    def step(carry, inputs):
        m_pred, p_pred = carry
        z_t, r_t, valid_t = inputs
        # Missing observations would put NaN into the update; give them harmless values and
        # discard the update below.
        z_t = jnp.where(valid_t, z_t, 0.0)
        r_t = jnp.where(valid_t, r_t, jnp.eye(obs, dtype=r_t.dtype))
        s = p_pred[:obs, :obs] + r_t
        gain = jnp.linalg.solve(s, p_pred[:obs, :]).T  # P H^T S^-1, S symmetric
        m_upd = m_pred + gain @ (z_t - m_pred[:obs])
        joseph = eye - gain @ h
        p_upd = _symmetrize(joseph @ p_pred @ joseph.T + gain @ r_t @ gain.T)
        m_filt = jnp.where(valid_t, m_upd, m_pred)
        p_filt = jnp.where(valid_t, p_upd, p_pred)
        m_next = f @ m_filt
        p_next = _symmetrize(f @ p_filt @ f.T + q)
        return (m_next, p_next), (m_filt, p_filt, m_pred, p_pred)

    _, (m_filt, p_filt, m_pred, p_pred) = jax.lax.scan(step, (m0, p0), (z, r, valid))
    return m_filt, p_filt, m_pred, p_pred


def rts_smoother(
    m_filt: Array, p_filt: Array, m_pred: Array, p_pred: Array, *, f: Array
) -> tuple[Array, Array]:
    """Rauch-Tung-Striebel backward pass over the output of `kalman_filter`.

    Returns:
        smoothed means (frame, state) and covariances (frame, state, state), given all frames.
    """

    def step(carry, inputs):
        m_next, p_next = carry  # smoothed at t + 1
        m_f, p_f, m_p, p_p = inputs  # filtered at t, predicted for t + 1
        gain = jnp.linalg.solve(p_p, f @ p_f).T  # P_f F^T P_p^-1, P_p symmetric
        m_s = m_f + gain @ (m_next - m_p)
        p_s = _symmetrize(p_f + gain @ (p_next - p_p) @ gain.T)
        return (m_s, p_s), (m_s, p_s)

    last = (m_filt[-1], p_filt[-1])
    _, (m_s, p_s) = jax.lax.scan(
        step, last, (m_filt[:-1], p_filt[:-1], m_pred[1:], p_pred[1:]), reverse=True
    )
    return jnp.concatenate([m_s, m_filt[-1:]]), jnp.concatenate([p_s, p_filt[-1:]])


@functools.partial(jax.jit, static_argnames=("smooth",))
def _track_batch(z, r, valid, f, q, m0, p0, smooth: bool):
    """`kalman_filter` (and `rts_smoother`) of a batch of tracks: every argument but f and q has
    a leading track axis, e.g. z (track, frame, obs). Returns means and covariances."""

    def one(z_k, r_k, valid_k, m0_k, p0_k):
        out = kalman_filter(z_k, r_k, valid_k, f=f, q=q, m0=m0_k, p0=p0_k)
        if smooth:
            return rts_smoother(*out, f=f)
        return out[0], out[1]

    return jax.vmap(one)(z, r, valid, m0, p0)


def kalman_smooth(
    x,
    *,
    model: str = "constant_velocity",
    process_sigma: float = 1.0,
    measurement_sigma: float = 1.0,
    confidence=None,
    confidence_exponent: float = 1.0,
    covariance=None,
    fps: float | None = None,
    max_gap: int | None = None,
    smooth: bool = True,
    initial_sigma: float | None = None,
) -> KalmanResult:
    """Kalman filter + RTS smoother of every keypoint of a trajectory, missing points included.

    Args:
        x: (frame, kpt, coord) trajectory, NaN where missing (px for 2D, mm for 3D).
        model: "constant_velocity" or "constant_acceleration".
        process_sigma: how much the motion may change per frame: the velocity (constant
            velocity) or acceleration (constant acceleration) random-walks by this many
            units/frame (units/frame^2) each frame. Smaller is smoother.
        measurement_sigma: observation noise standard deviation at confidence 1, in units of x.
        confidence: (frame, kpt) detector confidence; the noise standard deviation of a point is
            measurement_sigma / confidence ** confidence_exponent, and confidence <= 0 or NaN
            marks it missing. None: every finite point has confidence 1.
        confidence_exponent: 1 gives sigma / c; 0.5 gives triangulation's sigma / sqrt(c).
        covariance: (frame, kpt, coord, coord) observation covariances (e.g. the triangulation's
            `covariance` output); when given it replaces the confidence-based noise, and a
            non-finite covariance marks the point missing (confidence still masks zeros).
        fps: frame rate in Hz; only used to report velocities per second.
        max_gap: gaps longer than this many frames (edge gaps included) come out NaN; None fills
            every gap (check `variance` there).
        smooth: False returns the forward (causal) filter's estimates instead of the smoother's.
        initial_sigma: standard deviation of the diffuse prior on each state entry at frame 0;
            default 10 x (RMS spread of the keypoint's observations about their mean + its median
            observation noise standard deviation).

    Returns:
        KalmanResult with float64 NumPy arrays. Computation runs in JAX's default float dtype
        (float32 unless x64 is enabled), on observations centred on each keypoint's mean.
    """
    x = as_trajectory(x)
    num_frames, num_kpt, coord = x.shape
    if not (np.isfinite(measurement_sigma) and measurement_sigma > 0):
        raise ValueError(f"measurement_sigma must be a positive number, got {measurement_sigma!r}")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive frame rate in Hz or None, got {fps!r}")
    max_gap = check_max_gap(max_gap, allow_none=True)
    motion_model(model, coord=coord, process_sigma=process_sigma)  # validate before the work
    if num_frames == 0 or num_kpt == 0:
        empty = np.zeros((num_frames, num_kpt, coord))
        return KalmanResult(empty, empty.copy(), empty.copy(), np.zeros((*empty.shape, coord)))

    valid = point_valid(x)
    if confidence is not None:
        conf = as_confidence(confidence, (num_frames, num_kpt))
        valid &= conf > 0
    if covariance is not None:
        r = np.array(covariance, dtype=np.float64)
        if r.shape != (num_frames, num_kpt, coord, coord):
            raise ValueError(
                f"covariance must have shape (frame, kpt, coord, coord) = "
                f"{(num_frames, num_kpt, coord, coord)}, got {r.shape}"
            )
        valid &= np.all(np.isfinite(r), axis=(-2, -1))
        noise_var = np.trace(np.where(valid[..., None, None], r, 0.0), axis1=-2, axis2=-1) / coord
    else:
        sigma = np.full((num_frames, num_kpt), float(measurement_sigma))
        if confidence is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                sigma = measurement_sigma / conf**confidence_exponent
        noise_var = np.where(valid, sigma**2, 1.0)  # (frame, kpt); missing: never used

    # Centre each keypoint on its observed mean: float32 then keeps its precision for tracks far
    # from the origin.
    counts = valid.sum(0)  # (kpt,)
    centre = np.where(valid[..., None], x, 0.0).sum(0) / np.maximum(counts, 1)[:, None]
    z = np.where(valid[..., None], x - centre, 0.0)  # (frame, kpt, coord)
    if initial_sigma is None:
        # Diffuse: ten times the track's spread plus its typical observation noise.
        spread = np.sqrt((z**2).sum((0, 2)) / np.maximum(counts, 1))  # (kpt,)
        with warnings.catch_warnings():  # keypoints never observed: NaN here, 1 below
            warnings.simplefilter("ignore", RuntimeWarning)
            typical = np.sqrt(np.nanmedian(np.where(valid, noise_var, np.nan), axis=0))
        prior_sigma = 10.0 * (spread + np.nan_to_num(typical, nan=1.0))
    else:
        if not (np.isfinite(initial_sigma) and initial_sigma > 0):
            raise ValueError(f"initial_sigma must be a positive number, got {initial_sigma!r}")
        prior_sigma = np.full(num_kpt, float(initial_sigma))

    dtype = jnp.zeros(()).dtype  # JAX's default float: float32 unless x64 is on
    as_jax = lambda a: jnp.asarray(a, dtype=dtype)
    if covariance is None:
        # Isotropic noise, per-coordinate motion and an isotropic prior keep every covariance of
        # the joint model block diagonal with equal blocks: the coordinates are independent 1-D
        # tracks with identical covariances, exactly. Running them as 1-D tracks (2x2 or 3x3
        # matrices instead of 6x6 or 9x9) measured 2-4x faster on a CPU.
        f, q = motion_model(model, coord=1, process_sigma=process_sigma)
        order = f.shape[0]
        tracks = lambda a: np.repeat(a, coord, axis=0)  # (kpt, ...) -> (kpt * coord, ...)
        means, covs = _track_batch(
            as_jax(z.transpose(1, 2, 0).reshape(num_kpt * coord, num_frames, 1)),
            as_jax(tracks(noise_var.T)[..., None, None]),
            jnp.asarray(tracks(valid.T)),
            as_jax(f),
            as_jax(q),
            as_jax(np.zeros((num_kpt * coord, order))),
            as_jax(tracks(prior_sigma**2)[:, None, None] * np.eye(order)),
            smooth=bool(smooth),
        )
        means = np.array(means, dtype=np.float64).reshape(num_kpt, coord, num_frames, order)
        means = means.transpose(2, 0, 3, 1)  # (frame, kpt, order, coord)
        var = np.array(covs[..., 0, 0], dtype=np.float64).reshape(num_kpt, coord, num_frames)
        pos_cov = var.transpose(2, 0, 1)[..., None] * np.eye(coord)  # (frame, kpt, coord, coord)
        position = means[:, :, 0] + centre
        velocity = means[:, :, 1]
    else:
        f, q = motion_model(model, coord=coord, process_sigma=process_sigma)
        state = f.shape[0]
        means, covs = _track_batch(
            as_jax(z.transpose(1, 0, 2)),
            as_jax(np.where(valid[..., None, None], r, np.eye(coord)).transpose(1, 0, 2, 3)),
            jnp.asarray(valid.T),
            as_jax(f),
            as_jax(q),
            as_jax(np.zeros((num_kpt, state))),
            as_jax((prior_sigma**2)[:, None, None] * np.eye(state)),
            smooth=bool(smooth),
        )
        means = np.array(means, dtype=np.float64).transpose(1, 0, 2)  # (frame, kpt, state)
        pos_cov = np.array(covs[..., :coord, :coord], dtype=np.float64).transpose(1, 0, 2, 3)
        position = means[..., :coord] + centre
        velocity = means[..., coord : 2 * coord]
    if fps is not None:
        velocity = velocity * fps

    # Keypoints never observed have nothing to estimate; long gaps (counted on the points the
    # filter used) are left out on request.
    drop = np.broadcast_to(counts == 0, valid.shape).copy()
    if max_gap is not None:
        drop |= gap_lengths(valid) > max_gap
    position[drop] = np.nan
    velocity[drop] = np.nan
    pos_cov[drop] = np.nan
    variance = np.diagonal(pos_cov, axis1=-2, axis2=-1).copy()
    return KalmanResult(position=position, variance=variance, velocity=velocity, covariance=pos_cov)
