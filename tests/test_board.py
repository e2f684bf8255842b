"""Calibration boards: geometry against OpenCV's boards, configs, Anipose metadata, printing."""

from __future__ import annotations

import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from jaxpose.calibration import ARUCO_GRID, CHARUCO, CHECKERBOARD, Board
from jaxpose.cli import CONF_DIR, main
from tests.conftest import data_path

ANIPOSE = ("sleap-anipose-minimal-session", "tests", "data", "minimal_session")


def test_opencv_is_the_contrib_build():
    # A plain opencv-python pulled in beside opencv-contrib-python shadows cv2.aruco.
    assert hasattr(cv2.aruco, "CharucoDetector")
    assert hasattr(cv2.aruco, "GridBoard")
    assert int(cv2.__version__.split(".")[0]) >= 5


@pytest.mark.parametrize("squares", [(7, 5), (6, 4), (5, 5), (8, 11)])
@pytest.mark.parametrize("legacy", [False, True])
def test_charuco_corners_match_opencv(squares, legacy):
    board = Board(squares=squares, dictionary="DICT_4X4_100", legacy_pattern=legacy)
    ob = board.opencv_board()
    assert ob.getLegacyPattern() == legacy
    np.testing.assert_array_equal(board.corners(), ob.getChessboardCorners())
    assert board.num_markers == len(ob.getIds())
    assert board.num_corners == (squares[0] - 1) * (squares[1] - 1)


def test_legacy_pattern_moves_markers_only_with_an_even_row_count():
    def markers(squares, legacy):
        b = Board(squares=squares, legacy_pattern=legacy).opencv_board()
        return np.array(b.getObjPoints())

    np.testing.assert_array_equal(markers((7, 5), False), markers((7, 5), True))
    np.testing.assert_array_equal(markers((8, 11), False), markers((8, 11), True))
    assert not np.array_equal(markers((6, 4), False), markers((6, 4), True))


@pytest.mark.parametrize("squares", [(1, 1), (4, 3), (5, 2)])
def test_aruco_grid_corners_match_gridboard(squares):
    board = Board(kind=ARUCO_GRID, squares=squares, square_mm=30.0, marker_mm=24.0)
    ob = board.opencv_board()
    assert isinstance(ob, cv2.aruco.GridBoard)
    np.testing.assert_array_equal(ob.getIds().ravel(), np.arange(board.num_markers))
    # OpenCV's marker corners (marker, 4, 3) in id order = our corner ids marker * 4 + k.
    np.testing.assert_allclose(board.corners(), np.array(ob.getObjPoints()).reshape(-1, 3))
    assert board.num_corners == 4 * squares[0] * squares[1]
    assert board.size_mm == pytest.approx((squares[0] * 30 - 6, squares[1] * 30 - 6))
    np.testing.assert_allclose(board.corners()[:, :2].max(0), board.size_mm)


def test_config_round_trip_and_repr():
    for board in [
        Board(),
        Board(kind=CHECKERBOARD, squares=(10, 7), square_mm=30),
        Board(kind=ARUCO_GRID, squares=(4, 3), square_mm=50, marker_mm=40),
        Board(squares=(6, 4), legacy_pattern=True, dictionary="DICT_5X5_100"),
    ]:
        assert Board.from_config(board.to_config()) == board
        assert eval(repr(board), {"Board": Board}) == board
        assert hash(Board.from_config(board.to_config())) == hash(board)
    assert repr(Board(kind=CHECKERBOARD)) == (
        "Board(kind='checkerboard', squares=(7, 5), square_mm=20.0)"
    )
    text = str(Board())
    assert "ChArUco" in text and "7x5" in text and "24 corners" in text and "140 x 100 mm" in text
    with pytest.raises(ValueError, match="unknown board option"):
        Board.from_config({"kind": "charuco", "square": 3})


