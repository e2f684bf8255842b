"""Find a calibration board in images and videos, one camera at a time, with a disk cache.

    >>> from jaxpose.calibration import Board, detect_cameras, find_camera_inputs
    >>> board = Board(kind="charuco", squares=(8, 11), square_mm=24, marker_mm=18.75,
    ...               dictionary="DICT_4X4_1000")
    >>> inputs = find_camera_inputs("session")        # session/<camera>/... images or a video
    >>> dets = detect_cameras(board, inputs, cache_dir="session/detections")
    >>> dets["back"].corners.shape                     # (frame, corner, 2), NaN = not found
    (21, 70, 2)

Corner ids follow `jaxpose.calibration.board` (row-major inner corners; 4 per marker on an ArUco
grid). Pixel coordinates are OpenCV's: the centre of the top-left pixel is (0, 0).

Detectors:

* ChArUco: `cv2.aruco.CharucoDetector(board).detectBoard`, which refines each corner to sub-pixel
  precision itself; a view counts when it has at least `min_corners` corners (default 6) that are
  not all on one line.
* Checkerboard: `cv2.findChessboardCornersSB` (falling back to `cv2.findChessboardCorners`), then
  `cv2.cornerSubPix` with a window scaled to the squares' size in the image. On the Bouguet stereo
  images this brings the corners to within 0.3 px of the toolbox's own extraction, where the
  sector-based detector alone is off by up to 1.6 px and a fixed 11x11 window by up to 6 px on
  small, distant boards. A checkerboard is found whole or not at all.
* ArUco grid: `cv2.aruco.ArucoDetector` with sub-pixel corner refinement, then
  `refineDetectedMarkers` with the board layout to recover missed markers.

Checkerboard orientation: the detectors number the corners from whichever end of the pattern they
start at. The ids are made right-handed (x along a row, y down the columns, as the board is seen
from its printed side) and then turned so that the board's top-left square is black, as
`Board.draw` prints it; this is exact for a board whose square counts differ in parity (one
odd, one even, e.g. 10x7). A board with both counts even or both odd (`Board.orientation_ambiguous`)
looks the same turned by 180 degrees, so nothing in the image can tell its two ends apart: the
ids then start at the end nearer the image's top-left corner, which agrees across cameras only if
all of them see the board the same way up. Prefer ChArUco, or a checkerboard such as 10x7.

Files: images of one camera are taken in natural order (`img2` before `img10`); `frames` is the
position in that order, or the frame index in a video. Cameras are paired frame by frame, as
Anipose does, so every camera's images must be synchronised and listed the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from jaxpose.calibration.board import ARUCO_GRID, CHARUCO, CHECKERBOARD, Board
from jaxpose.io.atomic import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm")
DEFAULT_MIN_CORNERS = 6
# Bump when detection changes in a way that makes old cache files wrong.
_CACHE_VERSION = 1
_BOARD_HINT = (
    "check the board configuration: the number of squares (cols, rows), the ArUco dictionary, "
    "and for a ChArUco board with an even number of rows printed by OpenCV < 4.6 (or "
    "Anipose), legacy_pattern: true"
)


class DetectionError(ValueError):
    """Board detection that cannot go on; the message names the camera or file and what to do."""


# --- one camera's detections ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Detections:
    """Board corners found by one camera, dense over the board's corner ids.

    Attributes:
        camera: camera name.
        board: the board that was looked for.
        image_size: (width, height) in pixels.
        frames: (n,) int64 frame index in the video, or position in the camera's image list.
        corners: (n, board.num_corners, 2) float64 pixels; NaN where a corner was not found.
        sources: (n,) the image file of each frame, or the video file.
        markers: (n,) int64 board markers seen in each frame (0 for a checkerboard); tells
            "markers found but no corners" (wrong square count or layout) apart from "nothing".
    """

    camera: str
    board: Board
    image_size: tuple[int, int]
    frames: np.ndarray
    corners: np.ndarray
    sources: tuple[str, ...]
    markers: np.ndarray

    def __post_init__(self):
        frames = np.asarray(self.frames, np.int64).reshape(-1)
        corners = np.asarray(self.corners, np.float64)
        n = len(frames)
        if corners.shape != (n, self.board.num_corners, 2):
            raise ValueError(
                f"corners must have shape (frame={n}, corner={self.board.num_corners}, 2), "
                f"got {corners.shape}"
            )
        markers = np.asarray(self.markers, np.int64).reshape(-1)
        if markers.shape != (n,):
            raise ValueError(f"markers must have shape ({n},), got {markers.shape}")
        sources = tuple(str(s) for s in self.sources)
        if len(sources) != n:
            raise ValueError(f"sources must list {n} entries, got {len(sources)}")
        size = tuple(int(s) for s in self.image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"image_size must be (width, height), got {self.image_size}")
        # Keep a NaN pair whole: a corner is found in both coordinates or in neither.
        corners = corners.copy()
        corners[np.isnan(corners).any(-1)] = np.nan
        for name, value in [
            ("frames", frames),
            ("corners", corners),
            ("markers", markers),
            ("sources", sources),
            ("image_size", size),
            ("camera", str(self.camera)),
        ]:
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return (
            f"Detections(camera={self.camera!r}, frames={len(self)}, "
            f"detected={self.num_detected()}, corners={int(self.visible.sum())}, "
            f"image_size={self.image_size})"
        )

    @property
    def visible(self) -> np.ndarray:
        """(n, num_corners) bool: where a corner was found."""
        return ~np.isnan(self.corners[..., 0])

    def ids(self, i: int) -> np.ndarray:
        """(k,) int64 ids of the corners found in frame row `i` (ascending)."""
        return np.flatnonzero(self.visible[i])

    def counts(self) -> np.ndarray:
        """(n,) number of corners found per frame."""
        return self.visible.sum(-1)

    def num_detected(self, min_corners: int = 1) -> int:
        """Number of frames with at least `min_corners` corners."""
        return int((self.counts() >= min_corners).sum())

    def coverage_map(self, grid: tuple[int, int] = (8, 6)) -> np.ndarray:
        """(grid_rows, grid_cols) count of detected corners in each cell of a grid over the image.

        Args:
            grid: (cols, rows) cells across and down the image.
        """
        gx, gy = (int(g) for g in grid)
        if gx < 1 or gy < 1:
            raise ValueError(f"grid must be two positive integers (cols, rows), got {grid}")
        uv = self.corners[self.visible]
        w, h = self.image_size
        col = np.clip((uv[:, 0] + 0.5) * gx // w, 0, gx - 1).astype(int)
        row = np.clip((uv[:, 1] + 0.5) * gy // h, 0, gy - 1).astype(int)
        out = np.zeros((gy, gx), np.int64)
        np.add.at(out, (row, col), 1)
        return out

    def coverage(self, grid: tuple[int, int] = (8, 6)) -> float:
        """Fraction of the image's grid cells that hold at least one detected corner.

        Intrinsic calibration needs corners out to the image's edges and corners, where lens
        distortion is largest; below about 0.5 the distortion estimate is poorly constrained.
        """
        return float((self.coverage_map(grid) > 0).mean())

    # --- files --------------------------------------------------------------------------------

    def to_npz(self, path: str | os.PathLike, *, cache_key: str = "") -> None:
        """Write to a compressed .npz file (atomically)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                format=np.array("jaxpose.detections/1"),
                camera=np.array(self.camera),
                board=np.array(json.dumps(self.board.to_config(), sort_keys=True)),
                image_size=np.array(self.image_size, np.int64),
                frames=self.frames,
                corners=self.corners,
                sources=np.array(self.sources, dtype=str).reshape(-1),
                markers=self.markers,
                cache_key=np.array(cache_key),
                opencv=np.array(cv2.__version__),
            )

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> Detections:
        """Read a file written by `to_npz`."""
        return _read_npz(path)[0]


