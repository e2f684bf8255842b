"""Multi-view training: 2D heatmap losses on labelled views plus 3D terms across synchronised views.

A multi-camera labelled project is a folder::

    project/labeled-data/<camera>/imgNNNN.png               labelled frames (NNNN = video frame)
    project/labeled-data/<camera>/CollectedData_*.h5|csv    DeepLabCut labels of that camera
    project/videos/<camera>.mp4                             synchronised videos (unlabelled frames)
    project/calibration.toml                                the rig, camera names = folder names
    project/config.yaml                                     optional: DeepLabCut ``skeleton``

Frame ``NNNN`` is the same instant in every camera; a frame may be labelled in some cameras only.

One training step sees ``F`` synchronised frames (``batch_frames`` labelled ones and
``unlabelled_frames_per_batch`` video frames) times ``C`` cameras. Each view is the whole frame
resized by ``scale_factor`` and padded to a multiple of 32, then moved by one small random affine
(scale, rotation, translation; no flips: left and right would swap) and changed photometrically.
The jitted step runs all ``F * C`` views through the network, applies the 2D losses of
:mod:`jaxpose.train.losses` to the labelled views, decodes soft-argmax keypoints (differentiable),
maps them back to each camera's original pixels through the inverse affine (linear, so gradients
pass), and adds the 3D terms of :func:`jaxpose.train.multiview_loss.multiview_losses`. With
``train_cameras`` the rig is trained too, as ``reference + sigma * delta`` with a trainable
``delta`` per field named in ``camera_prior_sigma`` and :func:`camera_prior` pulling it back to
the board calibration. Besides the 3D terms' gradients the cameras then get
:func:`~jaxpose.train.multiview_loss.label_geometry_loss` (``camera_label_weight``): bundle
adjustment on the labels themselves, which does not depend on the network, so that a rig is not
dragged toward an untrained network's biased predictions.

Two optional terms act on the triangulated points. With ``temporal_weight`` each step also sees
``clips_per_batch`` clips of ``clip_length`` consecutive unlabelled video frames (every camera,
appended after the other frames); their points feed
:func:`~jaxpose.train.multiview_loss.temporal_loss` (a robust penalty on acceleration), and not
the label or consistency terms, so that switching the term on adds it and changes nothing else.
With ``limb_weight`` :func:`~jaxpose.train.multiview_loss.limb_loss` pulls every bone of
``bones`` (default: the project's DeepLabCut skeleton) toward one length over all the batch's
frames. A weight of 0 skips its term entirely (it is not computed nor logged, and no clip is
read).

Run folder: the files :mod:`jaxpose.train.trainer` writes (``config.yaml`` in the ``TrainConfig``
layout so the network can be rebuilt, ``checkpoints/``, ``metrics.csv``, ``train_summary.json``)
plus ``multiview.yaml`` (this module's full configuration) and, with ``train_cameras``,
``calibration_trained.toml``. The checkpoint's ``optimizer`` item holds
``{"model": optax state, "cameras": {"delta": ..., "opt": optax state}}``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
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
import jax.numpy as jnp
import numpy as np
import optax
import yaml
from flax import nnx

from jaxpose.data.augment import apply_affine, invert_affine, padded_size, scaled_frame_affine
from jaxpose.data.loader import normalize_images
from jaxpose.data.project import DatasetError, body_part_pairs, config_skeleton
from jaxpose.geometry.camera import Camera
from jaxpose.io.atomic import atomic_write_text
from jaxpose.io.calibration import Calibration, load_calibration, save_calibration
from jaxpose.io.dlc import read_dlc
from jaxpose.models.heads import decode_soft_argmax
from jaxpose.train.checkpoint import (
    checkpoint_manager,
    restore_checkpoint,
    save_checkpoint,
    split_model,
)
from jaxpose.train.losses import check_loss_config, total_loss
from jaxpose.train.metrics import MetricsWriter
from jaxpose.train.multiview_loss import (
    MultiViewLossConfig,
    camera_prior,
    label_geometry_loss,
    limb_loss,
    multiview_losses,
    temporal_loss,
)
from jaxpose.train.trainer import TrainOptions, make_bn_recalibration, make_optimizer

__all__ = [
    "MultiViewError",
    "MultiViewProject",
    "MultiViewResult",
    "MultiViewTrainConfig",
    "build_multiview_model",
    "clip_starts",
    "labelled_bone_lengths",
    "load_multiview_project",
    "load_multiview_run",
    "make_batch",
    "make_multiview_step",
    "predict_frames",
    "train_multiview",
]


class MultiViewError(ValueError):
    """A multi-view project or configuration that cannot be used; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# The project


_FRAME_NUMBER = re.compile(r"img(\d+)\.\w+$")


