"""Multi-camera calibration: boards, detection, initialisation, bundle adjustment."""
