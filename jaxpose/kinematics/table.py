"""Named kinematic columns of a recording, built from a configuration and written as CSV.

Body parts are addressed by name. A configuration lists what to compute:

    angles:        # angle at the middle point, degrees
      - [hip, knee, ankle]                                   -> angle_hip_knee_ankle
      - {points: [hip, knee, ankle], plane: zx}              -> signed_angle_hip_knee_ankle_zx
      - {points: [nose, neck, tail], plane: [0, 0, 1], name: heading}
    distances:     # mm
      - [left_ear, right_ear]                                -> dist_left_ear_right_ear
    speeds: true          # every body part (or a list of names)  -> speed_<bp>, mm/s
    accelerations: [snout]                                       -> accel_<bp>, mm/s^2
    smoothing:     # optional jaxpose.filters chain run on the points first
      - {kind: median, window: 5}

and `kinematics_from_config(pose, fps=..., **config)` returns a `Kinematics` table, which
`write_kinematics_csv` writes with the columns `frame, time_s, <columns...>`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from jaxpose.filters.chain import apply_filters
from jaxpose.filters.gaps import as_trajectory
from jaxpose.io.atomic import atomic_write_text
from jaxpose.kinematics.core import (
    acceleration_magnitude,
    joint_angles,
    length_statistics,
    plane_normal,
    speed,
)
from jaxpose.kinematics.core import distances as keypoint_distances

# Column name prefix -> unit, with "{u}" the length unit of the points.
UNITS = {
    "signed_angle_": "deg",
    "angle_": "deg",
    "speed_": "{u}/s",
    "accel_": "{u}/s^2",
    "dist_": "{u}",
}


def _is_name_list(value) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


@dataclasses.dataclass(frozen=True)
class AngleSpec:
    """A joint angle at `points[1]` between the segments to `points[0]` and `points[2]`.

    Attributes:
        points: body part names (a, b, c).
        plane: None for the unsigned angle; a plane name ("xy", "zx", ...) or normal vector for a
            signed angle in that plane (see `joint_angles`).
        name: column name; default `angle_<a>_<b>_<c>`, or `signed_angle_<a>_<b>_<c>_<plane>`
            for a named plane and `signed_angle_<a>_<b>_<c>` for a normal vector.
    """

    points: tuple[str, str, str]
    plane: str | tuple[float, float, float] | None = None
    name: str | None = None

    def __post_init__(self):
        if not _is_name_list(self.points) or len(self.points) != 3:
            raise ValueError(
                f"an angle needs 3 body part names (a, b, c) with the angle at b, got "
                f"{self.points!r}"
            )
        object.__setattr__(self, "points", tuple(str(p) for p in self.points))
        if len(set(self.points)) != 3:
            raise ValueError(f"angle {list(self.points)}: the 3 body parts must differ")
        if self.plane is not None and not isinstance(self.plane, str):
            object.__setattr__(self, "plane", tuple(float(v) for v in self.plane))
        if self.plane is not None:
            plane_normal(self.plane)  # validate now, not after reading the data

    @property
    def column(self) -> str:
        if self.name:
            return str(self.name)
        joined = "_".join(self.points)
        if self.plane is None:
            return f"angle_{joined}"
        if isinstance(self.plane, str):
            return f"signed_angle_{joined}_{self.plane}"
        return f"signed_angle_{joined}"


@dataclasses.dataclass(frozen=True)
class DistanceSpec:
    """The distance between two body parts; column `dist_<a>_<b>` unless `name` is given."""

    pair: tuple[str, str]
    name: str | None = None

    def __post_init__(self):
        if not _is_name_list(self.pair) or len(self.pair) != 2:
            raise ValueError(f"a distance needs 2 body part names (a, b), got {self.pair!r}")
        object.__setattr__(self, "pair", tuple(str(p) for p in self.pair))
        if self.pair[0] == self.pair[1]:
            raise ValueError(f"distance {list(self.pair)}: the 2 body parts must differ")

    @property
    def column(self) -> str:
        return str(self.name) if self.name else f"dist_{self.pair[0]}_{self.pair[1]}"


def as_angle_spec(entry) -> AngleSpec:
    """An AngleSpec from itself, a list [a, b, c], or a mapping {points, plane?, name?}."""
    if isinstance(entry, AngleSpec):
        return entry
    if isinstance(entry, Mapping):
        options = {str(k): v for k, v in entry.items()}
        unknown = sorted(set(options) - {"points", "plane", "name"})
        if unknown or "points" not in options:
            raise ValueError(f"angle entry {options}: expected keys points (required), plane, name")
        return AngleSpec(**options)
    return AngleSpec(points=entry)


def as_distance_spec(entry) -> DistanceSpec:
    """A DistanceSpec from itself, a list [a, b], or a mapping {pair, name?}."""
    if isinstance(entry, DistanceSpec):
        return entry
    if isinstance(entry, Mapping):
        options = {str(k): v for k, v in entry.items()}
        unknown = sorted(set(options) - {"pair", "name"})
        if unknown or "pair" not in options:
            raise ValueError(f"distance entry {options}: expected keys pair (required), name")
        return DistanceSpec(**options)
    return DistanceSpec(pair=entry)


@dataclasses.dataclass(frozen=True, eq=False)
class Kinematics:
    """Per-frame kinematic columns of one recording.

    Attributes:
        frame_numbers: (frame,) int64 video frame numbers.
        time: (frame,) float64 seconds, frame_number / fps.
        columns: column name -> (frame,) float64 values, NaN where unknown, in output order.
        units: column name -> unit ("deg", "mm/s", ...).
    """

    frame_numbers: np.ndarray
    time: np.ndarray
    columns: dict[str, np.ndarray]
    units: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        frames = np.asarray(self.frame_numbers, dtype=np.int64)
        n = frames.shape[0] if frames.ndim == 1 else -1
        if n < 0:
            raise ValueError(f"Kinematics.frame_numbers must be 1-D, got {frames.shape}")
        time = np.asarray(self.time, dtype=np.float64)
        if time.shape != (n,):
            raise ValueError(f"Kinematics.time must have shape ({n},), got {time.shape}")
        columns = {}
        for name, values in self.columns.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (n,):
                raise ValueError(
                    f"Kinematics column {name!r} must have shape ({n},), got {values.shape}"
                )
            if name in ("frame", "time_s"):
                raise ValueError(f"Kinematics column name {name!r} is reserved")
            columns[str(name)] = values
        object.__setattr__(self, "frame_numbers", frames)
        object.__setattr__(self, "time", time)
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "units", {str(k): str(v) for k, v in self.units.items()})

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise KeyError(f"no kinematics column {name!r}; columns are {self.names}")
        return self.columns[name]

    def to_dataframe(self) -> pd.DataFrame:
        """Columns `frame`, `time_s`, then every column in order."""
        data = {"frame": self.frame_numbers, "time_s": self.time, **self.columns}
        return pd.DataFrame(data)

    def write_csv(self, path: str | os.PathLike) -> Path:
        """`write_kinematics_csv(path, self)`."""
        return write_kinematics_csv(path, self)

    def distance_statistics(self) -> pd.DataFrame:
        """`length_statistics` of every distance column (those in a length unit: not degrees,
        not per second), e.g. limb lengths."""
        picked = {
            name: values
            for name, values in self.columns.items()
            if self.units.get(name) not in (None, "deg") and "/" not in self.units[name]
        }
        return length_statistics(picked)


def write_kinematics_csv(path: str | os.PathLike, kinematics: Kinematics) -> Path:
    """Write `kinematics` as CSV (`frame, time_s, <columns>`), atomically. NaN is an empty cell
    and floats are written with their shortest exact repr, so reading back is exact."""
    path = Path(path)
    atomic_write_text(path, kinematics.to_dataframe().to_csv(index=False))
    return path


def read_kinematics_csv(path: str | os.PathLike, *, length_unit: str = "mm") -> Kinematics:
    """Read a file written by `write_kinematics_csv`; units follow from the column prefixes.

    Raises:
        ValueError: the file is missing, or lacks the `frame` / `time_s` columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: kinematics CSV not found")
    df = pd.read_csv(path)
    if "frame" not in df.columns or "time_s" not in df.columns:
        raise ValueError(
            f"{path}: not a kinematics CSV (needs 'frame' and 'time_s' columns, has "
            f"{list(df.columns)[:6]})"
        )
    columns = {
        str(c): df[c].to_numpy(dtype=np.float64) for c in df.columns if c not in ("frame", "time_s")
    }
    units = {name: unit for name in columns if (unit := column_unit(name, length_unit))}
    return Kinematics(df["frame"].to_numpy(), df["time_s"].to_numpy(), columns, units)


