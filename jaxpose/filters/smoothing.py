"""Smoothing along the frame axis of trajectories with NaN gaps: median, Savitzky-Golay and
zero-phase Butterworth low-pass.

All three take a trajectory (frame, kpt, coord) and return a float64 array of the same shape.
Missing points (NaN) never leak into their neighbours:

- median and Savitzky-Golay look at a centred window of frames and use only the valid samples in
  it (the window shrinks at the first and last frames). Missing frames inside a gap of at most
  `max_gap` frames receive the window's estimate when the window holds enough valid samples;
  frames of longer gaps stay NaN (`max_gap=0`, the default, keeps every gap).
- Butterworth runs scipy's forward-backward `sosfiltfilt` on each contiguous run of valid frames
  separately; gaps stay NaN and runs too short to pad are returned unchanged. Fill short gaps
  first (`fill_gaps`) to join runs.

Coordinates are filtered independently (the median is the per-coordinate median).
"""

from __future__ import annotations

import numpy as np
import scipy.signal
from numpy.lib.stride_tricks import sliding_window_view

from jaxpose.filters.gaps import (
    as_trajectory,
    check_max_gap,
    point_valid,
    restore_long_gaps,
    true_runs,
)


def check_window(window, *, name: str = "window") -> int:
    if isinstance(window, bool) or not isinstance(window, int | np.integer):
        raise ValueError(f"{name} must be an odd whole number of frames, got {window!r}")
    if window < 1 or window % 2 == 0:
        raise ValueError(
            f"{name} must be an odd number of frames >= 1 (a centred window), got {window}"
        )
    return int(window)


def _nan_windows(column: np.ndarray, window: int) -> np.ndarray:
    """(frame, coord) -> (frame, coord, window) centred windows, shrunk symmetrically near the
    ends (frame i keeps offsets up to min(i, frame - 1 - i)); the samples left out are NaN."""
    half = window // 2
    padded = np.pad(column, ((half, half), (0, 0)), constant_values=np.nan)
    windows = sliding_window_view(padded, window, axis=0).copy()
    frames = np.arange(column.shape[0])
    reach = np.minimum(frames, column.shape[0] - 1 - frames)  # (frame,)
    outside = np.abs(np.arange(-half, half + 1))[None, :] > reach[:, None]  # (frame, window)
    windows[outside[:, None, :].repeat(column.shape[1], 1)] = np.nan
    return windows