def test_every_board_config_composes_and_instantiates():
    configs = sorted((CONF_DIR / "board").glob("*.yaml"))
    assert {"charuco_7x5", "charuco_8x11_anipose", "checkerboard_9x6_opencv"} <= {
        p.stem for p in configs
    }
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for path in configs:
            cfg = compose(config_name="board_print", overrides=[f"board={path.stem}"])
            board = instantiate(cfg.board)
            assert isinstance(board, Board)
            assert Board.from_config(cfg.board) == board
        default = instantiate(compose(config_name="board_print").board)
    assert default == Board()  # charuco_7x5 is the synthetic default
    tutorial = instantiate(compose_board("charuco_opencv_tutorial"))
    assert (tutorial.squares, tutorial.num_corners, tutorial.num_markers) == ((5, 7), 24, 17)
    stereo = instantiate(compose_board("checkerboard_9x6_opencv"))
    assert stereo.pattern_size == (9, 6) and stereo.square_mm == 30.0
    assert not stereo.orientation_ambiguous


def compose_board(name):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="board_print", overrides=[f"board={name}"]).board


def test_anipose_board_toml():
    folder = data_path(*ANIPOSE)
    with open(folder / "board.toml", "rb") as f:
        board = Board.from_anipose_toml_metadata(tomllib.load(f))
    assert board == instantiate(compose_board("charuco_8x11_anipose"))
    assert board.dictionary == "DICT_4X4_1000" and board.num_corners == 70
    with open(folder / "board_checker.toml", "rb") as f:
        checker = Board.from_anipose_toml_metadata(tomllib.load(f))
    # aniposelib's checkerboard size counts inner corners.
    assert checker.kind == CHECKERBOARD and checker.pattern_size == (8, 11)
    # sleap-anipose leaves calibration.toml's [metadata] empty: say so.
    with open(folder / "calibration.toml", "rb") as f:
        meta = tomllib.load(f)["metadata"]
    with pytest.raises(ValueError, match="board.toml"):
        Board.from_anipose_toml_metadata(meta)
    board.validate_against(
        {"board_x": 8, "board_y": 11, "square_length": 24.0, "marker_length": 18.75,
         "marker_bits": 4, "dict_size": 1000},
        what="board.toml",
    )  # fmt: skip


def test_anipose_config_keys_and_bad_dictionary():
    meta = {
        "board_type": "charuco",
        "board_size": [6, 4],
        "board_marker_bits": 5,
        "board_marker_dict_number": 100,
        "board_marker_length": 30.0,
        "board_square_side_length": 40.0,
    }
    board = Board.from_anipose_toml_metadata(meta, legacy_pattern=True)
    assert board == Board(
        squares=(6, 4), square_mm=40, marker_mm=30, dictionary="DICT_5X5_100", legacy_pattern=True
    )
    with pytest.raises(ValueError, match="DICT_3X3_50"):
        Board.from_anipose_toml_metadata(
            {**meta, "board_marker_bits": 3, "board_marker_dict_number": 50}
        )
    with pytest.raises(ValueError, match="not supported"):
        Board.from_anipose_toml_metadata({**meta, "board_type": "circles"})


def test_validate_against_names_the_differences():
    board = Board(squares=(8, 11), square_mm=24, marker_mm=18.75, dictionary="DICT_4X4_1000")
    board.validate_against(board)
    with pytest.raises(ValueError, match=r"squares: \(8, 11\) here, \(11, 8\) there") as e:
        board.validate_against(
            Board(squares=(11, 8), square_mm=24, marker_mm=18.75, dictionary="DICT_4X4_1000"),
            what="calibration metadata",
        )
    assert "calibration metadata" in str(e.value)
    with pytest.raises(ValueError, match="dictionary"):
        board.validate_against({**board.to_config(), "dictionary": "DICT_4X4_250"})
    even = Board(squares=(6, 4))
    with pytest.raises(ValueError, match="legacy_pattern"):
        even.validate_against(Board(squares=(6, 4), legacy_pattern=True))
    np.testing.assert_array_equal(board.unknown_marker_ids([3, 44, 43, 50, 44]), [44, 50])


