"""Training a 2D pose network on labelled frames: configuration, jitted step, loop, quick errors.

``train(cfg)`` reads a DeepLabCut project, splits it (seeded), builds a :class:`PoseNet`, and
optimises it with AdamW (linear warm-up, cosine decay, global-norm clipping). Everything random
derives from ``cfg.seed``: parameter initialisation, batch order and augmentation (batch ``k`` is a
pure function of the seed and ``k``, see :mod:`jaxpose.data.loader`). Checkpoints hold the
parameters, batch statistics, optimiser state and step, so ``train.resume=true`` continues exactly
where an interrupted run stopped: the continuation equals an uninterrupted run.

The train step is one ``jax.jit`` of a pure function of ``(params, rest, opt_state, batch)``
(``nnx.split`` once, ``nnx.merge`` inside the trace): it compiles once per input shape, and the
parameter, statistics and optimiser buffers are donated so XLA updates them in place.

Run folder layout: see the issue-4 contract (``config.yaml``, ``split.json``, ``checkpoints/``,
``metrics.csv``, ``tb/``, ``train_summary.json``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml
from flax import nnx

from jaxpose.data import (
    AugmentConfig,
    Augmenter,
    Batches,
    LabelledFrames,
    load_dlc_project,
    split_indices,
)
from jaxpose.io.atomic import atomic_write_text
from jaxpose.train.checkpoint import (
    checkpoint_manager,
    restore_checkpoint,
    save_checkpoint,
    split_model,
)
from jaxpose.train.inference import Predictor, predict_images
from jaxpose.train.losses import check_loss_config, total_loss
from jaxpose.train.metrics import MetricsWriter, read_metrics

__all__ = [
    "DEFAULT_LOSS",
    "PixelErrors",
    "SplitConfig",
    "TrainConfig",
    "TrainError",
    "TrainOptions",
    "TrainResult",
    "build_model",
    "make_optimizer",
    "make_train_step",
    "model_signature",
    "pixel_errors",
    "read_run_config",
    "summarize_errors",
    "train",
]


class TrainError(ValueError):
    """A training configuration or run folder that cannot be used; the message says what to do."""


# DeepLabCut's defaults where it has one: locref radius 17 px and std 7.2801, weight 0.05.
DEFAULT_LOSS: dict[str, dict[str, Any]] = {
    "heatmap": {"weight": 1.0, "sigma": 8.0, "kind": "gaussian"},
    "locref": {"weight": 0.05, "radius": 17.0, "std": 7.2801, "huber_delta": 1.0},
    "coordinate": {"weight": 0.0, "beta": 1.0, "huber_delta": 1.0},
}


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """Train/test split of the labelled frames (DeepLabCut style, seeded).

    Attributes:
        train_fraction: fraction of frames for training, in (0, 1].
        seed: seed of the permutation.
    """

    train_fraction: float = 0.95
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Optimisation and bookkeeping options (the ``train:`` section of ``conf/train.yaml``).

    Attributes:
        steps: optimisation steps in total (the cosine schedule ends here).
        batch_size: images per step.
        lr: peak learning rate of AdamW.
        warmup_steps: linear warm-up from 0 to ``lr``; must be below ``steps``.
        end_lr_fraction: the cosine decay ends at ``lr * end_lr_fraction``.
        weight_decay: AdamW decoupled weight decay, applied to kernels only (not to biases or
            batch-norm scales).
        grad_clip: clip the gradient's global norm to this; 0 disables clipping.
        freeze_bn: ``'auto'`` (freeze when the backbone is pretrained), ``true`` or ``false``.
            Frozen: the backbone's batch norm uses its stored statistics and does not update
            them. Tiny pose batches give noisy batch statistics that spoil ImageNet ones.
        bn_recalibration_batches: before every checkpoint, replace the running batch-norm
            statistics of the layers that train in batch mode by their average over this many
            eval-mode batches of the training frames at the current weights ("precise BN";
            0 = off). The running averages lag the weights, and a channel the network has made
            nearly constant has a tiny variance, so a small lag in its mean becomes a large
            error in eval mode: a network that trains well can then predict garbage.
        checkpoint_every: save every this many steps (and always at the last step).
        max_to_keep: newest checkpoints kept.
        log_every: refresh the progress bar's loss and flush the metrics every this many steps.
        eval_batch_size: batch size of the final error evaluation.
        workers: background threads that augment batches while the network trains.
        resume: continue from the newest checkpoint in ``out`` (an error if ``out`` holds
            checkpoints and this is false).
        progress: show a tqdm progress bar.
        tensorboard: also write TensorBoard events to ``<run>/tb``.
    """

    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 100
    end_lr_fraction: float = 0.01
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    freeze_bn: bool | str = "auto"
    bn_recalibration_batches: int = 8
    checkpoint_every: int = 500
    max_to_keep: int = 3
    log_every: int = 10
    eval_batch_size: int = 16
    workers: int = 1
    resume: bool = False
    progress: bool = True
    tensorboard: bool = True