def _read_npz(path) -> tuple[Detections, str]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z or not str(z["format"]).startswith("jaxpose.detections/"):
                raise DetectionError(f"{path}: not a jaxpose detections file")
            det = Detections(
                camera=str(z["camera"]),
                board=Board.from_config(json.loads(str(z["board"]))),
                image_size=tuple(z["image_size"].tolist()),
                frames=z["frames"],
                corners=z["corners"],
                sources=tuple(z["sources"].tolist()),
                markers=z["markers"],
            )
            return det, str(z["cache_key"])
    except DetectionError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise DetectionError(f"{path}: cannot read detections ({e})") from e


# --- one image --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Found:
    ids: np.ndarray  # (k,) int64 ascending
    corners: np.ndarray  # (k, 2) float64
    markers: int  # board markers seen
    unknown: np.ndarray  # marker ids seen that the board does not carry


def _empty(markers: int = 0, unknown=None) -> _Found:
    return _Found(
        np.zeros(0, np.int64),
        np.zeros((0, 2)),
        markers,
        np.zeros(0, np.int64) if unknown is None else unknown,
    )


@functools.lru_cache(maxsize=16)
def _detector(board: Board):
    """OpenCV detector objects for a board, built once per board."""
    if board.kind == CHARUCO:
        return cv2.aruco.CharucoDetector(board.opencv_board())
    if board.kind == ARUCO_GRID:
        params = cv2.aruco.DetectorParameters()
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, board.dictionary))
        return cv2.aruco.ArucoDetector(dictionary, params)
    return None