@pytest.mark.parametrize(
    "board",
    [
        Board(),
        Board(kind=CHECKERBOARD, squares=(10, 7), square_mm=30),
        Board(kind=ARUCO_GRID, squares=(4, 3), square_mm=50, marker_mm=40),
    ],
    ids=[CHARUCO, CHECKERBOARD, ARUCO_GRID],
)
def test_draw_size_and_margin(board):
    image = board.draw(pixels_per_mm=4.0, margin_mm=5.0)
    w, h = board.size_mm
    assert image.dtype == np.uint8 and image.ndim == 2
    assert image.shape == (round(h * 4) + 40, round(w * 4) + 40)
    border = np.concatenate([image[:20].ravel(), image[-20:].ravel(), image[:, :20].ravel()])
    assert np.all(border == 255)
    assert image[20:-20, 20:-20].min() == 0 and image[20:-20, 20:-20].max() == 255
    if board.kind != ARUCO_GRID:
        assert image[22, 22] == 0  # the top-left square is black
    if board.kind == CHARUCO:
        same = board.opencv_board().generateImage(image.shape[::-1], marginSize=20, borderBits=1)
        np.testing.assert_array_equal(image, same)


def test_checkerboard_drawing_has_the_right_squares():
    board = Board(kind=CHECKERBOARD, squares=(5, 4), square_mm=10)
    image = board.draw(pixels_per_mm=2.0, margin_mm=0.0)
    centres = image[10::20, 10::20]
    expected = np.where((np.add.outer(np.arange(4), np.arange(5)) % 2) == 0, 0, 255)
    np.testing.assert_array_equal(centres, expected)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Board(kind="circles"), "kind"),
        (lambda: Board(kind=CHECKERBOARD, legacy_pattern=True), "legacy_pattern"),
        (lambda: Board(kind=ARUCO_GRID, squares=(3, 3), square_mm=10, marker_mm=10), "marker_mm"),
        (lambda: Board(kind=ARUCO_GRID, squares=(8, 8), dictionary="DICT_4X4_50"), "has only 50"),
        (lambda: Board(squares=(7, 5), square_mm=-1), "square_mm"),
        (lambda: Board(squares=(7, 5.0)), "squares"),
        (lambda: Board().draw(pixels_per_mm=0), "pixels_per_mm"),
        (lambda: Board().draw(margin_mm=-1), "margin_mm"),
        (lambda: Board(kind=ARUCO_GRID).pattern_size, "no chessboard"),
        (lambda: Board(kind=CHECKERBOARD).opencv_board(), "ChArUco"),
    ],
)
def test_bad_boards(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _png_dpi(path: Path) -> float:
    data = path.read_bytes()
    at = data.index(b"pHYs")
    x, y, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    assert x == y and unit == 1
    return x * 0.0254


def test_board_command_writes_png_at_physical_size(tmp_path, capsys):
    out = tmp_path / "print" / "board.png"
    # 254 dpi = 10 px/mm: (140 + 2 * 10) x (100 + 2 * 10) mm.
    assert main(["board", f"out={out}", "dpi=254", "margin_mm=10"]) == 0
    image = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert image.shape == (1200, 1600)
    assert _png_dpi(out) == pytest.approx(254, abs=0.01)
    text = capsys.readouterr().out
    assert "160.0 x 120.0 mm" in text and "20 mm" in text
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind

    grid = tmp_path / "grid.png"
    args = ["board", "board=aruco_grid_4x3", f"out={grid}", "dpi=127", "margin_mm=0"]
    assert main(args) == 0
    assert "measure a marker: it should be 40 mm" in capsys.readouterr().out
    assert cv2.imread(str(grid), cv2.IMREAD_UNCHANGED).shape == (140 * 5, 190 * 5)

    assert main(["board", "board.squares=[3]", f"out={tmp_path / 'bad.png'}"]) == 1
    assert "squares" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()


def test_board_command_help():
    res = subprocess.run(
        [sys.executable, "-m", "jaxpose.cli", "board", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert (
        "printable" in res.stdout and "dpi" in res.stdout and "charuco_8x11_anipose" in res.stdout
    )