# Options that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = frozenset(
    {
        "out",
        "train.steps",
        "train.resume",
        "train.progress",
        "train.log_every",
        "train.checkpoint_every",
        "train.max_to_keep",
        "train.eval_batch_size",
        "train.workers",
        "train.tensorboard",
    }
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; ``conf/train.yaml`` has the same layout.

    Attributes:
        data: a DeepLabCut project folder or one CollectedData file.
        out: the run folder.
        backbone: backbone configuration (``conf/backbone/*.yaml``).
        head: head configuration (``conf/head/*.yaml``).
        augment: :class:`~jaxpose.data.AugmentConfig` fields; ``input_size`` is taken from
            :attr:`input_size`.
        loss: ``{term: {"weight": w, **options}}``, terms from :data:`jaxpose.train.LOSSES`.
        train: optimisation options.
        split: train/test split.
        bodyparts: body parts to train on, in order; ``None`` = all of the project's.
        input_size: side of the square network input in px; a multiple of 32.
        seed: initialisation, batch order and augmentation.
    """

    data: str
    out: str
    backbone: dict[str, Any]
    head: dict[str, Any]
    augment: dict[str, Any] = dataclasses.field(default_factory=dict)
    loss: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=lambda: json.loads(json.dumps(DEFAULT_LOSS))
    )
    train: TrainOptions = dataclasses.field(default_factory=TrainOptions)
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    bodyparts: tuple[str, ...] | None = None
    input_size: int = 256
    seed: int = 0

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> TrainConfig:
        """Builds a config from a (Hydra) mapping of the ``conf/train.yaml`` layout.

        Raises:
            TrainError: unknown or missing keys, named with their section.
        """
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(mapping, DictConfig):
                mapping = OmegaConf.to_container(mapping, resolve=True)
        except ImportError:  # pragma: no cover - omegaconf is a dependency
            pass
        mapping = dict(mapping)
        sections = {"train": TrainOptions, "split": SplitConfig}
        values: dict[str, Any] = {}
        _check_keys(mapping, cls, "")
        for key, value in mapping.items():
            if key in sections:
                value = dict(value or {})
                _check_keys(value, sections[key], f"{key}.")
                value = sections[key](**value)
            elif key in ("backbone", "head", "augment", "loss"):
                value = json.loads(json.dumps(dict(value or {})))  # plain, detached copies
            elif key == "bodyparts" and value is not None:
                value = (value,) if isinstance(value, str) else tuple(str(b) for b in value)
            values[key] = value
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise TrainError(f"training configuration lacks {missing}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict in the ``conf/train.yaml`` layout (what ``config.yaml`` holds)."""
        out = dataclasses.asdict(self)
        out["bodyparts"] = None if self.bodyparts is None else list(self.bodyparts)
        return out


def _check_keys(mapping: Mapping[str, Any], cls: type, prefix: str) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise TrainError(
            f"unknown training option(s) {[prefix + k for k in unknown]}; "
            f"known {prefix or 'top-level '}options: {known}"
        )


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The configuration a run was trained with (``<run>/config.yaml``).

    Raises:
        CheckpointError: the file is missing or unreadable.
    """
    from jaxpose.train.checkpoint import CheckpointError

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a jaxpose run folder (no config.yaml)")
    try:
        with open(path, encoding="utf-8") as f:
            return TrainConfig.from_mapping(yaml.safe_load(f))
    except (OSError, yaml.YAMLError, TrainError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot read the run configuration ({e})") from None


def _validate(cfg: TrainConfig) -> None:
    t = cfg.train
    problems = []
    if cfg.input_size < 32 or cfg.input_size % 32:
        problems.append(
            f"input_size={cfg.input_size} must be a positive multiple of 32 (the backbone's "
            "deepest stride), e.g. 128, 192, 256"
        )
    if t.steps < 1:
        problems.append(f"train.steps={t.steps} must be >= 1")
    if t.batch_size < 1:
        problems.append(f"train.batch_size={t.batch_size} must be >= 1")
    if not 0 <= t.warmup_steps < t.steps:
        problems.append(
            f"train.warmup_steps={t.warmup_steps} must be in [0, train.steps={t.steps})"
        )
    if t.checkpoint_every < 1 or t.log_every < 1:
        problems.append("train.checkpoint_every and train.log_every must be >= 1")
    if t.lr <= 0:
        problems.append(f"train.lr={t.lr} must be positive")
    if int(t.bn_recalibration_batches) < 0:
        problems.append(
            f"train.bn_recalibration_batches={t.bn_recalibration_batches} must be >= 0 (0 = off)"
        )
    if str(t.freeze_bn).lower() not in ("auto", "true", "false"):
        problems.append(f"train.freeze_bn={t.freeze_bn!r} must be auto, true or false")
    if problems:
        raise TrainError("invalid training configuration:\n  " + "\n  ".join(problems))
    try:
        check_loss_config(cfg.loss)
    except ValueError as e:
        raise TrainError(str(e)) from None


def _freeze_bn(cfg: TrainConfig) -> bool:
    value = str(cfg.train.freeze_bn).lower()
    if value == "auto":
        return bool(cfg.backbone.get("pretrained", False))
    return value == "true"


# ---------------------------------------------------------------------------------------------
# Model, optimiser, step


def build_model(
    cfg: TrainConfig,
    *,
    num_keypoints: int,
    pretrained: bool | None = None,
    rngs: nnx.Rngs | None = None,
) -> nnx.Module:
    """The configured :class:`~jaxpose.models.PoseNet`.

    Args:
        cfg: the run's configuration (``backbone`` and ``head`` sections).
        num_keypoints: K.
        pretrained: override the backbone's ``pretrained`` setting (``False`` when the weights
            are about to be restored from a checkpoint).
        rngs: initialisation randomness; default ``nnx.Rngs(cfg.seed)``.
    """
    from jaxpose.models import build_posenet

    backbone = dict(cfg.backbone)
    if pretrained is not None:
        backbone["pretrained"] = pretrained
    return build_posenet(
        backbone=backbone,
        head=dict(cfg.head),
        num_keypoints=num_keypoints,
        rngs=rngs if rngs is not None else nnx.Rngs(cfg.seed),
    )


def model_signature(model: nnx.Module) -> str:
    """The architecture signature saved with checkpoints (:func:`jaxpose.models.architecture_signature`)."""
    from jaxpose.models import architecture_signature

    return architecture_signature(model)


def _forward(model: nnx.Module, images: jax.Array, *, freeze_bn: bool) -> dict[str, jax.Array]:
    """Training-mode outputs; with ``freeze_bn`` the backbone runs its batch norm in eval mode."""
    if not freeze_bn:
        return model(images, train=True)
    features = model.backbone.features(images, train=False)
    return model.head(features, train=True)


def make_optimizer(options: TrainOptions) -> tuple[optax.GradientTransformation, Callable]:
    """AdamW with linear warm-up and cosine decay, after global-norm clipping.

    Returns:
        ``(optimizer, schedule)``: ``schedule(count)`` is the learning rate of update ``count``
        (0-based).
    """
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=options.lr,
        warmup_steps=options.warmup_steps,
        decay_steps=options.steps,
        end_value=options.lr * options.end_lr_fraction,
    )
    # Decay kernels only: decaying batch-norm scales and biases only hurts.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
    parts = [optax.clip_by_global_norm(options.grad_clip)] if options.grad_clip > 0 else []
    parts.append(optax.adamw(schedule, weight_decay=options.weight_decay, mask=decay_mask))
    return optax.chain(*parts), schedule


def make_train_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    *,
    loss_config: Mapping[str, Mapping[str, Any]],
    freeze_bn: bool,
) -> Callable:
    """The jitted step ``(params, rest, opt_state, images, keypoints) -> (params, rest,
    opt_state, metrics)``.

    ``images`` are ``(B, S, S, 3)`` normalised, ``keypoints`` ``(B, K, 2)`` input px (NaN =
    unlabelled). The first three arguments are donated: do not use them after the call. The
    heatmap stride is read from the shapes at trace time.
    """

    def loss_fn(params, rest, images, keypoints):
        # Fresh Variables at this trace level: nnx refuses to update (batch statistics)
        # Variables that were created outside the gradient trace.
        rest = jax.tree.map(lambda x: x, rest)
        model = nnx.merge(graphdef, params, rest)
        outputs = _forward(model, images, freeze_bn=freeze_bn)
        stride = images.shape[1] // outputs["heatmap"].shape[1]
        loss, terms = total_loss(outputs, keypoints, stride=stride, config=loss_config)
        _, _, new_rest = split_model(model)
        return loss, (terms, new_rest)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def train_step(params, rest, opt_state, images, keypoints):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (terms, rest)), grads = grad_fn(params, rest, images, keypoints)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, **terms, "grad_norm": optax.tree.norm(grads)}
        return params, rest, opt_state, metrics

    return train_step


def make_bn_recalibration(
    graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State, *, freeze_bn: bool
) -> Callable:
    """``recalibrate(params, rest, batches) -> rest`` with precise batch-norm statistics.

    Every batch-norm layer that runs in batch mode during training (the head's; the backbone's
    too unless ``freeze_bn``) gets as running mean and variance the average, over ``batches``
    (an iterable of ``(B, S, S, 3)`` normalised images), of the batch statistics at the current
    weights. Layers in eval mode during training keep theirs. Parameters are not touched.
    ``params`` and ``rest`` only serve to build the model once (their values are not kept).
    """
    template = nnx.merge(graphdef, params, rest)
    for _, module in nnx.iter_modules(template):
        if isinstance(module, nnx.BatchNorm):
            module.momentum = 0.0  # running statistics := this batch's statistics
    graphdef_now = nnx.graphdef(template)

    @jax.jit
    def batch_statistics(params, rest, images):
        model = nnx.merge(graphdef_now, params, jax.tree.map(lambda x: x, rest))
        _forward(model, images, freeze_bn=freeze_bn)
        return nnx.state(model, nnx.BatchStat)

    def recalibrate(params, rest, batches) -> nnx.State:
        total, count = None, 0
        for images in batches:
            stats = batch_statistics(params, rest, images)
            total = stats if total is None else jax.tree.map(jnp.add, total, stats)
            count += 1
        if not count:
            return rest
        # Fresh Variables: merging may adopt the state's own Variables, which the caller keeps.
        model = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, rest))
        nnx.update(model, jax.tree.map(lambda x: x / count, total))
        return split_model(model)[2]

    return recalibrate


# ---------------------------------------------------------------------------------------------
# Quick evaluation in original image pixels


@dataclasses.dataclass(frozen=True)
class PixelErrors:
    """Predictions of a set of frames, mapped back to original image pixels.

    Attributes:
        predictions: (N, K, 2) original px.
        confidence: (N, K) in [0, 1].
        errors: (N, K) Euclidean distance to the label in original px; NaN where unlabelled.
    """

    predictions: np.ndarray
    confidence: np.ndarray
    errors: np.ndarray


def summarize_errors(errors: np.ndarray) -> dict[str, float]:
    """``rmse_px`` (root mean square of the distances), ``mean_px`` (DeepLabCut's "RMSE", the
    mean distance), ``median_px`` and the count of labelled points ``n``."""
    e = np.asarray(errors, dtype=np.float64)
    e = e[np.isfinite(e)]
    if not e.size:
        return {"rmse_px": math.nan, "mean_px": math.nan, "median_px": math.nan, "n": 0}
    return {
        "rmse_px": float(np.sqrt(np.mean(e**2))),
        "mean_px": float(np.mean(e)),
        "median_px": float(np.median(e)),
        "n": int(e.size),
    }


class _FrameImages(Sequence):
    """The frames' images, read when indexed (predict_images reads one batch at a time)."""

    def __init__(self, frames: LabelledFrames):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.frames.load_image(i)


def pixel_errors(
    model: nnx.Module | Predictor,
    frames: LabelledFrames,
    augmenter: Augmenter,
    *,
    batch_size: int = 16,
    progress: bool = False,
) -> PixelErrors:
    """Predicts every frame through the augmenter's eval crop; errors in original pixels.

    Predictions in network-input pixels are mapped back through the inverse of each frame's
    crop affine (:func:`jaxpose.train.inference.predict_images`). The crop comes from the
    labels (the augmenter's eval mode), as in training; a deployment without labels crops
    around a detection instead, or letterboxes the whole frame.

    Args:
        model: a :class:`~jaxpose.models.PoseNet` (``predict`` gives input px + confidence), or
            a :class:`~jaxpose.train.inference.Predictor` of one (reuse it across frame sets).
        frames: labelled frames.
        augmenter: supplies the eval-mode crop and input size.
        batch_size: frames per forward pass.
        progress: show a tqdm bar.

    Returns:
        :class:`PixelErrors`.
    """
    affines = np.stack(
        [
            augmenter.base_affine(frames.keypoints[i], frames.image_sizes[i])
            for i in range(len(frames))
        ]
    )
    predictions, confidence = predict_images(
        model,
        _FrameImages(frames),
        input_size=augmenter.input_size,
        batch_size=batch_size,
        affines=affines,
        antialias=augmenter.config.antialias,
        progress=progress,
    )
    errors = np.linalg.norm(predictions - frames.keypoints.astype(np.float64), axis=-1)
    return PixelErrors(predictions, confidence, errors)


# ---------------------------------------------------------------------------------------------
# The loop


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did.

    Attributes:
        run_dir: the run folder.
        step: the last step trained (equals ``train.steps`` unless stopped early).
        start_step: the step this call started from (0, or the resumed checkpoint's).
        losses: (steps run by this call,) total loss of each step.
        wall_time_s: training time of the whole run, resumed parts included (not evaluation).
        images_per_s: training throughput of this call, after its first (compiling) step.
        summary: the contents of ``train_summary.json`` (``None`` if stopped early).
    """

    run_dir: Path
    step: int
    start_step: int
    losses: tuple[float, ...]
    wall_time_s: float
    images_per_s: float
    summary: dict[str, Any] | None


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _write_split(run: Path, frames: LabelledFrames, train_idx, test_idx, split: SplitConfig):
    doc = {
        "root": str(frames.root),
        "train_fraction": split.train_fraction,
        "seed": split.seed,
        "bodyparts": list(frames.bodyparts),
    }
    for name, idx in (("train", train_idx), ("test", test_idx)):
        doc[name] = {
            "indices": [int(i) for i in idx],
            "images": [_relative(frames.images[i], frames.root) for i in idx],
        }
    atomic_write_text(run / "split.json", json.dumps(doc, indent=1) + "\n")


def _check_resumable(run: Path, cfg: TrainConfig) -> None:
    """A resumed run must be configured like the interrupted one, bookkeeping options aside."""
    path = run / "config.yaml"
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        old = _flatten(yaml.safe_load(f) or {})
    new = _flatten(cfg.to_dict())
    changed = sorted(
        key
        for key in set(old) | set(new)
        if key not in _RESUMABLE_CHANGES and old.get(key, "<absent>") != new.get(key, "<absent>")
    )
    if changed:
        lines = [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in changed]
        raise TrainError(
            f"{run}: cannot resume, the configuration differs from the interrupted run's "
            f"({path}):\n  " + "\n  ".join(lines) + "\nTrain into a new out= folder instead."
        )


@dataclasses.dataclass(frozen=True)
class _Data:
    frames: LabelledFrames
    train_idx: np.ndarray
    test_idx: np.ndarray
    augmenter: Augmenter

    @property
    def train_set(self) -> LabelledFrames:
        return self.frames.subset(self.train_idx)

    @property
    def test_set(self) -> LabelledFrames:
        return self.frames.subset(self.test_idx)


def _load_data(cfg: TrainConfig) -> _Data:
    """The labelled frames, their seeded split and the augmenter."""
    frames = load_dlc_project(cfg.data, bodyparts=cfg.bodyparts)
    train_idx, test_idx = split_indices(len(frames), cfg.split.train_fraction, cfg.split.seed)
    try:
        config = AugmentConfig(**{**cfg.augment, "input_size": cfg.input_size})
    except (TypeError, ValueError) as e:
        raise TrainError(f"augment: {e}") from None
    return _Data(frames, train_idx, test_idx, Augmenter(config, flip_pairs=frames.flip_pairs))


def _restore(manager, run: Path, cfg: TrainConfig, state: tuple, signature: str, bodyparts):
    """``(state, step, wall_time_s)`` of the newest checkpoint, or the fresh ``state`` at 0."""
    saved = sorted(manager.all_steps())
    if saved and not cfg.train.resume:
        raise TrainError(
            f"{run} already holds checkpoints (steps {saved}); pass train.resume=true to "
            "continue that run, or choose a new out= folder"
        )
    if not saved:
        return state, 0, 0.0
    _check_resumable(run, cfg)
    params, rest, opt_state = state
    params, rest, opt_state, meta = restore_checkpoint(
        manager,
        saved[-1],
        params=params,
        rest=rest,
        opt_state=opt_state,
        architecture_signature=signature,
    )
    if tuple(meta["bodyparts"]) != tuple(bodyparts):
        raise TrainError(
            f"{run}: the checkpoint's body parts {meta['bodyparts']} differ from the data's "
            f"{list(bodyparts)}"
        )
    return (params, rest, opt_state), int(meta["step"]), float(meta.get("wall_time_s", 0.0))


def train(cfg: TrainConfig | Mapping[str, Any], *, stop_after: int | None = None) -> TrainResult:
    """Trains a pose network as configured, writing the run folder.

    Args:
        cfg: a :class:`TrainConfig`, or a mapping in the ``conf/train.yaml`` layout.
        stop_after: stop after this step as if interrupted (a checkpoint is saved; no final
            evaluation); ``train.resume=true`` continues. For tests and time-boxed runs.

    Returns:
        :class:`TrainResult`.

    Raises:
        TrainError: bad configuration, or ``out`` holds checkpoints and ``train.resume`` is
            false, or the loss became non-finite.
        CheckpointError: the checkpoint to resume holds another architecture.
        DatasetError: unreadable labels or images.
    """
    from tqdm.auto import tqdm

    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.from_mapping(cfg)
    _validate(cfg)
    opts = cfg.train
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    data = _load_data(cfg)
    bodyparts = data.frames.bodyparts

    try:
        model = build_model(cfg, num_keypoints=len(bodyparts))
    except ValueError as e:  # unknown backbone/head name or option, weights without a net
        raise TrainError(f"cannot build the network: {e}") from None
    signature = model_signature(model)
    graphdef, params, rest = split_model(model)
    del model  # its arrays live on in params/rest, which the step donates
    optimizer, schedule = make_optimizer(opts)
    opt_state = jax.jit(optimizer.init)(params)  # one compilation, not one per leaf shape

    manager = checkpoint_manager(run, max_to_keep=opts.max_to_keep)
    try:
        (params, rest, opt_state), start, elapsed_before = _restore(
            manager, run, cfg, (params, rest, opt_state), signature, bodyparts
        )
    except BaseException:
        manager.close()
        raise
    resumed = start > 0
    atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    _write_split(run, data.frames, data.train_idx, data.test_idx, cfg.split)

    end = opts.steps if stop_after is None else min(opts.steps, int(stop_after))
    train_step = make_train_step(
        graphdef, optimizer, loss_config=cfg.loss, freeze_bn=_freeze_bn(cfg)
    )
    recalibrate = None
    if opts.bn_recalibration_batches > 0:
        recalibrate = make_bn_recalibration(graphdef, params, rest, freeze_bn=_freeze_bn(cfg))

    def recalibration_images():
        """The first training frames in eval mode (no randomness: a resumed run recalibrates
        exactly as an uninterrupted one)."""
        n = min(len(data.train_set), opts.bn_recalibration_batches * opts.batch_size)
        n = n - n % opts.batch_size if n >= opts.batch_size else n  # one batch shape: one trace
        return (
            b["image"]
            for b in Batches(
                data.train_set.subset(np.arange(n)) if n < len(data.train_set) else data.train_set,
                data.augmenter,
                opts.batch_size,
                cfg.seed,
                train=False,
                workers=0,
            )
        )

    # Batch k is a pure function of (seed, k): starting the stream at `start` resumes it.
    batches = Batches(
        data.train_set,
        data.augmenter,
        opts.batch_size,
        cfg.seed,
        train=True,
        steps=end,
        start_step=start,
        workers=opts.workers,
    )
    term_names = [name for name, o in cfg.loss.items() if float(o["weight"]) != 0]
    columns = ["loss", *term_names, "lr", "grad_norm", "images_per_s", "step_time_s", "wall_time_s"]
    learning_rates = np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(max(end, 1))))

    def metadata(step: int, wall: float) -> dict[str, Any]:
        return {
            "architecture_signature": signature,
            "bodyparts": list(bodyparts),
            "input_size": cfg.input_size,
            "step": step,
            "data_step": step,  # the next batch of the stream is batch `step`
            "seed": cfg.seed,
            "wall_time_s": wall,
        }

    losses: list[float] = []
    step = start
    t_start = time.perf_counter()
    t_first = None  # end of this call's first step (which includes compilation)
    writer = MetricsWriter(
        run,
        columns=columns,
        resume_step=start if resumed else None,
        tensorboard=opts.tensorboard,
        flush_every=opts.log_every,
    )
    bar = tqdm(
        total=opts.steps, initial=start, desc="train", unit="step", disable=not opts.progress
    )
    try:
        last = t_start
        for step, batch in zip(range(start + 1, end + 1), batches, strict=True):
            params, rest, opt_state, metrics = train_step(
                params, rest, opt_state, batch["image"], batch["keypoints"]
            )
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            now = time.perf_counter()
            dt, last = now - last, now
            t_first = t_first or now
            if not math.isfinite(metrics["loss"]):
                raise TrainError(
                    f"the loss became {metrics['loss']} at step {step} (terms: {metrics}); "
                    "lower train.lr or check the labels"
                )
            losses.append(metrics["loss"])
            wall = elapsed_before + now - t_start
            row = metrics | {
                "lr": float(learning_rates[step - 1]),
                "images_per_s": opts.batch_size / dt,
                "step_time_s": dt,
                "wall_time_s": wall,
            }
            writer.write(step, row)
            bar.update(1)
            if step % opts.log_every == 0 or step == end:
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", img_s=f"{opts.batch_size / dt:.1f}")
            if step % opts.checkpoint_every == 0 or step == end:
                if recalibrate is not None:
                    rest = recalibrate(params, rest, recalibration_images())
                # Copies: the next step donates (overwrites) the live buffers while orbax
                # may still be writing these in the background.
                saved_params, saved_rest, saved_opt = _copy_tree((params, rest, opt_state))
                save_checkpoint(
                    manager,
                    step,
                    params=saved_params,
                    rest=saved_rest,
                    opt_state=saved_opt,
                    metadata=metadata(step, wall),
                )
    finally:
        bar.close()
        writer.close()
        manager.wait_until_finished()
        manager.close()

    t_end = time.perf_counter()
    timed = len(losses) - 1
    images_per_s = (
        opts.batch_size * timed / (t_end - t_first) if timed > 0 and t_first else math.nan
    )
    wall_time = elapsed_before + (t_end - t_start)
    if step < opts.steps:
        return TrainResult(run, step, start, tuple(losses), wall_time, images_per_s, None)

    summary = {
        "run_dir": str(run),
        "data": str(cfg.data),
        "backbone": cfg.backbone.get("name"),
        "head": cfg.head.get("name"),
        "input_size": cfg.input_size,
        "batch_size": opts.batch_size,
        "steps": step,
        "resumed_from": start if resumed else None,
        "final_loss": losses[-1] if losses else _last_logged_loss(run),
        "wall_time_s": wall_time,
        "images_per_s": images_per_s,
        "steps_per_s": images_per_s / opts.batch_size,
        "param_count": _param_count(params),
        "num_train": len(data.train_idx),
        "num_test": len(data.test_idx),
        **_evaluate(nnx.merge(graphdef, params, rest), data, opts),
    }
    atomic_write_text(run / "train_summary.json", json.dumps(summary, indent=1) + "\n")
    return TrainResult(run, step, start, tuple(losses), wall_time, images_per_s, summary)


def _evaluate(model: nnx.Module, data: _Data, opts: TrainOptions) -> dict[str, Any]:
    """Train and test errors in original pixels (the summary's ``train`` and ``test``)."""
    predictor = Predictor(model)  # one compilation for both sets
    errors = {}
    for name, frames in (("train", data.train_set), ("test", data.test_set)):
        errors[name] = (
            summarize_errors(
                pixel_errors(
                    predictor,
                    frames,
                    data.augmenter,
                    batch_size=opts.eval_batch_size,
                    progress=opts.progress,
                ).errors
            )
            if len(frames)
            else None
        )
    errors["error_note"] = (
        "original-image px, through the eval crop around the labelled animal; mean_px is "
        "DeepLabCut's 'RMSE' (mean Euclidean distance), rmse_px the root mean square"
    )
    return errors


@jax.jit
def _copy_tree(tree):
    """Fresh buffers holding the values of ``tree`` (one compiled copy for the whole tree)."""
    return jax.tree.map(jnp.copy, tree)


def _last_logged_loss(run: Path) -> float | None:
    """The loss of the last row of metrics.csv (a resumed run that had nothing left to train)."""
    rows = read_metrics(run / "metrics.csv") if (run / "metrics.csv").is_file() else []
    return rows[-1]["loss"] if rows else None


def _param_count(params: nnx.State) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
