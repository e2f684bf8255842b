"""Scale consistency between training windows and whole-frame analysis.

`AugmentConfig(crop_mode="fixed_scale", scale_factor=s)` trains on S x S windows of the frame
resampled by s; `frame_to_input(image, scale_factor=s)` gives the fully convolutional network the
whole frame resized by s. The animal must have the same size in px in both.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from jaxpose.data import (
    AugmentConfig,
    Augmenter,
    apply_affine,
    frame_to_input,
    invert_affine,
    padded_size,
    scaled_frame_affine,
)

NO_GEOMETRY = {
    "rotation": 0.0,
    "scale": (1.0, 1.0),
    "translate": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "blur_prob": 0.0,
    "noise_prob": 0.0,
    "cutout_prob": 0.0,
}


def textured_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture (so bilinear and area resampling agree closely), uint8 RGB."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def dot_frame(width: int, height: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    c = (int(round(centre[0] * 16)), int(round(centre[1] * 16)))
    cv2.circle(frame, c, int(radius * 16), (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    return frame


def centroid(image: np.ndarray) -> np.ndarray:
    """(x, y) intensity-weighted centroid, in the pixel-centre convention."""
    weight = image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


# ---------------------------------------------------------------------------------------------
# Whole frames at a fixed scale


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.75, 1.5])
def test_whole_frame_is_resized_and_padded_to_a_multiple_of_32(scale):
    frame = dot_frame(200, 130, (57.3, 81.6), radius=6)
    image, affine = frame_to_input(frame, scale_factor=scale)
    new_w, new_h = round(200 * scale), round(130 * scale)
    assert image.shape == (*padded_size((new_h, new_w), 32), 3)
    assert image.shape[0] % 32 == 0 and image.shape[1] % 32 == 0
    assert image[new_h:].max() == 0 and image[:, new_w:].max() == 0  # black padding
    np.testing.assert_allclose(np.diag(affine[:, :2]), [new_w / 200, new_h / 130])
    # the dot lands where the affine maps its centre
    expected = apply_affine(affine, np.array([[57.3, 81.6]]))[0]
    np.testing.assert_allclose(centroid(image), expected, atol=0.05 * max(scale, 1))
    back = apply_affine(invert_affine(affine), expected[None])[0]
    np.testing.assert_allclose(back, [57.3, 81.6], atol=1e-9)


def test_scale_one_only_pads():
    frame = textured_frame(100, 70)
    image, affine = frame_to_input(frame, scale_factor=1.0, multiple=16)
    assert image.shape == (80, 112, 3)
    np.testing.assert_array_equal(image[:70, :100], frame)
    np.testing.assert_array_equal(affine, [[1, 0, 0], [0, 1, 0]])


def test_grey_frames_and_argument_checks():
    grey = textured_frame(64, 48)[..., 0]
    image, _ = frame_to_input(grey, scale_factor=0.5)
    assert image.shape == (32, 32, 3) and np.all(image[..., 0] == image[..., 2])
    with pytest.raises(ValueError, match="exactly one of input_size or scale_factor"):
        frame_to_input(grey)
    with pytest.raises(ValueError, match="exactly one of input_size or scale_factor"):
        frame_to_input(grey, 32, scale_factor=1.0)
    with pytest.raises(ValueError, match="scale_factor must be positive"):
        scaled_frame_affine((64, 48), 0.0)
    # the letterbox form is unchanged
    letterboxed, affine = frame_to_input(grey, 32)
    assert letterboxed.shape == (32, 32, 3) and affine.shape == (2, 3)


# ---------------------------------------------------------------------------------------------
# The fixed-scale crop mode


def test_crop_mode_maps_the_old_crop_flag():
    assert AugmentConfig().crop_mode == "keypoints"
    assert AugmentConfig(crop=False).crop_mode == "letterbox"
    letterbox = AugmentConfig(crop_mode="letterbox")
    assert letterbox.crop is False
    fixed = AugmentConfig(crop_mode="fixed_scale", scale_factor=0.5)
    assert fixed.crop is True and fixed.scale_factor == 0.5
    with pytest.raises(ValueError, match="crop_mode must be one of keypoints, fixed_scale"):
        AugmentConfig(crop_mode="animal")
    # crop_mode wins over the older flag (a letterbox configuration switching to fixed_scale)
    assert AugmentConfig(crop=False, crop_mode="fixed_scale").crop is True
    with pytest.raises(ValueError, match="scale_factor must be positive"):
        AugmentConfig(crop_mode="fixed_scale", scale_factor=-1.0)
    with pytest.raises(ValueError, match="crop_jitter must be >= 0"):
        AugmentConfig(crop_jitter=-0.1)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_eval_window_is_a_window_of_the_whole_frame_analysis(scale):
    frame = textured_frame(320, 240, seed=1)
    keypoints = np.array([[151.2, 101.7], [190.4, 140.9], [np.nan, np.nan]])
    size = 64
    config = AugmentConfig(input_size=size, crop_mode="fixed_scale", scale_factor=scale)
    augmenter = Augmenter(config)
    window = augmenter(frame, keypoints, train=False)
    whole, whole_affine = frame_to_input(frame, scale_factor=scale)
    # same scale, offset by a whole number of px: the window is a slice of the whole frame
    np.testing.assert_allclose(window.affine[:, :2], whole_affine[:, :2])
    offset = whole_affine[:, 2] - window.affine[:, 2]
    np.testing.assert_allclose(offset, np.round(offset), atol=1e-9)
    x0, y0 = np.round(offset).astype(int)
    part = whole[y0 : y0 + size, x0 : x0 + size]
    difference = np.abs(part.astype(int) - window.image.astype(int))
    if scale == 1.0:
        np.testing.assert_array_equal(difference, 0)
    else:
        # warp_image area-shrinks a region then warps it bilinearly (a little blur), the whole
        # frame is area-shrunk once; a window off by one px differs by about 20 grey levels.
        assert difference.mean() < 5.0
    np.testing.assert_allclose(
        window.keypoints[:2], apply_affine(whole_affine, keypoints[:2]) - offset, atol=1e-4
    )
    assert np.isnan(window.keypoints[2]).all()
    # the labelled animal is centred (to the nearest output px)
    centre = np.nanmean(window.keypoints[:2], axis=0)
    np.testing.assert_allclose(centre, (size - 1) / 2, atol=0.5 + 1e-6)


def test_training_windows_keep_the_scale_and_jitter_the_position():
    frame = textured_frame(400, 300)
    keypoints = np.array([[180.0, 140.0], [220.0, 160.0]])
    size, jitter = 64, 0.25
    config = AugmentConfig(
        input_size=size, crop_mode="fixed_scale", scale_factor=0.5, crop_jitter=jitter,
        **NO_GEOMETRY,
    )  # fmt: skip
    augmenter = Augmenter(config)
    centres = []
    for seed in range(40):
        sample = augmenter(frame, keypoints, np.random.default_rng(seed), train=True)
        np.testing.assert_allclose(sample.affine[:, :2], 0.5 * np.eye(2))
        # the distance between the two points is scaled by exactly 0.5
        distance = np.linalg.norm(sample.keypoints[0] - sample.keypoints[1])
        assert distance == pytest.approx(0.5 * np.hypot(40, 20), rel=1e-5)
        centres.append(sample.keypoints.mean(axis=0))
    shifts = np.array(centres) - (size - 1) / 2
    assert np.abs(shifts).max() <= jitter * size + 0.5 + 1e-6  # at most a quarter window off
    assert np.abs(shifts).max() > 0.5 * jitter * size  # and not always centred
    assert shifts.std(axis=0).min() > 0.1 * jitter * size


def test_training_window_without_labels_lies_anywhere_in_the_frame():
    frame = textured_frame(400, 300)
    keypoints = np.full((3, 2), np.nan)
    augmenter = Augmenter(
        AugmentConfig(input_size=64, crop_mode="fixed_scale", scale_factor=1.0, **NO_GEOMETRY)
    )
    centres = []
    for seed in range(30):
        sample = augmenter(frame, keypoints, np.random.default_rng(seed), train=True)
        assert np.isnan(sample.keypoints).all()
        centres.append(apply_affine(invert_affine(sample.affine), np.array([[31.5, 31.5]]))[0])
    centres = np.array(centres)
    assert (centres >= -1).all() and (centres <= [400, 300]).all()
    assert np.ptp(centres[:, 0]) > 150 and np.ptp(centres[:, 1]) > 100
    # eval mode: the frame's centre, deterministic
    a = augmenter(frame, keypoints, train=False).affine
    np.testing.assert_array_equal(a, augmenter(frame, keypoints, train=False).affine)


def test_other_crop_modes_draw_no_extra_randomness():
    """Adding the fixed-scale window must not change the random stream of the old modes."""
    frame = textured_frame(200, 150)
    keypoints = np.array([[80.0, 60.0], [120.0, 90.0]])
    for config in (AugmentConfig(input_size=32), AugmentConfig(input_size=32, crop=False)):
        augmenter = Augmenter(config)
        rng = np.random.default_rng(3)
        augmenter(frame, keypoints, rng, train=True)
        reference = np.random.default_rng(3)
        augmenter._random_geometry(reference)
        augmenter._photometric(np.zeros((32, 32, 3), np.uint8), reference)
        assert rng.bit_generator.state == reference.bit_generator.state
