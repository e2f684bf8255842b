"""Anipose / aniposelib `calibration.toml` and DANNCE (MATLAB) camera files.

Anipose layout (one section per camera, then `[metadata]`):

    [cam_0]
    name = "back"
    size = [1280, 1024]                       # width, height
    matrix = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    distortions = [k1, k2, p1, p2, k3]        # 4 values (k1..k4) when fisheye = true
    rotation = [rx, ry, rz]                   # axis-angle, world -> camera
    translation = [tx, ty, tz]
    fisheye = false                           # optional

Everything is read in float64 and written with full precision, so load(save(x)) == x exactly.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxpose.geometry.camera import BROWN_CONRADY, FISHEYE, Camera, make_camera, stack_cameras
from jaxpose.io.atomic import atomic_write_bytes


class CalibrationError(ValueError):
    """A calibration file is unreadable or malformed; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A rig and its camera names (in file order), with free-form metadata."""

    rig: Camera
    names: tuple[str, ...]
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if len(self.names) != self.rig.num_cameras:
            raise ValueError(f"{len(self.names)} names for a rig of {self.rig.num_cameras} cameras")
        dupes = sorted({n for n in self.names if self.names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique, repeated: {dupes}")

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no camera named {name!r}; cameras are {list(self.names)}") from None

    def camera(self, name: str) -> Camera:
        return self.rig[self.index(name)]

    def subset(self, names: Sequence[str]) -> Calibration:
        idx = [self.index(n) for n in names]
        return Calibration(self.rig[np.asarray(idx)], tuple(names), self.metadata)

    def __repr__(self) -> str:
        lines = [f"Calibration of {len(self.names)} cameras:"]
        for i, name in enumerate(self.names):
            lines.append(f"  {name}: " + repr(self.rig[i]).replace("\n", "\n  "))
        return "\n".join(lines)


def _get(section: Mapping, key: str, path: Path, where: str) -> Any:
    if key not in section:
        raise CalibrationError(f"{path}: [{where}] has no '{key}' entry (keys: {sorted(section)})")
    return section[key]


def _array(
    value: Any, shape: tuple[int, ...] | None, path: Path, where: str, key: str
) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{path}: [{where}] '{key}' is not numeric: {value!r}") from None
    if shape is not None and arr.shape != shape:
        raise CalibrationError(
            f"{path}: [{where}] '{key}' must have shape {shape}, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{path}: [{where}] '{key}' contains NaN or infinity")
    return arr


def load_calibration(path: str | os.PathLike) -> Calibration:
    """Read an Anipose `calibration.toml` into a rig of float64 NumPy arrays.

    Cast with `calibration.rig.astype(jnp.float32)` for JAX's default precision, or compute under
    `jax.enable_x64(True)` to keep float64.

    Raises:
        CalibrationError: naming the file, section and key when anything is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: calibration file not found")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: not a valid TOML file ({e})") from None

    sections = [k for k in data if k.startswith("cam_")]
    if not sections:
        raise CalibrationError(
            f"{path}: no [cam_N] sections; an Anipose calibration.toml has one per camera"
        )
    try:
        sections.sort(key=lambda k: int(k.split("_", 1)[1]))
    except ValueError:
        raise CalibrationError(f"{path}: camera sections must be named cam_0, cam_1, ...") from None

    cameras, names = [], []
    for key in sections:
        sec = data[key]
        if not isinstance(sec, Mapping):
            raise CalibrationError(f"{path}: [{key}] is not a table")
        fisheye = bool(sec.get("fisheye", False))
        model = FISHEYE if fisheye else BROWN_CONRADY
        ncoef = 4 if fisheye else 5
        k = _array(_get(sec, "matrix", path, key), (3, 3), path, key, "matrix")
        dist = _array(_get(sec, "distortions", path, key), None, path, key, "distortions").ravel()
        if dist.size > ncoef or dist.size < (4 if not fisheye else 4):
            raise CalibrationError(
                f"{path}: [{key}] 'distortions' has {dist.size} values; expected {ncoef} "
                f"({'k1 k2 k3 k4' if fisheye else 'k1 k2 p1 p2 k3'})"
            )
        dist = np.pad(dist, (0, ncoef - dist.size))
        size = _array(_get(sec, "size", path, key), (2,), path, key, "size")
        cameras.append(
            make_camera(
                rotation=_array(_get(sec, "rotation", path, key), (3,), path, key, "rotation"),
                translation=_array(
                    _get(sec, "translation", path, key), (3,), path, key, "translation"
                ),
                focal=(k[0, 0], k[1, 1]),
                principal_point=(k[0, 2], k[1, 2]),
                skew=k[0, 1],
                distortion=dist,
                image_size=size,
                model=model,
            )
        )
        names.append(str(sec.get("name", key)))
    metadata = dict(data.get("metadata", {}))
    try:
        return Calibration(stack_cameras(cameras), tuple(names), metadata)
    except ValueError as e:
        raise CalibrationError(f"{path}: {e}") from None


