"""3D pose results: Anipose's `pose-3d` CSV and a compact HDF5 file.

Anipose CSV (`anipose triangulate` writes one per video), one row per frame, columns in order:

    <bp>_x, <bp>_y, <bp>_z, <bp>_error, <bp>_ncams, <bp>_score   for each body part
    M_00, M_01, ..., M_22                                        alignment rotation (row major)
    center_0, center_1, center_2                                 alignment offset
    fnum                                                         frame number

Points are stored already aligned: `aligned = raw @ M.T - center`; without an alignment
Anipose writes M = identity and center = 0, and so do we. `error` is the mean reprojection
error in pixels, `ncams` the number of cameras used, `score` the lowest 2D score among them.
Missing values are empty cells. Anipose writes `ncams` as a float and leaves it empty where
fewer than 2 cameras saw the point; on reading an empty `ncams` becomes 0.

The HDF5 layout (h5py, gzip) holds the same arrays as datasets, with optional per-point
covariances, and the attributes `bodyparts` (JSON list) and `units`.

Floats are written with their shortest exact repr, which pandas 3 parses back exactly, so
both formats round trip exactly.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from jaxpose.io.atomic import atomic_path, atomic_write_text
from jaxpose.io.dlc import H5_SUFFIXES, KeypointFileError

H5_FORMAT = "jaxpose.pose3d"
H5_VERSION = 1
PER_BODYPART = ("x", "y", "z", "error", "ncams", "score")


@dataclasses.dataclass(frozen=True, eq=False)
class Pose3D:
    """Triangulated keypoints of one animal over a recording.

    Attributes:
        points: (frame, kpt, 3) float64 world coordinates; NaN where not triangulated.
        error: (frame, kpt) float64 mean reprojection error in pixels; NaN where unknown.
        ncams: (frame, kpt) int64 number of cameras used; 0 where none. Float input with NaN
            (Anipose's convention) is accepted and NaN becomes 0.
        score: (frame, kpt) float64 confidence (Anipose: the lowest 2D score used).
        bodyparts: keypoint names, one per `kpt`.
        frame_numbers: (frame,) int64 video frame numbers; defaults to 0, 1, ...
        covariance: (frame, kpt, 3, 3) float64 point covariances, or None. Only the HDF5
            format stores them.
        alignment_matrix: (3, 3) rotation Anipose applied to the points (`M`); identity when
            the points are in the calibration frame.
        alignment_center: (3,) offset subtracted after rotating (`center`); zeros by default.
        units: length unit of `points`, from the calibration (usually mm).
    """

    points: np.ndarray
    error: np.ndarray
    ncams: np.ndarray
    score: np.ndarray
    bodyparts: tuple[str, ...]
    frame_numbers: np.ndarray | None = None
    covariance: np.ndarray | None = None
    alignment_matrix: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))
    alignment_center: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
    units: str = "mm"

    def __post_init__(self):
        points = np.asarray(self.points, dtype=np.float64)
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"Pose3D.points must have shape (frame, kpt, 3), got {points.shape}")
        fk = points.shape[:2]
        set_ = lambda name, value: object.__setattr__(self, name, value)  # frozen
        set_("points", points)

        def check(name: str, value, shape: tuple[int, ...], dtype) -> np.ndarray:
            arr = np.asarray(value)
            if arr.shape != shape:
                raise ValueError(f"Pose3D.{name} must have shape {shape}, got {arr.shape}")
            return arr.astype(dtype, copy=False)

        set_("error", check("error", self.error, fk, np.float64))
        set_("score", check("score", self.score, fk, np.float64))
        ncams = np.asarray(self.ncams)
        if np.issubdtype(ncams.dtype, np.floating):
            ncams = np.nan_to_num(ncams, nan=0.0)
            if not np.array_equal(ncams, np.round(ncams)):
                raise ValueError("Pose3D.ncams must hold whole numbers of cameras")
        set_("ncams", check("ncams", ncams, fk, np.int64))
        bodyparts = tuple(str(b) for b in self.bodyparts)
        if len(bodyparts) != fk[1]:
            raise ValueError(f"Pose3D has {len(bodyparts)} body part names for {fk[1]} keypoints")
        repeated = sorted({b for b in bodyparts if bodyparts.count(b) > 1})
        if repeated:
            raise ValueError(f"Pose3D body part names must be unique, repeated: {repeated}")
        set_("bodyparts", bodyparts)
        frames = np.arange(fk[0]) if self.frame_numbers is None else self.frame_numbers
        set_("frame_numbers", check("frame_numbers", frames, fk[:1], np.int64))
        if self.covariance is not None:
            set_("covariance", check("covariance", self.covariance, (*fk, 3, 3), np.float64))
        set_("alignment_matrix", check("alignment_matrix", self.alignment_matrix, (3, 3), float))
        set_("alignment_center", check("alignment_center", self.alignment_center, (3,), float))

    @property
    def num_frames(self) -> int:
        return self.points.shape[0]

    @property
    def num_keypoints(self) -> int:
        return self.points.shape[1]


# ---------------------------------------------------------------------------------------------
# Anipose CSV


def pose3d_csv_columns(bodyparts: Sequence[str]) -> list[str]:
    """The column names Anipose's `triangulate` writes, in its order."""
    cols = [f"{bp}_{q}" for bp in bodyparts for q in PER_BODYPART]
    cols += [f"M_{i}{j}" for i in range(3) for j in range(3)]
    cols += [f"center_{i}" for i in range(3)]
    return cols + ["fnum"]


def _write_csv(path: Path, pose: Pose3D) -> Path:
    data: dict[str, np.ndarray] = {}
    for k, bp in enumerate(pose.bodyparts):
        for a, axis in enumerate("xyz"):
            data[f"{bp}_{axis}"] = pose.points[:, k, a]
        data[f"{bp}_error"] = pose.error[:, k]
        data[f"{bp}_ncams"] = pose.ncams[:, k]
        data[f"{bp}_score"] = pose.score[:, k]
    n = pose.num_frames
    for i in range(3):
        for j in range(3):
            data[f"M_{i}{j}"] = np.full(n, pose.alignment_matrix[i, j])
    for i in range(3):
        data[f"center_{i}"] = np.full(n, pose.alignment_center[i])
    data["fnum"] = pose.frame_numbers
    buf = io.StringIO()
    # NaN -> empty cell, floats as shortest exact repr: what pandas gives Anipose too.
    pd.DataFrame(data, columns=pose3d_csv_columns(pose.bodyparts)).to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())
    return path


