"""Kinematic quantities of keypoint trajectories: joint angles, velocities, accelerations and
distances.

Inputs are trajectories (frame, kpt, coord), coord = 3 (mm) or 2 (px), NaN where a point is
missing; a result is NaN wherever a point it needs is missing, never an interpolated guess (run
`jaxpose.filters` first for that). Keypoints are addressed by index here; `jaxpose.kinematics.
table` maps body part names to indices.

Time derivatives use the frames' times t = frame_number / fps, so dropped frames (gaps in the
frame numbers) are handled exactly rather than assumed uniform.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jaxpose.filters.gaps import as_trajectory

# Rotation from the first named axis towards the second is positive: the plane's normal is
# first x second (right-handed), e.g. "xy" -> +z.
PLANES = {
    "xy": (0.0, 0.0, 1.0),
    "yz": (1.0, 0.0, 0.0),
    "zx": (0.0, 1.0, 0.0),
    "yx": (0.0, 0.0, -1.0),
    "zy": (-1.0, 0.0, 0.0),
    "xz": (0.0, -1.0, 0.0),
}


def _index_array(indices, limits: tuple[int, ...], what: str) -> np.ndarray:
    """Integer indices (n, len(limits)), column j below limits[j]."""
    width = len(limits)
    idx = np.asarray(indices)
    if idx.size == 0:
        return np.zeros((0, width), dtype=np.int64)
    if idx.ndim != 2 or idx.shape[1] != width or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"{what} must be an integer array (n, {width}), got {idx.shape} {idx.dtype}"
        )
    if idx.min() < 0 or np.any(idx >= np.asarray(limits)):
        raise ValueError(f"{what} index out of range for {limits} keypoints: {idx.tolist()}")
    return idx


def plane_normal(plane) -> np.ndarray:
    """Unit normal (3,) of a plane given by name ("xy", "zx", ...) or by a normal vector."""
    if isinstance(plane, str):
        if plane not in PLANES:
            raise ValueError(
                f"unknown plane {plane!r}; expected one of {tuple(PLANES)} or a normal vector (3,)"
            )
        return np.array(PLANES[plane])
    normal = np.asarray(plane, dtype=np.float64)
    norm = np.linalg.norm(normal) if normal.shape == (3,) else 0.0
    if not (np.isfinite(norm) and norm > 0):
        raise ValueError(f"a plane normal must be a non-zero finite vector (3,), got {plane!r}")
    return normal / norm


def joint_angles(points, triplets, *, plane=None) -> np.ndarray:
    """Angle at b between the segments b->a and b->c, in degrees, for each triplet (a, b, c).

    Args:
        points: (frame, kpt, coord) trajectory, coord 2 or 3.
        triplets: (n, 3) integer keypoint indices (a, b, c).
        plane: None for the unsigned angle in [0, 180]. Otherwise a plane name from `PLANES`
            or a normal vector (3,): both segments are projected onto the plane and the signed
            angle in (-180, 180] is the rotation from b->a to b->c, positive counterclockwise
            seen from the normal's tip (for a name "uv": positive from axis u towards v). 2D
            points take only plane "xy" (counterclockwise in x, y; clockwise on screen when y
            points down).

    Returns:
        (frame, n) float64 degrees; NaN where a point is missing or a segment has zero length
        (after projection, for signed angles).
    """
    x = as_trajectory(points, name="points")
    idx = _index_array(triplets, (x.shape[1],) * 3, "triplets")
    coord = x.shape[2]
    if coord not in (2, 3):
        raise ValueError(f"joint angles need 2D or 3D points, got coord = {coord}")
    u = x[:, idx[:, 0]] - x[:, idx[:, 1]]  # (frame, n, coord)
    w = x[:, idx[:, 2]] - x[:, idx[:, 1]]
    if coord == 2:
        if plane is not None and not (isinstance(plane, str) and plane == "xy"):
            raise ValueError(f"2D points have only the plane 'xy', got {plane!r}")
        u = np.concatenate([u, np.zeros_like(u[..., :1])], -1)
        w = np.concatenate([w, np.zeros_like(w[..., :1])], -1)
    if plane is None:
        # atan2(|u x w|, u . w) is accurate near 0 and 180 degrees, unlike arccos.
        sin = np.linalg.norm(np.cross(u, w), axis=-1)
    else:
        normal = plane_normal(plane)
        u = u - (u @ normal)[..., None] * normal
        w = w - (w @ normal)[..., None] * normal
        sin = np.cross(u, w) @ normal
    cos = np.sum(u * w, axis=-1)
    angle = np.degrees(np.arctan2(sin, cos))
    # A zero-length segment (or one along the plane's normal) has no direction; "zero" is
    # relative to the coordinates' magnitude, as rounding leaves tiny projected lengths.
    biggest = np.nanmax(np.abs(x)) if np.any(np.isfinite(x)) else 0.0
    tol = 1e-9 * max(biggest, np.finfo(np.float64).tiny)
    degenerate = ~((np.linalg.norm(u, axis=-1) > tol) & (np.linalg.norm(w, axis=-1) > tol))
    angle[degenerate] = np.nan
    if plane is not None:
        angle[angle == -180.0] = 180.0  # the half-open range (-180, 180]
    return angle


def _times(num_frames: int, fps: float, frame_numbers) -> np.ndarray:
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive frame rate in Hz, got {fps!r}")
    if frame_numbers is None:
        return np.arange(num_frames) / float(fps)
    frames = np.asarray(frame_numbers)
    if frames.shape != (num_frames,):
        raise ValueError(f"frame_numbers must have shape ({num_frames},), got {frames.shape}")
    if num_frames > 1 and not np.all(np.diff(frames) > 0):
        bad = int(np.flatnonzero(np.diff(frames) <= 0)[0]) + 1
        raise ValueError(
            f"frame_numbers must increase strictly; row {bad} has frame {frames[bad]} after "
            f"{frames[bad - 1]}"
        )
    return frames.astype(np.float64) / float(fps)


def velocity(points, *, fps: float, frame_numbers=None) -> np.ndarray:
    """Velocity by central differences, falling back to one-sided ones next to a missing frame.

    With time steps h- = t_i - t_(i-1) and h+ = t_(i+1) - t_i the central estimate is the
    second-order one of `numpy.gradient` for uneven spacing, (x_(i+1) - x_(i-1)) / (2 h) when
    even. Where x_(i-1) or x_(i+1) is missing the forward or backward difference is used; where
    x_i is missing, or both neighbours are, the velocity is NaN.

    Args:
        points: (frame, kpt, coord) trajectory.
        fps: frame rate in Hz.
        frame_numbers: (frame,) strictly increasing video frame numbers; default 0, 1, ...

    Returns:
        (frame, kpt, coord) float64 velocity in units/s.
    """
    x = as_trajectory(points, name="points")
    t = _times(x.shape[0], fps, frame_numbers)
    v = np.full_like(x, np.nan)
    if x.shape[0] < 2:
        return v
    h = np.diff(t)[:, None, None]  # (frame - 1, 1, 1)
    step = np.diff(x, axis=0) / h  # (x_(i+1) - x_i) / h+, between frames i and i + 1
    forward = np.concatenate([step, np.full_like(x[:1], np.nan)])
    backward = np.concatenate([np.full_like(x[:1], np.nan), step])
    hp, hn = h[:-1], h[1:]
    central = (hp**2 * x[2:] - hn**2 * x[:-2] + (hn**2 - hp**2) * x[1:-1]) / (hp * hn * (hp + hn))
    v[1:-1] = central
    v = np.where(np.isnan(v), forward, v)
    return np.where(np.isnan(v), backward, v)


def acceleration(points, *, fps: float, frame_numbers=None) -> np.ndarray:
    """Acceleration by central second differences, (x_(i+1) - 2 x_i + x_(i-1)) / h^2 for even
    spacing (the three-point formula for uneven). NaN at the first and last frame and wherever
    one of the three points is missing.

    Returns:
        (frame, kpt, coord) float64 acceleration in units/s^2.
    """
    x = as_trajectory(points, name="points")
    t = _times(x.shape[0], fps, frame_numbers)
    a = np.full_like(x, np.nan)
    if x.shape[0] < 3:
        return a
    h = np.diff(t)[:, None, None]
    hp, hn = h[:-1], h[1:]
    a[1:-1] = 2.0 * (hp * x[2:] - (hp + hn) * x[1:-1] + hn * x[:-2]) / (hp * hn * (hp + hn))
    return a


def speed(points, *, fps: float, frame_numbers=None) -> np.ndarray:
    """(frame, kpt) float64 magnitude of `velocity`, units/s."""
    return np.linalg.norm(velocity(points, fps=fps, frame_numbers=frame_numbers), axis=-1)


def acceleration_magnitude(points, *, fps: float, frame_numbers=None) -> np.ndarray:
    """(frame, kpt) float64 magnitude of `acceleration`, units/s^2."""
    return np.linalg.norm(acceleration(points, fps=fps, frame_numbers=frame_numbers), axis=-1)


def distances(points, pairs, *, other=None) -> np.ndarray:
    """Euclidean distance between keypoints, per frame.

    Args:
        points: (frame, kpt, coord) trajectory.
        pairs: (n, 2) integer indices (i, j).
        other: optional second trajectory (frame, kpt2, coord), e.g. another animal: j then
            indexes `other` instead of `points`.

    Returns:
        (frame, n) float64 distances, NaN where either point is missing.
    """
    x = as_trajectory(points, name="points")
    y = x if other is None else as_trajectory(other, name="other")
    if y.shape[0] != x.shape[0] or y.shape[2] != x.shape[2]:
        raise ValueError(
            f"other must have the same frames and coordinates as points: {x.shape} vs {y.shape}"
        )
    idx = _index_array(pairs, (x.shape[1], y.shape[1]), "pairs")
    return np.linalg.norm(x[:, idx[:, 0]] - y[:, idx[:, 1]], axis=-1)


def length_statistics(lengths) -> pd.DataFrame:
    """Summary of segment (limb) lengths over frames, one row per segment.

    Args:
        lengths: mapping name -> (frame,) lengths, NaN where unknown (e.g. `distances` columns).

    Returns:
        DataFrame indexed by name with columns count (valid frames), mean, std (ddof 1), median,
        mad (median absolute deviation), cv (std / mean), min, max; NaN where count is 0
        (std and cv need count >= 2).
    """
    rows = {}
    for name, values in lengths.items():
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        n = v.size
        mean = v.mean() if n else np.nan
        std = v.std(ddof=1) if n > 1 else np.nan
        median = np.median(v) if n else np.nan
        rows[name] = {
            "count": n,
            "mean": mean,
            "std": std,
            "median": median,
            "mad": np.median(np.abs(v - median)) if n else np.nan,
            "cv": std / mean if n > 1 and mean != 0 else np.nan,
            "min": v.min() if n else np.nan,
            "max": v.max() if n else np.nan,
        }
    columns = ["count", "mean", "std", "median", "mad", "cv", "min", "max"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)
