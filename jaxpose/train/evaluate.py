"""Evaluation of a trained 2D pose network on its labelled frames, the honest way.

Every labelled frame of the run's train and test split (``<run>/split.json``) is predicted on the
*whole frame*, resized by the run's scale factor and padded to a multiple of 32, as video analysis
does it: the labels are never used to place a crop (DeepLabCut evaluates the same way). The
predictions are mapped back to original pixels and compared with the labels.

The scale factor (network input px per original px) comes from the run's augmentation:

- ``crop_mode="fixed_scale"``: its ``scale_factor``, exactly what the network trained at;
- ``"letterbox"``: the median over the training frames of ``input_size / max(width, height)``;
- ``"keypoints"``: the median over the training frames of ``input_size / crop side``. The animal's
  scale varied with its pose during training; a fixed-scale run avoids that mismatch.

Metrics, per split and per body part (errors are Euclidean distances in original px):

- ``rmse_px`` (root mean square), ``mean_px`` (DeepLabCut's "RMSE" is this mean distance),
  ``median_px``, over all labelled points;
- the same over points predicted with confidence >= ``pcutoff`` (DeepLabCut's "with p-cutoff"),
  and the fraction of labelled points above the cut-off;
- PCK: the fraction of labelled points within t px, and within t times the frame's animal size
  (the longer side of the labelled points' bounding box).

Outputs in ``<run>/evaluation/`` (or ``out``): ``summary.json``, ``per_bodypart.csv``,
``per_frame.csv``, ``report.md``, ``predictions.h5`` / ``.csv`` (DeepLabCut layout, the labelled
frames' image paths as index) and ``worst/*.png`` (the worst test frames: labels as circles,
predictions as crosses, one colour per body part, errors in a side panel).
:func:`compare_runs` tabulates several runs (``comparison.md`` / ``.csv``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import jax
import numpy as np
from flax import nnx

from jaxpose.data import (
    AugmentConfig,
    DatasetError,
    LabelledFrames,
    apply_affine,
    crop_box,
    invert_affine,
    load_dlc_project,
    normalize_images,
    padded_size,
    scaled_frame_affine,
)
from jaxpose.io.atomic import atomic_write_bytes, atomic_write_text
from jaxpose.io.dlc import Keypoints2D, write_dlc
from jaxpose.models import param_count
from jaxpose.train.checkpoint import CheckpointError, RunInfo, load_trained
from jaxpose.train.inference import Predictor

__all__ = [
    "EvaluateOptions",
    "EvaluationError",
    "FramePredictions",
    "FullFramePredictor",
    "InputScale",
    "RunFrames",
    "augment_config",
    "bodypart_table",
    "compare_runs",
    "draw_predictions",
    "error_metrics",
    "evaluate_run",
    "find_runs",
    "frame_scales",
    "keypoint_errors",
    "load_run_frames",
    "run_input_scale",
    "scorer_name",
]

EVALUATION_DIR = "evaluation"


class EvaluationError(ValueError):
    """A run or data set that cannot be evaluated; the message names the file and what to do."""


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """Settings of :func:`evaluate_run` (the keys of ``conf/evaluate.yaml`` of the same names).

    Attributes:
        pcutoff: confidence cut-off of the "above cut-off" metrics (DeepLabCut's default 0.6).
        pck_px: PCK thresholds in original px.
        pck_relative: PCK thresholds as fractions of each frame's animal size.
        worst_frames: how many of the worst test frames to draw.
        batch_size: frames per forward pass.
        scale_factor: network input px per original px; ``None`` = the run's (module docstring).
        progress: show tqdm bars.
    """

    pcutoff: float = 0.6
    pck_px: tuple[float, ...] = (2.0, 5.0, 10.0)
    pck_relative: tuple[float, ...] = (0.05, 0.1, 0.2)
    worst_frames: int = 8
    batch_size: int = 8
    scale_factor: float | None = None
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "pck_px", tuple(float(t) for t in self.pck_px))
        object.__setattr__(self, "pck_relative", tuple(float(t) for t in self.pck_relative))
        if not 0.0 <= self.pcutoff <= 1.0:
            raise EvaluationError(f"pcutoff must be in [0, 1], got {self.pcutoff}")
        if any(t <= 0 for t in self.pck_px + self.pck_relative):
            raise EvaluationError("PCK thresholds must be positive")
        if self.batch_size < 1 or self.worst_frames < 0:
            raise EvaluationError("batch_size must be >= 1 and worst_frames >= 0")
        if self.scale_factor is not None and not self.scale_factor > 0:
            raise EvaluationError(f"scale_factor must be positive, got {self.scale_factor}")


# ---------------------------------------------------------------------------------------------
# Metrics (pure NumPy)


def keypoint_errors(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(..., K)`` between ``(..., K, 2)`` predictions and labels; NaN where
    either is NaN (an unlabelled point is not scored)."""
    diff = np.asarray(predictions, np.float64) - np.asarray(labels, np.float64)
    return np.sqrt(np.sum(diff**2, axis=-1))


def frame_scales(labels: np.ndarray) -> np.ndarray:
    """``(N,)`` size of the animal in each frame: the longer side of its labelled points'
    bounding box, in px; NaN with fewer than two labelled points (no size to speak of)."""
    labels = np.asarray(labels, np.float64)
    labelled = np.isfinite(labels).all(axis=-1)  # (N, K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames
        extent = np.nanmax(labels, axis=-2) - np.nanmin(labels, axis=-2)  # (N, 2)
    scale = np.max(extent, axis=-1)
    scale[labelled.sum(axis=-1) < 2] = np.nan
    scale[~(scale > 0)] = np.nan
    return scale


def _stats(errors: np.ndarray) -> tuple[float, float, float]:
    if not errors.size:
        return math.nan, math.nan, math.nan
    return (
        float(np.sqrt(np.mean(errors**2))),
        float(np.mean(errors)),
        float(np.median(errors)),
    )


def _key(threshold: float) -> str:
    return f"{threshold:g}"


def error_metrics(
    errors: np.ndarray,
    confidence: np.ndarray,
    *,
    pcutoff: float,
    pck_px: Sequence[float] = (),
    pck_relative: Sequence[float] = (),
    scales: np.ndarray | None = None,
) -> dict[str, Any]:
    """Summary of keypoint errors.

    Args:
        errors: ``(N, K)`` distances in px; NaN = unlabelled (not scored).
        confidence: ``(N, K)`` in [0, 1].
        pcutoff: the confidence cut-off.
        pck_px: PCK thresholds in px.
        pck_relative: PCK thresholds as fractions of ``scales``.
        scales: ``(N,)`` animal size per frame (:func:`frame_scales`); NaN frames are left out of
            the relative PCK.

    Returns:
        ``{"n", "rmse_px", "mean_px", "median_px", "n_above_cutoff", "fraction_above_cutoff",
        "rmse_above_cutoff_px", "mean_above_cutoff_px", "pck_px": {"5": ...},
        "pck_relative": {"0.1": ...}}``; NaN where nothing is scored.
    """
    errors = np.asarray(errors, np.float64)
    confidence = np.asarray(confidence, np.float64)
    if errors.shape != confidence.shape:
        raise ValueError(f"errors {errors.shape} and confidence {confidence.shape} differ")
    labelled = np.isfinite(errors)
    above = labelled & (confidence >= pcutoff)
    n = int(labelled.sum())
    rmse, mean, median = _stats(errors[labelled])
    rmse_above, mean_above, _ = _stats(errors[above])
    out: dict[str, Any] = {
        "n": n,
        "rmse_px": rmse,
        "mean_px": mean,
        "median_px": median,
        "n_above_cutoff": int(above.sum()),
        "fraction_above_cutoff": float(above.sum() / n) if n else math.nan,
        "rmse_above_cutoff_px": rmse_above,
        "mean_above_cutoff_px": mean_above,
        "pck_px": {
            _key(t): float(np.mean(errors[labelled] <= t)) if n else math.nan for t in pck_px
        },
    }
    relative = {}
    if pck_relative:
        if scales is None:
            raise ValueError("relative PCK needs the per-frame scales")
        per_point = np.broadcast_to(np.asarray(scales, np.float64)[:, None], errors.shape)
        scored = labelled & np.isfinite(per_point)
        for t in pck_relative:
            hits = errors[scored] <= t * per_point[scored]
            relative[_key(t)] = float(np.mean(hits)) if hits.size else math.nan
    out["pck_relative"] = relative
    return out


def bodypart_table(
    errors: np.ndarray,
    confidence: np.ndarray,
    bodyparts: Sequence[str],
    *,
    pcutoff: float,
    pck_px: Sequence[float] = (),
) -> list[dict[str, Any]]:
    """One row per body part: ``bodypart`` and :func:`error_metrics` flattened (no relative PCK).

    Args:
        errors, confidence: ``(N, K)``.
        bodyparts: ``(K,)`` names.
    """
    rows = []
    for k, name in enumerate(bodyparts):
        m = error_metrics(
            errors[:, k : k + 1], confidence[:, k : k + 1], pcutoff=pcutoff, pck_px=pck_px
        )
        row = {"bodypart": name} | {k2: v for k2, v in m.items() if not isinstance(v, dict)}
        row |= {f"pck_{t}px": v for t, v in m["pck_px"].items()}
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# The run: its frames, scale and name


@dataclasses.dataclass(frozen=True)
class RunFrames:
    """The labelled frames of a run and its split.

    Attributes:
        frames: every labelled frame of the data set (the run's body parts, in its order).
        train: indices into ``frames`` of the training frames.
        test: indices of the test frames.
        relative: ``(N,)`` image paths relative to the data set root (the predictions' index).
    """

    frames: LabelledFrames
    train: np.ndarray
    test: np.ndarray
    relative: tuple[str, ...]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def load_run_frames(info: RunInfo, *, data: str | os.PathLike | None = None) -> RunFrames:
    """Loads the run's labelled data set and finds its train/test frames (``split.json``).

    Args:
        info: the run (from :func:`~jaxpose.train.checkpoint.load_trained`).
        data: the labelled data (DLC project or CollectedData file); default: the run's
            ``data``. A moved project works: frames are matched by their path under the root.

    Raises:
        EvaluationError: no ``split.json``, or a frame it names is not in the data.
        DatasetError: the data cannot be read.
    """
    split_path = Path(info.run_dir) / "split.json"
    if not split_path.is_file():
        raise EvaluationError(
            f"{info.run_dir}: no split.json; evaluate needs the run's train/test split "
            "(written by `jaxpose train` at its start)"
        )
    split = json.loads(split_path.read_text(encoding="utf-8"))
    source = data if data is not None else info.config.get("data")
    if not source:
        raise EvaluationError(f"{info.run_dir}/config.yaml names no data; pass data=<project>")
    frames = load_dlc_project(source, bodyparts=list(info.bodyparts))
    relative = tuple(_relative(p, frames.root) for p in frames.images)
    where = {r: i for i, r in enumerate(relative)}
    indices = {}
    for part in ("train", "test"):
        found = []
        for image in split[part]["images"]:
            if image not in where:
                raise EvaluationError(
                    f"{split_path}: {part} frame {image!r} is not in the data {source} (its "
                    f"frames are named like {relative[0]!r}); pass the run's data set with data="
                )
            found.append(where[image])
        indices[part] = np.asarray(found, dtype=np.int64)
    return RunFrames(frames, indices["train"], indices["test"], relative)


def augment_config(info: RunInfo) -> AugmentConfig:
    """The run's :class:`~jaxpose.data.AugmentConfig` (``config.yaml``'s ``augment`` section)."""
    augment = dict(info.config.get("augment") or {})
    try:
        return AugmentConfig(**{**augment, "input_size": info.input_size})
    except (TypeError, ValueError) as e:
        raise EvaluationError(f"{info.run_dir}/config.yaml: bad augment section ({e})") from None


@dataclasses.dataclass(frozen=True)
class InputScale:
    """How whole frames are sized for the network.

    Attributes:
        scale_factor: network input px per original px.
        source: how it was found, for reports.
    """

    scale_factor: float
    source: str


def run_input_scale(
    info: RunInfo,
    *,
    train_frames: LabelledFrames | None = None,
    scale_factor: float | None = None,
) -> InputScale:
    """The scale at which the run's network sees whole frames (see the module docstring).

    Args:
        info: the run.
        train_frames: its training frames; needed unless the run used ``fixed_scale`` or
            ``scale_factor`` is given.
        scale_factor: an explicit choice, which wins.

    Raises:
        EvaluationError: the scale needs the training frames and none were given.

    Warns:
        UserWarning: a ``keypoints`` run whose crops varied in scale by more than 2x.
    """
    if scale_factor is not None:
        if not scale_factor > 0:
            raise EvaluationError(f"scale_factor must be positive, got {scale_factor}")
        return InputScale(float(scale_factor), "given (scale_factor)")
    augment = augment_config(info)
    mode = augment.crop_mode
    if mode == "fixed_scale":
        return InputScale(float(augment.scale_factor), "the run's fixed_scale crop")
    if train_frames is None or not len(train_frames):
        raise EvaluationError(
            f"{info.run_dir}: trained with crop_mode={mode}, so the scale of whole frames comes "
            "from its training frames, which are not available; pass scale_factor=<input px per "
            "original px> (or the run's data)"
        )
    size = augment.input_size
    if mode == "letterbox":
        scales = size / train_frames.image_sizes.max(axis=1).astype(np.float64)
    else:
        sides = [
            crop_box(
                train_frames.keypoints[i],
                train_frames.image_sizes[i],
                margin=augment.crop_margin,
                min_size=augment.crop_min_size,
            )[1]
            for i in range(len(train_frames))
        ]
        scales = size / np.asarray(sides, np.float64)
    low, median, high = np.percentile(scales, [5, 50, 95])
    if mode == "keypoints" and high > 2 * low:
        warnings.warn(
            f"{info.run_dir}: its training crops varied in scale from {low:.3g} to {high:.3g} "
            f"(5th-95th percentile) with the animal's pose; whole frames are analysed at the "
            f"median {median:.3g}. Train with augment.crop_mode=fixed_scale for a network that "
            "matches whole-frame analysis.",
            stacklevel=2,
        )
    return InputScale(
        float(median),
        f"median over {len(scales)} training frames of the {mode} crop "
        f"(5-95 %: {low:.3g}-{high:.3g})",
    )


def scorer_name(info: RunInfo) -> str:
    """The DeepLabCut ``scorer`` of the run's predictions: ``jaxpose_<backbone>_<head>_<run
    folder>_<step>`` (e.g. ``jaxpose_resnet18_heatmap_openfield_2000``)."""
    backbone = (info.config.get("backbone") or {}).get("name", "net")
    head = (info.config.get("head") or {}).get("name", "head")
    run = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(info.run_dir).resolve().name).strip("-")
    return f"jaxpose_{backbone}_{head}_{run or 'run'}_{info.step}"