@dataclasses.dataclass(frozen=True)
class MultiViewProject:
    """Labelled synchronised frames of several cameras, with their calibration.

    Attributes:
        root: the project folder.
        camera_names: (C,) names, in the calibration's order.
        bodyparts: (K,) names.
        frames: (N,) video frame numbers labelled in at least one camera, ascending.
        images: N tuples of C image paths (``None`` where that camera has no image).
        labels: (N, C, K, 2) float32 original px, NaN = unlabelled.
        image_sizes: (C, 2) (width, height) px.
        calibration: the rig, cameras in ``camera_names`` order.
        videos: camera name -> video path (empty when the project has no ``videos/``).
        skeleton: bones as body-part name pairs, from ``config.yaml``'s DeepLabCut
            ``skeleton`` (pairs naming a body part that is not kept are left out); empty when
            there is none.
    """

    root: Path
    camera_names: tuple[str, ...]
    bodyparts: tuple[str, ...]
    frames: np.ndarray
    images: tuple[tuple[Path | None, ...], ...]
    labels: np.ndarray
    image_sizes: np.ndarray
    calibration: Calibration
    videos: dict[str, Path]
    skeleton: tuple[tuple[str, str], ...] = ()

    def load_image(self, i: int, c: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of labelled frame ``i`` in camera ``c`` (black if absent)."""
        path = self.images[i][c]
        w, h = (int(v) for v in self.image_sizes[c])
        if path is None:
            return np.zeros((h, w, 3), np.uint8)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise MultiViewError(f"{path}: cannot read the image (missing or corrupt)")
        if image.shape[:2] != (h, w):
            raise MultiViewError(
                f"{path}: the image is {image.shape[1]}x{image.shape[0]} px but camera "
                f"{self.camera_names[c]!r} is {w}x{h} in the calibration; calibrate at the "
                "labelled images' resolution"
            )
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _collected_data(folder: Path) -> Path:
    found = sorted(folder.glob("CollectedData_*.h5")) or sorted(folder.glob("CollectedData_*.csv"))
    if not found:
        raise MultiViewError(
            f"{folder}: no CollectedData_*.h5 or .csv; label this camera's frames or remove "
            "the folder"
        )
    return found[0]


def load_multiview_project(
    project: str | os.PathLike,
    *,
    calibration: str | os.PathLike | None = None,
    bodyparts: Sequence[str] | None = None,
) -> MultiViewProject:
    """Reads a multi-camera labelled project (layout in the module docstring).

    Args:
        project: the project folder.
        calibration: the calibration file; default ``project/calibration.toml``.
        bodyparts: body parts to keep, in order; default the first camera's.

    Raises:
        MultiViewError: a camera folder without a calibration entry or the reverse (both
            named), differing body parts, an image name without a frame number, ...
    """
    root = Path(project)
    labelled = root / "labeled-data"
    if not labelled.is_dir():
        raise MultiViewError(f"{root}: no labeled-data/ folder; is this a multi-view project?")
    folders = sorted(p for p in labelled.iterdir() if p.is_dir())
    if not folders:
        raise MultiViewError(f"{labelled}: no camera folders")
    cal_path = Path(calibration) if calibration is not None else root / "calibration.toml"
    if not cal_path.is_file():
        raise MultiViewError(f"{cal_path}: no calibration file; pass calibration=<file.toml>")
    cal = load_calibration(cal_path)
    folder_names = [p.name for p in folders]
    missing = [n for n in folder_names if n not in cal.names]
    if missing:
        raise MultiViewError(
            f"camera(s) {missing} of {labelled} have no entry in {cal_path} (its cameras: "
            f"{list(cal.names)}); rename the folders to the calibration's camera names"
        )
    unlabelled = [n for n in cal.names if n not in folder_names]
    if unlabelled:
        raise MultiViewError(
            f"camera(s) {unlabelled} of {cal_path} have no folder in {labelled}; label them or "
            "remove them from the calibration"
        )
    names = tuple(cal.names)
    per_camera = {}
    for name in names:
        path = _collected_data(labelled / name)
        per_camera[name] = (path, read_dlc(path))
    if bodyparts is None:
        bodyparts = per_camera[names[0]][1].bodyparts
    bodyparts = tuple(bodyparts)
    frame_maps: dict[str, dict[int, tuple[Path, np.ndarray]]] = {}
    for name, (path, kp) in per_camera.items():
        absent = [b for b in bodyparts if b not in kp.bodyparts]
        if absent:
            raise MultiViewError(f"{path}: camera {name!r} lacks body part(s) {absent}")
        take = [kp.bodyparts.index(b) for b in bodyparts]
        rows = {}
        for entry, xy in zip(kp.index, kp.xy, strict=True):
            match = _FRAME_NUMBER.search(str(entry))
            if match is None:
                raise MultiViewError(
                    f"{path}: image {entry!r} has no frame number; name labelled frames "
                    "imgNNNN.png after their video frame"
                )
            image = labelled / name / Path(str(entry)).name
            rows[int(match.group(1))] = (image, xy[take])
        frame_maps[name] = rows
    frames = np.array(sorted(set().union(*[set(m) for m in frame_maps.values()])), np.int64)
    labels = np.full((len(frames), len(names), len(bodyparts), 2), np.nan, np.float32)
    images = []
    for i, f in enumerate(frames):
        row = []
        for c, name in enumerate(names):
            entry = frame_maps[name].get(int(f))
            if entry is None:
                row.append(None)
            else:
                row.append(entry[0])
                labels[i, c] = entry[1]
        images.append(tuple(row))
    videos = {n: root / "videos" / f"{n}.mp4" for n in names}
    videos = {n: p for n, p in videos.items() if p.is_file()}
    sizes = np.asarray(cal.rig.image_size, np.float64).round().astype(np.int64)
    skeleton = _read_skeleton(root / "config.yaml", bodyparts)
    return MultiViewProject(
        root=root,
        camera_names=names,
        bodyparts=bodyparts,
        frames=frames,
        images=tuple(images),
        labels=labels,
        image_sizes=sizes,
        calibration=cal,
        videos=videos,
        skeleton=skeleton,
    )


def _read_skeleton(path: Path, bodyparts: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The DeepLabCut ``skeleton`` of a project's ``config.yaml`` (pairs of kept body parts)."""
    if not path.is_file():
        return ()
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise MultiViewError(f"{path}: not valid YAML ({e}); fix or remove it") from e
    try:
        return config_skeleton(config, bodyparts, where=str(path))[0]
    except DatasetError as e:
        raise MultiViewError(str(e)) from None


def read_video_frames(path: str | os.PathLike, frames: Sequence[int]) -> np.ndarray:
    """(len(frames), H, W, 3) uint8 RGB frames of a video, read sequentially (no seeking)."""
    wanted = sorted(set(int(f) for f in frames))
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise MultiViewError(f"{path}: cannot open the video")
    out = {}
    index = 0
    try:
        while wanted and index <= wanted[-1]:
            ok, image = capture.read()
            if not ok:
                raise MultiViewError(
                    f"{path}: the video ends at frame {index}, before frame {wanted[-1]}"
                )
            if index in wanted:
                out[index] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()
    return np.stack([out[int(f)] for f in frames]) if len(frames) else np.zeros((0, 1, 1, 3))


def _video_length(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


# ---------------------------------------------------------------------------------------------
# Configuration


DEFAULT_LOSS_2D: dict[str, dict[str, Any]] = {
    "heatmap": {"weight": 1.0, "sigma": 4.0, "kind": "gaussian"},
    "locref": {"weight": 0.0},
    # Trains the soft-argmax decoder the 3D terms use, so both agree on where a keypoint is.
    "coordinate": {"weight": 0.01, "huber_delta": 2.0},
}

DEFAULT_HEAD: dict[str, Any] = {
    "name": "heatmap",
    "channels": 64,
    "locref": False,
    "decoder": "soft_argmax",
    "beta": 4.0,
}


@dataclasses.dataclass(frozen=True)
class MultiViewTrainConfig:
    """Everything a multi-view training run depends on.

    Attributes:
        project: the multi-camera labelled project folder.
        out: the run folder.
        calibration: the rig; default ``project/calibration.toml``.
        backbone, head: network settings as in :class:`~jaxpose.train.trainer.TrainConfig`
            (``small_cnn`` is built here until :func:`jaxpose.models.build_backbone` knows it).
            The head's ``beta`` is the soft-argmax temperature of the 3D terms too.
        scale_factor: network input px per original px (the whole frame, padded to 32).
        steps, batch_frames, lr, warmup_steps, end_lr_fraction, weight_decay, grad_clip: as in
            :class:`~jaxpose.train.trainer.TrainOptions`; ``batch_frames`` labelled frames per
            step, each seen by every camera.
        unlabelled_frames_per_batch: video frames without labels per step (3D consistency only).
        unlabelled_frames: the video frame numbers to draw them from; default every frame that
            is not labelled, at most ``max_unlabelled_frames`` of them, evenly spaced.
        max_unlabelled_frames: cap on the unlabelled pool (they are held in memory).
        loss: 2D terms ``{name: {"weight": w, **options}}`` of :data:`jaxpose.train.LOSSES`,
            in network-input px.
        label3d_weight, consistency_weight: the 3D terms' weights.
        huber_px, min_confidence: :class:`MultiViewLossConfig` options (original px).
        temporal_weight: weight of :func:`~jaxpose.train.multiview_loss.temporal_loss`, the
            acceleration of keypoints triangulated on clips of consecutive unlabelled video
            frames. With 0 no clip is read, sampled nor run through the network.
        clip_length: frames per clip (>= 3, consecutive video frames).
        clips_per_batch: clips per step (each ``clip_length`` frames times every camera).
        max_clips: cap on the clip pool (held in memory): at most this many clips, their
            starts evenly spaced over every run of ``clip_length`` consecutive frames that are
            unlabelled (or, when ``unlabelled_frames`` is given, all in that list).
        temporal_huber_mm: robust scale of the temporal term, in world units per frame^2.
        limb_weight: weight of :func:`~jaxpose.train.multiview_loss.limb_loss`, the spread of
            each bone's triangulated length over the batch's frames (labelled, unlabelled and,
            with the temporal term, the clips').
        bones: the bones of the limb term, ``[[a, b], ...]`` as body-part names or indices;
            default (``None``) the ``skeleton`` of the project's ``config.yaml``.
        limb_reference: each bone's target length: ``"batch"``, the median of its lengths in
            the batch (a constant), or ``"labels"``, the median over the labelled frames
            triangulated with the calibration (bones never labelled in two views fall back to
            the batch median).
        limb_huber_mm: robust scale of the limb term, in world units.
        train_cameras: also train the rig's fields named in ``camera_prior_sigma``.
        camera_prior_sigma: prior standard deviation per Camera field (rad, mm, px, ...).
        camera_prior_weight: weight of :func:`camera_prior` in the loss.
        camera_label_weight: weight of
            :func:`~jaxpose.train.multiview_loss.label_geometry_loss`, bundle adjustment of the
            trainable cameras on the labels themselves (independent of the network); only with
            ``train_cameras``.
        camera_lr: Adam learning rate of the cameras' ``delta`` (units of sigma).
        augment: ``rotation`` (deg), ``scale`` (max relative zoom), ``translate`` (fraction of
            the input side), ``brightness``, ``contrast``, ``noise_std`` (fractions).
        seed: initialisation, batch choice and augmentation.
        bn_recalibration_batches: before every checkpoint, the batch-norm running statistics
            become their average over this many un-augmented batches at the current weights
            (precise BN, as ``train.bn_recalibration_batches`` of the single-view trainer;
            0 = off).
        checkpoint_every, max_to_keep, log_every, resume, progress, tensorboard, workers:
            bookkeeping as in the single-view trainer (``workers``: 0 builds batches in the
            training thread, 1 prefetches the next batch in a background thread).
    """

    project: str
    out: str
    calibration: str | None = None
    backbone: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "small_cnn", "pretrained": False}
    )
    head: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_HEAD))
    scale_factor: float = 0.5
    steps: int = 500
    batch_frames: int = 2
    unlabelled_frames_per_batch: int = 2
    unlabelled_frames: tuple[int, ...] | None = None
    max_unlabelled_frames: int = 500
    lr: float = 2e-3
    warmup_steps: int = 20
    end_lr_fraction: float = 0.05
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    loss: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=lambda: json.loads(json.dumps(DEFAULT_LOSS_2D))
    )
    label3d_weight: float = 0.01
    consistency_weight: float = 0.01
    huber_px: float = 4.0
    min_confidence: float = 0.05
    temporal_weight: float = 0.0
    clip_length: int = 3
    clips_per_batch: int = 1
    max_clips: int = 100
    temporal_huber_mm: float = 2.0
    limb_weight: float = 0.0
    bones: tuple[tuple[str | int, str | int], ...] | None = None
    limb_reference: str = "batch"
    limb_huber_mm: float = 2.0
    train_cameras: bool = False
    camera_prior_sigma: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"rotation": 0.01, "translation": 5.0, "focal": 10.0}
    )
    camera_prior_weight: float = 1.0
    camera_label_weight: float = 1.0
    camera_lr: float = 0.05
    augment: dict[str, float] = dataclasses.field(
        default_factory=lambda: {
            "rotation": 5.0,
            "scale": 0.1,
            "translate": 0.05,
            "brightness": 0.1,
            "contrast": 0.1,
            "noise_std": 0.02,
        }
    )
    seed: int = 0
    bn_recalibration_batches: int = 4
    checkpoint_every: int = 500
    max_to_keep: int = 2
    log_every: int = 10
    resume: bool = False
    progress: bool = True
    tensorboard: bool = False
    workers: int = 1

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.unlabelled_frames is not None:
            out["unlabelled_frames"] = [int(f) for f in self.unlabelled_frames]
        if self.bones is not None:
            out["bones"] = [list(pair) for pair in self.bones]
        return out

    def num_clip_frames(self) -> int:
        """Frames per batch taken by the temporal term's clips (0 when it is off)."""
        return int(self.clips_per_batch) * int(self.clip_length) if self.temporal_weight else 0

    def options(self) -> TrainOptions:
        """The optimiser options of the network (for :func:`trainer.make_optimizer`)."""
        return TrainOptions(
            steps=self.steps,
            batch_size=self.batch_frames,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            end_lr_fraction=self.end_lr_fraction,
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
        )

    def loss_3d(self) -> MultiViewLossConfig:
        return MultiViewLossConfig(
            label_weight=float(self.label3d_weight),
            consistency_weight=float(self.consistency_weight),
            huber_px=float(self.huber_px),
            min_confidence=float(self.min_confidence),
        )


