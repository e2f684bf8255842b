"""File formats: Anipose calibration.toml, DANNCE .mat, DeepLabCut 2D, pose-3d CSV/h5."""

from jaxpose.io.calibration import (
    Calibration,
    CalibrationError,
    load_calibration,
    load_dannce_calibration,
    save_calibration,
)

__all__ = [
    "Calibration",
    "CalibrationError",
    "load_calibration",
    "load_dannce_calibration",
    "save_calibration",
]
