"""Training losses of heatmap pose networks, in JAX, written for a batch of outputs.

Conventions (see the issue-4 contract): keypoints are ``(B, K, 2)`` float32 (x, y) in pixels of the
network input, NaN for unlabelled; a heatmap is ``(B, h, w, K)`` logits whose cell ``(i, j)`` is
centred at input pixel ``(j * stride + (stride - 1) / 2, i * stride + (stride - 1) / 2)``;
location-refinement offsets are ``(B, h, w, K, 2)`` in units of ``locref_std`` pixels (DeepLabCut).

NaN keypoints are replaced by zeros with ``jnp.where`` *before* any arithmetic, and their terms are
masked out, so that a NaN never reaches a gradient (a NaN times a zero mask is still NaN).

Each loss term is a function ``term(outputs, keypoints, *, stride, **options) -> scalar`` and is
registered by name in :data:`LOSSES`; :func:`total_loss` sums the configured terms with their
weights, skips terms of weight 0, and rejects unknown names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxpose.models.heads import cell_centres, decode_soft_argmax

__all__ = [
    "LOSSES",
    "LossError",
    "coordinate_loss",
    "heatmap_loss",
    "heatmap_targets",
    "keypoint_mask",
    "locref_loss",
    "locref_targets",
    "total_loss",
]


class LossError(ValueError):
    """A loss configuration that cannot be used (unknown term, missing model output)."""


def keypoint_mask(keypoints: jax.Array) -> jax.Array:
    """``(B, K)`` bool: both coordinates of the keypoint are finite (labelled)."""
    return jnp.all(jnp.isfinite(keypoints), axis=-1)


def _safe(keypoints: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keypoints with NaN replaced by 0 (before any arithmetic) and their ``(B, K)`` mask."""
    valid = keypoint_mask(keypoints)
    return jnp.where(valid[..., None], keypoints, 0.0), valid


def _offsets_to_cells(
    keypoints: jax.Array, shape: tuple[int, int], stride: int
) -> tuple[jax.Array, jax.Array]:
    """``(dx, dy)``, each ``(B, h, w, K)``: keypoint minus cell centre, in input px (NaN-free)."""
    safe, _ = _safe(keypoints)
    x, y = cell_centres(shape, stride)
    dx = safe[:, None, None, :, 0] - x[None, None, :, None]
    dy = safe[:, None, None, :, 1] - y[None, :, None, None]
    return jnp.broadcast_arrays(dx, dy)


