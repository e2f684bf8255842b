"""Filters as configuration: one small frozen dataclass per filter, and a chain that runs them.

Every filter object is called the same way,

    filtered = filt(x, fps=..., confidence=..., covariance=...)      # (frame, kpt, coord)

and takes only the run-time inputs it needs. A chain comes from Python objects or from plain
mappings with a `kind` key, which is what a Hydra/OmegaConf list gives:

    filters:
      - {kind: mask, cutoff: 0.6}
      - {kind: median, window: 5}
      - {kind: fill, max_gap: 10, method: cubic}
      - {kind: kalman, process_sigma: 2.0, measurement_sigma: 3.0}

    x = apply_filters(x, cfg.filters, fps=100, confidence=likelihood)

Options are validated when a filter is built, so a bad config fails before any data is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from jaxpose.filters.gaps import (
    FILL_METHODS,
    as_trajectory,
    check_max_gap,
    fill_gaps,
    mask_low_confidence,
)
from jaxpose.filters.kalman import MODELS, kalman_smooth
from jaxpose.filters.smoothing import (
    butterworth_filter,
    check_window,
    median_filter,
    savgol_filter,
)


def _positive(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)  # normalising fields of a frozen dataclass


@dataclasses.dataclass(frozen=True)
class ConfidenceMask:
    """Points with confidence below `cutoff` (or <= 0) become NaN. Needs `confidence`."""

    kind: ClassVar[str] = "mask"
    cutoff: float = 0.5

    def __post_init__(self):
        try:
            _set(self, "cutoff", float(self.cutoff))
        except (TypeError, ValueError):
            raise ValueError(f"mask cutoff must be a number, got {self.cutoff!r}") from None

    def __call__(self, x, *, fps=None, confidence=None, covariance=None) -> np.ndarray:
        if confidence is None:
            raise ValueError(
                "the 'mask' filter needs confidence=(frame, kpt) likelihoods; pass confidence "
                "to apply_filters or drop the mask from the chain"
            )
        return mask_low_confidence(x, confidence, cutoff=self.cutoff)


@dataclasses.dataclass(frozen=True)
class MedianFilter:
    """`median_filter`: NaN-aware running median over `window` frames."""

    kind: ClassVar[str] = "median"
    window: int = 5
    max_gap: int = 0

    def __post_init__(self):
        check_window(self.window)
        check_max_gap(self.max_gap)

    def __call__(self, x, *, fps=None, confidence=None, covariance=None) -> np.ndarray:
        return median_filter(x, window=self.window, max_gap=self.max_gap)


@dataclasses.dataclass(frozen=True)
class SavgolFilter:
    """`savgol_filter`: NaN-aware Savitzky-Golay of degree `polyorder` over `window` frames."""

    kind: ClassVar[str] = "savgol"
    window: int = 7
    polyorder: int = 2
    max_gap: int = 0

    def __post_init__(self):
        check_window(self.window)
        check_max_gap(self.max_gap)
        if not isinstance(self.polyorder, int) or not 0 <= self.polyorder < self.window:
            raise ValueError(
                f"savgol polyorder must be a whole number with 0 <= polyorder < window="
                f"{self.window}, got {self.polyorder!r}"
            )

    def __call__(self, x, *, fps=None, confidence=None, covariance=None) -> np.ndarray:
        return savgol_filter(x, window=self.window, polyorder=self.polyorder, max_gap=self.max_gap)


@dataclasses.dataclass(frozen=True)
class ButterworthFilter:
    """`butterworth_filter`: zero-phase low-pass at `cutoff` Hz per valid run. Needs `fps`."""

    kind: ClassVar[str] = "butterworth"
    cutoff: float = 10.0
    order: int = 4

    def __post_init__(self):
        _set(self, "cutoff", _positive(self.cutoff, "butterworth cutoff (Hz)"))
        if isinstance(self.order, bool) or not isinstance(self.order, int) or self.order < 1:
            raise ValueError(f"butterworth order must be a whole number >= 1, got {self.order!r}")

    def __call__(self, x, *, fps=None, confidence=None, covariance=None) -> np.ndarray:
        if fps is None:
            raise ValueError(
                f"the 'butterworth' filter (cutoff {self.cutoff:g} Hz) needs the frame rate: "
                f"pass fps to apply_filters"
            )
        return butterworth_filter(x, cutoff=self.cutoff, fps=fps, order=self.order)


@dataclasses.dataclass(frozen=True)
class GapFill:
    """`fill_gaps`: interpolate interior gaps of at most `max_gap` frames."""

    kind: ClassVar[str] = "fill"
    max_gap: int = 10
    method: str = "linear"

    def __post_init__(self):
        check_max_gap(self.max_gap)
        if self.method not in FILL_METHODS:
            raise ValueError(
                f"unknown gap-filling method {self.method!r}; expected one of {FILL_METHODS}"
            )

    def __call__(self, x, *, fps=None, confidence=None, covariance=None) -> np.ndarray:
        return fill_gaps(x, max_gap=self.max_gap, method=self.method)


@dataclasses.dataclass(frozen=True)
class KalmanSmoother:
    """`kalman_smooth`: Kalman filter + RTS smoother; the chain keeps its positions. Uses
    `confidence` and `covariance` when given (see `kalman_smooth` for every option)."""

    kind: ClassVar[str] = "kalman"
    model: str = "constant_velocity"
    process_sigma: float = 1.0
    measurement_sigma: float = 1.0
    confidence_exponent: float = 1.0
    max_gap: int | None = None
    smooth: bool = True
    initial_sigma: float | None = None

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(
                f"unknown Kalman motion model {self.model!r}; expected one of {tuple(MODELS)}"
            )
        _set(self, "process_sigma", _positive(self.process_sigma, "kalman process_sigma"))
        _set(
            self, "measurement_sigma", _positive(self.measurement_sigma, "kalman measurement_sigma")
        )
        _set(
            self,
            "confidence_exponent",
            _positive(self.confidence_exponent, "kalman confidence_exponent"),
        )
        check_max_gap(self.max_gap, name="kalman max_gap", allow_none=True)
        if self.initial_sigma is not None:
            _set(self, "initial_sigma", _positive(self.initial_sigma, "kalman initial_sigma"))

    def __call__(self, x, *, fps=None, confidence=None, covariance=None) -> np.ndarray:
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        result = kalman_smooth(x, fps=fps, confidence=confidence, covariance=covariance, **options)
        return result.position


Filter = ConfidenceMask | MedianFilter | SavgolFilter | ButterworthFilter | GapFill | KalmanSmoother
FILTERS: dict[str, type] = {
    cls.kind: cls
    for cls in (
        ConfidenceMask,
        MedianFilter,
        SavgolFilter,
        ButterworthFilter,
        GapFill,
        KalmanSmoother,
    )
}


def filter_config(kind: str, **options) -> Filter:
    """Build the filter named `kind` ("mask", "median", "savgol", "butterworth", "fill",
    "kalman") with its options.

    Raises:
        ValueError: unknown kind, unknown option for that kind, or a bad option value.
    """
    if kind not in FILTERS:
        raise ValueError(f"unknown filter kind {kind!r}; expected one of {tuple(FILTERS)}")
    cls = FILTERS[kind]
    accepted = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"filter {kind!r} has no option(s) {unknown}; its options are {accepted}")
    return cls(**options)


def as_filter(spec) -> Filter:
    """A filter object from itself or from a mapping with a `kind` key (e.g. an OmegaConf node)."""
    if isinstance(spec, tuple(FILTERS.values())):
        return spec
    if isinstance(spec, Mapping):
        options = {str(k): v for k, v in spec.items()}
        if "kind" not in options:
            raise ValueError(
                f"a filter entry needs a 'kind' key, one of {tuple(FILTERS)}; got {options}"
            )
        return filter_config(**options)
    raise ValueError(
        f"a filter must be one of {[c.__name__ for c in FILTERS.values()]} or a mapping with a "
        f"'kind' key, got {type(spec).__name__}: {spec!r}"
    )


def apply_filters(
    x,
    filters: Sequence[Filter | Mapping],
    *,
    fps: float | None = None,
    confidence=None,
    covariance=None,
) -> np.ndarray:
    """Run filters one after the other along the frame axis.

    Args:
        x: (frame, kpt, coord) trajectory, NaN where missing.
        filters: filter objects or mappings with a `kind` key, applied in order.
        fps: frame rate in Hz (Butterworth needs it; Kalman reports velocities with it).
        confidence: (frame, kpt) likelihoods, for "mask" and "kalman".
        covariance: (frame, kpt, coord, coord) observation covariances, for "kalman".

    Returns:
        (frame, kpt, coord) float64 filtered trajectory (a copy even for an empty chain).
    """
    chain = [as_filter(spec) for spec in filters]  # validate the whole chain before running it
    out = as_trajectory(x)
    for filt in chain:
        out = filt(out, fps=fps, confidence=confidence, covariance=covariance)
    return out


def filter_trajectory(
    x, kind: str, *, fps: float | None = None, confidence=None, covariance=None, **options
) -> np.ndarray:
    """One filter by name: `filter_trajectory(x, "median", window=5)`; see `apply_filters`."""
    return apply_filters(
        x, [filter_config(kind, **options)], fps=fps, confidence=confidence, covariance=covariance
    )
