"""Board detection: real chessboard and ChArUco photos, the sleap-anipose session against its
stored detections, rendered boards with known corners, the cache, videos and clear errors."""

from __future__ import annotations

import os
import tomllib
import warnings

import cv2
import h5py
import numpy as np
import pytest
from scipy.io import loadmat

import jaxpose.calibration.detect as detect_module
from jaxpose.calibration import (
    ARUCO_GRID,
    CHECKERBOARD,
    Board,
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
from tests.conftest import data_path

ANIPOSE = ("sleap-anipose-minimal-session", "tests", "data", "minimal_session")
ANIPOSE_CAMERAS = ("back", "mid", "side", "top")  # calibration.metadata.h5 axis 0 order
STEREO_BOARD = Board(kind=CHECKERBOARD, squares=(10, 7), square_mm=30.0)
SUBPIX = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.001)


def anipose_board() -> Board:
    with open(data_path(*ANIPOSE, "board.toml"), "rb") as f:
        return Board.from_anipose_toml_metadata(tomllib.load(f))


def render(board, *, turn180=False, ppm=8.0, size=(900, 700), blur=0.8):
    """The drawn board seen through a homography: (image, (corner, 2) true pixel positions)."""
    image = board.draw(pixels_per_mm=ppm)
    margin = round(0.5 * board.square_mm * ppm)
    # Drawn pixel centres sit at integer coordinates: board point x mm is at margin + x ppm - 0.5.
    truth = board.corners()[:, :2] * ppm + margin - 0.5
    h, w = image.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]]) - 0.5
    dst = np.float32([[120, 90], [780, 140], [740, 620], [160, 560]])
    if turn180:
        dst = dst[[2, 3, 0, 1]]
    homography = cv2.getPerspectiveTransform(src, dst)
    view = cv2.warpPerspective(image, homography, size, flags=cv2.INTER_LINEAR, borderValue=128)
    if blur:
        view = cv2.GaussianBlur(view, (0, 0), blur)
    return view, cv2.perspectiveTransform(truth[None], homography)[0]


# --- real data: opencv-stereo ------------------------------------------------------------------


@pytest.fixture(scope="module")
def stereo():
    folder = data_path("opencv-stereo")
    return {
        side: detect_folder(
            STEREO_BOARD, sorted(folder.glob(f"{side}*.jpg")), camera=side, progress=False
        )
        for side in ("left", "right")
    }


def test_stereo_chessboards_all_detected_and_agree_with_opencv(stereo):
    for det in stereo.values():
        assert len(det) == 14 and det.num_detected(min_corners=54) == 14
        assert det.image_size == (640, 480)
        for i, source in enumerate(det.sources):
            gray = cv2.imread(source, cv2.IMREAD_GRAYSCALE)
            found, ref = cv2.findChessboardCorners(gray, (9, 6))
            assert found, source
            # Bouguet's toolbox window (5x5 half-size); a fixed 11x11 window snaps to the wrong
            # edge on the smallest boards here (up to 6 px off the toolbox's corners).
            ref = cv2.cornerSubPix(gray, ref, (5, 5), (-1, -1), SUBPIX).reshape(-1, 2)
            err = np.linalg.norm(det.corners[i] - ref, axis=-1)
            assert err.max() < 0.5, (source, err.max())  # same ids, same place


def test_stereo_chessboards_agree_with_bouguets_toolbox(stereo):
    """Independent reference: the corners Bouguet's Matlab toolbox extracted (`x_i` in the .mat)."""
    folder = data_path("opencv-stereo")
    worst = []
    for side, det in stereo.items():
        mat = loadmat(folder / f"Calib_Results_{side}.mat")
        for i in range(14):
            theirs = mat[f"x_{i + 1}"].T  # (54, 2), the toolbox's own corner order
            dist = np.linalg.norm(det.corners[i][:, None] - theirs[None], axis=-1)
            nearest = dist.argmin(1)
            assert len(set(nearest)) == 54  # one-to-one
            worst.append(dist[np.arange(54), nearest].max())
    assert max(worst) < 0.35, max(worst)


def test_opencv_tutorial_charuco_photos():
    board = Board(squares=(5, 7), square_mm=40.0, marker_mm=20.0, dictionary="DICT_6X6_250")
    det = detect_folder(board, data_path("opencv-stereo", "charuco"), camera="c", progress=False)
    counts = dict(
        zip((os.path.basename(s) for s in det.sources), det.counts().tolist(), strict=True)
    )
    assert len(counts) == 5 and min(counts.values()) >= 10
    assert counts["chocclusion_original.jpg"] == 16  # partly hidden by a hand
    assert all(counts[f"img_0{i}.jpg"] == 24 for i in range(4))
    assert det.markers.tolist() == [13, 17, 17, 17, 17]
    # The colour photos give the same result read as BGR.
    bgr = cv2.imread(det.sources[1], cv2.IMREAD_COLOR)
    ids, corners = detect_image(board, bgr)
    np.testing.assert_array_equal(ids, det.ids(1))
    np.testing.assert_allclose(corners, det.corners[1][ids])


