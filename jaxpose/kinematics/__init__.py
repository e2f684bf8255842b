"""Kinematics of keypoint trajectories: joint angles, speeds, accelerations, distances, and
named per-frame tables built from a configuration and written as CSV."""

from jaxpose.kinematics.core import (
    PLANES,
    acceleration,
    acceleration_magnitude,
    distances,
    joint_angles,
    length_statistics,
    plane_normal,
    speed,
    velocity,
)
from jaxpose.kinematics.table import (
    AngleSpec,
    DistanceSpec,
    Kinematics,
    as_angle_spec,
    as_distance_spec,
    column_unit,
    kinematics_from_config,
    read_kinematics_csv,
    write_kinematics_csv,
)

__all__ = [
    "PLANES",
    "AngleSpec",
    "DistanceSpec",
    "Kinematics",
    "acceleration",
    "acceleration_magnitude",
    "as_angle_spec",
    "as_distance_spec",
    "column_unit",
    "distances",
    "joint_angles",
    "kinematics_from_config",
    "length_statistics",
    "plane_normal",
    "read_kinematics_csv",
    "speed",
    "velocity",
    "write_kinematics_csv",
]