def _clean(value: Any) -> Any:
    """Convert numpy / jax values to plain Python for TOML."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def calibration_to_dict(calibration: Calibration) -> dict[str, Any]:
    """The TOML document (as nested dicts) for a calibration, in Anipose's layout."""
    doc: dict[str, Any] = {}
    rig = calibration.rig
    for i, name in enumerate(calibration.names):
        cam = jax_to_numpy(rig[i])
        fx, fy = cam.focal
        cx, cy = cam.principal_point
        sec = {
            "name": name,
            "size": [int(round(v)) for v in cam.image_size],
            "matrix": [
                [float(fx), float(cam.skew), float(cx)],
                [0.0, float(fy), float(cy)],
                [0.0, 0.0, 1.0],
            ],
            "distortions": [float(v) for v in cam.distortion],
            "rotation": [float(v) for v in cam.rotation],
            "translation": [float(v) for v in cam.translation],
        }
        if rig.model == FISHEYE:
            sec["fisheye"] = True
        doc[f"cam_{i}"] = sec
    doc["metadata"] = _clean(dict(calibration.metadata))
    return doc


def jax_to_numpy(camera: Camera) -> Camera:
    import jax

    return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float64), camera)


def save_calibration(calibration: Calibration, path: str | os.PathLike) -> Path:
    """Write an Anipose `calibration.toml` atomically (floats with full round-trip precision)."""
    import tomli_w

    path = Path(path)
    text = tomli_w.dumps(calibration_to_dict(calibration))
    atomic_write_bytes(path, text.encode())
    return path


def load_dannce_calibration(path: str | os.PathLike) -> Calibration:
    """Read the cameras of a DANNCE / Label3D `.mat` file (`camnames` + `params`).

    MATLAB stores row vectors: Xc = X r + t, and K transposed with the skew in K[1, 0].
    Pixel coordinates are kept as stored (MATLAB's 1-based convention, unverified against
    images; see the data set's SOURCE.md). The image size is not stored; it is set to twice the
    principal point, rounded, and marked in the metadata.
    """
    import cv2
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: DANNCE .mat file not found")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for bad files
        raise CalibrationError(f"{path}: not a readable MATLAB v5 .mat file ({e})") from None
    for key in ("params", "camnames"):
        if key not in mat:
            raise CalibrationError(
                f"{path}: no '{key}' variable; a DANNCE label3d file has camnames and params"
            )
    names = [str(np.asarray(n).ravel()[0]) for n in np.asarray(mat["camnames"]).ravel()]
    params = np.asarray(mat["params"]).ravel()
    if len(names) != len(params):
        raise CalibrationError(f"{path}: {len(names)} camnames but {len(params)} params entries")
    cameras = []
    for name, p in zip(names, params, strict=True):
        try:
            k = np.asarray(p["K"][0, 0], np.float64)
            r = np.asarray(p["r"][0, 0], np.float64)
            t = np.asarray(p["t"][0, 0], np.float64).ravel()
            rd = np.asarray(p["RDistort"][0, 0], np.float64).ravel()
            td = np.asarray(p["TDistort"][0, 0], np.float64).ravel()
        except (KeyError, ValueError, IndexError) as e:
            raise CalibrationError(
                f"{path}: camera {name!r} lacks K, r, t, RDistort or TDistort ({e})"
            ) from None
        rd = np.pad(rd, (0, 3 - rd.size))
        cx, cy = k[2, 0], k[2, 1]
        cameras.append(
            make_camera(
                rotation=cv2.Rodrigues(np.ascontiguousarray(r.T))[0].ravel(),
                translation=t,
                focal=(k[0, 0], k[1, 1]),
                principal_point=(cx, cy),
                skew=k[1, 0],
                distortion=(rd[0], rd[1], td[0], td[1], rd[2]),
                image_size=(round(2 * cx), round(2 * cy)),
            )
        )
    meta = {
        "source": str(path),
        "image_size": "not stored; estimated as 2 x principal point",
        "pixel_origin": "MATLAB 1-based, as stored",
    }
    return Calibration(stack_cameras(cameras), tuple(names), meta)
