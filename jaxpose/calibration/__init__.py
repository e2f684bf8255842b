"""Multi-camera calibration: boards, detection, initialisation, bundle adjustment."""

from jaxpose.calibration.board import ARUCO_GRID, CHARUCO, CHECKERBOARD, KINDS, Board
from jaxpose.calibration.detect import (
    DetectionError,
    Detections,
    cache_path,
    detect_cameras,
    detect_folder,
    detect_image,
    detect_video,
    find_camera_inputs,
    stack_detections,
)

__all__ = [
    "ARUCO_GRID",
    "CHARUCO",
    "CHECKERBOARD",
    "KINDS",
    "Board",
    "DetectionError",
    "Detections",
    "cache_path",
    "detect_cameras",
    "detect_folder",
    "detect_image",
    "detect_video",
    "find_camera_inputs",
    "stack_detections",
]