def _as_gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if image.shape[-1] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(image, code)
    elif image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise ValueError(
            f"expected a (height, width) or (height, width, 3) image, got {image.shape}"
        )
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        elif np.issubdtype(image.dtype, np.floating) and np.nanmax(image) <= 1.0:
            image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def _detect_charuco(board: Board, gray: np.ndarray, min_corners: int) -> _Found:
    corners, ids, _, marker_ids = _detector(board).detectBoard(gray)
    marker_ids = np.zeros(0, np.int64) if marker_ids is None else marker_ids.ravel()
    unknown = board.unknown_marker_ids(marker_ids)
    markers = int(len(marker_ids) - np.isin(marker_ids, unknown).sum())
    if ids is None or len(ids) < min_corners:
        return _empty(markers, unknown)
    ids = ids.ravel().astype(np.int64)
    # Corners on one line fix no homography: useless for calibration, and often a misfit.
    if (
        _detector(board)
        .getBoard()
        .checkCharucoCornersCollinear(ids.astype(np.int32).reshape(-1, 1))
    ):
        return _empty(markers, unknown)
    order = np.argsort(ids)
    return _Found(ids[order], corners.reshape(-1, 2)[order].astype(np.float64), markers, unknown)


def _detect_grid(board: Board, gray: np.ndarray, min_corners: int) -> _Found:
    detector = _detector(board)
    corners, ids, rejected = detector.detectMarkers(gray)
    if ids is None or len(ids) == 0:
        return _empty()
    corners, ids, _, _ = detector.refineDetectedMarkers(
        gray, board.opencv_board(), corners, ids, rejected
    )
    ids = ids.ravel().astype(np.int64)
    unknown = board.unknown_marker_ids(ids)
    values, counts = np.unique(ids, return_counts=True)
    # A marker id seen twice cannot say which sighting is the board's: drop both.
    keep = np.isin(ids, values[counts == 1]) & ~np.isin(ids, unknown)
    markers = int(keep.sum())
    if 4 * markers < min_corners:
        return _empty(markers, unknown)
    marker_ids = ids[keep]
    quads = np.stack(
        [np.asarray(c, np.float64).reshape(4, 2) for c, k in zip(corners, keep, strict=True) if k]
    )
    corner_ids = (marker_ids[:, None] * 4 + np.arange(4)).ravel()
    order = np.argsort(corner_ids)
    return _Found(corner_ids[order], quads.reshape(-1, 2)[order], markers, unknown)


def _subpix_window(grid: np.ndarray) -> int:
    """Half-size of the cornerSubPix window: a quarter of the smallest square side seen."""
    step = np.concatenate(
        [
            np.linalg.norm(np.diff(grid, axis=0), axis=-1).ravel(),
            np.linalg.norm(np.diff(grid, axis=1), axis=-1).ravel(),
        ]
    )
    return int(np.clip(np.floor(0.25 * step.min()), 2, 10))