def column_unit(name: str, length_unit: str = "mm") -> str | None:
    """The unit of a default-named column from its prefix, or None for a custom name."""
    for prefix, unit in UNITS.items():
        if name.startswith(prefix):
            return unit.format(u=length_unit)
    return None


def _resolve(names: Sequence[str], bodyparts: Sequence[str], what: str) -> list[int]:
    index = {bp: i for i, bp in enumerate(bodyparts)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise ValueError(
            f"{what}: unknown body part{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}; the pose has {list(bodyparts)}"
        )
    return [index[n] for n in names]


def _pick_bodyparts(option, bodyparts: Sequence[str], what: str) -> list[str]:
    """True -> all, False/None -> none, a list of names -> those (checked)."""
    if option is True:
        return list(bodyparts)
    if option is False or option is None:
        return []
    if not _is_name_list(option):
        raise ValueError(f"{what} must be true, false or a list of body part names, got {option!r}")
    names = [str(n) for n in option]
    _resolve(names, bodyparts, what)
    return names


def kinematics_from_config(
    pose,
    bodyparts: Sequence[str] | None = None,
    *,
    fps: float,
    angles: Sequence = (),
    distances: Sequence = (),
    speeds=True,
    accelerations=False,
    smoothing: Sequence = (),
    confidence=None,
    covariance=None,
    frame_numbers=None,
    units: str | None = None,
) -> Kinematics:
    """Compute configured kinematic columns of a recording.

    Args:
        pose: a `jaxpose.io.Pose3D` (or any object with `points` and `bodyparts`, and optionally
            `frame_numbers`, `score`, `covariance`, `units`), or a trajectory (frame, kpt, coord)
            with `bodyparts` given.
        bodyparts: names of the keypoints; taken from a Pose3D when omitted.
        fps: frame rate in Hz.
        angles: entries for `as_angle_spec`: [a, b, c], {points, plane, name} or AngleSpec.
        distances: entries for `as_distance_spec`: [a, b], {pair, name} or DistanceSpec.
        speeds: True for every body part, False for none, or a list of names.
        accelerations: same, for acceleration magnitudes.
        smoothing: a `jaxpose.filters.apply_filters` chain run on the points before anything is
            computed (all columns use the smoothed points).
        confidence: (frame, kpt) for the smoothing chain; a Pose3D's `score` by default.
        covariance: (frame, kpt, 3, 3) for the smoothing chain; a Pose3D's `covariance` by
            default.
        frame_numbers: (frame,) strictly increasing; a Pose3D's by default, else 0, 1, ...
        units: length unit of the points; a Pose3D's by default, else "mm".

    Returns:
        Kinematics with the columns in the order angles, distances, speeds, accelerations.

    Raises:
        ValueError: an unknown body part (named, with the list of known ones), a malformed
            entry, or two entries giving the same column name.
    """
    # A Pose3D (jaxpose.io.pose3d) by its fields, so that this layer does not import io's.
    if hasattr(pose, "points") and hasattr(pose, "bodyparts"):
        points = pose.points
        bodyparts = pose.bodyparts if bodyparts is None else bodyparts
        if frame_numbers is None:
            frame_numbers = getattr(pose, "frame_numbers", None)
        if confidence is None:
            confidence = getattr(pose, "score", None)
        if covariance is None:
            covariance = getattr(pose, "covariance", None)
        units = getattr(pose, "units", None) if units is None else units
    else:
        points = pose
        if bodyparts is None:
            raise ValueError("kinematics_from_config needs bodyparts when pose is a plain array")
    points = as_trajectory(points, name="pose points")
    bodyparts = [str(b) for b in bodyparts]
    if len(bodyparts) != points.shape[1]:
        raise ValueError(
            f"{len(bodyparts)} body part names for {points.shape[1]} keypoints in the pose"
        )
    units = units or "mm"
    if frame_numbers is None:
        frame_numbers = np.arange(points.shape[0])
    frame_numbers = np.asarray(frame_numbers)
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive frame rate in Hz, got {fps!r}")

    # Check the whole configuration before computing anything.
    angle_specs = [as_angle_spec(e) for e in angles]
    distance_specs = [as_distance_spec(e) for e in distances]
    triplets = [_resolve(s.points, bodyparts, f"angle {list(s.points)}") for s in angle_specs]
    pairs = [_resolve(s.pair, bodyparts, f"distance {list(s.pair)}") for s in distance_specs]
    speed_parts = _pick_bodyparts(speeds, bodyparts, "speeds")
    accel_parts = _pick_bodyparts(accelerations, bodyparts, "accelerations")
    names = (
        [s.column for s in angle_specs]
        + [s.column for s in distance_specs]
        + [f"speed_{b}" for b in speed_parts]
        + [f"accel_{b}" for b in accel_parts]
    )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"kinematics columns {repeated} are configured twice; give them a name")

    if smoothing:
        points = apply_filters(
            points, smoothing, fps=fps, confidence=confidence, covariance=covariance
        )

    columns: dict[str, np.ndarray] = {}
    unit_of: dict[str, str] = {}
    for spec, triplet in zip(angle_specs, triplets, strict=True):
        columns[spec.column] = joint_angles(points, [triplet], plane=spec.plane)[:, 0]
        unit_of[spec.column] = "deg"
    if pairs:
        dist = keypoint_distances(points, pairs)
        for spec, values in zip(distance_specs, dist.T, strict=True):
            columns[spec.column] = values
            unit_of[spec.column] = units
    if speed_parts:
        idx = _resolve(speed_parts, bodyparts, "speeds")
        values = speed(points[:, idx], fps=fps, frame_numbers=frame_numbers)
        for b, v in zip(speed_parts, values.T, strict=True):
            columns[f"speed_{b}"] = v
            unit_of[f"speed_{b}"] = f"{units}/s"
    if accel_parts:
        idx = _resolve(accel_parts, bodyparts, "accelerations")
        values = acceleration_magnitude(points[:, idx], fps=fps, frame_numbers=frame_numbers)
        for b, v in zip(accel_parts, values.T, strict=True):
            columns[f"accel_{b}"] = v
            unit_of[f"accel_{b}"] = f"{units}/s^2"
    return Kinematics(
        frame_numbers=frame_numbers,
        time=frame_numbers.astype(np.float64) / float(fps),
        columns=columns,
        units=unit_of,
    )
