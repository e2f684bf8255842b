"""Missing points in trajectories: validation, gap lengths, confidence masking and gap filling.

A trajectory is an array (frame, kpt, coord) along time, coord = 2 (pixels) or 3 (mm). A point is
missing when any of its coordinates is NaN or infinite; every function here treats the point as
a whole, so a point is never half missing. Frames are taken as uniformly spaced in time.

A gap is a run of consecutive missing frames of one keypoint. Gaps touching the first or last
frame are edge gaps: nothing lies on their far side, so interpolation never fills them.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline, PchipInterpolator

FILL_METHODS = ("linear", "cubic", "pchip")


def as_trajectory(x, *, name: str = "trajectory") -> np.ndarray:
    """A float64 copy of `x` (frame, kpt, coord) in which a point with any non-finite coordinate
    is NaN in every coordinate.

    Raises:
        ValueError: `x` is not 3-D or has no coordinate axis.
    """
    arr = np.array(x, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[-1] < 1:
        raise ValueError(
            f"{name} must have shape (frame, kpt, coord), got {arr.shape}; for a single keypoint "
            f"add the kpt axis with x[:, None, :]"
        )
    arr[~point_valid(arr)] = np.nan
    return arr


def point_valid(x: np.ndarray) -> np.ndarray:
    """(frame, kpt, coord) -> (frame, kpt) bool: True where every coordinate is finite."""
    return np.all(np.isfinite(x), axis=-1)


def as_confidence(confidence, shape: tuple[int, int], *, name: str = "confidence") -> np.ndarray:
    """A float64 (frame, kpt) copy of `confidence` with NaN replaced by 0 (missing).

    Raises:
        ValueError: the shape is not `shape`, the trajectory's (frame, kpt).
    """
    conf = np.array(confidence, dtype=np.float64)
    if conf.shape != tuple(shape):
        raise ValueError(
            f"{name} must have shape (frame, kpt) = {tuple(shape)} to match the trajectory, "
            f"got {conf.shape}"
        )
    return np.nan_to_num(conf, nan=0.0, posinf=0.0, neginf=0.0)


def true_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of True in a 1-D bool array: (starts, stops), stops exclusive."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[0::2], edges[1::2]


def gap_lengths(valid: np.ndarray) -> np.ndarray:
    """Length of the gap each missing sample belongs to.

    Args:
        valid: (frame, kpt) bool, True where the point is present.

    Returns:
        (frame, kpt) int64: 0 where valid, else the number of consecutive missing frames in the
        run containing that frame (edge gaps included).
    """
    valid = np.asarray(valid, dtype=bool)
    out = np.zeros(valid.shape, dtype=np.int64)
    for k in range(valid.shape[1]):
        starts, stops = true_runs(~valid[:, k])
        lengths = stops - starts
        # Missing samples, in frame order, belong to the runs in order: repeat each run's length.
        out[~valid[:, k], k] = np.repeat(lengths, lengths)
    return out


def restore_long_gaps(
    filtered: np.ndarray, valid: np.ndarray, *, max_gap: int | None
) -> np.ndarray:
    """Put NaN back into `filtered` (frame, kpt, coord) wherever the input gap was longer than
    `max_gap` frames (every gap when max_gap = 0; none when max_gap is None)."""
    if max_gap is None:
        return filtered
    out = filtered.copy()
    out[gap_lengths(valid) > max_gap] = np.nan
    return out


def check_max_gap(max_gap, *, name: str = "max_gap", allow_none: bool = False) -> int | None:
    """Validate a gap length option: a whole number >= 0 (or None when allowed)."""
    if max_gap is None and allow_none:
        return None
    if isinstance(max_gap, bool) or not isinstance(max_gap, int | np.integer) or max_gap < 0:
        what = "a whole number of frames >= 0" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {what}, got {max_gap!r}")
    return int(max_gap)


def mask_low_confidence(x, confidence, *, cutoff: float) -> np.ndarray:
    """Mark points whose confidence is below `cutoff` as missing.

    Zero, negative and NaN confidences always count as missing (the house convention for a
    point the detector did not see), whatever the cutoff.

    Args:
        x: (frame, kpt, coord) trajectory, e.g. DeepLabCut x, y in pixels.
        confidence: (frame, kpt) likelihood, usually in [0, 1].
        cutoff: points with confidence < cutoff become NaN; a point at exactly cutoff is kept.

    Returns:
        (frame, kpt, coord) float64 copy of `x` with NaN at the masked points.
    """
    x = as_trajectory(x)
    conf = as_confidence(confidence, x.shape[:2])
    if not np.isfinite(cutoff):
        raise ValueError(f"confidence cutoff must be a finite number, got {cutoff!r}")
    x[(conf < cutoff) | (conf <= 0.0)] = np.nan
    return x


def fill_gaps(x, *, max_gap: int, method: str = "linear") -> np.ndarray:
    """Interpolate interior gaps of at most `max_gap` frames; longer and edge gaps stay NaN.

    Each keypoint is interpolated on its own, all coordinates together, through every valid
    sample of that keypoint (frame index as the abscissa). `"cubic"` is scipy's not-a-knot
    `CubicSpline` (exact for cubics, may overshoot near outliers), `"pchip"` the shape-preserving
    `PchipInterpolator` (never overshoots), `"linear"` straight lines. A keypoint with fewer than
    two valid samples is left as it is.

    Args:
        x: (frame, kpt, coord) trajectory with NaN gaps.
        max_gap: the longest gap, in frames, to fill.
        method: "linear", "cubic" or "pchip".

    Returns:
        (frame, kpt, coord) float64 trajectory; valid samples are unchanged.
    """
    x = as_trajectory(x)
    max_gap = check_max_gap(max_gap)
    if method not in FILL_METHODS:
        raise ValueError(f"unknown gap-filling method {method!r}; expected one of {FILL_METHODS}")
    valid = point_valid(x)
    lengths = gap_lengths(valid)
    frames = np.arange(x.shape[0])
    for k in range(x.shape[1]):
        known = np.flatnonzero(valid[:, k])
        if known.size < 2:
            continue
        interior = (frames > known[0]) & (frames < known[-1])
        todo = np.flatnonzero(~valid[:, k] & interior & (lengths[:, k] <= max_gap))
        if todo.size == 0:
            continue
        values = x[known, k]  # (valid, coord)
        if method == "linear":
            x[todo, k] = np.stack(
                [np.interp(todo, known, values[:, d]) for d in range(x.shape[2])], axis=-1
            )
        elif method == "cubic":
            x[todo, k] = CubicSpline(known, values, axis=0)(todo)
        else:
            x[todo, k] = PchipInterpolator(known, values, axis=0)(todo)
    return x