# --- real data: sleap-anipose-minimal-session ---------------------------------------------------


@pytest.fixture(scope="module")
def anipose(tmp_path_factory):
    cache = tmp_path_factory.mktemp("anipose-cache")
    board = anipose_board()
    inputs = find_camera_inputs(data_path(*ANIPOSE))
    dets = detect_cameras(board, inputs, cache_dir=cache, progress=False)
    return board, inputs, cache, dets


def test_anipose_session_is_found_in_every_view(anipose):
    board, inputs, _, dets = anipose
    assert list(dets) == sorted(ANIPOSE_CAMERAS)
    for cam, det in dets.items():
        assert len(inputs[cam]) == 21 and len(det) == 21
        assert det.image_size == (1280, 1024)
        assert det.num_detected(min_corners=40) == 21, cam
        assert det.coverage() > 0.3
    frames, stacked = stack_detections(dets, ANIPOSE_CAMERAS)
    assert stacked.shape == (21, 4, 70, 2) and frames.tolist() == list(range(21))


def test_anipose_session_agrees_with_its_stored_detections(anipose):
    """`detected_corners` (cam, frame, corner, 2) in calibration.metadata.h5, same corner ids.

    The stored frames follow the image files in plain string order (`...-10.jpg` before
    `...-9.jpg`), ours natural order, so rows are matched by file name. The stored corners sit
    +0.47 px right and down of ours on every camera: OpenCV 4.7-4.x's CharucoDetector added half
    a pixel after its sub-pixel step (opencv/opencv#25539, fixed in #28380); ours carry no such
    bias (see test_rendered_boards_are_found_with_exact_ids).
    """
    _, _, _, dets = anipose
    with h5py.File(data_path(*ANIPOSE, "calibration.metadata.h5"), "r") as f:
        reference = f["detected_corners"][:]
    for k, cam in enumerate(ANIPOSE_CAMERAS):
        det = dets[cam]
        ours = det.corners[np.argsort(det.sources)]
        theirs = reference[k]
        both = ~np.isnan(ours[..., 0]) & ~np.isnan(theirs[..., 0])
        # We find (almost) every corner they found, and more on the oblique `side` view.
        assert both.sum() >= 0.99 * (~np.isnan(theirs[..., 0])).sum(), cam
        diff = ours[both] - theirs[both]
        np.testing.assert_allclose(diff.mean(0), [-0.47, -0.47], atol=0.06)
        raw = np.linalg.norm(diff, axis=-1)
        assert np.median(raw) < 0.75 and np.mean(raw <= 1.0) > 0.95, cam
        fixed = np.linalg.norm(diff + 0.5, axis=-1)
        assert np.median(fixed) < 0.2 and np.mean(fixed <= 1.0) > 0.99, cam


def test_second_call_reads_the_cache(anipose, monkeypatch):
    board, inputs, cache, dets = anipose
    assert sorted(p.name for p in cache.iterdir()) == [
        f"{c}.detections.npz" for c in sorted(ANIPOSE_CAMERAS)
    ]

    def no_detection(*args, **kwargs):
        raise AssertionError("detected again instead of reading the cache")

    monkeypatch.setattr(detect_module, "_detect", no_detection)
    again = detect_cameras(board, inputs, cache_dir=cache, progress=False)
    for cam in ANIPOSE_CAMERAS:
        np.testing.assert_array_equal(again[cam].corners, dets[cam].corners)
        assert again[cam].sources == dets[cam].sources
    # Another board, or fewer files, is another key: detection runs (and here, raises).
    other = {"back": inputs["back"][:5]}
    with pytest.raises(AssertionError, match="detected again"):
        detect_cameras(board, other, cache_dir=cache, progress=False)
    with pytest.raises(AssertionError, match="detected again"):
        detect_cameras(
            Board.from_config({**board.to_config(), "square_mm": 25.0}),
            {"back": inputs["back"]},
            cache_dir=cache,
            progress=False,
        )


def test_cache_misses_when_an_image_changes(tmp_path, monkeypatch, capsys):
    board = Board()
    view, _ = render(board)
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), view)
    calls = []
    real = detect_module._detect
    monkeypatch.setattr(detect_module, "_detect", lambda *a: calls.append(1) or real(*a))
    cache = tmp_path / "cache"
    first = detect_folder(board, tmp_path, camera="cam/1", cache_dir=cache, progress=True)
    assert len(calls) == 2 and cache_path(cache, "cam/1").is_file()
    assert "detect cam/1" in capsys.readouterr().err  # the progress bar
    detect_folder(board, tmp_path, camera="cam/1", cache_dir=cache, progress=False)
    assert len(calls) == 2
    os.utime(tmp_path / "img1.png", ns=(1, 1))
    second = detect_folder(board, tmp_path, camera="cam/1", cache_dir=cache, progress=False)
    assert len(calls) == 4
    np.testing.assert_array_equal(first.corners, second.corners)