# Options that may change between an interrupted run and its resumption.
_RESUMABLE = frozenset(
    {"out", "steps", "resume", "progress", "log_every", "checkpoint_every", "max_to_keep",
     "tensorboard", "workers"}
)  # fmt: skip


def _validate(cfg: MultiViewTrainConfig) -> None:
    problems = []
    if cfg.steps < 1 or not 0 <= cfg.warmup_steps < cfg.steps:
        problems.append(f"steps={cfg.steps} >= 1 and warmup_steps={cfg.warmup_steps} < steps")
    if cfg.bn_recalibration_batches < 0:
        problems.append(f"bn_recalibration_batches={cfg.bn_recalibration_batches} must be >= 0")
    if cfg.batch_frames < 1 or cfg.unlabelled_frames_per_batch < 0:
        problems.append("batch_frames must be >= 1 and unlabelled_frames_per_batch >= 0")
    if not cfg.scale_factor > 0:
        problems.append(f"scale_factor={cfg.scale_factor} must be positive")
    for name in ("label3d_weight", "consistency_weight", "camera_prior_weight",
                 "camera_label_weight", "temporal_weight", "limb_weight"):  # fmt: skip
        if getattr(cfg, name) < 0:
            problems.append(f"{name} must be >= 0")
    for name in ("temporal_huber_mm", "limb_huber_mm"):
        if not float(getattr(cfg, name)) > 0:
            problems.append(f"{name}={getattr(cfg, name)} must be positive")
    if cfg.temporal_weight:
        if int(cfg.clip_length) < 3:
            problems.append(
                f"clip_length={cfg.clip_length} must be >= 3 (a second difference needs 3 frames)"
            )
        if int(cfg.clips_per_batch) < 1 or int(cfg.max_clips) < 1:
            problems.append("temporal_weight > 0 needs clips_per_batch >= 1 and max_clips >= 1")
    if cfg.limb_reference not in ("batch", "labels"):
        problems.append(f"limb_reference={cfg.limb_reference!r} must be 'batch' or 'labels'")
    unknown = [k for k in cfg.camera_prior_sigma if k not in _CAMERA_FIELDS]
    if unknown:
        problems.append(f"camera_prior_sigma: unknown field(s) {unknown}; known {_CAMERA_FIELDS}")
    if any(not float(s) > 0 for s in cfg.camera_prior_sigma.values()):
        problems.append("camera_prior_sigma values must be positive")
    if cfg.train_cameras and not cfg.camera_prior_sigma:
        problems.append("train_cameras needs camera_prior_sigma naming the fields to train")
    if problems:
        raise MultiViewError("invalid multi-view configuration:\n  " + "\n  ".join(problems))
    two_d = {k: v for k, v in cfg.loss.items() if float(v.get("weight", 1)) != 0}
    if two_d:
        check_loss_config(cfg.loss)
    elif not (
        cfg.label3d_weight or cfg.consistency_weight or cfg.temporal_weight or cfg.limb_weight
    ):
        raise MultiViewError("every loss weight is 0: nothing to train")


