"""Labelled data sets, augmentation and batching: the real example projects, synthetic frames
whose dots must follow the returned keypoints, determinism, and bad projects on disk."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from jaxpose.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    Augmenter,
    DatasetError,
    LabelledFrames,
    apply_affine,
    box_affine,
    denormalize_images,
    frame_to_input,
    image_size,
    infer_flip_pairs,
    invert_affine,
    iterate_batches,
    letterbox_affine,
    load_dlc_project,
    normalize_images,
    read_image,
    split_indices,
)
from tests.conftest import data_path

# Only geometry: the dot test measures where the image content went.
GEOMETRY_ONLY = dict(brightness=0.0, contrast=0.0, blur_prob=0.0, noise_prob=0.0, cutout_prob=0.0)


def _openfield() -> LabelledFrames:
    return load_dlc_project(data_path("dlc-openfield"))


# --------------------------------------------------------------------------------------------
# The real example projects (counts from each SOURCE.md)


def test_openfield_project():
    frames = _openfield()
    assert len(frames) == 116
    assert frames.bodyparts == ("snout", "leftear", "rightear", "tailbase")
    assert frames.keypoints.shape == (116, 4, 2) and frames.keypoints.dtype == np.float32
    assert not np.isnan(frames.keypoints).any()
    assert (frames.image_sizes == [640, 480]).all()
    assert frames.flip_pairs == ((1, 2),)  # leftear <-> rightear
    assert frames.skeleton == ()
    assert frames.name == "dlc-openfield"
    assert frames.images[0] == frames.root / "labeled-data/m4s1/img0000.png"
    assert all(p.is_absolute() for p in frames.images)
    first = frames.load_image(0)
    assert first.shape == (480, 640, 3) and first.dtype == np.uint8
    # The first CSV row, as SOURCE.md prints it.
    np.testing.assert_allclose(frames.keypoints[0, 0], [21.521, 265.428], rtol=1e-6)


@pytest.mark.parametrize("name", ["CollectedData_Pranav.h5", "CollectedData_Pranav.csv"])
def test_openfield_single_label_file_finds_project_root(name):
    frames = load_dlc_project(data_path("dlc-openfield", "labeled-data", "m4s1", name))
    whole = _openfield()
    assert frames.root == whole.root
    assert frames.images == whole.images
    np.testing.assert_array_equal(frames.keypoints, whole.keypoints)


def test_reaching_mixed_sizes_and_missing_labels():
    frames = load_dlc_project(data_path("dlc-reaching"))
    assert len(frames) == 55
    assert frames.bodyparts == ("Hand", "Finger1", "Tongue", "Joystick1", "Joystick2")
    missing = np.isnan(frames.keypoints).any(axis=-1).sum(axis=0)
    np.testing.assert_array_equal(missing, [1, 1, 40, 0, 0])
    assert frames.skeleton == (("Hand", "Finger1"), ("Joystick1", "Joystick2"))
    small = {"033", "038", "040", "046", "090", "116", "119", "141", "145", "152", "167"}
    small |= {"179", "213", "231", "237"}
    for path, size in zip(frames.images, frames.image_sizes, strict=True):
        expected = [640, 470] if path.stem[3:] in small else [832, 747]
        assert list(size) == expected, path
    i = [p.stem for p in frames.images].index("img033")
    assert frames.load_image(i).shape == (470, 640, 3)


def test_lightning_pose_single_channel_frames():
    frames = load_dlc_project(data_path("lp-mirror-mouse"))
    assert len(frames) == 90  # img00, img91, img92 have no label row
    names = {p.name for p in frames.images}
    assert "img00.png" not in names and "img90.png" in names
    assert len(frames.bodyparts) == 17
    assert frames.flip_pairs == ()  # paw1LH_top has no "paw1RH_top" partner
    missing = dict(zip(frames.bodyparts, np.isnan(frames.keypoints[..., 0]).sum(0), strict=True))
    expected = {"obs_top": 35, "obsHigh_bot": 36, "obsLow_bot": 35, "tailMid_top": 12}
    expected |= {"tailBase_top": 8, "paw1LH_top": 2, "paw2LF_top": 2, "paw4RH_top": 2}
    expected |= {"paw4RH_bot": 1, "tailMid_bot": 1}
    assert missing == {b: expected.get(b, 0) for b in frames.bodyparts}
    image = frames.load_image(0)
    assert image.shape == (406, 396, 3)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    # The CSV given directly: its index is relative to its own folder.
    alone = load_dlc_project(data_path("lp-mirror-mouse", "CollectedData.csv"))
    assert alone.images == frames.images


# --------------------------------------------------------------------------------------------
# Projects written here: DLC 3 index, config checks, bad files


def _write_project(
    root: Path,
    *,
    config_parts: list[str] | None,
    label_parts: list[str],
    three_columns: bool = False,
    num_frames: int = 3,
    extra_config: str = "",
) -> Path:
    """A tiny DLC project: 40x30 frames, a CSV with `label_parts`, and optionally a config."""
    video = root / "labeled-data" / "vid1"
    video.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(num_frames):
        cv2.imwrite(str(video / f"img{i:03d}.png"), rng.integers(0, 255, (30, 40, 3), np.uint8))
        values = ",".join(f"{v:.2f}" for v in rng.uniform(5, 25, 2 * len(label_parts)))
        index = (
            f"labeled-data,vid1,img{i:03d}.png"
            if three_columns
            else (f"labeled-data/vid1/img{i:03d}.png")
        )
        rows.append(f"{index},{values}")
    pad = ",," if three_columns else ""
    header = [
        "scorer" + pad + ",me" * 2 * len(label_parts),
        "bodyparts" + pad + "".join(f",{b},{b}" for b in label_parts),
        "coords" + pad + ",x,y" * len(label_parts),
    ]
    (video / "CollectedData_me.csv").write_text("\n".join(header + rows) + "\n")
    if config_parts is not None:
        parts = "\n".join(f"- {b}" for b in config_parts)
        (root / "config.yaml").write_text(f"Task: t\nbodyparts:\n{parts}\n{extra_config}")
    return video / "CollectedData_me.csv"


def test_deeplabcut3_three_column_index(tmp_path):
    _write_project(tmp_path, config_parts=["a", "b"], label_parts=["a", "b"], three_columns=True)
    frames = load_dlc_project(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in frames.images] == [
        f"labeled-data/vid1/img{i:03d}.png" for i in range(3)
    ]
    assert (frames.image_sizes == [40, 30]).all()


def test_label_file_with_unknown_bodypart(tmp_path):
    labels = _write_project(tmp_path, config_parts=["a", "b"], label_parts=["a", "b", "tail"])
    with pytest.raises(DatasetError, match=r"CollectedData_me\.csv.*\['tail'\]"):
        load_dlc_project(tmp_path)
    assert labels.is_file()


def test_config_bodypart_without_labels_is_nan_with_warning(tmp_path):
    _write_project(tmp_path, config_parts=["a", "nose", "b"], label_parts=["b", "a"])
    with pytest.warns(UserWarning, match=r"CollectedData_me\.csv.*'nose'"):
        frames = load_dlc_project(tmp_path)
    assert frames.bodyparts == ("a", "nose", "b")  # the config's order, not the file's
    assert np.isnan(frames.keypoints[:, 1]).all()
    assert np.isfinite(frames.keypoints[:, [0, 2]]).all()


def test_bodyparts_selection(tmp_path):
    _write_project(tmp_path, config_parts=["a", "b", "c"], label_parts=["a", "b", "c"])
    every = load_dlc_project(tmp_path)
    frames = load_dlc_project(tmp_path, bodyparts=["c", "a"])
    assert frames.bodyparts == ("c", "a")
    np.testing.assert_array_equal(frames.keypoints, every.keypoints[:, [2, 0]])
    with pytest.raises(DatasetError, match=r"config\.yaml.*\['ear'\]"):
        load_dlc_project(tmp_path, bodyparts=["a", "ear"])


def test_missing_image_names_image_and_label_file(tmp_path):
    labels = _write_project(tmp_path, config_parts=["a"], label_parts=["a"])
    (labels.parent / "img001.png").unlink()
    with pytest.raises(DatasetError, match=r"img001\.png.*CollectedData_me\.csv"):
        load_dlc_project(tmp_path)


def test_corrupt_image_names_file(tmp_path):
    labels = _write_project(tmp_path, config_parts=["a"], label_parts=["a"])
    # Garbage is caught while loading (no image header to read the size from).
    (labels.parent / "img001.png").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"img001\.png.*cannot decode"):
        load_dlc_project(tmp_path)
    # A truncated PNG has a valid header: caught when the image is decoded.
    good = (labels.parent / "img000.png").read_bytes()
    (labels.parent / "img001.png").write_bytes(good[: len(good) // 2])
    frames = load_dlc_project(tmp_path)
    with pytest.raises(DatasetError, match=r"img001\.png.*cannot decode.*CollectedData_me"):
        frames.load_image(1)
    with pytest.raises(DatasetError, match=r"img001\.png"):
        frames.check_images()
    assert frames.load_image(0).shape == (30, 40, 3)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_image_size_from_header_matches_decoded(tmp_path, suffix):
    path = tmp_path / f"frame{suffix}"
    cv2.imwrite(str(path), np.full((30, 41), 128, np.uint8))  # grey, one channel on disk
    assert image_size(path) == (41, 30)
    image = read_image(path)
    assert image.shape == (30, 41, 3) and abs(int(image.mean()) - 128) <= 2


def test_no_label_files(tmp_path):
    (tmp_path / "config.yaml").write_text("bodyparts: [a]\n")
    with pytest.raises(DatasetError, match="no label files"):
        load_dlc_project(tmp_path)


def test_flip_pairs_from_config_and_bad_names(tmp_path):
    _write_project(
        tmp_path,
        config_parts=["nose", "pawA", "pawB"],
        label_parts=["nose", "pawA", "pawB"],
        extra_config="flip_pairs: [[pawB, pawA]]\n",
    )
    assert load_dlc_project(tmp_path).flip_pairs == ((1, 2),)
    text = (tmp_path / "config.yaml").read_text().replace("[pawB, pawA]", "[pawB, tail]")
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(DatasetError, match=r"config\.yaml.*'tail'"):
        load_dlc_project(tmp_path)


@pytest.mark.parametrize(
    "names, pairs",
    [
        (["snout", "leftear", "rightear", "tailbase"], ((1, 2),)),
        (["Left_paw", "nose", "Right_paw"], ((0, 2),)),
        (["ear_L", "ear_R", "earL", "earR", "L_eye", "R_eye"], ((0, 1), (2, 3), (4, 5))),
        (["paw1LH_top", "paw2LF_top", "paw3RF_top", "paw4RH_top", "nose_top"], ()),
        (["leftear", "tail"], ()),
    ],
)
def test_infer_flip_pairs(names, pairs):
    assert infer_flip_pairs(names) == pairs


# --------------------------------------------------------------------------------------------
# Split


def test_split_is_seeded_and_complete():
    frames = _openfield()
    train, test = frames.split(0.5, seed=3)
    assert (len(train), len(test)) == (58, 58)
    assert not set(train.images) & set(test.images)
    again_train, _ = frames.split(0.5, seed=3)
    assert again_train.images == train.images
    other_train, _ = frames.split(0.5, seed=4)
    assert other_train.images != train.images
    idx_train, idx_test = split_indices(116, 0.95, 1)
    assert (len(idx_train), len(idx_test)) == (110, 6)
    assert sorted([*idx_train, *idx_test]) == list(range(116))
    np.testing.assert_array_equal(frames.subset(idx_test).keypoints, frames.keypoints[idx_test])
    with pytest.raises(ValueError, match="train_fraction"):
        split_indices(10, 0.0, 0)


# --------------------------------------------------------------------------------------------
# Affine maps


def test_affine_inverse_and_box_edges():
    rng = np.random.default_rng(0)
    affines = np.concatenate(
        [rng.normal(size=(5, 2, 2)) + 2 * np.eye(2), rng.normal(size=(5, 2, 1))], -1
    )
    points = rng.uniform(-100, 100, (5, 7, 2))
    back = apply_affine(invert_affine(affines), apply_affine(affines, points))
    np.testing.assert_allclose(back, points, atol=1e-9)
    # The box's outer edges land on the output's outer pixel edges.
    box = box_affine((50.0, 20.0), 40.0, 64)
    np.testing.assert_allclose(
        apply_affine(box, np.array([[30.0, 0.0], [70.0, 40.0]])), [[-0.5, -0.5], [63.5, 63.5]]
    )
    # Letterbox: a 640x480 frame's corners and centre.
    box = letterbox_affine((640, 480), 256)
    corners = apply_affine(box, np.array([[-0.5, -0.5], [639.5, 479.5], [319.5, 239.5]]))
    np.testing.assert_allclose(corners, [[-0.5, 31.5], [255.5, 223.5], [127.5, 127.5]])


def test_frame_to_input_letterboxes_grey_frames():
    frame = np.full((30, 60), 200, np.uint8)
    image, affine = frame_to_input(frame, 32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    # 60 -> 32 wide, 30 -> 16 rows tall, centred: rows 8..23 are the frame, the rest black.
    assert (image[9:23] == 200).all() and (image[:7] == 0).all() and (image[25:] == 0).all()
    np.testing.assert_allclose(apply_affine(affine, np.array([[29.5, 14.5]])), [[15.5, 15.5]])


# --------------------------------------------------------------------------------------------
# Augmentation


COLOURS = np.eye(3, dtype=np.float64) * 255  # keypoint k is a dot in channel k


def _dots(size, points, sigma=4.0) -> np.ndarray:
    """(H, W, 3) uint8 black frame with a Gaussian dot of channel k at keypoint k."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3))
    for k, (px, py) in enumerate(points):
        image[..., k] += 255 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma**2))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _centroid(channel: np.ndarray) -> np.ndarray:
    weights = np.where(channel > 20, channel.astype(np.float64), 0.0)
    y, x = np.indices(channel.shape)
    return np.array([(x * weights).sum(), (y * weights).sum()]) / weights.sum()