def write_pose3d_csv(
    path: str | os.PathLike,
    points: np.ndarray,
    *,
    bodyparts: Sequence[str],
    error: np.ndarray,
    ncams: np.ndarray,
    score: np.ndarray,
    frame_numbers: np.ndarray | None = None,
    alignment_matrix: np.ndarray | None = None,
    alignment_center: np.ndarray | None = None,
) -> Path:
    """Write 3D points as an Anipose `pose-3d` CSV, atomically.

    Args:
        path: output `.csv`.
        points: (frame, kpt, 3) triangulated points, NaN where missing.
        bodyparts: one name per `kpt`.
        error: (frame, kpt) reprojection error in pixels.
        ncams: (frame, kpt) number of cameras used.
        score: (frame, kpt) confidence.
        frame_numbers: (frame,) written as `fnum`; defaults to 0, 1, ...
        alignment_matrix: (3, 3) `M` columns; identity by default.
        alignment_center: (3,) `center` columns; zeros by default.

    Returns:
        `path` as a Path.
    """
    extra = {}
    if alignment_matrix is not None:
        extra["alignment_matrix"] = alignment_matrix
    if alignment_center is not None:
        extra["alignment_center"] = alignment_center
    pose = Pose3D(points, error, ncams, score, tuple(bodyparts), frame_numbers, **extra)
    return _write_csv(Path(path), pose)