def heatmap_targets(
    keypoints: jax.Array,
    shape: tuple[int, int],
    stride: int,
    sigma: float,
    *,
    kind: str = "gaussian",
) -> jax.Array:
    """Heatmap targets in [0, 1] for keypoints in input pixels.

    Args:
        keypoints: ``(B, K, 2)`` (x, y) in input px, NaN = unlabelled.
        shape: heatmap ``(h, w)``.
        stride: input px per heatmap cell.
        sigma: Gaussian standard deviation in input px (``kind='gaussian'``), or the disk radius
            (``kind='disk'``: 1 within ``sigma`` px of the keypoint, DeepLabCut's original target).
        kind: ``'gaussian'`` or ``'disk'``.

    Returns:
        ``(B, h, w, K)`` float32 targets; all zeros for an unlabelled keypoint.
    """
    dx, dy = _offsets_to_cells(keypoints, shape, stride)
    d2 = dx * dx + dy * dy
    if kind == "gaussian":
        target = jnp.exp(-d2 / (2.0 * sigma * sigma))
    elif kind == "disk":
        target = (d2 <= sigma * sigma).astype(jnp.float32)
    else:
        raise LossError(f"heatmap target kind must be 'gaussian' or 'disk', got {kind!r}")
    valid = keypoint_mask(keypoints)
    return jnp.where(valid[:, None, None, :], target, 0.0)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` where ``mask``; 0 when nothing is selected (never NaN)."""
    mask = mask.astype(values.dtype)
    return jnp.sum(jnp.where(mask > 0, values, 0.0) * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def heatmap_loss(
    outputs: Mapping[str, jax.Array],
    keypoints: jax.Array,
    *,
    stride: int,
    sigma: float = 8.0,
    kind: str = "gaussian",
) -> jax.Array:
    """Binary cross-entropy between heatmap logits and Gaussian (or disk) targets.

    The cross-entropy is averaged over the heatmap's cells, then over labelled keypoints only.

    Args:
        outputs: model outputs with ``'heatmap'`` ``(B, h, w, K)`` logits.
        keypoints: ``(B, K, 2)`` input px, NaN = unlabelled.
        stride: input px per heatmap cell.
        sigma: target width in input px (see :func:`heatmap_targets`).
        kind: ``'gaussian'`` or ``'disk'``.

    Returns:
        Scalar loss.
    """
    logits = outputs["heatmap"]
    targets = heatmap_targets(keypoints, logits.shape[1:3], stride, sigma, kind=kind)
    per_keypoint = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets), axis=(1, 2))
    return _masked_mean(per_keypoint, keypoint_mask(keypoints))


def locref_targets(
    keypoints: jax.Array,
    shape: tuple[int, int],
    stride: int,
    *,
    radius: float,
    std: float,
) -> tuple[jax.Array, jax.Array]:
    """Location-refinement targets (DeepLabCut): offsets from cell centres to the keypoint.

    Args:
        keypoints: ``(B, K, 2)`` input px, NaN = unlabelled.
        shape: heatmap ``(h, w)``.
        stride: input px per heatmap cell.
        radius: only cells whose centre lies within this many input px of the keypoint get a
            target (DeepLabCut's ``pos_dist_thresh``).
        std: offsets are divided by this many px (DeepLabCut's ``locref_stdev``).

    Returns:
        ``(targets (B, h, w, K, 2), mask (B, h, w, K) bool)``.
    """
    dx, dy = _offsets_to_cells(keypoints, shape, stride)
    valid = keypoint_mask(keypoints)[:, None, None, :]
    mask = valid & (dx * dx + dy * dy <= radius * radius)
    return jnp.stack([dx, dy], axis=-1) / std, mask


def locref_loss(
    outputs: Mapping[str, jax.Array],
    keypoints: jax.Array,
    *,
    stride: int,
    radius: float = 17.0,
    std: float = 7.2801,
    huber_delta: float = 1.0,
) -> jax.Array:
    """Huber loss on location-refinement offsets, within ``radius`` px of each labelled keypoint.

    Args:
        outputs: model outputs with ``'offset'`` ``(B, h, w, K, 2)``.
        keypoints: ``(B, K, 2)`` input px, NaN = unlabelled.
        stride: input px per heatmap cell.
        radius: see :func:`locref_targets`.
        std: see :func:`locref_targets`; must equal the decoder's ``locref_std``.
        huber_delta: Huber transition point, in ``std`` units.

    Returns:
        Scalar loss, averaged over the masked cells and both coordinates.
    """
    offsets = outputs.get("offset")
    if offsets is None:
        raise LossError(
            "the 'locref' loss needs location-refinement offsets, but the model's head has none "
            "(head.locref=false): set loss.locref.weight=0 or use a head with locref=true"
        )
    targets, mask = locref_targets(keypoints, offsets.shape[1:3], stride, radius=radius, std=std)
    huber = optax.huber_loss(offsets, targets, delta=huber_delta)  # (B, h, w, K, 2)
    return _masked_mean(huber, jnp.broadcast_to(mask[..., None], huber.shape))


def coordinate_loss(
    outputs: Mapping[str, jax.Array],
    keypoints: jax.Array,
    *,
    stride: int,
    beta: float = 1.0,
    huber_delta: float = 1.0,
) -> jax.Array:
    """Huber (L1 for large errors) distance between soft-argmax keypoints and labels, in input px.

    Args:
        outputs: model outputs with ``'heatmap'`` ``(B, h, w, K)`` logits.
        keypoints: ``(B, K, 2)`` input px, NaN = unlabelled.
        stride: input px per heatmap cell.
        beta: soft-argmax inverse temperature (:func:`jaxpose.models.heads.decode_soft_argmax`).
        huber_delta: px where the loss turns from quadratic to linear; 0 gives plain L1.

    Returns:
        Scalar loss in px, averaged over labelled keypoints and both coordinates.
    """
    safe, valid = _safe(keypoints)
    predicted, _ = decode_soft_argmax(outputs["heatmap"], stride, beta)
    if huber_delta > 0:
        err = optax.huber_loss(predicted, safe, delta=huber_delta) / huber_delta
    else:
        err = jnp.abs(predicted - safe)
    return _masked_mean(err, jnp.broadcast_to(valid[..., None], err.shape))


LossTerm = Callable[..., jax.Array]

# name -> term(outputs, keypoints, *, stride, **options) -> scalar
LOSSES: dict[str, LossTerm] = {
    "heatmap": heatmap_loss,
    "locref": locref_loss,
    "coordinate": coordinate_loss,
}


def check_loss_config(config: Mapping[str, Mapping[str, Any]]) -> None:
    """Raises :class:`LossError` for an unknown term name or a term without a ``weight``."""
    unknown = [name for name in config if name not in LOSSES]
    if unknown:
        raise LossError(f"unknown loss term(s) {unknown}; known terms: {sorted(LOSSES)}")
    for name, options in config.items():
        if "weight" not in options:
            raise LossError(f"loss.{name} has no 'weight' (set loss.{name}.weight=0 to disable)")
    if all(float(options["weight"]) == 0 for options in config.values()):
        raise LossError("every loss term has weight 0: nothing to train")


def total_loss(
    outputs: Mapping[str, jax.Array],
    keypoints: jax.Array,
    *,
    stride: int,
    config: Mapping[str, Mapping[str, Any]],
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted sum of the configured loss terms.

    Args:
        outputs: model outputs (``'heatmap'``, and ``'offset'`` for the locref term).
        keypoints: ``(B, K, 2)`` input px, NaN = unlabelled.
        stride: input px per heatmap cell.
        config: ``{name: {"weight": w, **options}}``; names from :data:`LOSSES`. A term with
            weight 0 is not computed.

    Returns:
        ``(total, {name: unweighted term})`` with every computed term.

    Raises:
        LossError: unknown term name, missing weight, or all weights 0.
    """
    check_loss_config(config)
    terms: dict[str, jax.Array] = {}
    total = jnp.zeros((), jnp.float32)
    for name, options in config.items():
        weight = float(options["weight"])
        if weight == 0:
            continue
        kwargs = {k: v for k, v in options.items() if k != "weight"}
        terms[name] = LOSSES[name](outputs, keypoints, stride=stride, **kwargs)
        total = total + weight * terms[name]
    return total, terms
