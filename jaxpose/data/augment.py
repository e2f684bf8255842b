"""On-the-fly augmentation of labelled frames with NumPy and OpenCV.

Every geometric step (crop around the animal, resize to the network input, rotation, scale,
translation, horizontal flip) is one affine map from original pixels to output pixels, applied
to the image in a single `cv2.warpAffine` and to the keypoints by the same matrix, so image and
labels cannot drift apart and the map can be inverted to bring predictions back to the frame.

Pixel convention (OpenCV's): integer coordinates are pixel centres, pixel i covers
[i - 0.5, i + 0.5]. A box of side s centred at c therefore maps onto an S-pixel output by
x' = (x - c) * S / s + (S - 1) / 2, so that the box edges land on the output's outer edges.

Crop modes (`AugmentConfig.crop_mode`) and the scale the network sees:

- ``"keypoints"``: a square around the labelled points, resized to S. The animal's size in the
  input depends on its pose (a curled-up mouse fills the input as a stretched one does), which
  no whole-frame analysis can reproduce without labels.
- ``"letterbox"``: the whole frame fitted into S; the scale is S / max(width, height).
- ``"fixed_scale"``: an S x S window of the frame resampled by ``scale_factor`` (output px per
  original px), placed around the labelled animal (jittered in training). The animal has the same
  size in px as in a whole frame resized by ``scale_factor``, which is what video analysis feeds
  the fully convolutional network (`frame_to_input(image, scale_factor=...)`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

# ---------------------------------------------------------------------------------------------
# Affine maps: (..., 2, 3) matrices acting on (x, y, 1)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points by affine matrices; NaN points stay NaN.

    Args:
        affine: (..., 2, 3).
        points: (..., K, 2), batch axes broadcasting against `affine`'s.

    Returns:
        (..., K, 2) float64 (float32 if both inputs are float32).
    """
    affine = np.asarray(affine)
    points = np.asarray(points)
    linear = affine[..., :2]  # (..., 2, 2)
    return np.einsum("...ij,...kj->...ki", linear, points) + affine[..., None, :, 2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The inverse map: output px -> original px when `affine` is original -> output.

    Args:
        affine: (..., 2, 3), invertible.

    Returns:
        (..., 2, 3).
    """
    affine = np.asarray(affine)
    linear_inv = np.linalg.inv(affine[..., :2])
    shift = -np.einsum("...ij,...j->...i", linear_inv, affine[..., 2])
    return np.concatenate([linear_inv, shift[..., None]], axis=-1)


def _homogeneous(affine: np.ndarray) -> np.ndarray:
    out = np.eye(3)
    out[:2] = affine
    return out


def box_affine(center: Sequence[float], side: float, output_size: int) -> np.ndarray:
    """The (2, 3) map taking the square box (center, side) in original px onto the output.

    The box's outer edges land on the output's outer pixel edges ([-0.5, S - 0.5]).
    """
    scale = output_size / float(side)
    half = (output_size - 1) / 2.0
    return np.array(
        [
            [scale, 0.0, half - scale * center[0]],
            [0.0, scale, half - scale * center[1]],
        ]
    )


def letterbox_affine(image_size: Sequence[int], output_size: int) -> np.ndarray:
    """(2, 3) map fitting a whole (width, height) frame into the square output, centred.

    The longer side fills the output; the shorter is padded equally on both sides.
    """
    width, height = image_size
    return box_affine(((width - 1) / 2.0, (height - 1) / 2.0), max(width, height), output_size)


def crop_box(
    keypoints: np.ndarray,
    image_size: Sequence[int],
    *,
    margin: float,
    min_size: float,
) -> tuple[np.ndarray, float]:
    """Square box around the labelled keypoints, for cropping the animal out of a frame.

    Args:
        keypoints: (K, 2) original px, NaN = unlabelled.
        image_size: (width, height) of the frame.
        margin: added on every side, as a fraction of the labelled points' longer extent.
        min_size: smallest box side, as a fraction of the frame's longer side (one labelled
            point, or points close together, would otherwise give a tiny box).

    Returns:
        (center (2,), side). With no labelled point: the letterbox of the whole frame.
    """
    width, height = image_size
    labelled = np.asarray(keypoints, dtype=np.float64)
    labelled = labelled[np.isfinite(labelled).all(axis=-1)]
    if not len(labelled):
        return np.array([(width - 1) / 2.0, (height - 1) / 2.0]), float(max(width, height))
    low, high = labelled.min(axis=0), labelled.max(axis=0)
    extent = float((high - low).max())
    side = max(extent * (1.0 + 2.0 * margin), min_size * max(width, height), 1.0)
    return (low + high) / 2.0, side


# ---------------------------------------------------------------------------------------------
# Warping


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.ndim == 3 and image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    if image.ndim == 3 and image.shape[-1] == 4:
        return image[..., :3]
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got {image.shape}")
    return image


def warp_image(
    image: np.ndarray,
    affine: np.ndarray,
    output_size: int,
    *,
    antialias: bool = True,
) -> np.ndarray:
    """Resample `image` onto an (S, S) output through `affine` (original px -> output px).

    Outside the frame is black. Shrinking by more than 1.5x first area-averages the needed part
    of the frame (`cv2.resize` INTER_AREA) so that fine texture does not alias, then warps the
    smaller image; the composite map is the same.

    Args:
        image: (H, W, 3) uint8 (grey (H, W) or (H, W, 1) is repeated to 3 channels).
        affine: (2, 3) original px -> output px.
        output_size: S.

    Returns:
        (S, S, 3) uint8.
    """
    image = _as_rgb(image)
    affine = np.asarray(affine, dtype=np.float64)
    size = (output_size, output_size)
    scale = math.sqrt(abs(np.linalg.det(affine[:, :2])))
    if antialias and scale < 1 / 1.5:
        # Only the part of the frame the output sees (its inverse-mapped corners) is shrunk.
        corners = np.array([[-0.5, -0.5], [output_size - 0.5, -0.5], [-0.5, output_size - 0.5]])
        corners = np.concatenate([corners, [[output_size - 0.5] * 2]])
        seen = apply_affine(invert_affine(affine), corners)
        height, width = image.shape[:2]
        x0, y0 = np.clip(np.floor(seen.min(axis=0)).astype(int) - 2, 0, [width, height])
        x1, y1 = np.clip(np.ceil(seen.max(axis=0)).astype(int) + 3, 0, [width, height])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return np.zeros((output_size, output_size, 3), np.uint8)
        roi = image[y0:y1, x0:x1]
        new_w = max(1, round((x1 - x0) * scale))
        new_h = max(1, round((y1 - y0) * scale))
        small = cv2.resize(roi, (new_w, new_h), interpolation=cv2.INTER_AREA)
        # cv2.resize maps pixel centres: x_roi = (x_small + 0.5) * sx - 0.5.
        sx, sy = (x1 - x0) / new_w, (y1 - y0) / new_h
        small_to_original = np.array(
            [[sx, 0.0, 0.5 * sx - 0.5 + x0], [0.0, sy, 0.5 * sy - 0.5 + y0], [0.0, 0.0, 1.0]]
        )
        matrix = (_homogeneous(affine) @ small_to_original)[:2]
        image = small
    else:
        matrix = affine
    return cv2.warpAffine(
        image,
        matrix,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def scaled_frame_affine(
    image_size: Sequence[int], scale_factor: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """The map of a whole frame resized by `scale_factor` (as `cv2.resize` does it).

    The resized frame is round(width * s) x round(height * s) px; the exact per-axis scale is
    that size over the original's, and pixel centres map as x' = (x + 0.5) * s_x - 0.5.

    Args:
        image_size: (width, height) of the frame.
        scale_factor: output px per original px, > 0.

    Returns:
        (affine (2, 3) original px -> resized px, (resized width, resized height)).
    """
    if not scale_factor > 0:
        raise ValueError(f"scale_factor must be positive, got {scale_factor}")
    width, height = (int(v) for v in image_size)
    new_w = max(1, round(width * scale_factor))
    new_h = max(1, round(height * scale_factor))
    sx, sy = new_w / width, new_h / height
    affine = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    return affine, (new_w, new_h)


def padded_size(size: Sequence[int], multiple: int) -> tuple[int, int]:
    """(width, height) rounded up to a multiple of `multiple` (the network's deepest stride)."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    return tuple(-(-int(v) // multiple) * multiple for v in size)


def frame_to_input(
    image: np.ndarray,
    input_size: int | None = None,
    *,
    scale_factor: float | None = None,
    multiple: int = 32,
    antialias: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Prepare a whole frame without labels (video analysis) for the network.

    Two ways, exactly one of `input_size` / `scale_factor`:

    - `input_size` S: letterboxed into an (S, S) input (the longer side fills it).
    - `scale_factor` s: the whole frame resized by s, then padded with black at the right and
      bottom to a multiple of `multiple`, for a fully convolutional network that trained on
      `crop_mode="fixed_scale"` windows at the same s: the animal has the same size in px.

    Args:
        image: (H, W, 3) or (H, W) uint8.
        input_size: S (letterbox).
        scale_factor: output px per original px (whole frame).
        multiple: the padded size is a multiple of this (the backbone's deepest stride).
        antialias: area-average when shrinking by more than 1.5x, as `warp_image` (training).

    Returns:
        (image (S, S, 3) or (H', W', 3) uint8, affine (2, 3) original px -> input px). Map
        predictions back with `apply_affine(invert_affine(affine), keypoints)`.
    """
    if (input_size is None) == (scale_factor is None):
        raise ValueError("frame_to_input needs exactly one of input_size or scale_factor")
    image = _as_rgb(image)
    if input_size is not None:
        affine = letterbox_affine((image.shape[1], image.shape[0]), input_size)
        return warp_image(image, affine, input_size, antialias=antialias), affine
    affine, (new_w, new_h) = scaled_frame_affine((image.shape[1], image.shape[0]), scale_factor)
    if (new_w, new_h) != (image.shape[1], image.shape[0]):
        # The same filter choice as warp_image, so training windows and whole frames match.
        shrink = antialias and scale_factor < 1 / 1.5
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    pad_w, pad_h = padded_size((new_w, new_h), multiple)
    if (pad_w, pad_h) != (new_w, new_h):
        image = cv2.copyMakeBorder(
            image, 0, pad_h - new_h, 0, pad_w - new_w, cv2.BORDER_CONSTANT, value=(0, 0, 0)
        )
    return np.ascontiguousarray(image), affine


# ---------------------------------------------------------------------------------------------
# The augmenter


CROP_MODES = ("keypoints", "fixed_scale", "letterbox")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings; every field has a default so configs override only what differs.

    Geometry (training only, except the crop):
        input_size: side S of the square network input, px.
        crop: crop around the labelled animal (else the whole frame, letterboxed). Kept for
            configurations written before `crop_mode`: True means "keypoints", False
            "letterbox". A given `crop_mode` wins, and `crop` is set to match it.
        crop_mode: "keypoints" (a square around the labelled points, resized to S: the scale
            depends on the pose), "letterbox" (the whole frame fitted into S) or "fixed_scale"
            (an S x S window of the frame resampled by `scale_factor`, placed around the
            labelled animal: the scale video analysis of whole frames reproduces). Default
            (None): from `crop`.
        scale_factor: fixed_scale only: output px per original px.
        crop_jitter: fixed_scale only: in training the window's centre moves off the animal's
            by up to this fraction of the window side (each axis), so the animal is not always
            centred; frames without labels get a random window anywhere in the frame.
        crop_margin: added on each side of the labelled points' box, fraction of its long side.
        crop_min_size: smallest crop side, fraction of the frame's longer side.
        rotation: maximum rotation, degrees (uniform in +-rotation).
        scale: (min, max) zoom factor, log-uniform; > 1 zooms in.
        translate: maximum shift, fraction of S (uniform, each axis).
        flip: probability of a horizontal flip (left/right body parts swap through
            `flip_pairs`). Off by default: with unknown pairs a flip mislabels lateral parts.
    Appearance (training only):
        brightness: maximum additive change, fraction of full range.
        contrast: maximum relative change of contrast about the image mean.
        blur_prob, blur_sigma: probability of a Gaussian blur and its maximum sigma (px).
        noise_prob, noise_std: probability of Gaussian noise and its maximum std (fraction of
            full range); one noise field for all channels, so grey frames stay grey.
        cutout_prob, cutout_size, cutout_count: probability of occluding rectangles, their
            maximum side (fraction of S) and how many at most. Keypoints under them are kept:
            the network should learn to infer occluded parts.
    antialias: area-average before shrinking by more than 1.5x (quality; a little slower).
    """

    input_size: int = 256
    crop: bool = True
    crop_mode: str | None = None
    scale_factor: float = 1.0
    crop_jitter: float = 0.25
    crop_margin: float = 0.25
    crop_min_size: float = 0.1
    rotation: float = 25.0
    scale: tuple[float, float] = (0.8, 1.25)
    translate: float = 0.05
    flip: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    blur_prob: float = 0.1
    blur_sigma: float = 1.5
    noise_prob: float = 0.1
    noise_std: float = 0.03
    cutout_prob: float = 0.2
    cutout_size: float = 0.3
    cutout_count: int = 1
    antialias: bool = True

    def __post_init__(self):
        # Hydra hands lists (ListConfig) for tuples.
        scale = tuple(float(s) for s in self.scale)
        object.__setattr__(self, "scale", scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(
                f"AugmentConfig.scale must be (min, max) with 0 < min <= max, got {scale}"
            )
        if int(self.input_size) < 1:
            raise ValueError(f"AugmentConfig.input_size must be positive, got {self.input_size}")
        mode = self.crop_mode
        if mode is None:
            mode = "keypoints" if self.crop else "letterbox"
        if mode not in CROP_MODES:
            raise ValueError(
                f"AugmentConfig.crop_mode must be one of {', '.join(CROP_MODES)}, got {mode!r}"
            )
        # crop_mode, when given, wins over the older flag, which then follows it (so that a
        # configuration with crop: false can switch to fixed_scale by naming only crop_mode).
        object.__setattr__(self, "crop_mode", mode)
        object.__setattr__(self, "crop", mode != "letterbox")
        if not float(self.scale_factor) > 0:
            raise ValueError(
                f"AugmentConfig.scale_factor must be positive (output px per original px), "
                f"got {self.scale_factor}"
            )
        probabilities = ("flip", "blur_prob", "noise_prob", "cutout_prob")
        for name in probabilities:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"AugmentConfig.{name} must be in [0, 1], got {getattr(self, name)}"
                )
        non_negative = (
            "crop_jitter", "crop_margin", "crop_min_size", "rotation", "translate", "brightness", "contrast",
            "blur_sigma", "noise_std", "cutout_size", "cutout_count",
        )  # fmt: skip
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")


class Augmented(NamedTuple):
    """One augmented sample.

    image: (S, S, 3) uint8 RGB.
    keypoints: (K, 2) float32 output px; NaN where unlabelled or pushed outside the output.
    affine: (2, 3) float64 original px -> output px (includes any flip).
    """

    image: np.ndarray
    keypoints: np.ndarray
    affine: np.ndarray


class Augmenter:
    """Crop, resize and (in training) randomly transform labelled frames.

    Args:
        config: the settings.
        flip_pairs: (i, j) body part index pairs to swap when flipping (`LabelledFrames.
            flip_pairs`); a flip without them would label a left ear as the right one.
    """

    def __init__(
        self,
        config: AugmentConfig | None = None,
        *,
        flip_pairs: Sequence[tuple[int, int]] = (),
    ):
        self.config = config or AugmentConfig()
        self.flip_pairs = tuple((int(i), int(j)) for i, j in flip_pairs)
        self._swap = None
        if self.flip_pairs:
            top = max(max(p) for p in self.flip_pairs) + 1
            self._swap = np.arange(top)
            for i, j in self.flip_pairs:
                self._swap[i], self._swap[j] = j, i

    @property
    def input_size(self) -> int:
        return int(self.config.input_size)

    def base_affine(self, keypoints: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
        """(2, 3) deterministic map of eval mode: the crop around the labels, the fixed-scale
        window centred on them, or the letterbox."""
        return self.crop_affine(keypoints, image_size)

    def crop_affine(
        self,
        keypoints: np.ndarray,
        image_size: Sequence[int],
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """(2, 3) map original px -> output px of the crop, before the random geometry.

        Args:
            keypoints: (K, 2) original px, NaN = unlabelled.
            image_size: (width, height) of the frame.
            rng: fixed_scale mode draws the window's jitter (or, without labels, its position)
                from it; None gives the deterministic eval-mode window. The other modes never
                draw from it.
        """
        cfg = self.config
        if cfg.crop_mode == "keypoints":
            center, side = crop_box(
                keypoints, image_size, margin=cfg.crop_margin, min_size=cfg.crop_min_size
            )
            return box_affine(center, side, self.input_size)
        if cfg.crop_mode == "letterbox":
            return letterbox_affine(image_size, self.input_size)
        return self._fixed_scale_affine(keypoints, image_size, rng)

    def _fixed_scale_affine(
        self, keypoints: np.ndarray, image_size: Sequence[int], rng: np.random.Generator | None
    ) -> np.ndarray:
        """The S x S window of the frame resized by `scale_factor`, around the animal.

        The window is a pixel-aligned part of `frame_to_input(image, scale_factor=s)`'s resized
        frame (its offset is rounded to whole output px), so that with no random geometry a
        training window holds exactly the pixels whole-frame analysis sees there.
        """
        cfg, size = self.config, self.input_size
        width, height = image_size
        s = float(cfg.scale_factor)
        labelled = np.asarray(keypoints, dtype=np.float64)
        labelled = labelled[np.isfinite(labelled).all(axis=-1)]
        window = size / s  # side of the window in original px
        if len(labelled):
            center = (labelled.min(axis=0) + labelled.max(axis=0)) / 2.0
            if rng is not None:
                center = center + rng.uniform(-cfg.crop_jitter, cfg.crop_jitter, size=2) * window
        elif rng is not None:
            center = rng.uniform([0.0, 0.0], [max(width - 1, 0), max(height - 1, 0)])
        else:
            center = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
        # Whole-frame resize: x_r = s x + (s - 1) / 2; the window starts at an integer x_r.
        shift = 0.5 * s - 0.5
        offset = np.round(s * center + shift - (size - 1) / 2.0)
        return np.array([[s, 0.0, shift - offset[0]], [0.0, s, shift - offset[1]]])

    def _random_geometry(self, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """(3, 3) rotation/scale/translation/flip about the output centre, and whether flipped."""
        cfg, size = self.config, self.input_size
        angle = math.radians(rng.uniform(-cfg.rotation, cfg.rotation))
        zoom = math.exp(rng.uniform(math.log(cfg.scale[0]), math.log(cfg.scale[1])))
        shift = rng.uniform(-cfg.translate, cfg.translate, size=2) * size
        flip = bool(rng.random() < cfg.flip)
        centre = (size - 1) / 2.0
        cos, sin = zoom * math.cos(angle), zoom * math.sin(angle)
        matrix = np.array(
            [
                [cos, -sin, centre + shift[0] - cos * centre + sin * centre],
                [sin, cos, centre + shift[1] - sin * centre - cos * centre],
                [0.0, 0.0, 1.0],
            ]
        )
        if flip:  # x -> (S - 1) - x mirrors the output about its centre column
            matrix = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ matrix
        return matrix, flip

    def _photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg, size = self.config, self.input_size
        if cfg.brightness or cfg.contrast:
            gain = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
            offset = rng.uniform(-cfg.brightness, cfg.brightness) * 255.0
            mean = float(np.mean(cv2.mean(image)[:3]))
            table = np.clip((np.arange(256) - mean) * gain + mean + offset, 0, 255)
            image = cv2.LUT(image, table.astype(np.uint8))
        if rng.random() < cfg.blur_prob and cfg.blur_sigma > 0:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, max(cfg.blur_sigma, 0.3)))
        if rng.random() < cfg.noise_prob and cfg.noise_std > 0:
            std = rng.uniform(0.0, cfg.noise_std) * 255.0
            noise = rng.standard_normal((size, size, 1), dtype=np.float32) * np.float32(std)
            image = np.clip(image + noise, 0, 255).astype(np.uint8)
        if rng.random() < cfg.cutout_prob and cfg.cutout_count > 0 and cfg.cutout_size > 0:
            image = np.array(image)  # LUT/blur outputs are fresh; the warp's may be shared
            for _ in range(int(rng.integers(1, cfg.cutout_count + 1))):
                w, h = rng.uniform(0.05, max(cfg.cutout_size, 0.05), size=2) * size
                x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
                image[int(y) : int(math.ceil(y + h)), int(x) : int(math.ceil(x + w))] = (
                    rng.integers(0, 256)
                )
        return image

    def __call__(
        self,
        image: np.ndarray,
        keypoints: np.ndarray,
        rng: np.random.Generator | None = None,
        *,
        train: bool,
    ) -> Augmented:
        """Augment one labelled frame.

        Args:
            image: (H, W, 3) uint8 RGB (grey (H, W) is accepted).
            keypoints: (K, 2) original px, NaN = unlabelled.
            rng: randomness for training; unused (may be None) when `train` is False.
            train: random geometry and appearance (and the fixed-scale window's jitter); eval
                mode is deterministic (the crop, window or letterbox only).

        Returns:
            `Augmented(image (S, S, 3) uint8, keypoints (K, 2) float32, affine (2, 3))`.
        """
        image = _as_rgb(image)
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if keypoints.ndim != 2 or keypoints.shape[-1] != 2:
            raise ValueError(f"keypoints must have shape (K, 2), got {keypoints.shape}")
        if self._swap is not None and keypoints.shape[0] < len(self._swap):
            raise ValueError(
                f"flip_pairs index body part {len(self._swap) - 1} but keypoints hold "
                f"{keypoints.shape[0]}"
            )
        if train and rng is None:
            raise ValueError("Augmenter needs an rng when train=True")
        affine = self.crop_affine(
            keypoints, (image.shape[1], image.shape[0]), rng if train else None
        )
        flipped = False
        if train:
            geometry, flipped = self._random_geometry(rng)
            affine = (geometry @ _homogeneous(affine))[:2]
        size = self.input_size
        out = warp_image(image, affine, size, antialias=self.config.antialias)
        points = apply_affine(affine, keypoints)
        if flipped and self._swap is not None:
            order = np.arange(points.shape[0])
            order[: len(self._swap)] = self._swap
            points = points[order]
        inside = ((points >= -0.5) & (points <= size - 0.5)).all(axis=-1)
        points[~inside] = np.nan
        if train:
            out = self._photometric(out, rng)
        return Augmented(out, points.astype(np.float32), affine)