# ---------------------------------------------------------------------------------------------
# Whole-frame prediction


@dataclasses.dataclass(frozen=True)
class FramePredictions:
    """Keypoints of whole frames.

    Attributes:
        keypoints: ``(N, K, 2)`` original px.
        confidence: ``(N, K)`` in [0, 1].
        frames_per_s: frames predicted per second (reading, preparing and the network),
            after the first batch (which compiles).
    """

    keypoints: np.ndarray
    confidence: np.ndarray
    frames_per_s: float


class FullFramePredictor:
    """Predicts keypoints of whole frames resized by a fixed scale (fully convolutional).

    A batch of frames is resized by ``scale_factor``, each padded with black at its right and
    bottom onto one canvas (a multiple of 32 px; one canvas size = one compilation), normalised,
    run through the jitted network and decoded; the keypoints are mapped back to each frame's
    own pixels.

    Args:
        model: a :class:`~jaxpose.models.PoseNet` (any ``nnx.Module`` with ``predict``), or a
            callable ``normalised batch -> (keypoints (B, K, 2) input px, confidence (B, K))``
            returning NumPy arrays, such as a :class:`~jaxpose.train.inference.Predictor`.
        scale_factor: network input px per original px.
        batch_size: frames per forward pass (the last batch is padded to it).
        multiple: canvas sides are multiples of this (the backbone's deepest stride).
        antialias: area-average when shrinking by more than 1.5x (as training did).
    """

    def __init__(
        self,
        model: Any,
        *,
        scale_factor: float,
        batch_size: int = 8,
        multiple: int = 32,
        antialias: bool = True,
    ):
        if not scale_factor > 0:
            raise ValueError(f"scale_factor must be positive, got {scale_factor}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.predictor = Predictor(model) if isinstance(model, nnx.Module) else model
        self.scale_factor = float(scale_factor)
        self.batch_size = int(batch_size)
        self.multiple = int(multiple)
        self.antialias = bool(antialias)

    def canvas_size(self, image_sizes: np.ndarray | Sequence[Sequence[int]]) -> tuple[int, int]:
        """(width, height) of the canvas holding every frame of these (width, height) sizes."""
        sizes = np.asarray(image_sizes, dtype=np.int64).reshape(-1, 2)
        resized = [scaled_frame_affine(s, self.scale_factor)[1] for s in sizes]
        return padded_size(np.max(resized, axis=0), self.multiple)

    def prepare(
        self, images: Sequence[np.ndarray], canvas: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """One network batch (pure NumPy/OpenCV, safe to run in a worker thread).

        Args:
            images: n <= batch_size frames, (H, W, 3) uint8 RGB or (H, W) grey.
            canvas: (width, height), from :meth:`canvas_size`.

        Returns:
            ``(batch (batch_size, H', W', 3) float32 normalised, affines (n, 2, 3) original px
            -> input px)``.
        """
        width, height = canvas
        batch = np.zeros((self.batch_size, height, width, 3), np.uint8)
        affines = np.empty((len(images), 2, 3), np.float64)
        for j, image in enumerate(images):
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=-1)
            affine, (new_w, new_h) = scaled_frame_affine(
                (image.shape[1], image.shape[0]), self.scale_factor
            )
            if new_w > width or new_h > height:
                raise ValueError(
                    f"frame {j} of the batch ({image.shape[1]}x{image.shape[0]}) does not fit "
                    f"the {width}x{height} canvas at scale {self.scale_factor}"
                )
            if (new_w, new_h) != (image.shape[1], image.shape[0]):
                shrink = self.antialias and self.scale_factor < 1 / 1.5
                interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
                image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
            batch[j, :new_h, :new_w] = image[..., :3]
            affines[j] = affine
        return normalize_images(batch), affines

    def predict_batch(
        self, batch: np.ndarray, affines: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(keypoints (n, K, 2) float64 original px, confidence (n, K) float32)`` of a
        prepared batch holding n = len(affines) frames."""
        points, confidence = self.predictor(batch)
        n = len(affines)
        keypoints = apply_affine(invert_affine(affines), points[:n].astype(np.float64))
        return keypoints, confidence[:n].astype(np.float32)

    def predict(
        self,
        images: Sequence[np.ndarray],
        *,
        canvas: tuple[int, int] | None = None,
        progress: bool = False,
        desc: str = "predict",
    ) -> FramePredictions:
        """Predicts every frame of ``images`` (read lazily, one batch at a time).

        Args:
            images: a sequence of frames (e.g. one that reads image files when indexed).
            canvas: (width, height); default: the first frame's (every frame must fit it).
            progress: show a tqdm bar.
            desc: the bar's label.
        """
        from tqdm.auto import tqdm

        n = len(images)
        if not n:
            raise ValueError("no frames to predict")
        keypoints, confidence = [], []
        timed_frames, timed_seconds = 0, 0.0
        with tqdm(total=n, desc=desc, unit="frame", disable=not progress) as bar:
            for b, start in enumerate(range(0, n, self.batch_size)):
                t0 = time.perf_counter()
                chunk = [images[i] for i in range(start, min(start + self.batch_size, n))]
                if canvas is None:
                    canvas = self.canvas_size([(chunk[0].shape[1], chunk[0].shape[0])])
                batch, affines = self.prepare(chunk, canvas)
                points, conf = self.predict_batch(batch, affines)
                keypoints.append(points)
                confidence.append(conf)
                if b > 0:  # the first batch compiles
                    timed_frames += len(chunk)
                    timed_seconds += time.perf_counter() - t0
                bar.update(len(chunk))
        if not timed_frames:  # a single batch: time it once more, warm
            t0 = time.perf_counter()
            self.predict_batch(*self.prepare(chunk, canvas))
            timed_frames, timed_seconds = len(chunk), time.perf_counter() - t0
        return FramePredictions(
            np.concatenate(keypoints),
            np.concatenate(confidence),
            timed_frames / timed_seconds if timed_seconds > 0 else math.nan,
        )


class _Images(Sequence):
    """The images of some labelled frames, read when indexed."""

    def __init__(self, frames: LabelledFrames, indices: np.ndarray):
        self.frames, self.indices = frames, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.frames.load_image(int(self.indices[i]))


# ---------------------------------------------------------------------------------------------
# Pictures


def _keypoint_colours(num_keypoints: int) -> np.ndarray:
    from jaxpose.viz import keypoint_colours

    return keypoint_colours(num_keypoints)


def draw_predictions(
    image: np.ndarray,
    predictions: np.ndarray,
    confidence: np.ndarray,
    bodyparts: Sequence[str],
    *,
    labels: np.ndarray | None = None,
    pcutoff: float = 0.6,
    title: str = "",
    min_side: int = 480,
    panel: bool = True,
) -> np.ndarray:
    """Predictions (crosses) against labels (circles) on a frame, one colour per body part.

    A line joins each label to its prediction; predictions below ``pcutoff`` get a thin
    diagonal cross. Small frames are enlarged to ``min_side`` px so that markers stay legible;
    the side panel lists each body part's error and confidence.

    Args:
        image: (H, W, 3) uint8 RGB (or (H, W) grey).
        predictions: (K, 2) original px.
        confidence: (K,).
        bodyparts: (K,) names.
        labels: (K, 2) original px, NaN = unlabelled; None for unlabelled video frames.
        pcutoff: confidence cut-off.
        title: text at the top (frame name, mean error).
        min_side: enlarge until the longer side has this many px.
        panel: add the side panel.

    Returns:
        (H', W', 3) uint8 BGR (ready for cv2.imwrite / VideoWriter).
    """
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image[..., ::-1]
    zoom = max(1.0, min_side / max(bgr.shape[:2]))
    if zoom > 1.0:
        size = (round(bgr.shape[1] * zoom), round(bgr.shape[0] * zoom))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
    canvas = np.ascontiguousarray(bgr)
    colours = _keypoint_colours(len(bodyparts))
    shift, unit = 4, 16  # sub-pixel drawing in 1/16 px

    def at(p):  # original px -> canvas px (pixel-centre convention), fixed point
        q = (np.asarray(p, np.float64) + 0.5) * zoom - 0.5
        return tuple(int(round(v * unit)) for v in q)

    def ok(p):
        return np.all(np.isfinite(p)) and np.all(np.abs(p) < 1e5)

    radius = max(4, round(0.01 * max(canvas.shape[:2])))
    errors = (
        keypoint_errors(predictions, labels)
        if labels is not None
        else np.full(len(bodyparts), np.nan)
    )
    dark = (0, 0, 0)
    for k in range(len(bodyparts)):
        colour = colours[k].tolist()
        label = None if labels is None else labels[k]
        if label is not None and ok(label):
            if ok(predictions[k]):
                cv2.line(canvas, at(label), at(predictions[k]), colour, 1, cv2.LINE_AA, shift)
            # a dark rim keeps the ring visible on a body part of its own colour
            cv2.circle(canvas, at(label), radius * unit, dark, 4, cv2.LINE_AA, shift)
            cv2.circle(canvas, at(label), radius * unit, colour, 2, cv2.LINE_AA, shift)
        if ok(predictions[k]):
            cx, cy = at(predictions[k])
            r = (radius + 2) * unit
            confident = confidence[k] >= pcutoff
            arms = ((-r, 0, r, 0), (0, -r, 0, r)) if confident else ((-r, -r, r, r), (-r, r, r, -r))
            for width, tone in ((4 if confident else 3, dark), (2 if confident else 1, colour)):
                for dx0, dy0, dx1, dy1 in arms:
                    cv2.line(
                        canvas,
                        (cx + dx0, cy + dy0),
                        (cx + dx1, cy + dy1),
                        tone,
                        width,
                        cv2.LINE_AA,
                        shift,
                    )
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    if title:
        (w, h), _ = cv2.getTextSize(title, font, scale, 1)
        cv2.rectangle(canvas, (0, 0), (w + 12, h + 12), (0, 0, 0), -1)
        cv2.putText(canvas, title, (6, h + 5), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    if not panel:
        return canvas
    line, width = 18, 230
    side = np.full((max(canvas.shape[0], line * (len(bodyparts) + 3)), width, 3), 30, np.uint8)

    def text(x: int, y: int, value: str, tone, *, right: bool = False) -> None:
        if right:  # Hershey fonts are proportional: align numbers on their right edge
            x -= cv2.getTextSize(value, font, scale, 1)[0][0]
        cv2.putText(side, value, (x, y), font, scale, tone, 1, cv2.LINE_AA)

    light = (220, 220, 220)
    text(8, line, "part", light)
    if labels is not None:
        text(170, line, "err px", light, right=True)
    text(222, line, "conf", light, right=True)
    for k, name in enumerate(bodyparts):
        y = line * (k + 2)
        cv2.circle(side, (14, y - 5), 5, colours[k].tolist(), -1, cv2.LINE_AA)
        tone = light if confidence[k] >= pcutoff else (130, 130, 130)
        text(26, y, name[:14], tone)
        if labels is not None:
            text(170, y, f"{errors[k]:.1f}" if np.isfinite(errors[k]) else "-", tone, right=True)
        text(222, y, f"{confidence[k]:.2f}", tone, right=True)
    if side.shape[0] > canvas.shape[0]:
        canvas = cv2.copyMakeBorder(
            canvas, 0, side.shape[0] - canvas.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=0
        )
    return np.concatenate([canvas, side], axis=1)


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"OpenCV could not encode {path}")
    atomic_write_bytes(path, encoded.tobytes())


# ---------------------------------------------------------------------------------------------
# Reports


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        columns = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def _json_ready(value: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), NumPy scalars -> Python."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _report_markdown(summary: Mapping[str, Any], table: Sequence[Mapping[str, Any]]) -> str:
    pck_px = list(summary["test"]["pck_px"]) if summary["test"] else []
    pck_rel = list(summary["test"]["pck_relative"]) if summary["test"] else []
    lines = [
        f"# Evaluation of {summary['run_dir']}",
        "",
        f"- network: `{summary['architecture']}` ({summary['param_count']:,} parameters), "
        f"checkpoint step {summary['step']}",
        f"- data: {summary['data']} ({summary['num_train']} train / {summary['num_test']} test "
        "frames)",
        f"- whole frames at scale {summary['input']['scale_factor']:.4g} "
        f"({summary['input']['source']}), canvas {summary['input']['canvas'][0]}x"
        f"{summary['input']['canvas'][1]} px; no label was used to crop",
        f"- inference: {_fmt(summary['inference']['frames_per_s'])} frames/s "
        f"(batch {summary['inference']['batch_size']}, {summary['inference']['device']})",
        "",
        "Errors in original-image px. RMSE = root mean square distance; mean = DeepLabCut's "
        f"'RMSE' (mean distance); 'cut-off' = only points with confidence >= "
        f"{summary['pcutoff']}.",
        "",
    ]
    # (column title, metric key) of the split table and the per-body-part table
    split_columns = [("points", "n"), ("RMSE", "rmse_px"), ("mean", "mean_px"),
                     ("median", "median_px"), ("RMSE cut-off", "rmse_above_cutoff_px"),
                     ("mean cut-off", "mean_above_cutoff_px"),
                     ("above cut-off", "fraction_above_cutoff")]  # fmt: skip
    header = ["split"] + [title for title, _ in split_columns]
    header += [f"PCK@{t}px" for t in pck_px] + [f"PCK@{t}" for t in pck_rel]
    rows = [
        [split]
        + [summary[split][key] for _, key in split_columns]
        + [summary[split]["pck_px"][t] for t in pck_px]
        + [summary[split]["pck_relative"][t] for t in pck_rel]
        for split in ("train", "test")
        if summary[split]
    ]
    lines += [_markdown_table(header, rows), ""]
    if table:
        part_columns = [("points", "n"), ("RMSE", "rmse_px"), ("mean", "mean_px"),
                        ("RMSE cut-off", "rmse_above_cutoff_px"),
                        ("above cut-off", "fraction_above_cutoff")]  # fmt: skip
        part_columns += [(f"PCK@{t}px", f"pck_{t}px") for t in pck_px]
        header = ["body part"] + [title for title, _ in part_columns]
        rows = [[r["bodypart"]] + [r[key] for _, key in part_columns] for r in table]
        lines += [f"## {table[0]['split'].capitalize()} error per body part", ""]
        lines += [_markdown_table(header, rows), ""]
    if summary["worst_test_frames"]:
        lines += ["## Worst test frames", "", "Labels: circles; predictions: crosses.", ""]
        for w in summary["worst_test_frames"]:
            lines.append(f"- {w['image']}: mean error {_fmt(w['mean_error_px'])} px")
            lines.append(f"  ![{w['image']}]({w['png']})")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Evaluating one run


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    step: int | None = None,
    out: str | os.PathLike | None = None,
    options: EvaluateOptions | None = None,
) -> dict[str, Any]:
    """Evaluates a trained run on its train and test frames (whole frames, no label crops).

    Args:
        run_dir: a folder written by ``jaxpose train``.
        data: the labelled data; default the run's.
        step: checkpoint step; default the newest.
        out: output folder; default ``<run>/evaluation``.
        options: metrics and prediction settings.

    Returns:
        The summary (what ``summary.json`` holds), with ``files`` naming every output.

    Raises:
        CheckpointError: no run folder or checkpoint.
        EvaluationError: no split, frames missing from the data, bad options.
        DatasetError: unreadable labels or images.
    """
    options = options or EvaluateOptions()
    model, info = load_trained(run_dir, step=step)
    run_frames = load_run_frames(info, data=data)
    frames = run_frames.frames
    scale = run_input_scale(
        info,
        train_frames=frames.subset(run_frames.train),
        scale_factor=options.scale_factor,
    )
    out = Path(out) if out is not None else Path(run_dir) / EVALUATION_DIR
    predictor = FullFramePredictor(
        model,
        scale_factor=scale.scale_factor,
        batch_size=options.batch_size,
        antialias=augment_config(info).antialias,
    )
    canvas = predictor.canvas_size(frames.image_sizes)
    order = np.concatenate([run_frames.train, run_frames.test])
    predicted = predictor.predict(
        _Images(frames, order), canvas=canvas, progress=options.progress, desc="evaluate"
    )
    keypoints = np.full((len(frames), len(info.bodyparts), 2), np.nan)
    confidence = np.full((len(frames), len(info.bodyparts)), np.nan, np.float32)
    keypoints[order], confidence[order] = predicted.keypoints, predicted.confidence
    labels = frames.keypoints.astype(np.float64)
    errors = keypoint_errors(keypoints, labels)
    scales = frame_scales(labels)

    def metrics(indices: np.ndarray) -> dict[str, Any] | None:
        if not len(indices):
            return None
        return error_metrics(
            errors[indices],
            confidence[indices],
            pcutoff=options.pcutoff,
            pck_px=options.pck_px,
            pck_relative=options.pck_relative,
            scales=scales[indices],
        )

    test = run_frames.test
    table = bodypart_table(
        errors[test] if len(test) else errors[run_frames.train],
        confidence[test] if len(test) else confidence[run_frames.train],
        info.bodyparts,
        pcutoff=options.pcutoff,
        pck_px=options.pck_px,
    )
    table = [{"split": "test" if len(test) else "train"} | row for row in table]

    # Per frame, worst first among the test frames.
    split_of = np.full(len(frames), "", dtype=object)
    split_of[run_frames.train], split_of[test] = "train", "test"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames without labels
        frame_mean = np.nanmean(errors, axis=1)
        frame_max = np.nanmax(errors, axis=1)
    per_frame = []
    for i in order:
        worst = int(np.nanargmax(errors[i])) if np.isfinite(errors[i]).any() else None
        per_frame.append(
            {
                "image": run_frames.relative[i],
                "split": split_of[i],
                "labelled": int(np.isfinite(errors[i]).sum()),
                "mean_error_px": float(frame_mean[i]),
                "max_error_px": float(frame_max[i]),
                "worst_bodypart": info.bodyparts[worst] if worst is not None else "",
                "mean_confidence": float(np.mean(confidence[i])),
            }
        )
    ranked = [i for i in test if np.isfinite(frame_mean[i])]
    ranked = sorted(ranked, key=lambda i: -frame_mean[i])[: options.worst_frames]
    for stale in (out / "worst").glob("[0-9][0-9]_*.png"):  # an earlier evaluation's
        stale.unlink()
    worst_rows = []
    for rank, i in enumerate(ranked, start=1):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_frames.relative[i])
        png = f"worst/{rank:02d}_{Path(name).stem}.png"
        picture = draw_predictions(
            frames.load_image(int(i)),
            keypoints[i],
            confidence[i],
            info.bodyparts,
            labels=labels[i],
            pcutoff=options.pcutoff,
            title=f"#{rank} {run_frames.relative[i]}: mean error {frame_mean[i]:.1f} px",
        )
        _write_png(out / png, picture)
        worst_rows.append(
            {"image": run_frames.relative[i], "mean_error_px": float(frame_mean[i]), "png": png}
        )

    scorer = scorer_name(info)
    predictions = Keypoints2D(
        xy=keypoints[order],
        likelihood=confidence[order].astype(np.float64),
        bodyparts=info.bodyparts,
        scorer=scorer,
        index=tuple(run_frames.relative[i] for i in order),
    )
    files = {
        "summary": "summary.json",
        "per_bodypart": "per_bodypart.csv",
        "per_frame": "per_frame.csv",
        "report": "report.md",
        "predictions_h5": "predictions.h5",
        "predictions_csv": "predictions.csv",
        "worst": [w["png"] for w in worst_rows],
    }
    write_dlc(out / files["predictions_h5"], predictions)
    write_dlc(out / files["predictions_csv"], predictions)
    summary = {
        "run_dir": str(run_dir),
        "step": info.step,
        "architecture": info.architecture_signature,
        "backbone": (info.config.get("backbone") or {}).get("name"),
        "head": (info.config.get("head") or {}).get("name"),
        "param_count": param_count(model),
        "scorer": scorer,
        "data": str(data if data is not None else info.config.get("data")),
        "bodyparts": list(info.bodyparts),
        "num_train": len(run_frames.train),
        "num_test": len(test),
        "input": {
            "scale_factor": scale.scale_factor,
            "source": scale.source,
            "canvas": list(canvas),
            "crop_mode_trained": augment_config(info).crop_mode,
            "input_size_trained": info.input_size,
        },
        "pcutoff": options.pcutoff,
        "train": metrics(run_frames.train),
        "test": metrics(test),
        "inference": {
            "frames_per_s": predicted.frames_per_s,
            "batch_size": options.batch_size,
            "device": str(jax.devices()[0].platform),
            "note": "reading, resizing, normalising and the network, after compilation",
        },
        "worst_test_frames": worst_rows,
        "files": files,
    }
    summary = _json_ready(summary)
    atomic_write_text(out / files["per_bodypart"], _csv_text(table))
    atomic_write_text(out / files["per_frame"], _csv_text(per_frame))
    atomic_write_text(out / files["report"], _report_markdown(summary, _json_ready(table)))
    atomic_write_text(out / files["summary"], json.dumps(summary, indent=1) + "\n")
    return summary


# ---------------------------------------------------------------------------------------------
# Comparing runs


def find_runs(folder: str | os.PathLike) -> list[Path]:
    """Run folders (``config.yaml`` + ``checkpoints/``) at or below ``folder``, sorted.

    Raises:
        EvaluationError: the folder does not exist or holds no run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: no such folder of runs")
    runs = sorted(
        p.parent
        for p in folder.rglob("config.yaml")
        if (p.parent / "checkpoints").is_dir() and EVALUATION_DIR not in p.parts
    )
    if not runs:
        raise EvaluationError(
            f"{folder}: no run folders (with config.yaml and checkpoints/) found below it"
        )
    return runs


def _comparison_row(run: Path, summary: Mapping[str, Any] | None, error: str | None) -> dict:
    train_summary = {}
    if (run / "train_summary.json").is_file():
        train_summary = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))
    row: dict[str, Any] = {"run": str(run)}
    if summary is None:
        return row | {"error": error}
    test = summary.get("test") or summary.get("train") or {}
    row |= {
        "backbone": summary.get("backbone"),
        "head": summary.get("head"),
        "params": summary.get("param_count"),
        "input_size": summary["input"]["input_size_trained"],
        "scale": summary["input"]["scale_factor"],
        "steps": summary.get("step"),
        "train_time_s": train_summary.get("wall_time_s"),
        "train_images_per_s": train_summary.get("images_per_s"),
        "test_rmse_px": test.get("rmse_px"),
        "test_mean_px": test.get("mean_px"),
        "test_rmse_above_cutoff_px": test.get("rmse_above_cutoff_px"),
        "test_fraction_above_cutoff": test.get("fraction_above_cutoff"),
    }
    row |= {f"test_pck_{t}px": v for t, v in (test.get("pck_px") or {}).items()}
    row |= {f"test_pck_{t}": v for t, v in (test.get("pck_relative") or {}).items()}
    row["inference_fps"] = summary["inference"]["frames_per_s"]
    return row