def _bone_indices(
    cfg: MultiViewTrainConfig, project: MultiViewProject
) -> tuple[tuple[int, int], ...]:
    """The limb term's bones as keypoint index pairs (``cfg.bones`` or the project skeleton).

    Explicit ``bones`` are checked even when ``limb_weight`` is 0, so that a typo is not
    silently ignored until the term is switched on.
    """
    parts = project.bodyparts
    bones = cfg.bones if cfg.bones is not None else project.skeleton
    try:
        out = body_part_pairs(
            bones, parts, option="bones", where=str(project.root), hint="; fix the bones option"
        )
    except DatasetError as e:
        raise MultiViewError(str(e)) from None
    if cfg.limb_weight and not out:
        where = project.root / "config.yaml"
        raise MultiViewError(
            f"limb_weight={cfg.limb_weight} needs bones: pass bones=[[part_a, part_b], ...] "
            f"(body-part names of {list(parts)}) or add a skeleton to {where}"
        )
    return tuple(out)


def labelled_bone_lengths(
    project: MultiViewProject, bones: Sequence[tuple[int, int]], *, min_confidence: float = 0.0
) -> np.ndarray:
    """(bone,) median length of each bone over the labelled frames, triangulated (DLT) with the
    project's calibration from every labelled view; NaN for a bone no frame has in 3D."""
    from jaxpose.triangulation import triangulate_frames

    bones = np.asarray(bones, np.int64).reshape(-1, 2)
    if not len(bones):
        return np.zeros(0)
    labels = project.labels
    confidence = np.all(np.isfinite(labels), -1).astype(np.float64)
    result = triangulate_frames(
        project.calibration.rig,
        np.nan_to_num(labels).astype(np.float64),
        confidence,
        method="dlt",
        min_confidence=min_confidence,
    )
    points = np.where((np.asarray(result.ncams) >= 2)[..., None], np.asarray(result.points), np.nan)
    a, b = bones.T
    lengths = np.linalg.norm(points[:, a] - points[:, b], axis=-1)  # (frame, bone), NaN if absent
    with warnings.catch_warnings():  # a bone never seen: NaN, as documented
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(lengths, axis=0)


_CAMERA_FIELDS = ("rotation", "translation", "focal", "principal_point", "distortion")


# ---------------------------------------------------------------------------------------------
# The network


def build_multiview_model(
    backbone: Mapping[str, Any], head: Mapping[str, Any], *, num_keypoints: int, rngs: nnx.Rngs
) -> nnx.Module:
    """A :class:`~jaxpose.models.PoseNet`; builds ``small_cnn`` itself until
    :func:`jaxpose.models.build_backbone` registers it."""
    from jaxpose.models import posenet

    if backbone.get("name") != "small_cnn" or "small_cnn" in posenet.BACKBONES:
        return posenet.build_posenet(
            backbone=dict(backbone), head=dict(head), num_keypoints=num_keypoints, rngs=rngs
        )
    from jaxpose.models.heads import HeatmapHead
    from jaxpose.models.small import SmallCNN

    if backbone.get("pretrained"):
        raise ValueError("small_cnn has no pretrained weights: set backbone.pretrained=false")
    hd = posenet.HEAD_DEFAULTS | dict(head)
    trunk = SmallCNN(rngs)
    net_head = HeatmapHead(
        trunk.feature_channels,
        int(num_keypoints),
        feature_stride=int(hd["feature_stride"]),
        fuse_strides=tuple(int(s) for s in (hd["fuse_strides"] or ())),
        output_stride=int(hd["output_stride"]),
        upsample=str(hd["upsample"]),
        channels=int(hd["channels"]),
        locref=bool(hd["locref"]),
        heatmap_bias=float(hd["heatmap_bias"]),
        rngs=rngs,
    )
    return posenet.PoseNet(
        trunk,
        net_head,
        backbone_name="small_cnn",
        decoder=str(hd["decoder"]),
        locref_std=float(hd["locref_std"]),
        beta=float(hd["beta"]),
    )


def _signature(model: nnx.Module) -> str:
    from jaxpose.models import architecture_signature

    return architecture_signature(model)


# ---------------------------------------------------------------------------------------------
# Batches


@dataclasses.dataclass(frozen=True)
class _Pool:
    """Everything batches are drawn from, in memory except the labelled images' files."""

    project: MultiViewProject
    labelled_images: np.ndarray  # (N, C) object: uint8 images
    unlabelled: np.ndarray  # (U, C, H, W, 3) uint8 (cameras padded to the largest size)
    unlabelled_frames: np.ndarray  # (U,)
    input_hw: tuple[int, int]  # network input (H, W), common to all cameras
    base: np.ndarray  # (C, 2, 3) original px -> resized px per camera
    clips: np.ndarray  # (S, T, C, H, W, 3) uint8 clips of the temporal term (S = 0 when off)
    clip_frames: np.ndarray  # (S, T) their video frame numbers


def clip_starts(allowed: np.ndarray, length: int, *, max_clips: int) -> np.ndarray:
    """First frames of clips of ``length`` consecutive frames that all lie in ``allowed``.

    Args:
        allowed: (n,) video frame numbers a clip may use.
        length: frames per clip.
        max_clips: at most this many starts, evenly spaced over the possible ones.

    Returns:
        (S,) ascending start frames (possibly overlapping clips; S = 0 when there is none).
    """
    allowed = np.unique(np.asarray(allowed, np.int64))
    members = set(allowed.tolist())
    starts = np.array(
        [f for f in allowed.tolist() if all(f + t in members for t in range(1, length))], np.int64
    )
    if len(starts) > max_clips:
        starts = starts[np.linspace(0, len(starts) - 1, max_clips).round().astype(int)]
    return starts