def read_pose3d_csv(path: str | os.PathLike, *, units: str = "mm") -> Pose3D:
    """Read an Anipose `pose-3d` CSV (or one written by `write_pose3d_csv`).

    Body parts are the names `<bp>` with `<bp>_x, <bp>_y, <bp>_z` columns, in column order.
    The `M_ij` / `center_i` columns are constant in Anipose's files and are read from the first
    row; when absent the points are taken as unaligned. Without `fnum`, frames are 0, 1, ...

    Args:
        path: the CSV.
        units: length unit to record; CSVs do not store it.

    Raises:
        KeypointFileError: the file is missing or unreadable, or a body part lacks one of its
            `_x _y _z _error _ncams _score` columns.
    """
    path = Path(path)
    if not path.is_file():
        raise KeypointFileError(f"{path}: pose-3d CSV not found")
    try:
        df = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise KeypointFileError(f"{path}: not a readable CSV ({e})") from None
    names = [str(c) for c in df.columns]
    have = set(names)
    bodyparts = [
        c[:-2] for c in names if c.endswith("_x") and {c[:-2] + "_y", c[:-2] + "_z"} <= have
    ]
    if not bodyparts:
        raise KeypointFileError(
            f"{path}: no '<bodypart>_x, _y, _z' columns; expected an Anipose pose-3d CSV "
            f"(columns start {names[:6]})"
        )
    missing = [f"{bp}_{q}" for bp in bodyparts for q in PER_BODYPART if f"{bp}_{q}" not in have]
    if missing:
        raise KeypointFileError(
            f"{path}: missing column(s) {missing[:6]}; an Anipose pose-3d CSV has "
            f"{', '.join('<bp>_' + q for q in PER_BODYPART)} for every body part"
        )

    def column(name: str) -> np.ndarray:
        try:
            return df[name].to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise KeypointFileError(f"{path}: column {name!r} is not numeric") from None

    def block(q: str) -> np.ndarray:
        return np.stack([column(f"{bp}_{q}") for bp in bodyparts], axis=1)

    points = np.stack([block("x"), block("y"), block("z")], axis=-1)
    ncams = block("ncams")
    ncams = np.nan_to_num(ncams, nan=0.0)
    if not np.array_equal(ncams, np.round(ncams)):
        raise KeypointFileError(f"{path}: '_ncams' columns hold non-integer camera counts")

    def constant(cols: list[str], default: np.ndarray) -> np.ndarray:
        if not all(c in have for c in cols) or len(df) == 0:
            return default
        return np.array([column(c)[0] for c in cols])

    matrix = constant([f"M_{i}{j}" for i in range(3) for j in range(3)], np.eye(3).ravel())
    center = constant([f"center_{i}" for i in range(3)], np.zeros(3))
    frames = column("fnum") if "fnum" in have else np.arange(len(df), dtype=np.float64)
    if not np.all(np.isfinite(frames)) or not np.array_equal(frames, np.round(frames)):
        raise KeypointFileError(f"{path}: 'fnum' must hold whole frame numbers")
    return Pose3D(
        points=points,
        error=block("error"),
        ncams=ncams.astype(np.int64),
        score=block("score"),
        bodyparts=tuple(bodyparts),
        frame_numbers=frames.astype(np.int64),
        alignment_matrix=matrix.reshape(3, 3),
        alignment_center=center,
        units=units,
    )


# ---------------------------------------------------------------------------------------------
# HDF5