def compare_runs(
    runs: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    step: int | None = None,
    options: EvaluateOptions | None = None,
    reevaluate: bool = False,
) -> list[dict[str, Any]]:
    """Evaluates several runs (reusing ``<run>/evaluation/summary.json`` unless ``reevaluate``)
    and writes one comparison table, ``comparison.md`` and ``comparison.csv`` in ``out``.

    A reused summary keeps the options it was made with (pcutoff, thresholds, scale); pass
    ``reevaluate=True`` after changing them. A run that cannot be evaluated gets a row with its
    error; the others still run.

    Returns:
        The table's rows.
    """
    from tqdm.auto import tqdm

    options = options or EvaluateOptions()
    rows = []
    for run in tqdm(list(runs), desc="runs", unit="run", disable=not options.progress):
        run = Path(run)
        cached = run / EVALUATION_DIR / "summary.json"
        summary, error = None, None
        if cached.is_file() and not reevaluate and step is None:
            summary = json.loads(cached.read_text(encoding="utf-8"))
        else:
            try:
                summary = evaluate_run(run, data=data, step=step, options=options)
            except (CheckpointError, EvaluationError, DatasetError) as e:
                error = str(e).splitlines()[0]
                warnings.warn(f"{run}: not evaluated: {e}", stacklevel=2)
        rows.append(_comparison_row(run, summary, error))
    out = Path(out)
    atomic_write_text(out / "comparison.csv", _csv_text(rows))
    header = [
        "run",
        "backbone",
        "head",
        "params",
        "input",
        "scale",
        "train s",
        "train img/s",
        "test RMSE",
        "test mean",
        "RMSE cut-off",
        "above cut-off",
    ]
    pck_keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k.startswith("test_pck")]
    header += [k.replace("test_pck_", "PCK@") for k in pck_keys] + ["inference fps"]
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["run"], f"error: {r['error']}"] + [None] * (len(header) - 2))
            continue
        table.append(
            [
                Path(r["run"]).name,
                r["backbone"],
                r["head"],
                r["params"],
                r["input_size"],
                r["scale"],
                r["train_time_s"],
                r["train_images_per_s"],
                r["test_rmse_px"],
                r["test_mean_px"],
                r["test_rmse_above_cutoff_px"],
                r["test_fraction_above_cutoff"],
            ]
            + [r.get(k) for k in pck_keys]
            + [r["inference_fps"]]
        )
    text = (
        "# Comparison of runs\n\nErrors on the test frames in original px (whole frames at each "
        "run's scale); train time and images/s from train_summary.json; inference frames/s "
        "at evaluation.\n\n" + _markdown_table(header, table) + "\n"
    )
    atomic_write_text(out / "comparison.md", text)
    return rows