def _orient_checkerboard(gray: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Renumber a (rows, cols, 2) corner grid as documented in the module docstring."""
    rows, cols = grid.shape[:2]
    a, b = grid[0, 1] - grid[0, 0], grid[1, 0] - grid[0, 0]
    if a[0] * b[1] - a[1] * b[0] < 0:  # left-handed in the image: mirror the rows
        grid = grid[:, ::-1]
    candidates = [grid, grid[::-1, ::-1]]
    if rows == cols:  # a square pattern also maps onto itself turned by 90 degrees
        candidates += [np.rot90(grid, 1), np.rot90(grid, 3)]
    # Brightness at the centre of each inner square; board square (r + 1, c + 1) is black when
    # r + c is even (the top-left square (0, 0) is black).
    smooth = cv2.blur(gray, (3, 3))
    h, w = gray.shape

    def darker_even(g: np.ndarray) -> float:
        centre = 0.25 * (g[:-1, :-1] + g[1:, :-1] + g[:-1, 1:] + g[1:, 1:])
        x = np.clip(np.round(centre[..., 0]).astype(int), 0, w - 1)
        y = np.clip(np.round(centre[..., 1]).astype(int), 0, h - 1)
        value = smooth[y, x].astype(np.float64)
        even = (np.add.outer(np.arange(rows - 1), np.arange(cols - 1)) % 2) == 0
        return float(value[~even].mean() - value[even].mean())

    contrast = [darker_even(g) for g in candidates]
    best = max(contrast)
    # Candidates whose colouring fits equally well cannot be told apart from the image.
    tied = [
        g for g, c in zip(candidates, contrast, strict=True) if c > best - 0.25 * abs(best) - 1e-9
    ]
    return min(tied, key=lambda g: (g[0, 0, 0] + g[0, 0, 1], g[0, 0, 1]))


def _detect_checkerboard(board: Board, gray: np.ndarray) -> _Found:
    pattern = board.pattern_size
    found, corners = cv2.findChessboardCornersSB(
        gray, pattern, flags=cv2.CALIB_CB_ACCURACY | cv2.CALIB_CB_NORMALIZE_IMAGE
    )
    if not found:
        found, corners = cv2.findChessboardCorners(
            gray, pattern, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        )
    if not found or corners is None:
        return _empty()
    cols, rows = pattern
    grid = corners.reshape(rows, cols, 2).astype(np.float32)
    half = _subpix_window(grid)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.001)
    refined = cv2.cornerSubPix(
        gray, grid.reshape(-1, 1, 2).copy(), (half, half), (-1, -1), criteria
    )
    grid = _orient_checkerboard(gray, refined.reshape(rows, cols, 2).astype(np.float64))
    return _Found(np.arange(board.num_corners), grid.reshape(-1, 2), 0, np.zeros(0, np.int64))


def _detect(board: Board, image: np.ndarray, min_corners: int | None) -> _Found:
    gray = _as_gray(image)
    if board.kind == CHECKERBOARD:
        return _detect_checkerboard(board, gray)
    least = DEFAULT_MIN_CORNERS if min_corners is None else int(min_corners)
    if board.kind == CHARUCO:
        return _detect_charuco(board, gray, least)
    return _detect_grid(board, gray, least)


def _unknown_message(board: Board, unknown: np.ndarray, where: str) -> str:
    shown = ", ".join(str(i) for i in unknown[:12]) + (" ..." if len(unknown) > 12 else "")
    return (
        f"{where}: markers with ids {shown} were found, but this board carries markers "
        f"0..{board.num_markers - 1} only ({board}); the squares or the dictionary in the board "
        f"configuration probably do not match the printed board ({_BOARD_HINT}). "
        "Set ignore_unknown_markers to accept stray markers from another target."
    )


def detect_image(
    board: Board,
    image: np.ndarray,
    *,
    min_corners: int | None = None,
    ignore_unknown_markers: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Find the board in one image.

    Args:
        board: the board to look for.
        image: (height, width) grayscale or (height, width, 3) BGR image.
        min_corners: fewest corners that count as a detection (ChArUco, ArUco grid; default 6).
            A checkerboard is found whole or not at all.
        ignore_unknown_markers: accept marker ids that the board does not carry (another
            target in view) instead of raising.

    Returns:
        ids: (k,) int64 corner ids, ascending (empty when the board is not found).
        corners: (k, 2) float64 pixel positions of those corners.

    Raises:
        DetectionError: markers whose ids the board does not carry, when the board itself was
            not found (a board configuration that does not fit the printed board).
    """
    found = _detect(board, image, min_corners)
    if len(found.unknown) and not ignore_unknown_markers and len(found.ids) == 0:
        raise DetectionError(_unknown_message(board, found.unknown, "image"))
    return found.ids, found.corners


# --- inputs -----------------------------------------------------------------------------------


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _images_in(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted((p for p in files if not p.name.startswith(".")), key=_natural_key)


def _videos_in(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    return sorted((p for p in files if not p.name.startswith(".")), key=_natural_key)


def _read_image(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise DetectionError(f"{path}: cannot read this image ({e})") from e
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise DetectionError(f"{path}: cannot read this image (not an image file, or corrupt)")
    return image


def _file_stamp(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _cache_key(board: Board, files: Sequence[Path], options: Mapping) -> str:
    payload = {
        "version": _CACHE_VERSION,
        "opencv": cv2.__version__,  # detections differ between OpenCV releases
        "board": board.to_config(),
        "files": [_file_stamp(p) for p in files],
        "options": dict(options),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(cache_dir: str | os.PathLike, camera: str) -> Path:
    """Where `detect_*` keeps a camera's detections: `<cache_dir>/<camera>.detections.npz`."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(camera)) or "camera"
    return Path(cache_dir) / f"{safe}.detections.npz"


def _cached(
    cache_dir, camera: str, key: str, compute: Callable[[], Detections]
) -> tuple[Detections, bool]:
    if cache_dir is None:
        return compute(), False
    path = cache_path(cache_dir, camera)
    if path.is_file():
        try:
            det, stored = _read_npz(path)
            if stored == key and det.camera == str(camera):
                return det, True
        except DetectionError:
            pass  # unreadable or stale: detect again and overwrite
    det = compute()
    det.to_npz(path, cache_key=key)
    return det, False


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total or None, desc=desc, unit="frame", disable=not enabled, leave=False)


def _check_found(det: Detections, tried: str) -> None:
    if det.num_detected() > 0:
        return
    seen = int((det.markers > 0).sum())
    if det.board.kind == CHECKERBOARD:
        why = "no image showed the whole checkerboard"
    elif seen:
        why = (
            f"markers of the board's dictionary were seen in {seen} of them, but never enough "
            "corners fitted the board's layout"
        )
    else:
        why = f"no marker of {det.board.dictionary} was seen in any of them"
    raise DetectionError(
        f"camera {det.camera!r}: the board was not detected in any of the {len(det)} {tried} "
        f"({why}). Board looked for: {det.board}. Make sure the board is in view, then "
        f"{_BOARD_HINT}."
    )


def _run(
    board: Board,
    camera: str,
    frames_iter,
    total: int,
    *,
    min_corners: int | None,
    ignore_unknown_markers: bool,
    progress: bool,
) -> Detections:
    """Detect over (frame, source, image) triples; shared by folders and videos."""
    frames, sources, corners, markers, bad = [], [], [], [], []
    size, first = None, None
    with _progress(total, f"detect {camera}", progress) as bar:
        for frame, source, image in frames_iter:
            shape = (int(image.shape[1]), int(image.shape[0]))
            if size is None:
                size, first = shape, source
            elif shape != size:
                raise DetectionError(
                    f"camera {camera!r}: images differ in size: {first} is "
                    f"{size[0]}x{size[1]} but {source} is {shape[0]}x{shape[1]}; all of one "
                    "camera's images must come from it at one resolution"
                )
            found = _detect(board, image, min_corners)
            dense = np.full((board.num_corners, 2), np.nan)
            dense[found.ids] = found.corners
            frames.append(frame)
            sources.append(str(source))
            corners.append(dense)
            markers.append(found.markers)
            if len(found.unknown):
                bad.append((source, found.unknown, len(found.ids) > 0))
            bar.update(1)
    if size is None:
        raise DetectionError(f"camera {camera!r}: no images or video frames to detect in")
    det = Detections(
        camera=camera,
        board=board,
        image_size=size,
        frames=np.asarray(frames, np.int64),
        corners=np.stack(corners),
        sources=tuple(sources),
        markers=np.asarray(markers, np.int64),
    )
    if bad and not ignore_unknown_markers:
        unknown = np.unique(np.concatenate([u for _, u, _ in bad]))
        where = f"camera {camera!r} ({len(bad)} of {len(det)} frames, e.g. {bad[0][0]})"
        with_board = sum(ok for _, _, ok in bad)
        if det.num_detected() == 0 or len(bad) - with_board >= det.num_detected():
            raise DetectionError(_unknown_message(board, unknown, where))
        warnings.warn(_unknown_message(board, unknown, where), stacklevel=3)
    return det


def _as_image_list(folder_or_files) -> tuple[list[Path], str]:
    if isinstance(folder_or_files, (str, os.PathLike)):
        folder = Path(folder_or_files)
        if not folder.exists():
            raise DetectionError(f"{folder}: folder not found")
        if folder.is_file():
            return [folder], str(folder)
        files = _images_in(folder)
        if not files:
            raise DetectionError(
                f"{folder}: no images here (looked for {', '.join(IMAGE_SUFFIXES)})"
            )
        return files, str(folder)
    files = [Path(p) for p in folder_or_files]
    if not files:
        raise DetectionError("an empty list of images was given")
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise DetectionError(f"image file(s) not found: {', '.join(missing[:5])}")
    return files, f"{len(files)} files"


def detect_folder(
    board: Board,
    folder_or_files: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    camera: str,
    min_corners: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    ignore_unknown_markers: bool = False,
    allow_empty: bool = False,
) -> Detections:
    """Find the board in every image of one camera.

    Args:
        board: the board to look for.
        folder_or_files: a folder of images (taken in natural name order) or a list of files
            (taken in the order given).
        camera: camera name (labels the result and names the cache file).
        min_corners: see `detect_image`.
        cache_dir: keep the result in `<cache_dir>/<camera>.detections.npz`, keyed by the board,
            the files (path, size, modification time), the options and the OpenCV version; a
            later call with the same key reads it instead of detecting again. None: no cache.
        progress: show a progress bar.
        ignore_unknown_markers: see `detect_image`.
        allow_empty: return a result even when the board was never found.

    Returns:
        Detections with one row per image, in order (rows of NaN where the board was not found).

    Raises:
        DetectionError: unreadable image, images of different sizes, no image with the board,
            or markers that the board does not carry.
    """
    files, _ = _as_image_list(folder_or_files)
    options = {"kind": "images", "min_corners": min_corners}
    key = _cache_key(board, files, options)

    def compute() -> Detections:
        frames = ((i, p, _read_image(p)) for i, p in enumerate(files))
        return _run(
            board,
            camera,
            frames,
            len(files),
            min_corners=min_corners,
            ignore_unknown_markers=ignore_unknown_markers,
            progress=progress,
        )

    det, _ = _cached(cache_dir, camera, key, compute)
    if not allow_empty:
        _check_found(det, "images tried")
    return det


def _video_frames(path: Path, every: int, max_frames: int | None):
    """(frame index, source, gray image) of the sampled frames, read in order."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DetectionError(f"{path}: cannot open this video")
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    if total > 0:
        wanted = np.arange(0, total, every)
        if max_frames is not None and len(wanted) > max_frames:
            pick = np.unique(np.round(np.linspace(0, len(wanted) - 1, max_frames)).astype(int))
            wanted = wanted[pick]
    else:  # the container does not say: read on, every `every`-th frame, up to max_frames
        wanted = None

    def frames():
        cap = cv2.VideoCapture(str(path))
        try:
            index, taken = 0, 0
            targets = None if wanted is None else set(wanted.tolist())
            last = None if wanted is None else int(wanted[-1])
            while True:
                if last is not None and index > last:
                    break
                if max_frames is not None and taken >= max_frames:
                    break
                take = index in targets if targets is not None else index % every == 0
                # grab() decodes without converting; retrieve() only the frames we keep.
                if not cap.grab():
                    break
                if take:
                    ok, image = cap.retrieve()
                    if not ok or image is None:
                        raise DetectionError(f"{path}: cannot decode frame {index}")
                    taken += 1
                    yield index, path, _as_gray(image)
                index += 1
        finally:
            cap.release()

    count = len(wanted) if wanted is not None else (max_frames or 0)
    return frames(), count


def detect_video(
    board: Board,
    video: str | os.PathLike,
    *,
    camera: str,
    every: int = 1,
    max_frames: int | None = None,
    min_corners: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    ignore_unknown_markers: bool = False,
    allow_empty: bool = False,
) -> Detections:
    """Find the board in sampled frames of one camera's video.

    Args:
        board: the board to look for.
        video: the video file.
        camera: camera name.
        every: look at every `every`-th frame (0, every, 2 * every, ...).
        max_frames: at most this many of those frames, spread evenly over the video.
        min_corners, cache_dir, progress, ignore_unknown_markers, allow_empty: as in
            `detect_folder` (the cache key includes `every` and `max_frames`).

    Returns:
        Detections with one row per sampled frame; `frames` holds the video frame indices.
    """
    path = Path(video)
    if not path.is_file():
        raise DetectionError(f"{path}: video not found")
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every must be an integer >= 1, got {every!r}")
    if max_frames is not None and (
        isinstance(max_frames, bool)
        or not isinstance(max_frames, (int, np.integer))
        or max_frames < 1
    ):
        raise ValueError(f"max_frames must be None or an integer >= 1, got {max_frames!r}")
    options = {
        "kind": "video",
        "every": int(every),
        "max_frames": max_frames,
        "min_corners": min_corners,
    }
    key = _cache_key(board, [path], options)

    def compute() -> Detections:
        frames, count = _video_frames(path, int(every), max_frames)
        return _run(
            board,
            camera,
            frames,
            count,
            min_corners=min_corners,
            ignore_unknown_markers=ignore_unknown_markers,
            progress=progress,
        )

    det, _ = _cached(cache_dir, camera, key, compute)
    if not allow_empty:
        _check_found(det, "video frames tried")
    return det


# --- several cameras --------------------------------------------------------------------------


def _has_token(name: str, token: str) -> bool:
    # The rule of jaxpose.pipeline.triangulate.match_files_to_cameras: the camera name as a
    # whole token, bounded by non-alphanumeric characters.
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", name) is not None


def _folder_input(folder: Path) -> Path | list[Path] | None:
    """A camera folder's board footage: its images; else a calib* sub-folder's; else its video."""
    images = _images_in(folder)
    if images:
        return images
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name.lower().startswith("calib"):
            found = _folder_input(sub)
            if found is not None:
                return found
    videos = _videos_in(folder)
    if len(videos) > 1:
        calib = [v for v in videos if "calib" in v.name.lower()]
        if len(calib) == 1:
            return calib[0]
        raise DetectionError(
            f"{folder}: several videos ({', '.join(v.name for v in videos)}); keep one "
            "calibration video per camera folder, or name it with 'calib'"
        )
    return videos[0] if videos else None


def find_camera_inputs(
    root: str | os.PathLike, camera_names: Sequence[str] | None = None
) -> dict[str, Path | list[Path]]:
    """Find each camera's board images or video under `root`.

    Two layouts:

    * a folder per camera, `root/<camera>/`, holding the images, or a `calib*` sub-folder of
      images (as sleap-anipose's `<view>/calibration_images/`), or one video;
    * videos (or images) side by side in `root`, matched to `camera_names` as Anipose does:
      a file belongs to camera `back` when `back` is a whole token of its name
      (`session-back.mp4`, not `backup.mp4`).

    Args:
        root: the folder.
        camera_names: the cameras, in order; None: every sub-folder with images or a video.

    Returns:
        {camera: list of image files | video file}, in `camera_names` order (else by name).
    """
    root = Path(root)
    if not root.is_dir():
        raise DetectionError(f"{root}: folder not found")
    subdirs = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and p.name[0] != "."}
    names = None if camera_names is None else [str(n) for n in camera_names]
    if names is None:
        out = {}
        for name, folder in subdirs.items():
            found = _folder_input(folder)
            if found is not None:
                out[name] = found
        if not out:
            raise DetectionError(
                f"{root}: no camera folders with images or a video; lay out the data as "
                "<root>/<camera>/<images or video>, or pass camera_names to match videos in "
                "<root> by name"
            )
        return out
    if all(n in subdirs for n in names):
        out = {}
        for n in names:
            found = _folder_input(subdirs[n])
            if found is None:
                raise DetectionError(f"{subdirs[n]}: camera {n!r} has no images or video here")
            out[n] = found
        return out
    images, videos = _images_in(root), _videos_in(root)
    grouped = {n: [p for p in images if _has_token(p.stem, n)] for n in names}
    if images and all(grouped.values()):
        return grouped
    if not videos:
        missing = [n for n in names if n not in subdirs]
        raise DetectionError(
            f"{root}: found neither a folder per camera (missing {missing}) nor videos or "
            f"images named after the cameras {names}"
        )
    from jaxpose.pipeline.triangulate import InputError, match_files_to_cameras

    try:
        return dict(match_files_to_cameras(videos, names))
    except InputError as e:
        raise DetectionError(
            f"{root}: cannot match calibration videos to cameras {names}: "
            + str(e).replace("prediction file", "video")
        ) from e


def detect_cameras(
    board: Board,
    inputs: Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]] | str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None,
    camera_names: Sequence[str] | None = None,
    every: int = 1,
    max_frames: int | None = None,
    min_corners: int | None = None,
    progress: bool = True,
    ignore_unknown_markers: bool = False,
) -> dict[str, Detections]:
    """Find the board in every camera's images or video.

    Args:
        board: the board.
        inputs: {camera: folder of images | video file | list of image files}, or a root folder
            laid out as `find_camera_inputs` describes.
        cache_dir: folder for the per-camera cache files (None: no cache).
        camera_names: with a root folder: the cameras to use, in order.
        every, max_frames: frame sampling of videos (see `detect_video`).
        min_corners, progress, ignore_unknown_markers: see `detect_folder`.

    Returns:
        {camera: Detections} in the input order.

    Raises:
        DetectionError: naming the camera whose board was never found, or the file at fault.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = find_camera_inputs(inputs, camera_names)
    if not inputs:
        raise DetectionError("no cameras given")
    out: dict[str, Detections] = {}
    common = dict(
        min_corners=min_corners,
        cache_dir=cache_dir,
        progress=progress,
        ignore_unknown_markers=ignore_unknown_markers,
    )
    for camera, source in inputs.items():
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if path.is_dir():
                found = _folder_input(path)
                if found is None:
                    raise DetectionError(f"{path}: camera {camera!r} has no images or video here")
                source = found
            elif path.suffix.lower() in VIDEO_SUFFIXES:
                source = path
            elif not path.exists():
                raise DetectionError(f"{path}: camera {camera!r}: input not found")
        if isinstance(source, Path) and source.suffix.lower() in VIDEO_SUFFIXES:
            out[camera] = detect_video(
                board, source, camera=camera, every=every, max_frames=max_frames, **common
            )
        else:
            out[camera] = detect_folder(board, source, camera=camera, **common)
    lengths = {c: len(d) for c, d in out.items()}
    if len(set(lengths.values())) > 1:
        warnings.warn(
            f"cameras have different numbers of frames {lengths}: frames are paired across "
            "cameras by index, so check that the footage is synchronised",
            stacklevel=2,
        )
    if board.orientation_ambiguous and len(out) > 1:
        warnings.warn(
            f"{board} looks the same turned by 180 degrees; corner ids agree across cameras "
            "only if every camera sees it the same way up (prefer ChArUco, or a checkerboard "
            "with one odd and one even square count)",
            stacklevel=2,
        )
    return out


def stack_detections(
    detections: Mapping[str, Detections], cameras: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Line up cameras' detections by frame index.

    Args:
        detections: {camera: Detections}, all of the same board.
        cameras: order of the camera axis (default: the mapping's order).

    Returns:
        frames: (frame,) sorted union of the frame indices.
        corners: (frame, cam, corner, 2) float64 pixels, NaN where not seen.
    """
    cameras = list(detections) if cameras is None else list(cameras)
    missing = [c for c in cameras if c not in detections]
    if missing:
        raise KeyError(f"no detections for camera(s) {missing}; have {list(detections)}")
    if not cameras:
        raise ValueError("no cameras to stack")
    board = detections[cameras[0]].board
    for c in cameras[1:]:
        diffs = board.differences(detections[c].board)
        if diffs:
            raise ValueError(f"camera {c!r} looked for another board: {'; '.join(diffs)}")
    frames = np.unique(np.concatenate([detections[c].frames for c in cameras]))
    out = np.full((len(frames), len(cameras), board.num_corners, 2), np.nan)
    for k, c in enumerate(cameras):
        d = detections[c]
        out[np.searchsorted(frames, d.frames), k] = d.corners
    return frames, out
