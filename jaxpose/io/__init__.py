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

from jaxpose.io.dlc import (  # noqa: E402
    KeypointFileError,
    Keypoints2D,
    read_dlc,
    read_dlc_multi,
    write_dlc,
)
from jaxpose.io.pose3d import (  # noqa: E402
    Pose3D,
    read_pose3d,
    read_pose3d_csv,
    read_pose3d_h5,
    write_pose3d,
    write_pose3d_csv,
    write_pose3d_h5,
)

__all__ += [
    "KeypointFileError",
    "Keypoints2D",
    "read_dlc",
    "read_dlc_multi",
    "write_dlc",
    "Pose3D",
    "read_pose3d",
    "read_pose3d_csv",
    "read_pose3d_h5",
    "write_pose3d",
    "write_pose3d_csv",
    "write_pose3d_h5",
]
