"""Planar calibration boards: ChArUco, checkerboard and ArUco marker grid.

Board frame (OpenCV's, for every kind): origin at the top-left outer corner of the pattern, x to
the right along a row, y down the columns, z = x cross y pointing into the board, away from a
camera that sees the pattern. Units are mm.

Corner ids, which every detection in `jaxpose.calibration.detect` uses:

* ChArUco and checkerboard: the inner corners, row-major. Corner id = row * (cols - 1) + col sits
  at ((col + 1) * square, (row + 1) * square, 0), exactly
  `cv2.aruco.CharucoBoard.getChessboardCorners()`. The top-left square is black.
* ArUco grid (`cv2.aruco.GridBoard`): the four corners of every marker, id = marker_id * 4 + k
  with k = 0..3 the marker's top-left, top-right, bottom-right, bottom-left corner (OpenCV's
  order); marker ids run row-major from 0.

ChArUco layout and OpenCV versions: OpenCV 4.6 changed where the markers sit on boards with an
even number of rows (the top-left square became a black chessboard square, as on a checkerboard).
Boards printed by older OpenCV (and by Anipose/aniposelib at the time) with an even row count
need `legacy_pattern=True`; with an odd row count both layouts are the same board.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

CHARUCO = "charuco"
CHECKERBOARD = "checkerboard"
ARUCO_GRID = "aruco_grid"
KINDS = (CHARUCO, CHECKERBOARD, ARUCO_GRID)

_KIND_NAMES = {CHARUCO: "ChArUco", CHECKERBOARD: "checkerboard", ARUCO_GRID: "ArUco grid"}


def _dictionary_size(name: str) -> int:
    import cv2

    if not (isinstance(name, str) and name.startswith("DICT_") and hasattr(cv2.aruco, name)):
        raise ValueError(f"unknown ArUco dictionary {name!r} (e.g. 'DICT_4X4_50')")
    return int(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name)).bytesList.shape[0])


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclasses.dataclass(frozen=True, repr=False)
class Board:
    """Geometry of a planar calibration board.

    Attributes:
        kind: "charuco", "checkerboard" or "aruco_grid".
        squares: (cols, rows): squares along x and y; for "aruco_grid", markers along x and y.
        square_mm: side of one square, mm; for "aruco_grid", the marker pitch (marker side plus
            the gap between neighbouring markers).
        marker_mm: side of one ArUco marker, mm (ChArUco and grid; must be < square_mm).
        dictionary: OpenCV ArUco dictionary name (ChArUco and grid), e.g. "DICT_4X4_50".
        legacy_pattern: ChArUco only: the marker layout of OpenCV < 4.6, which differs from the
            current one on boards with an even number of rows (see the module docstring).
    """

    kind: str = CHARUCO
    squares: tuple[int, int] = (7, 5)
    square_mm: float = 20.0
    marker_mm: float = 15.0
    dictionary: str = "DICT_4X4_50"
    legacy_pattern: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"board kind must be one of {KINDS}, got {self.kind!r}")
        squares = tuple(self.squares)
        if (
            len(squares) != 2
            or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in squares
            )
            or min(squares) < (1 if self.kind == ARUCO_GRID else 2)
        ):
            least = 1 if self.kind == ARUCO_GRID else 2
            raise ValueError(
                f"squares must be two integers >= {least} (cols, rows), got {self.squares}"
            )
        object.__setattr__(self, "squares", (int(squares[0]), int(squares[1])))
        object.__setattr__(self, "square_mm", float(self.square_mm))
        object.__setattr__(self, "marker_mm", float(self.marker_mm))
        if not (math.isfinite(self.square_mm) and self.square_mm > 0):
            raise ValueError(f"square_mm must be positive, got {self.square_mm}")
        if not isinstance(self.legacy_pattern, (bool, np.bool_)):
            raise ValueError(f"legacy_pattern must be true or false, got {self.legacy_pattern!r}")
        object.__setattr__(self, "legacy_pattern", bool(self.legacy_pattern))
        if self.legacy_pattern and self.kind != CHARUCO:
            raise ValueError("legacy_pattern applies to ChArUco boards only")
        if self.kind == CHECKERBOARD:
            return
        if not 0 < self.marker_mm < self.square_mm:
            raise ValueError(
                f"marker_mm must be in (0, square_mm={self.square_mm}), got {self.marker_mm}"
            )
        size = _dictionary_size(self.dictionary)
        if size < self.num_markers:
            raise ValueError(
                f"a {squares[0]}x{squares[1]} {_KIND_NAMES[self.kind]} board needs "
                f"{self.num_markers} markers but {self.dictionary} has only {size}"
            )

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Board:
        """A board from a mapping of its fields (a Hydra/OmegaConf node or a plain dict).

        `_target_` is ignored; unknown keys are an error that names them.
        """
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(config, DictConfig):
                config = OmegaConf.to_container(config, resolve=True)
        except ImportError:  # pragma: no cover - omegaconf is a dependency
            pass
        config = {k: v for k, v in dict(config).items() if k != "_target_"}
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise ValueError(f"unknown board option(s) {unknown}; valid: {sorted(fields)}")
        if "squares" in config:
            config["squares"] = tuple(config["squares"])
        return cls(**config)

    def to_config(self) -> dict[str, Any]:
        """The fields as a plain dict with `_target_`, the inverse of `from_config`."""
        out: dict[str, Any] = {"_target_": f"{__name__}.Board"}
        out.update(dataclasses.asdict(self))
        out["squares"] = list(self.squares)
        return out

    @classmethod
    def from_anipose_toml_metadata(
        cls, meta: Mapping[str, Any], *, legacy_pattern: bool = False
    ) -> Board:
        """The board described by an Anipose/sleap-anipose TOML section.

        Reads either sleap-anipose's keys (`board.toml`, or a `calibration.toml` `[metadata]`
        table that carries them:
        board_x, board_y, square_length, marker_length, marker_bits, dict_size) or Anipose's
        `config.toml` `[calibration]` keys (board_type, board_size, board_square_side_length,
        board_marker_length, board_marker_bits, board_marker_dict_number). Without a board_type,
        a section with a marker length is a ChArUco board, otherwise a checkerboard. Lengths are
        taken as mm. Anipose names the dictionary by (bits, size): (4, 1000) -> DICT_4X4_1000.

        Anipose's checkerboard size counts inner corners (aniposelib passes it straight to
        `cv2.findChessboardCorners`), its ChArUco size counts squares; both become squares here.

        Args:
            meta: the TOML table, e.g. `tomllib.load(f)["metadata"]`.
            legacy_pattern: set for ChArUco boards with an even row count printed with OpenCV
                < 4.6 (no effect with an odd row count, such as sleap-anipose's 8x11 board).
        """
        meta = dict(meta)
        if not meta:
            raise ValueError(
                "the Anipose board metadata is empty: no board is described there (sleap-anipose "
                "writes an empty calibration.toml [metadata] table and keeps the board in "
                "board.toml; pass that file's table)"
            )

        def get(*names, default=None):
            for n in names:
                if n in meta:
                    return meta[n]
            if default is not None:
                return default
            raise ValueError(
                f"Anipose board metadata lacks {' / '.join(names)}; got {sorted(meta)}"
            )

        if "board_size" in meta:
            size = tuple(int(v) for v in meta["board_size"])
        else:
            size = (int(get("board_x", "squaresX")), int(get("board_y", "squaresY")))
        if len(size) != 2:
            raise ValueError(f"Anipose board_size must be [x, y], got {meta.get('board_size')}")
        marker = meta.get("marker_length", meta.get("board_marker_length"))
        kind = str(
            meta.get("board_type", meta.get("type", CHARUCO if marker is not None else "checker"))
        ).lower()
        square = float(get("square_length", "board_square_side_length"))
        if kind in ("checkerboard", "checker", "chessboard"):
            return cls(kind=CHECKERBOARD, squares=(size[0] + 1, size[1] + 1), square_mm=square)
        if kind not in ("charuco", "charucoboard"):
            raise ValueError(
                f"Anipose board_type {kind!r} is not supported (charuco or checkerboard)"
            )
        bits = int(get("marker_bits", "board_marker_bits", default=4))
        count = int(get("dict_size", "board_marker_dict_number", default=50))
        dictionary = f"DICT_{bits}X{bits}_{count}"
        try:
            _dictionary_size(dictionary)
        except ValueError:
            raise ValueError(
                f"Anipose marker_bits={bits}, dict_size={count} name no OpenCV dictionary "
                f"({dictionary}); bits are 4..7 and sizes 50, 100, 250 or 1000"
            ) from None
        if marker is None:
            raise ValueError("an Anipose ChArUco board needs marker_length")
        return cls(
            kind=CHARUCO,
            squares=size,
            square_mm=square,
            marker_mm=float(marker),
            dictionary=dictionary,
            legacy_pattern=legacy_pattern,
        )

    # --- geometry -----------------------------------------------------------------------------

    @property
    def pattern_size(self) -> tuple[int, int]:
        """(cols - 1, rows - 1): inner corners per row and per column (OpenCV's pattern size)."""
        if self.kind == ARUCO_GRID:
            raise ValueError("an ArUco grid board has no chessboard pattern size")
        return self.squares[0] - 1, self.squares[1] - 1

    @property
    def num_corners(self) -> int:
        """Number of corner ids: inner corners, or 4 per marker on an ArUco grid."""
        if self.kind == ARUCO_GRID:
            return 4 * self.squares[0] * self.squares[1]
        cols, rows = self.pattern_size
        return cols * rows

    @property
    def num_markers(self) -> int:
        """ArUco markers on the board (every other square of a ChArUco board); 0 for a checkerboard."""
        if self.kind == CHARUCO:
            return self.squares[0] * self.squares[1] // 2
        if self.kind == ARUCO_GRID:
            return self.squares[0] * self.squares[1]
        return 0

    @property
    def separation_mm(self) -> float:
        """Gap between neighbouring markers of an ArUco grid, mm."""
        if self.kind != ARUCO_GRID:
            raise ValueError("separation_mm is defined for an ArUco grid board only")
        return self.square_mm - self.marker_mm

    @property
    def size_mm(self) -> tuple[float, float]:
        """(width, height) of the printed pattern, mm (without any white margin)."""
        cols, rows = self.squares
        if self.kind == ARUCO_GRID:
            gap = self.separation_mm
            return cols * self.square_mm - gap, rows * self.square_mm - gap
        return cols * self.square_mm, rows * self.square_mm

    @property
    def orientation_ambiguous(self) -> bool:
        """True for a checkerboard that looks the same turned by 180 degrees.

        That is one whose square counts are both even or both odd: its corner ids can only be
        fixed up to that turn (see `jaxpose.calibration.detect.detect_image`).
        """
        return self.kind == CHECKERBOARD and (self.squares[0] + self.squares[1]) % 2 == 0

    def corners(self) -> np.ndarray:
        """(corner, 3) float64 corner positions in the board frame (z = 0), id order."""
        cols, rows = self.squares
        if self.kind == ARUCO_GRID:
            r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
            origin = np.stack([c.ravel(), r.ravel()], -1) * self.square_mm  # (marker, 2)
            square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]]) * self.marker_mm
            xy = (origin[:, None, :] + square[None]).reshape(-1, 2)
        else:
            cols, rows = self.pattern_size
            r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
            xy = np.stack([c.ravel() + 1, r.ravel() + 1], -1) * self.square_mm
        return np.concatenate([xy.astype(np.float64), np.zeros((len(xy), 1))], -1)

    def center(self) -> np.ndarray:
        """(3,) the centre of the board in the board frame."""
        w, h = self.size_mm
        return np.array([0.5 * w, 0.5 * h, 0.0])

    def opencv_board(self):
        """The matching OpenCV board (units mm): `CharucoBoard` or `GridBoard`.

        A checkerboard has none (use `pattern_size` with `cv2.findChessboardCorners`).
        """
        import cv2

        if self.kind == CHECKERBOARD:
            raise ValueError(
                "only a ChArUco or ArUco grid board has an OpenCV board object "
                "(a checkerboard is found with cv2.findChessboardCorners(gray, pattern_size))"
            )
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        if self.kind == ARUCO_GRID:
            return cv2.aruco.GridBoard(self.squares, self.marker_mm, self.separation_mm, dictionary)
        board = cv2.aruco.CharucoBoard(self.squares, self.square_mm, self.marker_mm, dictionary)
        board.setLegacyPattern(self.legacy_pattern)
        return board

    # --- checks -------------------------------------------------------------------------------

    def unknown_marker_ids(self, marker_ids) -> np.ndarray:
        """Sorted unique marker ids that this board does not carry (outside 0..num_markers-1)."""
        ids = np.unique(np.asarray(marker_ids, dtype=np.int64).ravel())
        return ids[(ids < 0) | (ids >= self.num_markers)]

    def differences(self, other: Board) -> list[str]:
        """Human-readable list of the fields in which `other` differs from this board."""
        diffs = []
        relevant = ["kind", "squares", "square_mm"]
        if CHECKERBOARD not in (self.kind, other.kind):
            relevant += ["marker_mm", "dictionary"]
        if CHARUCO == self.kind == other.kind and self.squares[1] % 2 == 0:
            relevant.append("legacy_pattern")
        for name in relevant:
            a, b = getattr(self, name), getattr(other, name)
            same = math.isclose(a, b, rel_tol=1e-9) if isinstance(a, float) else a == b
            if not same:
                diffs.append(f"{name}: {a!r} here, {b!r} there")
        return diffs

    def validate_against(self, other: Board | Mapping[str, Any], *, what: str = "reference"):
        """Raise ValueError when `other` describes a different board.

        Args:
            other: a Board, a Board config mapping, or Anipose board metadata (board_x, ... as
                in a calibration.toml `[metadata]` section).
            what: how to name `other` in the message, e.g. "calibration.toml metadata".
        """
        if isinstance(other, Mapping):
            keys = set(other)
            anipose = {"board_x", "board_size", "square_length", "board_square_side_length"}
            if keys & anipose:
                other = Board.from_anipose_toml_metadata(other, legacy_pattern=self.legacy_pattern)
            else:
                other = Board.from_config(other)
        diffs = self.differences(other)
        if diffs:
            raise ValueError(
                f"the board does not match the {what}:\n  "
                + "\n  ".join(diffs)
                + f"\nthis board: {self}\n{what}: {other}"
            )

    # --- printing -----------------------------------------------------------------------------

    def draw(self, *, pixels_per_mm: float = 10.0, margin_mm: float | None = None) -> np.ndarray:
        """A printable uint8 grayscale image of the board (white margin all round).

        The pattern is `round(size_mm * pixels_per_mm)` pixels across and the margin
        `round(margin_mm * pixels_per_mm)`; when `square_mm * pixels_per_mm` is an integer, the
        board point (x, y) mm is at pixel (margin_px + x * pixels_per_mm - 0.5, same for y), in
        OpenCV's convention of pixel centres at integer coordinates; otherwise square edges are
        rounded to whole pixels (within half a pixel).

        Args:
            pixels_per_mm: resolution (300 dpi is 300 / 25.4 = 11.81 px/mm).
            margin_mm: white border around the pattern; default half a square (a checkerboard
                needs a white border to be detected at all).
        """
        import cv2

        if not (math.isfinite(pixels_per_mm) and pixels_per_mm > 0):
            raise ValueError(f"pixels_per_mm must be positive, got {pixels_per_mm}")
        if margin_mm is None:
            margin_mm = 0.5 * self.square_mm
        if not (math.isfinite(margin_mm) and margin_mm >= 0):
            raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
        w_mm, h_mm = self.size_mm
        width, height = round(w_mm * pixels_per_mm), round(h_mm * pixels_per_mm)
        margin = round(margin_mm * pixels_per_mm)
        if self.kind == CHECKERBOARD:
            cols, rows = self.squares
            px = pixels_per_mm * self.square_mm
            xs = np.round(np.arange(cols + 1) * px).astype(int)
            ys = np.round(np.arange(rows + 1) * px).astype(int)
            pattern = np.full((height, width), 255, np.uint8)
            for j in range(rows):
                for i in range(cols):
                    if (i + j) % 2 == 0:  # the top-left square is black
                        pattern[ys[j] : ys[j + 1], xs[i] : xs[i + 1]] = 0
            return cv2.copyMakeBorder(
                pattern, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255
            )
        size = (width + 2 * margin, height + 2 * margin)
        # borderBits=1: the markers' own black border, as the detectors expect.
        return self.opencv_board().generateImage(size, marginSize=margin, borderBits=1)

    # --- text ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        parts = [f"kind={self.kind!r}", f"squares={self.squares}", f"square_mm={self.square_mm!r}"]
        if self.kind != CHECKERBOARD:
            parts += [f"marker_mm={self.marker_mm!r}", f"dictionary={self.dictionary!r}"]
        if self.legacy_pattern:
            parts.append("legacy_pattern=True")
        return f"Board({', '.join(parts)})"

    def __str__(self) -> str:
        cols, rows = self.squares
        w, h = self.size_mm
        if self.kind == ARUCO_GRID:
            what = (
                f"ArUco grid of {cols}x{rows} markers of {_fmt(self.marker_mm)} mm "
                f"({_fmt(self.separation_mm)} mm apart, {self.dictionary})"
            )
        else:
            what = f"{_KIND_NAMES[self.kind]} board of {cols}x{rows} squares of {_fmt(self.square_mm)} mm"
            if self.kind == CHARUCO:
                legacy = ", legacy pattern" if self.legacy_pattern else ""
                what += f" (markers {_fmt(self.marker_mm)} mm, {self.dictionary}{legacy})"
        return f"{what}: {self.num_corners} corners, pattern {_fmt(w)} x {_fmt(h)} mm"