@pytest.mark.parametrize("crop, size", [(True, 64), (False, 96)])
def test_dots_follow_keypoints(crop, size):
    """Rotation, scale, shift, flip and shrinking move the content exactly as the keypoints."""
    points = np.array([[100.3, 80.7], [180.6, 95.2], [140.1, 150.9]])  # left, right, nose
    image = _dots((300, 220), points)
    config = AugmentConfig(
        input_size=size, crop=crop, crop_margin=0.5, rotation=180, scale=(0.7, 1.3),
        translate=0.05, flip=0.5, **GEOMETRY_ONLY,
    )  # fmt: skip
    augment = Augmenter(config, flip_pairs=[(0, 1)])
    checked, flips = 0, 0
    for seed in range(12):
        out, keypoints, affine = augment(image, points, np.random.default_rng(seed), train=True)
        flipped = np.linalg.det(affine[:, :2]) < 0
        flips += flipped
        for k in range(3):
            # After a flip the dot drawn for the right ear is the left ear's new place.
            colour = {0: 1, 1: 0, 2: 2}[k] if flipped else k
            if (
                np.isfinite(keypoints[k]).all()
                and (4 < keypoints[k]).all()
                and (keypoints[k] < size - 5).all()
            ):
                np.testing.assert_allclose(_centroid(out[..., colour]), keypoints[k], atol=0.15)
                checked += 1
    assert checked >= 30 and 0 < flips < 12


