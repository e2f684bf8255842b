"""Filters for keypoint trajectories (frame, kpt, coord) with NaN gaps, along the frame axis.

- `mask_low_confidence`, `fill_gaps`: missing points in and out.
- `median_filter`, `savgol_filter`, `butterworth_filter`: smoothing that leaves gaps alone.
- `kalman_smooth`: Kalman filter + RTS smoother in JAX, with per-point noise from confidence or
  covariance; it interpolates gaps and returns variances.
- `apply_filters` / `filter_trajectory`: a configured chain of the above.
"""

from jaxpose.filters.chain import (
    FILTERS,
    ButterworthFilter,
    ConfidenceMask,
    Filter,
    GapFill,
    KalmanSmoother,
    MedianFilter,
    SavgolFilter,
    apply_filters,
    as_filter,
    filter_config,
    filter_trajectory,
)
from jaxpose.filters.gaps import (
    as_trajectory,
    fill_gaps,
    gap_lengths,
    mask_low_confidence,
    point_valid,
)
from jaxpose.filters.kalman import (
    KalmanResult,
    kalman_filter,
    kalman_smooth,
    motion_model,
    rts_smoother,
)
from jaxpose.filters.smoothing import (
    butterworth_filter,
    butterworth_sos,
    median_filter,
    savgol_filter,
)

__all__ = [
    "FILTERS",
    "ButterworthFilter",
    "ConfidenceMask",
    "Filter",
    "GapFill",
    "KalmanResult",
    "KalmanSmoother",
    "MedianFilter",
    "SavgolFilter",
    "apply_filters",
    "as_filter",
    "as_trajectory",
    "butterworth_filter",
    "butterworth_sos",
    "fill_gaps",
    "filter_config",
    "filter_trajectory",
    "gap_lengths",
    "kalman_filter",
    "kalman_smooth",
    "mask_low_confidence",
    "median_filter",
    "motion_model",
    "point_valid",
    "rts_smoother",
    "savgol_filter",
]