def _make_pool(cfg: MultiViewTrainConfig, project: MultiViewProject) -> _Pool:
    n, c = len(project.frames), len(project.camera_names)
    labelled = np.empty((n, c), object)
    for i in range(n):
        for j in range(c):
            labelled[i, j] = project.load_image(i, j)
    bases, sizes = [], []
    for w, h in project.image_sizes:
        affine, resized = scaled_frame_affine((int(w), int(h)), cfg.scale_factor)
        bases.append(affine)
        sizes.append(padded_size(resized, 32))
    input_hw = (max(s[1] for s in sizes), max(s[0] for s in sizes))
    frames = np.zeros((0,), np.int64)
    unlabelled = np.zeros((0, c, 1, 1, 3), np.uint8)
    clip_frames = np.zeros((0, max(int(cfg.clip_length), 1)), np.int64)
    clips = np.zeros((0, clip_frames.shape[1], c, 1, 1, 3), np.uint8)
    wanted = {
        f"unlabelled_frames_per_batch={cfg.unlabelled_frames_per_batch}": (
            cfg.unlabelled_frames_per_batch > 0
        ),
        f"temporal_weight={cfg.temporal_weight}": bool(cfg.temporal_weight),
    }
    users = [k for k, v in wanted.items() if v]
    if not users:
        return _Pool(
            project, labelled, unlabelled, frames, input_hw, np.stack(bases), clips, clip_frames
        )
    missing = [name for name in project.camera_names if name not in project.videos]
    if missing:
        raise MultiViewError(
            f"{' and '.join(users)} need(s) videos/<camera>.mp4 in {project.root}, missing "
            f"for {missing}; set them to 0 or add the videos"
        )
    if cfg.unlabelled_frames is not None:
        allowed = np.asarray(sorted(set(int(f) for f in cfg.unlabelled_frames)), np.int64)
    else:
        length = min(_video_length(project.videos[m]) for m in project.camera_names)
        allowed = np.setdiff1d(np.arange(length), project.frames)
    if cfg.unlabelled_frames_per_batch > 0:
        frames = allowed
        if cfg.unlabelled_frames is None and len(frames) > cfg.max_unlabelled_frames:
            pick = np.linspace(0, len(frames) - 1, cfg.max_unlabelled_frames).round()
            frames = frames[pick.astype(int)]
        if not len(frames):
            raise MultiViewError(f"{project.root}: the videos have no unlabelled frames to use")
    if cfg.temporal_weight:
        starts = clip_starts(allowed, int(cfg.clip_length), max_clips=int(cfg.max_clips))
        if not len(starts):
            if cfg.unlabelled_frames is not None:
                source = "unlabelled_frames"
            else:
                source = f"the unlabelled frames of {project.root}'s videos"
            raise MultiViewError(
                f"temporal_weight={cfg.temporal_weight}: {source} hold no run of "
                f"clip_length={cfg.clip_length} consecutive frames; lower clip_length or list "
                "consecutive frames in unlabelled_frames"
            )
        clip_frames = starts[:, None] + np.arange(int(cfg.clip_length))[None, :]
    # Every camera's video is decoded once, for the unlabelled frames and the clips together.
    needed = np.union1d(frames, clip_frames.ravel())
    hmax, wmax = int(project.image_sizes[:, 1].max()), int(project.image_sizes[:, 0].max())
    store = np.zeros((len(needed), c, hmax, wmax, 3), np.uint8)
    for j, name in enumerate(project.camera_names):
        video = read_video_frames(project.videos[name], needed)
        store[:, j, : video.shape[1], : video.shape[2]] = video
    unlabelled = store[np.searchsorted(needed, frames)]
    clips = store[np.searchsorted(needed, clip_frames)]
    return _Pool(
        project, labelled, unlabelled, frames, input_hw, np.stack(bases), clips, clip_frames
    )


def _augment_affine(rng: np.random.Generator, aug: Mapping[str, float], hw) -> np.ndarray:
    """(2, 3) random similarity about the input's centre (input px -> input px)."""
    h, w = hw
    angle = np.radians(rng.uniform(-1, 1) * float(aug.get("rotation", 0.0)))
    zoom = 1.0 + rng.uniform(-1, 1) * float(aug.get("scale", 0.0))
    shift = rng.uniform(-1, 1, 2) * float(aug.get("translate", 0.0)) * np.array([w, h])
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    cos, sin = zoom * np.cos(angle), zoom * np.sin(angle)
    linear = np.array([[cos, -sin], [sin, cos]])
    centre = np.array([cx, cy])
    return np.concatenate([linear, (centre - linear @ centre + shift)[:, None]], axis=1)


def make_batch(pool: _Pool, cfg: MultiViewTrainConfig, step: int, *, train: bool = True) -> dict:
    """Batch ``step`` (0-based), a pure function of ``(cfg.seed, step)``.

    Returns:
        ``{"image": (F*C, H, W, 3) float32 normalised, "keypoints": (F*C, K, 2) input px NaN,
        "inverse": (F*C, 2, 3) input px -> original px, "labels": (F, C, K, 2) original px NaN,
        "frames": (F,) video frame numbers}``. The frames are, in order: ``batch_frames``
        labelled ones, ``unlabelled_frames_per_batch`` unlabelled ones (when the pool has any)
        and, with the temporal term, ``clips_per_batch`` clips of ``clip_length`` consecutive
        frames (clip after clip, in time order; :meth:`MultiViewTrainConfig.num_clip_frames`).
    """
    rng = np.random.default_rng([int(cfg.seed), int(step)])
    project = pool.project
    n, c = len(project.frames), len(project.camera_names)
    labelled = rng.choice(n, size=cfg.batch_frames, replace=n < cfg.batch_frames)
    u = len(pool.unlabelled_frames)
    nu = cfg.unlabelled_frames_per_batch if u else 0
    unlabelled = rng.choice(u, size=nu, replace=u < nu) if nu else np.zeros(0, int)
    # Drawn only with the temporal term on, so that batches without it are unchanged.
    num_clip_frames = cfg.num_clip_frames()
    if num_clip_frames:
        num_clips = len(pool.clips)
        if not num_clips:
            raise MultiViewError("temporal_weight > 0 but the pool holds no clips (see _make_pool)")
        chosen = rng.choice(
            num_clips, size=cfg.clips_per_batch, replace=num_clips < cfg.clips_per_batch
        )
        clip_views = pool.clips[chosen].reshape(-1, *pool.clips.shape[2:])  # (S*T, C, H, W, 3)
        clip_frames = pool.clip_frames[chosen].ravel()
    else:
        clip_views = np.zeros((0, c, 1, 1, 3), np.uint8)
        clip_frames = np.zeros(0, np.int64)
    h, w = pool.input_hw
    num_frames = len(labelled) + nu + num_clip_frames
    num = num_frames * c
    images = np.zeros((num, h, w, 3), np.uint8)
    keypoints = np.full((num, len(project.bodyparts), 2), np.nan, np.float32)
    inverse = np.zeros((num, 2, 3), np.float32)
    labels = np.full((num_frames, c, len(project.bodyparts), 2), np.nan, np.float32)
    aug = cfg.augment if train else {}
    v = 0
    for f in range(num_frames):
        for j in range(c):
            w_j, h_j = (int(s) for s in project.image_sizes[j])
            if f < len(labelled):
                image = pool.labelled_images[labelled[f], j]
                labels[f, j] = project.labels[labelled[f], j]
            elif f < len(labelled) + nu:
                image = pool.unlabelled[unlabelled[f - len(labelled)], j, :h_j, :w_j]
            else:
                image = clip_views[f - len(labelled) - nu, j, :h_j, :w_j]
            affine = _augment_affine(rng, aug, (h, w)) @ np.vstack([pool.base[j], [0, 0, 1]])
            # Shrinking first by area averaging (as frame_to_input) keeps fine texture from
            # aliasing; the remaining small similarity is a bilinear warp.
            small = cv2.resize(
                image,
                None,
                fx=pool.base[j, 0, 0],
                fy=pool.base[j, 1, 1],
                interpolation=cv2.INTER_AREA if cfg.scale_factor < 1 / 1.5 else cv2.INTER_LINEAR,
            )
            warp = affine @ np.vstack([invert_affine(pool.base[j]), [0, 0, 1]])
            images[v] = cv2.warpAffine(small, warp, (w, h), flags=cv2.INTER_LINEAR)
            points = apply_affine(affine, labels[f, j].astype(np.float64))
            inside = (
                (points >= -0.5).all(-1) & (points[:, 0] <= w - 0.5) & (points[:, 1] <= h - 0.5)
            )
            keypoints[v] = np.where(inside[:, None], points, np.nan)
            inverse[v] = invert_affine(affine)
            v += 1
    x = images.astype(np.float32) / 255.0
    if train and aug:
        # Photometric changes, one draw per view: contrast about the mean, brightness, noise.
        contrast = 1.0 + rng.uniform(-1, 1, (num, 1, 1, 1)) * float(aug.get("contrast", 0.0))
        bright = rng.uniform(-1, 1, (num, 1, 1, 1)) * float(aug.get("brightness", 0.0))
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * contrast + mean + bright
        if aug.get("noise_std", 0.0):
            x = x + rng.normal(0.0, float(aug["noise_std"]), x.shape).astype(np.float32)
        x = np.clip(x, 0.0, 1.0)
    frames = np.concatenate(
        [project.frames[labelled], pool.unlabelled_frames[unlabelled] if nu else [], clip_frames]
    )
    return {
        "image": normalize_images((x * 255.0).astype(np.float32)),
        "keypoints": keypoints,
        "inverse": inverse,
        "labels": labels,
        "frames": frames.astype(np.int64),
    }


