"""3D terms of the multi-view loss: triangulate the network's 2D keypoints, reproject, compare.

For one batch of synchronised frames every camera's network output is decoded by soft-argmax
into keypoints in that camera's pixels (differentiable). Those keypoints are triangulated
through the calibrated rig with the confidence-weighted DLT (also differentiable) and the 3D
point is projected back into every view. Two penalties follow:

* **label**: reprojection against the human labels, in every view that has one. A label in
  camera A teaches camera B through the shared 3D point.
* **consistency**: reprojection against the other views' own predictions, so that synchronised
  frames without any label still teach the network (each view is pulled toward the point the
  other views agree on).

Both are robust (Huber in px) and confidence-weighted; a view whose confidence is below
`min_confidence` or whose prediction is NaN takes no part. The cameras can be trained too: the
rig is an argument like any other, and `camera_prior` pulls its parameters toward the board
calibration.

Two optional terms act on the triangulated 3D points themselves (world units, mm here):

* **temporal** (:func:`temporal_loss`): clips of consecutive video frames should move smoothly,
  so the acceleration (second difference in time) of every keypoint is penalised.
* **limb** (:func:`limb_loss`): a bone keeps its length, so every frame's length of a bone is
  pulled toward that bone's length over the batch (or a given reference length).

Both take points with a validity mask (a point triangulated from >= 2 views) and return the mean
penalty over the contributing terms with their count, so that they can be weighed like the
others; invalid or NaN points neither contribute nor receive gradient.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import Array

from jaxpose.geometry.camera import Camera, project_rig
from jaxpose.triangulation.api import triangulate

__all__ = [
    "MultiViewLossConfig",
    "camera_prior",
    "label_geometry_loss",
    "limb_loss",
    "multiview_losses",
    "temporal_loss",
]


@dataclasses.dataclass(frozen=True)
class MultiViewLossConfig:
    """Weights and scales of the 3D loss terms (a weight of 0 skips the term's work).

    Attributes:
        label_weight: reprojected triangulation against labels.
        consistency_weight: reprojected triangulation against the views' own predictions.
        huber_px: robust loss scale in pixels (quadratic below, linear above).
        min_confidence: views below this confidence are left out of the triangulation.
        stop_gradient_confidence: treat confidences as constants in the 3D terms, so a network
            cannot lower the loss by lowering its confidence everywhere.
    """

    label_weight: float = 1.0
    consistency_weight: float = 1.0
    huber_px: float = 4.0
    min_confidence: float = 0.05
    stop_gradient_confidence: bool = True


def _huber(distance: Array, scale: float) -> Array:
    """Huber penalty of a distance (>= 0), in px: d^2/2 below `scale`, linear above."""
    return jnp.where(distance <= scale, 0.5 * distance**2, scale * (distance - 0.5 * scale))


def _distance(a: Array, b: Array) -> Array:
    """Euclidean distance over the last axis, with a finite gradient at zero."""
    return jnp.sqrt(jnp.sum((a - b) ** 2, -1) + 1e-12)


def multiview_losses(
    rig: Camera,
    keypoints: Array,
    confidence: Array,
    labels: Array,
    *,
    config: MultiViewLossConfig = MultiViewLossConfig(),
) -> dict[str, Array]:
    """The 3D terms for a batch of synchronised frames.

    Args:
        rig: cameras with a leading `cam` axis (may be a traced, trainable pytree).
        keypoints: (frame, cam, kpt, 2) predicted keypoints in each camera's pixels.
        confidence: (frame, cam, kpt) confidences in [0, 1].
        labels: (frame, cam, kpt, 2) labels in pixels, NaN where a view is not labelled.
        config: weights and scales.

    Returns:
        A dict with "label" and "consistency" (scalar means over the contributing views, 0 when
        none contribute or the weight is 0), "points" (frame, kpt, 3) and "ncams" (frame, kpt).
    """
    if keypoints.ndim != 4 or keypoints.shape[-1] != 2:
        raise ValueError(f"keypoints must be (frame, cam, kpt, 2), got {keypoints.shape}")
    if confidence.shape != keypoints.shape[:-1] or labels.shape != keypoints.shape:
        raise ValueError(
            f"confidence {confidence.shape} and labels {labels.shape} must match keypoints "
            f"{keypoints.shape} (without / with the coordinate axis)"
        )
    weight = jax.lax.stop_gradient(confidence) if config.stop_gradient_confidence else confidence
    valid = jnp.all(jnp.isfinite(keypoints), -1) & (weight > config.min_confidence)
    weight = jnp.where(valid, weight, 0.0)
    # (frame, cam, kpt, ...) -> (frame, kpt, cam, ...) as triangulate wants the cam axis last.
    views = jnp.where(valid[..., None], keypoints, 0.0).swapaxes(1, 2)
    result = triangulate(
        rig, views, weight.swapaxes(1, 2), method="dlt", min_confidence=config.min_confidence
    )
    have_point = result.ncams >= 2  # (frame, kpt)
    points = jnp.where(have_point[..., None], result.points, 0.0)
    reprojected = jnp.moveaxis(project_rig(rig, points), 0, 1)  # (frame, cam, kpt, 2)
    reprojected_ok = jnp.all(jnp.isfinite(reprojected), -1) & have_point[:, None, :]
    reprojected = jnp.where(reprojected_ok[..., None], reprojected, 0.0)

    zero = jnp.zeros((), keypoints.dtype)
    losses = {"label": zero, "consistency": zero}
    if config.label_weight:
        labelled = jnp.all(jnp.isfinite(labels), -1) & reprojected_ok
        target = jnp.where(labelled[..., None], labels, 0.0)
        penalty = _huber(_distance(reprojected, target), config.huber_px)
        count = jnp.sum(labelled)
        losses["label"] = jnp.sum(jnp.where(labelled, penalty, 0.0)) / jnp.maximum(count, 1)
    if config.consistency_weight:
        agree = valid & reprojected_ok
        penalty = _huber(
            _distance(reprojected, jnp.where(agree[..., None], keypoints, 0.0)), config.huber_px
        )
        total = jnp.sum(jnp.where(agree, weight, 0.0))
        losses["consistency"] = jnp.sum(jnp.where(agree, weight * penalty, 0.0)) / jnp.maximum(
            total, 1e-6
        )
    losses["points"] = jnp.where(have_point[..., None], result.points, jnp.nan)
    losses["ncams"] = result.ncams
    return losses


def label_geometry_loss(rig: Camera, labels: Array, *, huber_px: float = 4.0) -> Array:
    """Bundle adjustment on the labels: how well the rig explains the human labels themselves.

    Every keypoint labelled in two or more views of a frame is triangulated from its labels
    alone (DLT through ``rig``) and projected back into those views; the loss is the robust
    reprojection error against the labels. It depends on the cameras only, not on the network,
    so with trainable cameras it pulls them toward the geometry the labels imply, however well
    or badly the network predicts early in training. With the 3D points eliminated by
    triangulation this is the variable-projection form of bundle adjustment; the rig is fixed
    up to a similarity transform only by ``camera_prior``.

    Args:
        rig: cameras with a leading `cam` axis (a traced, trainable pytree).
        labels: (frame, cam, kpt, 2) labels in pixels, NaN where a view is not labelled.
        huber_px: robust scale in pixels.

    Returns:
        The mean Huber penalty over the labelled views of points seen in >= 2 views (0 if none).
    """
    seen = jnp.all(jnp.isfinite(labels), -1).astype(labels.dtype)
    config = MultiViewLossConfig(
        label_weight=1.0, consistency_weight=0.0, huber_px=huber_px, min_confidence=0.5
    )
    return multiview_losses(rig, labels, seen, labels, config=config)["label"]


def camera_prior(rig: Camera, reference: Camera, *, sigma: dict[str, float]) -> Array:
    """Gaussian prior pulling trainable cameras toward a reference calibration.

    Args:
        rig: the trainable cameras.
        reference: the board calibration they start from (same structure).
        sigma: standard deviation per Camera field, e.g. {"rotation": 0.01 (rad),
            "translation": 5.0 (mm), "focal": 10.0 (px), "principal_point": 5.0 (px),
            "distortion": 0.02}; a scalar or an array that broadcasts against the field. A field
            left out is unconstrained.

    Returns:
        0.5 * sum(((rig - reference) / sigma)^2) over the named fields.
    """
    total = jnp.zeros(())
    for name, s in sigma.items():
        if not hasattr(rig, name):
            raise KeyError(f"camera_prior: Camera has no field {name!r}")
        d = (jnp.asarray(getattr(rig, name)) - jnp.asarray(getattr(reference, name))) / s
        total = total + 0.5 * jnp.sum(d**2)
    return total


def _usable(points_3d: Array, valid: Array) -> tuple[Array, Array]:
    """``(points with invalid entries zeroed, mask)``: a point counts when it is marked valid
    and finite; zeroing before any arithmetic keeps NaN out of values and gradients."""
    ok = valid & jnp.all(jnp.isfinite(points_3d), -1)
    return jnp.where(ok[..., None], points_3d, 0.0), ok


def temporal_loss(points_3d: Array, valid: Array, *, huber_mm: float = 2.0) -> tuple[Array, Array]:
    """Temporal smoothness of clips: a robust penalty on each keypoint's acceleration.

    The acceleration of keypoint ``k`` at frame ``t`` of a clip is the second difference
    ``x[t+1] - 2 x[t] + x[t-1]`` (world units per frame^2, so its scale depends on the frame
    rate); its length is penalised with Huber (quadratic below ``huber_mm``, linear above, so
    a fast movement or a rare bad triangulation does not dominate). Constant-velocity motion
    costs nothing. A second difference counts only where the keypoint is valid in all three
    frames.

    Args:
        points_3d: (clip, T, kpt, 3) triangulated points of clips of T >= 3 consecutive frames.
        valid: (clip, T, kpt) bool, e.g. triangulated from >= 2 views; NaN points are invalid
            whatever the mask says.
        huber_mm: robust scale in world units (mm).

    Returns:
        ``(loss, count)``: the mean penalty over the contributing second differences (0 when
        none contribute) and their number.
    """
    if points_3d.ndim != 4 or points_3d.shape[-1] != 3:
        raise ValueError(f"points_3d must be (clip, T, kpt, 3), got {points_3d.shape}")
    if points_3d.shape[1] < 3:
        raise ValueError(
            f"clips need at least 3 frames for a second difference, got T={points_3d.shape[1]}"
        )
    if valid.shape != points_3d.shape[:-1]:
        raise ValueError(f"valid {valid.shape} must be points_3d's shape {points_3d.shape[:-1]}")
    x, ok = _usable(points_3d, valid)
    acceleration = x[:, 2:] - 2.0 * x[:, 1:-1] + x[:, :-2]  # (clip, T-2, kpt, 3)
    counted = ok[:, 2:] & ok[:, 1:-1] & ok[:, :-2]
    penalty = _huber(_distance(acceleration, 0.0), huber_mm)
    count = jnp.sum(counted)
    return jnp.sum(jnp.where(counted, penalty, 0.0)) / jnp.maximum(count, 1), count


def limb_loss(
    points_3d: Array,
    valid: Array,
    bones: Array,
    *,
    reference: Array | None = None,
    huber_mm: float = 2.0,
) -> tuple[Array, Array]:
    """Limb-length consistency: each bone should have one length in every frame.

    Every frame's length of a bone is compared with that bone's centre and the deviation is
    penalised with Huber. The centre is, per bone, ``reference`` where it is given and finite
    (e.g. bone lengths of the triangulated labels), else the median of the bone's valid lengths
    over all frames given (the batch). The median rather than the mean, so that one badly
    triangulated frame early in training does not drag every other frame's target; and it is a
    constant (``stop_gradient``): the term pulls each frame toward the others, not the centre
    toward a frame. A bone valid in a single frame of the batch and without a reference has no
    information and does not contribute.

    Args:
        points_3d: (*frame, kpt, 3) triangulated points (any leading frame axes).
        valid: (*frame, kpt) bool; NaN points are invalid whatever the mask says.
        bones: (bone, 2) int keypoint indices (static: a NumPy array or a list of pairs).
        reference: (bone,) reference lengths in world units, NaN = use the batch median.
        huber_mm: robust scale in world units (mm).

    Returns:
        ``(loss, count)``: the mean penalty over the contributing (frame, bone) lengths (0 when
        none contribute) and their number.
    """
    bones = jnp.asarray(bones, jnp.int32).reshape(-1, 2)
    if points_3d.ndim < 2 or points_3d.shape[-1] != 3:
        raise ValueError(f"points_3d must be (*frame, kpt, 3), got {points_3d.shape}")
    if valid.shape != points_3d.shape[:-1]:
        raise ValueError(f"valid {valid.shape} must be points_3d's shape {points_3d.shape[:-1]}")
    num_keypoints = points_3d.shape[-2]
    x, ok = _usable(points_3d.reshape(-1, num_keypoints, 3), valid.reshape(-1, num_keypoints))
    lengths = _distance(x[:, bones[:, 0]], x[:, bones[:, 1]])  # (frame, bone)
    both = ok[:, bones[:, 0]] & ok[:, bones[:, 1]]
    median = jnp.nanmedian(jnp.where(both, lengths, jnp.nan), axis=0)  # (bone,), NaN if none
    enough = jnp.sum(both, 0) >= 2
    if reference is not None:
        reference = jnp.asarray(reference, lengths.dtype).reshape(-1)
        if reference.shape != (bones.shape[0],):
            raise ValueError(f"reference {reference.shape} must have one length per bone")
        given = jnp.isfinite(reference)
        median = jnp.where(given, reference, median)
        enough = enough | given
    centre = jax.lax.stop_gradient(jnp.where(enough, median, 0.0))
    counted = both & enough[None, :]
    penalty = _huber(jnp.abs(lengths - centre), huber_mm)
    count = jnp.sum(counted)
    return jnp.sum(jnp.where(counted, penalty, 0.0)) / jnp.maximum(count, 1), count
