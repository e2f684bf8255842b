"""Long recordings as Zarr v3 stores through TensorStore: chunked over frames, compressed, resumable.

A recording is a Zarr *group* (a folder with `zarr.json`) holding one array per quantity, each
with `frame` as its first axis: for 3D poses `points` (frame, kpt, 3), `error`, `ncams`, `score`
(frame, kpt) and optionally `covariance` (frame, kpt, 3, 3); for 2D predictions `keypoints`
(frame, cam, kpt, 2) and `confidence` (frame, cam, kpt). Any Zarr v3 reader (zarr-python,
TensorStore, xarray) opens it; the group's attributes carry the body parts, frame rate and units.

Writing is done frame-chunk by frame-chunk with :class:`FrameStore`. The group records how many
frames are complete (`frames_written`) after each chunk, so an interrupted run resumes from there
rather than starting over, and a reader can tell a partial store from a finished one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from jaxpose.io.atomic import atomic_write_text

__all__ = ["FrameStore", "ZarrError", "read_zarr", "write_zarr"]

# Frames per chunk: large enough to compress well and keep the file count low (CPU-PERF.md:
# never one-frame chunks), small enough that a resumed run loses little.
DEFAULT_CHUNK_FRAMES = 512
_CODECS = [
    {"name": "bytes", "configuration": {"endian": "little"}},
    {
        "name": "blosc",
        "configuration": {"cname": "zstd", "clevel": 5, "shuffle": "shuffle", "typesize": 4},
    },
]
_DIMENSIONS = {
    "points": ("frame", "kpt", "coord"),
    "error": ("frame", "kpt"),
    "ncams": ("frame", "kpt"),
    "score": ("frame", "kpt"),
    "covariance": ("frame", "kpt", "row", "col"),
    "keypoints": ("frame", "cam", "kpt", "coord"),
    "confidence": ("frame", "cam", "kpt"),
}


class ZarrError(ValueError):
    """A store that is missing, not a jaxpose recording, or does not match what is written."""


def _group_json(path: Path) -> Path:
    return path / "zarr.json"


def _read_group(path: Path) -> dict[str, Any]:
    meta_path = _group_json(path)
    if not meta_path.exists():
        raise ZarrError(f"{path} is not a Zarr v3 group (no zarr.json); expected a jaxpose store")
    meta = json.loads(meta_path.read_text())
    if meta.get("node_type") != "group":
        raise ZarrError(f"{meta_path}: node_type is {meta.get('node_type')!r}, expected 'group'")
    return meta


def _write_group(path: Path, attributes: Mapping[str, Any]) -> None:
    meta = {"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)}
    atomic_write_text(_group_json(path), json.dumps(meta, indent=2))


def _array_spec(path: Path, name: str, shape, dtype: np.dtype, chunk_frames: int) -> dict:
    dims = _DIMENSIONS.get(name, ("frame",) + tuple(f"axis{i}" for i in range(1, len(shape))))
    if len(dims) != len(shape):
        raise ZarrError(f"array {name!r}: shape {tuple(shape)} does not match axes {dims}")
    dtype = np.dtype(dtype)
    codecs = [dict(c) for c in _CODECS]
    codecs[1] = {
        **codecs[1],
        "configuration": {**codecs[1]["configuration"], "typesize": dtype.itemsize},
    }
    fill = "NaN" if dtype.kind == "f" else 0
    return {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(path / name)},
        "metadata": {
            "shape": [int(s) for s in shape],
            "data_type": dtype.name,
            "chunk_grid": {
                "name": "regular",
                "configuration": {
                    "chunk_shape": [max(1, min(chunk_frames, int(shape[0])))]
                    + [int(s) for s in shape[1:]]
                },
            },
            "codecs": codecs,
            "fill_value": fill,
            "dimension_names": list(dims),
        },
    }


class FrameStore:
    """Write a recording chunk by chunk; reopen it to resume where it stopped.

    Example:
        store = FrameStore.create(path, num_frames=n, arrays={"points": ((17, 3), "float32")},
                                  attributes={"bodyparts": names, "fps": 30})
        for start in range(store.frames_written, n, 1000):
            store.write(start, {"points": chunk})          # advances frames_written
        store.finish()
    """

    def __init__(self, path: Path, arrays: dict[str, ts.TensorStore], attributes: dict):
        self.path = path
        self.arrays = arrays
        self.attributes = attributes

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        num_frames: int,
        arrays: Mapping[str, tuple[tuple[int, ...], str]],
        attributes: Mapping[str, Any] | None = None,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        resume: bool = True,
    ) -> FrameStore:
        """Create a store, or reopen a matching unfinished one when `resume` is true.

        Args:
            path: the group folder (conventionally ending in `.zarr`).
            num_frames: frames in the recording.
            arrays: name -> (per-frame shape, dtype), e.g. {"points": ((kpt, 3), "float32")}.
            attributes: JSON-serialisable metadata (body parts, fps, units, source files).
            chunk_frames: frames per chunk.
            resume: reopen an existing store with the same layout and keep its frames; with
                False an existing store is an error (nothing is overwritten silently).
        """
        path = Path(path)
        layout = {
            name: [list(shape), str(np.dtype(dtype))] for name, (shape, dtype) in arrays.items()
        }
        attributes = dict(attributes or {})
        if _group_json(path).exists():
            meta = _read_group(path)
            old = meta["attributes"]
            if not resume:
                raise ZarrError(f"{path} exists; remove it or resume it")
            if old.get("layout") != layout or old.get("num_frames") != num_frames:
                raise ZarrError(
                    f"{path} exists with a different layout ({old.get('num_frames')} frames, "
                    f"{old.get('layout')}) than asked ({num_frames} frames, {layout}); "
                    "remove it or write elsewhere"
                )
            opened = {
                name: ts.open(
                    {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / name)}}
                ).result()
                for name in arrays
            }
            return cls(path, opened, old)
        path.mkdir(parents=True, exist_ok=True)
        created = {}
        for name, (shape, dtype) in arrays.items():
            spec = _array_spec(path, name, (num_frames, *shape), np.dtype(dtype), chunk_frames)
            created[name] = ts.open(spec, create=True, delete_existing=True).result()
        attributes.update(
            num_frames=int(num_frames), layout=layout, frames_written=0, complete=False
        )
        _write_group(path, attributes)
        return cls(path, created, attributes)

    @property
    def frames_written(self) -> int:
        """Frames [0, frames_written) are stored; a resumed run starts here."""
        return int(self.attributes["frames_written"])

    @property
    def num_frames(self) -> int:
        return int(self.attributes["num_frames"])

    def write(self, start: int, values: Mapping[str, np.ndarray]) -> None:
        """Store frames [start, start + len) of every array, then record the progress.

        Chunks must arrive in order (start == frames_written) so that `frames_written` always
        means "everything before this is on disk".
        """
        if set(values) != set(self.arrays):
            raise ZarrError(
                f"write needs exactly the arrays {sorted(self.arrays)}, got {sorted(values)}"
            )
        if start != self.frames_written:
            raise ZarrError(
                f"{self.path}: next chunk must start at frame {self.frames_written}, got {start}"
            )
        lengths = {len(v) for v in values.values()}
        if len(lengths) != 1:
            raise ZarrError(f"arrays of one chunk differ in frame count: {lengths}")
        stop = start + lengths.pop()
        if stop > self.num_frames:
            raise ZarrError(
                f"{self.path}: frames {start}..{stop} run past the {self.num_frames} frames"
            )
        futures = []
        for name, value in values.items():
            array = self.arrays[name]
            value = np.asarray(value, dtype=array.dtype.numpy_dtype)
            if value.shape[1:] != tuple(array.shape[1:]):
                raise ZarrError(
                    f"array {name!r}: chunk shape {value.shape[1:]} per frame, expected {tuple(array.shape[1:])}"
                )
            futures.append(array[start:stop].write(value))
        for future in futures:
            future.result()
        self.attributes["frames_written"] = stop
        _write_group(self.path, self.attributes)

    def finish(self) -> Path:
        """Mark the recording complete (every frame written)."""
        if self.frames_written != self.num_frames:
            raise ZarrError(
                f"{self.path}: only {self.frames_written} of {self.num_frames} frames written"
            )
        self.attributes["complete"] = True
        _write_group(self.path, self.attributes)
        return self.path


def write_zarr(
    path: str | os.PathLike,
    arrays: Mapping[str, np.ndarray],
    *,
    attributes: Mapping[str, Any] | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> Path:
    """Write whole arrays (each with `frame` first) as a complete store, replacing any old one."""
    path = Path(path)
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    frames = {a.shape[0] for a in arrays.values()}
    if len(frames) != 1:
        raise ZarrError(
            f"arrays differ in frame count: { {n: a.shape for n, a in arrays.items()} }"
        )
    num_frames = frames.pop()
    if _group_json(path).exists():
        _group_json(path).unlink()
    store = FrameStore.create(
        path,
        num_frames=num_frames,
        arrays={n: (a.shape[1:], str(a.dtype)) for n, a in arrays.items()},
        attributes=attributes,
        chunk_frames=chunk_frames,
        resume=False,
    )
    for start in range(0, num_frames, chunk_frames):
        store.write(start, {n: a[start : start + chunk_frames] for n, a in arrays.items()})
    return store.finish()


def read_zarr(
    path: str | os.PathLike, *, frames: slice = slice(None), allow_partial: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a store's arrays (optionally a frame range) and its attributes.

    Raises:
        ZarrError: if the path is not a jaxpose store, or it is unfinished and `allow_partial`
            is false (its `frames_written` says how far it got).
    """
    path = Path(path)
    attributes = _read_group(path)["attributes"]
    if not attributes.get("complete", False) and not allow_partial:
        raise ZarrError(
            f"{path} is unfinished ({attributes.get('frames_written')} of "
            f"{attributes.get('num_frames')} frames); resume the run that writes it, or pass "
            "allow_partial=True"
        )
    arrays = {}
    for name in attributes.get("layout", {}):
        store = ts.open(
            {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / name)}}
        ).result()
        arrays[name] = store[frames].read().result()
    return arrays, attributes
