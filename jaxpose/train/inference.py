"""Keypoints of whole images from a trained network, in original image pixels.

Each image is warped into the square network input by an affine map (the letterbox of the whole
frame by default, or a given crop), predicted in batches by one jitted function, and the
predictions are mapped back through the inverse affine.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from jaxpose.data import apply_affine, invert_affine, letterbox_affine, normalize_images, warp_image

__all__ = ["Predictor", "predict_images"]


class Predictor:
    """A jitted ``images (B, S, S, 3) normalised -> (keypoints (B, K, 2) input px, confidence
    (B, K))`` of a model in eval mode (``model.predict``), returning NumPy arrays.

    The model is split once and each batch shape compiles once; reuse one predictor for several
    image sets (``predict_images`` accepts it in place of the model).
    """

    def __init__(self, model: nnx.Module):
        graphdef, self._state = nnx.split(model)

        @jax.jit
        def predict(state, images):
            return nnx.merge(graphdef, state).predict(images)

        self._predict = predict

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keypoints, confidence = self._predict(self._state, images)
        return np.asarray(keypoints), np.asarray(confidence)


def predict_images(
    model: nnx.Module | Predictor,
    images: Sequence[np.ndarray],
    *,
    input_size: int,
    batch_size: int = 16,
    affines: Sequence[np.ndarray] | np.ndarray | None = None,
    antialias: bool = True,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicts keypoints of images of any size, in their own pixels.

    Args:
        model: a :class:`~jaxpose.models.PoseNet` (or anything with ``predict(images)``), or a
            :class:`Predictor` of one.
        images: N uint8 images, (H, W, 3) RGB or (H, W) grey; any sequence (read lazily, one
            batch at a time).
        input_size: S, the network input the model was trained with.
        batch_size: images per forward pass; the last batch is padded so one compilation
            serves all.
        affines: (N, 2, 3) original px -> input px maps (crops, e.g. around a detection);
            default: letterbox each whole frame.
        antialias: area-average before shrinking by more than 1.5x (as training did).
        progress: show a tqdm bar.

    Returns:
        ``(keypoints (N, K, 2) float64 original px, confidence (N, K) float32)``.
    """
    from tqdm.auto import tqdm

    if affines is not None and len(affines) != len(images):
        raise ValueError(f"got {len(affines)} affines for {len(images)} images")
    predict = model if isinstance(model, Predictor) else Predictor(model)
    keypoints, confidence = [], []
    for start in tqdm(
        range(0, len(images), batch_size), desc="predict", unit="batch", disable=not progress
    ):
        chunk = range(start, min(start + batch_size, len(images)))
        batch = np.zeros((batch_size, input_size, input_size, 3), np.uint8)
        maps = np.empty((len(chunk), 2, 3), np.float64)
        for j, i in enumerate(chunk):
            image = images[i]
            if affines is None:
                maps[j] = letterbox_affine((image.shape[1], image.shape[0]), input_size)
            else:
                maps[j] = np.asarray(affines[i], np.float64)
            batch[j] = warp_image(image, maps[j], input_size, antialias=antialias)
        points, conf = predict(normalize_images(batch))
        keypoints.append(apply_affine(invert_affine(maps), points[: len(chunk)].astype(np.float64)))
        confidence.append(conf[: len(chunk)].astype(np.float32))
    if not keypoints:
        raise ValueError("predict_images: no images")
    return np.concatenate(keypoints), np.concatenate(confidence)