# ---------------------------------------------------------------------------------------------
# The step


def _rig_arrays(rig: Camera, fields: Sequence[str]) -> dict[str, jax.Array]:
    return {name: jnp.asarray(getattr(rig, name), jnp.float32) for name in fields}


def _apply_delta(reference: Camera, delta: Mapping[str, jax.Array], sigma) -> Camera:
    """The rig ``reference + sigma * delta`` over the trained fields (float32)."""
    return dataclasses.replace(
        reference,
        **{k: jnp.asarray(getattr(reference, k)) + float(sigma[k]) * d for k, d in delta.items()},
    )


def make_multiview_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    camera_optimizer: optax.GradientTransformation | None,
    cfg: MultiViewTrainConfig,
    *,
    num_frames: int,
    num_cameras: int,
    bones: Sequence[tuple[int, int]] = (),
    bone_lengths: np.ndarray | None = None,
):
    """The jitted step ``(params, rest, opt_state, reference, batch arrays) -> (params, rest,
    opt_state, metrics)``.

    ``opt_state`` is ``{"model": ..., "cameras": {"delta": {field: (C, ...)}, "opt": ...}}``
    (``cameras`` absent unless ``train_cameras``); ``reference`` is the board calibration
    (:class:`Camera`, float32). Donates params, rest and opt_state.

    ``num_frames`` counts every frame of a batch, the temporal term's clip frames included
    (the last :meth:`MultiViewTrainConfig.num_clip_frames` of them). ``bones`` (keypoint index
    pairs) and ``bone_lengths`` ((bone,) reference lengths, NaN = batch median) serve the limb
    term; ``bones`` must not be empty when ``cfg.limb_weight`` > 0.
    """
    loss_2d = {k: v for k, v in cfg.loss.items() if float(v["weight"]) != 0}
    mv_config = cfg.loss_3d()
    # The clips only feed the temporal (and limb) terms, so their 3D pass skips the others.
    clip_config = dataclasses.replace(mv_config, label_weight=0.0, consistency_weight=0.0)
    use_3d = bool(
        cfg.label3d_weight or cfg.consistency_weight or cfg.temporal_weight or cfg.limb_weight
    )
    num_clip_frames = cfg.num_clip_frames()
    num_main = num_frames - num_clip_frames
    if num_main < 1:
        raise ValueError(
            f"num_frames={num_frames} must exceed the {num_clip_frames} frames of the clips"
        )
    if cfg.limb_weight and not len(bones):
        raise ValueError("limb_weight > 0 needs bones (keypoint index pairs)")
    bones = np.asarray(bones, np.int32).reshape(-1, 2)
    if bone_lengths is not None:
        bone_lengths = np.asarray(bone_lengths, np.float32).reshape(-1)
    sigma = dict(cfg.camera_prior_sigma)
    prior_weight = float(cfg.camera_prior_weight)
    camera_label_weight = float(cfg.camera_label_weight)

    def loss_fn(params, delta, rest, reference, images, keypoints, inverse, labels):
        rest = jax.tree.map(lambda x: x, rest)
        rig = reference if delta is None else _apply_delta(reference, delta, sigma)
        model = nnx.merge(graphdef, params, rest)
        outputs = model(images, train=True)
        stride = images.shape[1] // outputs["heatmap"].shape[1]
        terms: dict[str, jax.Array] = {}
        total = jnp.zeros((), jnp.float32)
        if loss_2d:
            total, terms = total_loss(outputs, keypoints, stride=stride, config=loss_2d)
        if use_3d:
            points, confidence = decode_soft_argmax(outputs["heatmap"], stride, model.beta)
            # Input px -> original px: the inverse affine is linear, gradients pass through.
            original = (
                jnp.einsum("vij,vkj->vki", inverse[:, :, :2], points) + inverse[:, None, :, 2]
            )
            shape = (num_frames, num_cameras, *points.shape[1:])
            original = original.reshape(shape)
            confidence = confidence.reshape(shape[:-1])
            # 3D points of the frames, (frame, kpt, 3) with (frame, kpt) validity, for the limb
            # term: the labelled and unlabelled frames', then the clips'.
            points_3d, valid_3d = [], []
            if cfg.label3d_weight or cfg.consistency_weight or cfg.limb_weight:
                mv = multiview_losses(
                    rig,
                    original[:num_main],
                    confidence[:num_main],
                    labels[:num_main],
                    config=mv_config,
                )
                if cfg.label3d_weight:
                    terms["label3d"] = mv["label"]
                    total = total + cfg.label3d_weight * mv["label"]
                if cfg.consistency_weight:
                    terms["consistency"] = mv["consistency"]
                    total = total + cfg.consistency_weight * mv["consistency"]
                points_3d.append(mv["points"])
                valid_3d.append(mv["ncams"] >= 2)
            if num_clip_frames:
                clip = multiview_losses(
                    rig,
                    original[num_main:],
                    confidence[num_main:],
                    labels[num_main:],
                    config=clip_config,
                )
                clip_shape = (cfg.clips_per_batch, cfg.clip_length)
                terms["temporal"], _ = temporal_loss(
                    clip["points"].reshape(*clip_shape, *clip["points"].shape[1:]),
                    (clip["ncams"] >= 2).reshape(*clip_shape, -1),
                    huber_mm=float(cfg.temporal_huber_mm),
                )
                total = total + cfg.temporal_weight * terms["temporal"]
                points_3d.append(clip["points"])
                valid_3d.append(clip["ncams"] >= 2)
            if cfg.limb_weight:
                terms["limb"], _ = limb_loss(
                    jnp.concatenate(points_3d),
                    jnp.concatenate(valid_3d),
                    bones,
                    reference=bone_lengths,
                    huber_mm=float(cfg.limb_huber_mm),
                )
                total = total + cfg.limb_weight * terms["limb"]
        if delta is not None and camera_label_weight:
            terms["camera_label"] = label_geometry_loss(
                rig, labels[:num_main], huber_px=float(cfg.huber_px)
            )
            total = total + camera_label_weight * terms["camera_label"]
        if delta is not None and prior_weight:
            terms["camera_prior"] = camera_prior(rig, reference, sigma=sigma)
            total = total + prior_weight * terms["camera_prior"]
        _, _, new_rest = split_model(model)
        return total, (terms, new_rest)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(params, rest, opt_state, reference, images, keypoints, inverse, labels):
        cams = opt_state.get("cameras")
        delta = None if cams is None else cams["delta"]
        grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
        (loss, (terms, rest)), (grads, delta_grads) = grad_fn(
            params, delta, rest, reference, images, keypoints, inverse, labels
        )
        updates, model_opt = optimizer.update(grads, opt_state["model"], params)
        params = optax.apply_updates(params, updates)
        new_state = {"model": model_opt}
        metrics = {"loss": loss, **terms, "grad_norm": optax.tree.norm(grads)}
        if cams is not None:
            cam_updates, cam_opt = camera_optimizer.update(delta_grads, cams["opt"], delta)
            new_state["cameras"] = {
                "delta": optax.apply_updates(delta, cam_updates),
                "opt": cam_opt,
            }
            metrics["camera_grad_norm"] = optax.tree.norm(delta_grads)
        return params, rest, new_state, metrics

    return step