def test_video_detection_matches_the_images(anipose):
    board, _, _, dets = anipose
    video = data_path(*ANIPOSE, "top", "calibration_images", "minimal_session-top-calibration.mp4")
    det = detect_video(board, video, camera="top", every=5, progress=False)
    assert det.frames.tolist() == [0, 5, 10, 15, 20]
    assert det.num_detected(min_corners=60) == 5 and det.sources[0] == str(video)
    # The video holds the images in plain string order of their names.
    images = dets["top"].corners[np.argsort(dets["top"].sources)][det.frames]
    np.testing.assert_array_equal(np.isnan(det.corners), np.isnan(images))
    err = np.linalg.norm(det.corners - images, axis=-1)
    assert np.nanmedian(err) < 0.3 and np.nanmax(err) < 1.5  # h264 against JPEG
    few = detect_video(board, video, camera="top", max_frames=3, progress=False)
    assert few.frames.tolist() == [0, 10, 20]
    np.testing.assert_allclose(few.corners[1], det.corners[2])


# --- rendered boards ----------------------------------------------------------------------------


@pytest.mark.parametrize("turn180", [False, True])
@pytest.mark.parametrize(
    "board",
    [
        Board(),
        Board(squares=(6, 4), legacy_pattern=True),
        Board(kind=CHECKERBOARD, squares=(10, 7)),
        Board(kind=ARUCO_GRID, squares=(4, 3), square_mm=25.0, marker_mm=20.0),
    ],
    ids=["charuco", "charuco-legacy", "checkerboard", "grid"],
)
def test_rendered_boards_are_found_with_exact_ids(board, turn180):
    view, truth = render(board, turn180=turn180)
    ids, corners = detect_image(board, view)
    np.testing.assert_array_equal(ids, np.arange(board.num_corners))
    err = corners - truth
    assert np.abs(err).max() < 0.6
    # No systematic shift: OpenCV 5's ChArUco corners carry no half-pixel bias.
    assert np.abs(err.mean(0)).max() < 0.1


def test_symmetric_checkerboard_numbers_from_the_top_left():
    board = Board(kind=CHECKERBOARD, squares=(8, 6))
    assert board.orientation_ambiguous
    for turn180 in (False, True):
        view, truth = render(board, turn180=turn180)
        ids, corners = detect_image(board, view)
        expected = truth[::-1] if turn180 else truth
        np.testing.assert_allclose(corners, expected, atol=0.6)
        assert corners[0].sum() < corners[-1].sum()  # corner 0 is the end nearer (0, 0)


def test_legacy_board_needs_legacy_pattern(tmp_path):
    printed = Board(squares=(6, 4), legacy_pattern=True)
    view, _ = render(printed)
    assert len(detect_image(printed, view)[0]) == printed.num_corners
    assert len(detect_image(Board(squares=(6, 4)), view)[0]) == 0
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), view)
    with pytest.raises(DetectionError, match=r"'cam0'.*3 images tried.*legacy_pattern"):
        detect_folder(Board(squares=(6, 4)), tmp_path, camera="cam0", progress=False)


# --- errors -------------------------------------------------------------------------------------


def test_wrong_dictionary_names_the_camera(tmp_path):
    view, _ = render(Board())
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), view)
    with pytest.raises(DetectionError) as e:
        detect_folder(Board(dictionary="DICT_5X5_50"), tmp_path, camera="left", progress=False)
    message = str(e.value)
    assert "'left'" in message and "2 images" in message and "no marker of DICT_5X5_50" in message
    assert "dictionary" in message and "squares" in message


def test_wrong_board_size_says_so(tmp_path):
    view, _ = render(Board(squares=(7, 5)))  # 17 markers
    cv2.imwrite(str(tmp_path / "a.png"), view)
    small = Board(squares=(4, 3))  # 6 markers: ids 6..16 are not on it
    with pytest.raises(DetectionError, match=r"ids 6, 7, .*0\.\.5 only.*probably do not match"):
        detect_folder(small, tmp_path, camera="c", progress=False)
    with pytest.raises(DetectionError, match="probably do not match"):
        detect_image(small, view)
    ids, _ = detect_image(small, view, ignore_unknown_markers=True)
    assert len(ids) == 0