def median_filter(x, *, window: int = 5, max_gap: int = 0) -> np.ndarray:
    """NaN-aware running median over `window` frames.

    Each output sample is the median of the valid samples of its centred window (the mean of the
    two middle ones for an even count); NaN when the window has none. Near the ends the window
    shrinks symmetrically (the first and last frames pass unchanged), so monotonic data such as a
    straight line pass unchanged wherever no sample is missing. A single-frame outlier is removed
    by any window >= 3.

    Args:
        x: (frame, kpt, coord) trajectory with NaN for missing points.
        window: odd window length in frames.
        max_gap: missing frames in gaps of at most this many frames are filled with the median
            of their window; longer gaps stay NaN.

    Returns:
        (frame, kpt, coord) float64 filtered trajectory.
    """
    x = as_trajectory(x)
    window = check_window(window)
    max_gap = check_max_gap(max_gap)
    if x.shape[0] == 0:
        return x
    out = np.empty_like(x)
    # One keypoint at a time bounds the memory of the (frame, coord, window) view.
    for k in range(x.shape[1]):
        windows = np.sort(_nan_windows(x[:, k], window), axis=-1)  # NaN sorts last
        count = np.sum(np.isfinite(windows), axis=-1)  # (frame, coord)
        lo = np.take_along_axis(windows, np.maximum(count - 1, 0)[..., None] // 2, -1)[..., 0]
        hi = np.take_along_axis(windows, (count // 2)[..., None], -1)[..., 0]
        out[:, k] = np.where(count > 0, 0.5 * (lo + hi), np.nan)
    return restore_long_gaps(out, point_valid(x), max_gap=max_gap)


def savgol_filter(x, *, window: int = 7, polyorder: int = 2, max_gap: int = 0) -> np.ndarray:
    """NaN-aware Savitzky-Golay filter: a local least-squares polynomial fitted to the valid
    samples of each centred window, evaluated at the window's centre.

    With no missing samples and away from the first and last `window // 2` frames this equals
    `scipy.signal.savgol_filter(x, window, polyorder, axis=0)`. Near the ends and around gaps the
    fit uses the valid samples that remain (an asymmetric window), so any polynomial of degree
    <= polyorder passes through unchanged everywhere. Where a window holds fewer than
    polyorder + 1 valid samples the fit is undetermined and the input sample is kept as it is.

    Args:
        x: (frame, kpt, coord) trajectory with NaN for missing points.
        window: odd window length in frames.
        polyorder: polynomial degree, < window.
        max_gap: missing frames in gaps of at most this many frames are filled by the local fit
            when it is determined; longer gaps stay NaN.

    Returns:
        (frame, kpt, coord) float64 filtered trajectory.
    """
    x = as_trajectory(x)
    window = check_window(window)
    max_gap = check_max_gap(max_gap)
    if isinstance(polyorder, bool) or not isinstance(polyorder, int | np.integer):
        raise ValueError(f"polyorder must be a whole number, got {polyorder!r}")
    if not 0 <= polyorder < window:
        raise ValueError(
            f"polyorder must satisfy 0 <= polyorder < window={window}, got {polyorder}"
        )
    if x.shape[0] == 0:
        return x
    half = window // 2
    # Offsets scaled to [-1, 1] keep the normal equations well conditioned for long windows.
    offsets = np.arange(-half, half + 1) / max(half, 1)
    basis = offsets[:, None] ** np.arange(polyorder + 1)  # (window, polyorder + 1)
    valid = point_valid(x)
    out = np.empty_like(x)
    for k in range(x.shape[1]):
        weights = sliding_window_view(np.pad(valid[:, k], half), window).astype(np.float64)
        values = np.where(valid[:, k, None], x[:, k], 0.0)  # zero-weight samples contribute 0
        windows = sliding_window_view(np.pad(values, ((half, half), (0, 0))), window, axis=0)
        normal = np.einsum("fw,wi,wj->fij", weights, basis, basis)  # (frame, p+1, p+1)
        rhs = np.einsum("fcw,wi->fci", windows, basis)  # (frame, coord, p+1)
        # p + 1 distinct offsets make the Vandermonde system regular; fewer leave it singular.
        determined = weights.sum(-1) >= polyorder + 1
        normal[~determined] = np.eye(polyorder + 1)
        coef = np.linalg.solve(normal[:, None], rhs[..., None])[..., 0]  # (frame, coord, p+1)
        out[:, k] = np.where(determined[:, None], coef[..., 0], x[:, k])
    return restore_long_gaps(out, valid, max_gap=max_gap)


def butterworth_sos(*, cutoff: float, fps: float, order: int = 4) -> np.ndarray:
    """Second-order sections (sections, 6) of a digital Butterworth low-pass.

    Raises:
        ValueError: fps <= 0, cutoff not in (0, fps / 2), or order < 1.
    """
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive frame rate in Hz, got {fps!r}")
    if not (np.isfinite(cutoff) and 0 < cutoff < fps / 2):
        raise ValueError(
            f"Butterworth cutoff must lie between 0 and the Nyquist frequency fps / 2 = "
            f"{fps / 2:g} Hz, got {cutoff!r} Hz"
        )
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or order < 1:
        raise ValueError(f"Butterworth order must be a whole number >= 1, got {order!r}")
    return scipy.signal.butter(int(order), float(cutoff), btype="low", fs=float(fps), output="sos")


def butterworth_filter(x, *, cutoff: float, fps: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth low-pass along frames, run on each contiguous valid run alone.

    The filter runs forward and backward (`scipy.signal.sosfiltfilt`, odd extension of
    3 * (2 * sections + 1) samples at each end), so the effective order is 2 * order and there
    is no lag. Runs of valid frames no longer than that padding are returned unchanged, as are
    the coordinates of gaps (NaN).

    Args:
        x: (frame, kpt, coord) trajectory with NaN for missing points.
        cutoff: -3 dB frequency of one pass in Hz (-6 dB after both passes), < fps / 2.
        fps: frame rate in Hz.
        order: filter order of one pass.

    Returns:
        (frame, kpt, coord) float64 filtered trajectory.
    """
    x = as_trajectory(x)
    sos = butterworth_sos(cutoff=cutoff, fps=fps, order=order)
    padlen = 3 * (2 * len(sos) + 1)
    out = x.copy()
    valid = point_valid(x)
    for k in range(x.shape[1]):
        for start, stop in zip(*true_runs(valid[:, k]), strict=True):
            if stop - start > padlen:
                out[start:stop, k] = scipy.signal.sosfiltfilt(
                    sos, x[start:stop, k], axis=0, padlen=padlen
                )
    return out