# ---------------------------------------------------------------------------------------------
# Prediction


def predict_frames(
    model: nnx.Module,
    images: Sequence[np.ndarray],
    *,
    scale_factor: float,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of whole frames (one camera or several of one size) in original px.

    Args:
        model: a :class:`~jaxpose.models.PoseNet` (its configured decoder is used).
        images: (H, W, 3) uint8 frames, all of one size.
        scale_factor: as in training.
        batch_size: frames per forward pass (the last batch is padded: one compilation).

    Returns:
        ``(keypoints (N, K, 2) original px, confidence (N, K))``.
    """
    from jaxpose.data.augment import frame_to_input

    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, x):
        return nnx.merge(graphdef, state).predict(x)

    prepared = [frame_to_input(im, scale_factor=scale_factor) for im in images]
    inverse = invert_affine(prepared[0][1])
    out_k, out_c = [], []
    for start in range(0, len(prepared), batch_size):
        chunk = np.stack([p[0] for p in prepared[start : start + batch_size]])
        count = len(chunk)
        if count < batch_size:
            chunk = np.concatenate(
                [chunk, np.zeros((batch_size - count, *chunk.shape[1:]), chunk.dtype)]
            )
        k, c = forward(state, jnp.asarray(normalize_images(chunk.astype(np.float32))))
        out_k.append(np.asarray(k)[:count])
        out_c.append(np.asarray(c)[:count])
    keypoints = apply_affine(inverse, np.concatenate(out_k).astype(np.float64))
    return keypoints, np.concatenate(out_c)


# ---------------------------------------------------------------------------------------------
# The loop


@dataclasses.dataclass(frozen=True)
class MultiViewResult:
    """What :func:`train_multiview` did.

    Attributes:
        run_dir: the run folder.
        step: the last step trained.
        start_step: the step this call resumed from (0 for a fresh run).
        metrics: one dict per step trained by this call (loss, the computed terms, ...).
        wall_time_s: training time of this call (first compiling step included).
        calibration: the trained rig (``train_cameras``) or the reference one.
        model: the trained :class:`~jaxpose.models.PoseNet`.
    """

    run_dir: Path
    step: int
    start_step: int
    metrics: tuple[dict[str, float], ...]
    wall_time_s: float
    calibration: Calibration
    model: nnx.Module


def _run_config(cfg: MultiViewTrainConfig, project: MultiViewProject, input_hw) -> dict:
    """``config.yaml`` in the single-view ``TrainConfig`` layout (``load_trained`` reads it)."""
    return {
        "data": str(project.root),
        "out": str(cfg.out),
        "backbone": dict(cfg.backbone),
        "head": dict(cfg.head),
        "augment": {"crop_mode": "fixed_scale", "scale_factor": float(cfg.scale_factor)},
        "loss": json.loads(json.dumps(cfg.loss)),
        "train": dataclasses.asdict(cfg.options()),
        "split": {"train_fraction": 1.0, "seed": int(cfg.seed)},
        "bodyparts": list(project.bodyparts),
        "input_size": int(max(input_hw)),
        "seed": int(cfg.seed),
    }


def _check_resumable(run: Path, cfg: MultiViewTrainConfig) -> None:
    path = run / "multiview.yaml"
    if not path.is_file():
        return
    old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    new = yaml.safe_load(yaml.safe_dump(cfg.to_dict()))
    # An option the interrupted run's file lacks (added since) had its default value.
    defaults = yaml.safe_load(yaml.safe_dump(MultiViewTrainConfig(project="", out="").to_dict()))
    changed = sorted(
        k
        for k in set(old) | set(new)
        if k not in _RESUMABLE and old.get(k, defaults.get(k)) != new.get(k)
    )
    if changed:
        raise MultiViewError(
            f"{run}: cannot resume, options {changed} differ from the interrupted run's "
            f"({path}); train into a new out= folder"
        )


@jax.jit
def _copy_tree(tree):
    return jax.tree.map(jnp.copy, tree)


def _trained_calibration(
    project: MultiViewProject, reference: Camera, opt_state, cfg
) -> Calibration:
    cams = opt_state.get("cameras")
    if cams is None:
        return project.calibration
    rig = _apply_delta(reference, cams["delta"], cfg.camera_prior_sigma)
    rig = jax.tree.map(lambda a: np.asarray(a, np.float64), rig)
    meta = dict(project.calibration.metadata) | {"trained": "jaxpose multi-view training"}
    return Calibration(rig, project.camera_names, meta)


def train_multiview(cfg: MultiViewTrainConfig, *, stop_after: int | None = None) -> MultiViewResult:
    """Trains a pose network on a multi-camera project with 2D and 3D losses.

    Args:
        cfg: the configuration.
        stop_after: stop after this step as if interrupted (a checkpoint is saved);
            ``resume=True`` continues identically.

    Returns:
        :class:`MultiViewResult`.

    Raises:
        MultiViewError: bad project or configuration, checkpoints in ``out`` without
            ``resume``, or a non-finite loss.
    """
    from tqdm.auto import tqdm

    _validate(cfg)
    project = load_multiview_project(cfg.project, calibration=cfg.calibration)
    bones = _bone_indices(cfg, project)
    bone_lengths = None
    if cfg.limb_weight and cfg.limb_reference == "labels":
        bone_lengths = labelled_bone_lengths(project, bones)
    pool = _make_pool(cfg, project)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    num_frames = (
        cfg.batch_frames
        + (cfg.unlabelled_frames_per_batch if len(pool.unlabelled_frames) else 0)
        + cfg.num_clip_frames()
    )
    num_cameras = len(project.camera_names)

    model = build_multiview_model(
        cfg.backbone, cfg.head, num_keypoints=len(project.bodyparts), rngs=nnx.Rngs(cfg.seed)
    )
    signature = _signature(model)
    graphdef, params, rest = split_model(model)
    del model
    optimizer, schedule = make_optimizer(cfg.options())
    reference = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), project.calibration.rig)
    opt_state: dict[str, Any] = {"model": jax.jit(optimizer.init)(params)}
    camera_optimizer = None
    if cfg.train_cameras:
        camera_optimizer = optax.adam(
            optax.warmup_cosine_decay_schedule(
                0.0, cfg.camera_lr, cfg.warmup_steps, cfg.steps, cfg.camera_lr * cfg.end_lr_fraction
            )
        )
        delta = {
            k: jnp.zeros_like(v) for k, v in _rig_arrays(reference, cfg.camera_prior_sigma).items()
        }
        opt_state["cameras"] = {"delta": delta, "opt": camera_optimizer.init(delta)}

    manager = checkpoint_manager(run, max_to_keep=cfg.max_to_keep)
    start = 0
    try:
        saved = sorted(manager.all_steps())
        if saved and not cfg.resume:
            raise MultiViewError(
                f"{run} already holds checkpoints (steps {saved}); pass resume=True to continue, "
                "or choose a new out folder"
            )
        if saved:
            _check_resumable(run, cfg)
            params, rest, opt_state, meta = restore_checkpoint(
                manager, saved[-1], params=params, rest=rest, opt_state=opt_state,
                architecture_signature=signature,
            )  # fmt: skip
            start = int(meta["step"])
    except BaseException:
        manager.close()
        raise
    atomic_write_text(run / "multiview.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    atomic_write_text(
        run / "config.yaml",
        yaml.safe_dump(_run_config(cfg, project, pool.input_hw), sort_keys=False),
    )

    step_fn = make_multiview_step(
        graphdef, optimizer, camera_optimizer, cfg, num_frames=num_frames,
        num_cameras=num_cameras, bones=bones, bone_lengths=bone_lengths,
    )  # fmt: skip
    recalibrate = None
    if cfg.bn_recalibration_batches > 0:
        recalibrate = make_bn_recalibration(graphdef, params, rest, freeze_bn=False)

    def recalibration_images():
        # Batches from a stream the training never draws (steps from 10**9 on): no randomness
        # shared with training, the same for a resumed run as for an uninterrupted one.
        for k in range(cfg.bn_recalibration_batches):
            yield make_batch(pool, cfg, 10**9 + k, train=False)["image"]

    end = cfg.steps if stop_after is None else min(cfg.steps, int(stop_after))
    term_names = [k for k, v in cfg.loss.items() if float(v["weight"]) != 0]
    term_names += [n for n, w in (("label3d", cfg.label3d_weight),
                                  ("consistency", cfg.consistency_weight),
                                  ("temporal", cfg.temporal_weight),
                                  ("limb", cfg.limb_weight)) if w]  # fmt: skip
    if cfg.train_cameras and cfg.camera_label_weight:
        term_names.append("camera_label")
    if cfg.train_cameras and cfg.camera_prior_weight:
        term_names.append("camera_prior")
    columns = ["loss", *term_names, "lr", "grad_norm", "step_time_s", "wall_time_s"]
    writer = MetricsWriter(
        run,
        columns=columns,
        resume_step=start if start else None,
        tensorboard=cfg.tensorboard,
        flush_every=cfg.log_every,
    )

    def metadata(step: int) -> dict[str, Any]:
        return {
            "architecture_signature": signature,
            "bodyparts": list(project.bodyparts),
            "input_size": int(max(pool.input_hw)),
            "input_shape": list(pool.input_hw),
            "scale_factor": float(cfg.scale_factor),
            "camera_names": list(project.camera_names),
            "step": step,
            "data_step": step,
            "seed": cfg.seed,
        }

    executor = concurrent.futures.ThreadPoolExecutor(1) if cfg.workers > 0 else None

    def fetch(k: int):
        if executor is None:
            return make_batch(pool, cfg, k)
        return executor.submit(make_batch, pool, cfg, k)

    history: list[dict[str, float]] = []
    bar = tqdm(
        total=cfg.steps, initial=start, desc="multiview", unit="step", disable=not cfg.progress
    )
    t0 = last = time.perf_counter()
    step = start
    try:
        pending = fetch(start) if start < end else None
        for step in range(start + 1, end + 1):
            batch = pending.result() if executor is not None else pending
            pending = fetch(step) if step < end else None
            params, rest, opt_state, metrics = step_fn(
                params, rest, opt_state, reference,
                batch["image"], batch["keypoints"], batch["inverse"], batch["labels"],
            )  # fmt: skip
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            now = time.perf_counter()
            if not math.isfinite(metrics["loss"]):
                raise MultiViewError(
                    f"the loss became {metrics['loss']} at step {step} ({metrics}); lower lr"
                )
            row = metrics | {
                "lr": float(schedule(step - 1)),
                "step_time_s": now - last,
                "wall_time_s": now - t0,
            }
            last = now
            history.append(row)
            writer.write(step, row)
            bar.update(1)
            if step % cfg.log_every == 0 or step == end:
                bar.set_postfix(loss=f"{metrics['loss']:.4g}")
            if step % cfg.checkpoint_every == 0 or step == end:
                if recalibrate is not None:
                    rest = recalibrate(params, rest, recalibration_images())
                p, r, o = _copy_tree((params, rest, opt_state))
                save_checkpoint(
                    manager, step, params=p, rest=r, opt_state=o, metadata=metadata(step)
                )
    finally:
        bar.close()
        writer.close()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        manager.wait_until_finished()
        manager.close()
    wall = time.perf_counter() - t0
    calibration = _trained_calibration(project, reference, opt_state, cfg)
    if cfg.train_cameras:
        save_calibration(calibration, run / "calibration_trained.toml")
    if step >= cfg.steps:
        summary = {
            "run_dir": str(run),
            "project": str(project.root),
            "steps": step,
            "resumed_from": start or None,
            "final_loss": history[-1]["loss"] if history else None,
            "wall_time_s": wall,
            "cameras": list(project.camera_names),
            "input_shape": list(pool.input_hw),
            "num_labelled_frames": len(project.frames),
            "num_unlabelled_frames": len(pool.unlabelled_frames),
        }
        if cfg.temporal_weight:
            summary["num_clips"] = len(pool.clip_frames)
        if cfg.limb_weight:
            summary["bones"] = [[project.bodyparts[a], project.bodyparts[b]] for a, b in bones]
            if bone_lengths is not None:
                summary["bone_lengths_labels"] = [
                    None if not np.isfinite(v) else float(v) for v in bone_lengths
                ]
        atomic_write_text(run / "train_summary.json", json.dumps(summary, indent=1) + "\n")
    model = nnx.merge(graphdef, params, rest)
    return MultiViewResult(run, step, start, tuple(history), wall, calibration, model)


def load_multiview_run(run_dir: str | os.PathLike, *, step: int | None = None):
    """``(model, metadata)`` of a multi-view run (works before ``small_cnn`` is registered in
    :func:`jaxpose.models.build_backbone`; afterwards ``checkpoint.load_trained`` does too)."""
    run = Path(run_dir)
    path = run / "multiview.yaml"
    if not path.is_file():
        raise MultiViewError(f"{run}: not a multi-view run folder (no multiview.yaml)")
    options = yaml.safe_load(path.read_text(encoding="utf-8"))
    manager = checkpoint_manager(run, max_to_keep=None, create=False)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise MultiViewError(f"{run}: no complete checkpoint")
        step = steps[-1] if step is None else int(step)
        from jaxpose.train.checkpoint import read_checkpoint_metadata

        meta = read_checkpoint_metadata(manager, step)
        model = build_multiview_model(
            options["backbone"], options["head"], num_keypoints=len(meta["bodyparts"]),
            rngs=nnx.Rngs(0),
        )  # fmt: skip
        _, params, rest = split_model(model)
        params, rest, _, meta = restore_checkpoint(
            manager, step, params=params, rest=rest, opt_state=None,
            architecture_signature=_signature(model),
        )  # fmt: skip
    finally:
        manager.close()
    nnx.update(model, params, rest)
    return model, meta