def test_mixed_sizes_and_unreadable_images_are_named(tmp_path):
    view, _ = render(Board())
    cv2.imwrite(str(tmp_path / "a1.png"), view)
    cv2.imwrite(str(tmp_path / "a2.png"), view[:-10])
    with pytest.raises(DetectionError, match=r"a1\.png is 900x700 but .*a2\.png is 900x690"):
        detect_folder(Board(), tmp_path, camera="c", progress=False)
    (tmp_path / "a2.png").write_bytes(b"not an image")
    with pytest.raises(DetectionError, match=r"a2\.png: cannot read this image"):
        detect_folder(Board(), tmp_path, camera="c", progress=False)
    with pytest.raises(DetectionError, match="folder not found"):
        detect_folder(Board(), tmp_path / "nope", camera="c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectionError, match="no images"):
        detect_folder(Board(), tmp_path / "empty", camera="c")
    (tmp_path / "v.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(DetectionError, match="cannot open this video"):
        detect_video(Board(), tmp_path / "v.mp4", camera="c", progress=False)
    with pytest.raises(ValueError, match="every"):
        detect_video(Board(), tmp_path / "v.mp4", camera="c", every=0)


# --- Detections and inputs --------------------------------------------------------------------


def test_detections_file_round_trip_and_helpers(tmp_path):
    board = Board(kind=CHECKERBOARD, squares=(4, 3))  # 6 corners
    corners = np.full((3, 6, 2), np.nan)
    corners[0] = np.arange(12).reshape(6, 2) * 10.0
    corners[2, :2] = [[5.0, 5.0], [395.0, 295.0]]
    det = Detections("cam", board, (400, 300), [0, 4, 8], corners, ("a", "b", "c"), [0, 0, 0])
    path = tmp_path / "d.npz"
    det.to_npz(path)
    back = Detections.from_npz(path)
    assert back.camera == "cam" and back.board == board and back.image_size == (400, 300)
    np.testing.assert_array_equal(back.corners, corners)
    np.testing.assert_array_equal(back.frames, [0, 4, 8])
    assert back.sources == ("a", "b", "c") and len(list(tmp_path.iterdir())) == 1
    assert det.num_detected() == 2 and det.num_detected(min_corners=3) == 1
    assert det.ids(2).tolist() == [0, 1] and det.counts().tolist() == [6, 0, 2]
    cover = det.coverage_map(grid=(2, 2))
    assert cover.sum() == 8 and cover[0, 0] == 7 and cover[1, 1] == 1
    assert det.coverage(grid=(2, 2)) == 0.5
    assert "detected=2" in repr(det)
    with pytest.raises(ValueError, match="corners must have shape"):
        Detections("cam", board, (400, 300), [0], corners, ("a",), [0])
    (tmp_path / "x.npz").write_bytes(b"junk")
    with pytest.raises(DetectionError, match="x.npz"):
        Detections.from_npz(tmp_path / "x.npz")
    # Line up two cameras with different frames.
    other = Detections("b", board, (400, 300), [4, 9], corners[:2], ("x", "y"), [0, 0])
    frames, stacked = stack_detections({"cam": det, "b": other})
    assert frames.tolist() == [0, 4, 8, 9]
    np.testing.assert_array_equal(stacked[1, 1], corners[0])
    assert np.isnan(stacked[3, 0]).all() and np.isnan(stacked[0, 1]).all()


def test_find_camera_inputs_layouts(tmp_path):
    inputs = find_camera_inputs(data_path(*ANIPOSE))
    assert sorted(inputs) == sorted(ANIPOSE_CAMERAS)
    assert inputs["side"][0].name == "side-02242022135219-0.jpg"
    assert inputs["side"][10].name.endswith("-10.jpg")  # natural order
    assert list(find_camera_inputs(data_path(*ANIPOSE), ["top", "back"])) == ["top", "back"]
    # Videos side by side, matched by camera name as a whole token.
    for name in ("calib-back.mp4", "calib-top.mp4", "calib-backup.mp4"):
        (tmp_path / name).write_bytes(b"")
    found = find_camera_inputs(tmp_path, ["back", "top"])
    assert found == {"back": tmp_path / "calib-back.mp4", "top": tmp_path / "calib-top.mp4"}
    with pytest.raises(DetectionError, match="cannot match calibration videos.*'side'"):
        find_camera_inputs(tmp_path, ["back", "side"])
    with pytest.raises(DetectionError, match="camera_names"):
        find_camera_inputs(tmp_path)


def test_detect_cameras_from_a_root_folder(tmp_path):
    board = Board()
    view, _ = render(board)
    for cam in ("a", "b"):
        (tmp_path / cam).mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / cam / f"f{i}.png"), view)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dets = detect_cameras(board, tmp_path, cache_dir=None, progress=False)
    assert list(dets) == ["a", "b"] and all(d.num_detected() == 2 for d in dets.values())
    (tmp_path / "b" / "f1.png").unlink()
    with pytest.warns(UserWarning, match="different numbers of frames"):
        detect_cameras(board, tmp_path, cache_dir=None, progress=False)