def test_eval_crop_holds_every_labelled_point_and_maps_back():
    frames = _openfield()
    augment = Augmenter(AugmentConfig(input_size=64))
    for i in (0, 57, 115):
        out, keypoints, affine = augment(frames.load_image(i), frames.keypoints[i], train=False)
        assert out.shape == (64, 64, 3)
        assert np.isfinite(keypoints).all()
        np.testing.assert_allclose(
            apply_affine(invert_affine(affine), keypoints), frames.keypoints[i], atol=1e-3
        )
        again = augment(frames.load_image(i), frames.keypoints[i], train=False)
        np.testing.assert_array_equal(again.image, out)  # eval mode is deterministic


def test_points_pushed_outside_become_nan():
    points = np.array([[10.0, 10.0], [90.0, 90.0], [50.0, 50.0], [np.nan, np.nan]])
    image = np.zeros((100, 100, 3), np.uint8)
    config = AugmentConfig(input_size=32, scale=(3.0, 3.0), rotation=0, translate=0)
    _, keypoints, affine = Augmenter(config)(image, points, np.random.default_rng(0), train=True)
    mapped = apply_affine(affine, points)
    # A 3x zoom about the crop centre keeps only the middle point.
    assert np.isnan(keypoints[[0, 1, 3]]).all()
    np.testing.assert_allclose(keypoints[2], mapped[2], atol=1e-4)