def write_pose3d_h5(path: str | os.PathLike, pose: Pose3D) -> Path:
    """Write a Pose3D as HDF5 (h5py, gzip), atomically.

    Datasets: `points` (frame, kpt, 3), `error`, `ncams`, `score` (frame, kpt), `frame_numbers`
    (frame,), `alignment_matrix` (3, 3), `alignment_center` (3,), and `covariance`
    (frame, kpt, 3, 3) when present. Attributes: `bodyparts` (JSON list), `units`, `format`,
    `version`.

    Returns:
        `path` as a Path.
    """
    path = Path(path)
    arrays = {
        "points": pose.points,
        "error": pose.error,
        "ncams": pose.ncams,
        "score": pose.score,
        "frame_numbers": pose.frame_numbers,
        "alignment_matrix": pose.alignment_matrix,
        "alignment_center": pose.alignment_center,
    }
    if pose.covariance is not None:
        arrays["covariance"] = pose.covariance
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = H5_FORMAT
            f.attrs["version"] = H5_VERSION
            f.attrs["bodyparts"] = json.dumps(list(pose.bodyparts))
            f.attrs["units"] = pose.units
            for name, arr in arrays.items():
                # Chunked compression needs a non-empty array; tiny ones gain nothing from it.
                gzip = {"compression": "gzip", "shuffle": True} if arr.size >= 64 else {}
                f.create_dataset(name, data=arr, **gzip)
    return path


def read_pose3d_h5(path: str | os.PathLike) -> Pose3D:
    """Read a file written by `write_pose3d_h5`.

    Raises:
        KeypointFileError: the file is missing, not HDF5, or lacks a dataset or attribute.
    """
    path = Path(path)
    if not path.is_file():
        raise KeypointFileError(f"{path}: pose-3d HDF5 file not found")
    try:
        with h5py.File(path, "r") as f:
            for attr in ("bodyparts",):
                if attr not in f.attrs:
                    raise KeypointFileError(
                        f"{path}: no '{attr}' attribute; expected a pose-3d file written by "
                        f"jaxpose.io.write_pose3d_h5"
                    )
            required = ("points", "error", "ncams", "score", "frame_numbers")
            lacking = [name for name in required if name not in f]
            if lacking:
                raise KeypointFileError(
                    f"{path}: missing dataset(s) {lacking}; expected {list(required)}"
                )
            data = {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
            bodyparts = json.loads(f.attrs["bodyparts"])
            units = f.attrs.get("units", "mm")
    except KeypointFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KeypointFileError(f"{path}: not a readable pose-3d HDF5 file ({e})") from None
    if isinstance(units, bytes):
        units = units.decode()
    extra = {}
    for name in ("alignment_matrix", "alignment_center"):
        if name in data:
            extra[name] = data[name]
    try:
        return Pose3D(
            points=data["points"],
            error=data["error"],
            ncams=data["ncams"],
            score=data["score"],
            bodyparts=tuple(bodyparts),
            frame_numbers=data["frame_numbers"],
            covariance=data.get("covariance"),
            units=str(units),
            **extra,
        )
    except ValueError as e:
        raise KeypointFileError(f"{path}: inconsistent pose-3d arrays ({e})") from None


# ---------------------------------------------------------------------------------------------
# Either format


def write_pose3d(path: str | os.PathLike, pose: Pose3D) -> Path:
    """Write `pose` as an Anipose CSV (`.csv`) or HDF5 (`.h5`), by suffix.

    The CSV cannot hold covariances or units; they are dropped with a warning.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if pose.covariance is not None:
            warnings.warn(
                f"{path}: the Anipose CSV has no covariance columns; covariances not written "
                f"(use .h5 to keep them)",
                stacklevel=2,
            )
        return _write_csv(path, pose)
    if suffix in H5_SUFFIXES:
        return write_pose3d_h5(path, pose)
    raise KeypointFileError(
        f"{path}: unknown pose-3d file type {path.suffix!r}; expected .csv or .h5"
    )


def read_pose3d(path: str | os.PathLike) -> Pose3D:
    """Read an Anipose CSV (`.csv`) or a jaxpose HDF5 (`.h5`) pose-3d file, by suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_pose3d_csv(path)
    if suffix in H5_SUFFIXES:
        return read_pose3d_h5(path)
    raise KeypointFileError(
        f"{path}: unknown pose-3d file type {path.suffix!r}; expected .csv or .h5"
    )