def test_unlabelled_frame_and_crop_false_use_the_letterbox_of_inference():
    frame = np.random.default_rng(0).integers(0, 255, (48, 80, 3), np.uint8)
    letterboxed, affine = frame_to_input(frame, 32)
    nothing = np.full((2, 2), np.nan)
    for config in (AugmentConfig(input_size=32), AugmentConfig(input_size=32, crop=False)):
        out, keypoints, eval_affine = Augmenter(config)(frame, nothing, train=False)
        np.testing.assert_allclose(eval_affine, affine)
        np.testing.assert_array_equal(out, letterboxed)
        assert np.isnan(keypoints).all()


def test_same_seed_same_sample_and_grey_stays_grey():
    frames = load_dlc_project(data_path("lp-mirror-mouse"))
    config = AugmentConfig(input_size=64, blur_prob=0.5, noise_prob=0.5, cutout_prob=0.5)
    augment = Augmenter(config)
    image, points = frames.load_image(3), frames.keypoints[3]
    a = augment(image, points, np.random.default_rng(7), train=True)
    b = augment(image, points, np.random.default_rng(7), train=True)
    c = augment(image, points, np.random.default_rng(8), train=True)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert not np.array_equal(a.image, c.image)
    for sample in (a, c):  # grey content: photometric changes act on all channels alike
        assert (sample.image[..., 0] == sample.image[..., 2]).all()
    assert np.isnan(a.keypoints[np.isnan(points).any(-1)]).all()  # unlabelled stays NaN


def test_bad_augment_config():
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="flip"):
        AugmentConfig(flip=1.5)
    assert AugmentConfig(scale=[0.9, 1.1]).scale == (0.9, 1.1)  # Hydra passes lists


# --------------------------------------------------------------------------------------------
# Batches


def test_batches_layout_and_normalisation():
    frames = _openfield().subset(range(10))
    augment = Augmenter(AugmentConfig(input_size=32))
    batches = list(iterate_batches(frames, augment, 4, seed=0, train=False))
    assert [b["image"].shape[0] for b in batches] == [4, 4, 2]  # eval: one pass, in order
    first = batches[0]
    assert first["image"].shape == (4, 32, 32, 3) and first["image"].dtype == np.float32
    assert first["keypoints"].shape == (4, 4, 2) and first["affine"].shape == (4, 2, 3)
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), np.arange(10))
    expected = augment(frames.load_image(1), frames.keypoints[1], train=False)
    np.testing.assert_allclose(first["image"][1], normalize_images(expected.image), atol=1e-5)
    np.testing.assert_array_equal(denormalize_images(first["image"][1]), expected.image)
    np.testing.assert_allclose(
        normalize_images(np.full(3, 255, np.uint8)), (1 - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-6
    )


def test_training_batches_are_deterministic_across_threads_and_resume():
    frames = _openfield().subset(range(10))
    augment = Augmenter(AugmentConfig(input_size=32, flip=0.5), flip_pairs=frames.flip_pairs)
    run = lambda **kw: list(iterate_batches(frames, augment, 4, seed=5, train=True, **kw))
    serial = run(steps=6, workers=0)
    threaded = run(steps=6, workers=2, prefetch=3)
    resumed = run(steps=6, workers=1, start_step=4)
    assert len(serial) == 6
    for a, b in zip(serial, threaded, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for a, b in zip(serial[4:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    # Full batches across epoch ends; each epoch a fresh permutation of all 10 frames.
    order = np.concatenate([b["index"] for b in serial])
    assert sorted(order[:10]) == list(range(10)) and sorted(order[10:20]) == list(range(10))
    assert not np.array_equal(order[:10], order[10:20])
    other = list(iterate_batches(frames, augment, 4, seed=6, train=True, steps=1, workers=0))
    assert not np.array_equal(other[0]["image"], serial[0]["image"])
    assert len(iterate_batches(frames, augment, 4, seed=0, train=True, epochs=2)) == 5


def test_batches_report_corrupt_image_from_worker(tmp_path):
    labels = _write_project(tmp_path, config_parts=["a"], label_parts=["a"])
    good = (labels.parent / "img000.png").read_bytes()
    (labels.parent / "img002.png").write_bytes(good[:60])
    frames = load_dlc_project(tmp_path)
    batches = iterate_batches(
        frames, Augmenter(AugmentConfig(input_size=16)), 2, seed=0, train=False, workers=1
    )
    with pytest.raises(DatasetError, match=r"img002\.png"):
        list(batches)


def test_loading_is_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dlc_project(data_path("dlc-reaching"))
