"""Batches of augmented frames for training and evaluation, prepared in background threads.

Batch k is a pure function of (seed, k): the frames are read as one endless stream of epochs,
each a seeded permutation, and sample (epoch, index) draws its augmentation from its own
generator seeded by (seed, epoch, index). Threads only decide *when* a batch is computed, never
*what* it holds, so results are the same with any number of workers, and a resumed run that
starts at `start_step` sees exactly the batches the interrupted run would have.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from jaxpose.data.augment import Augmenter
from jaxpose.data.project import LabelledFrames

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# (x / 255 - mean) / std as one multiply-add.
_GAIN = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32)
_OFFSET = (-IMAGENET_MEAN / IMAGENET_STD).astype(np.float32)

# Tags that keep the permutation and the per-sample generators' seed sequences apart.
_ORDER_STREAM, _SAMPLE_STREAM = 1, 2


def normalize_images(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., H, W, 3) -> float32 normalised with the ImageNet mean and std."""
    return np.asarray(images, dtype=np.float32) * _GAIN + _OFFSET


def denormalize_images(images: np.ndarray) -> np.ndarray:
    """Inverse of `normalize_images`, rounded and clipped to uint8 (for drawing)."""
    pixels = (np.asarray(images, dtype=np.float32) - _OFFSET) / _GAIN
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def epoch_order(num_frames: int, seed: int, epoch: int, *, shuffle: bool) -> np.ndarray:
    """The frame indices of one epoch: a seeded permutation, or 0..n-1 without shuffling."""
    if not shuffle:
        return np.arange(num_frames)
    return np.random.default_rng([seed, _ORDER_STREAM, epoch]).permutation(num_frames)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that augments frame `index` in `epoch`."""
    return np.random.default_rng([seed, _SAMPLE_STREAM, epoch, index])


class Batches:
    """Batches of augmented frames, iterated with background prefetching.

    Each yielded batch is a dict:
        image: (B, S, S, 3) float32, ImageNet-normalised RGB.
        keypoints: (B, K, 2) float32 input px, NaN = unlabelled or outside the input.
        affine: (B, 2, 3) float32 original px -> input px (`invert_affine` maps back).
        index: (B,) int64 frame indices into `frames`.

    Training (`train=True`) reshuffles every epoch and runs across epoch ends so every batch is
    full (fixed shapes, no recompilation); it never stops unless `steps` or `epochs` is given
    (`epochs` = ceil(epochs * N / B) batches). Evaluation reads frames in order, `epochs` times
    (default once), and the last batch may be smaller.

    Args:
        frames: the labelled frames.
        augmenter: crops and augments; deterministic in eval mode.
        batch_size: B.
        seed: all randomness (order and augmentation) derives from it.
        train: random augmentation and reshuffling.
        epochs, steps: when to stop; with both, whichever comes first.
        start_step: first batch (resuming a run).
        shuffle: reshuffle every epoch (default: `train`).
        workers: background threads; 0 computes each batch in the calling thread.
        prefetch: batches computed ahead of the consumer (at least `workers`).
    """

    def __init__(
        self,
        frames: LabelledFrames,
        augmenter: Augmenter,
        batch_size: int,
        seed: int,
        *,
        train: bool,
        epochs: float | None = None,
        steps: int | None = None,
        start_step: int = 0,
        shuffle: bool | None = None,
        workers: int = 1,
        prefetch: int = 2,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not len(frames):
            raise ValueError(f"{frames.name or 'frames'}: no frames to batch")
        if epochs is not None and epochs <= 0:
            raise ValueError(f"epochs must be positive, got {epochs}")
        if steps is not None and steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.frames = frames
        self.augmenter = augmenter
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.train = bool(train)
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.start_step = int(start_step)
        self.workers = int(workers)
        self.prefetch = max(int(prefetch), self.workers, 1)
        n = len(frames)
        if self.train:
            self.total_samples = None  # endless stream; batches are always full
            stop = math.ceil(epochs * n / self.batch_size) if epochs is not None else None
        else:
            self.total_samples = round((1 if epochs is None else epochs) * n)
            stop = math.ceil(self.total_samples / self.batch_size)
        if steps is not None:
            stop = steps if stop is None else min(stop, steps)
        self.stop_step = stop
        self._orders: dict[int, np.ndarray] = {}
        self._orders_lock = threading.Lock()  # batch() may run in several threads

    def __len__(self) -> int:
        if self.stop_step is None:
            raise TypeError("endless training batches have no length; pass steps or epochs")
        return max(0, self.stop_step - self.start_step)

    def positions(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(epoch, frame index) of each sample of batch `step`, each (B,) int64."""
        n = len(self.frames)
        first = step * self.batch_size
        last = first + self.batch_size
        if self.total_samples is not None:
            last = min(last, self.total_samples)
        stream = np.arange(first, last)
        epochs = stream // n
        index = np.empty_like(stream)
        for epoch in np.unique(epochs).tolist():
            with self._orders_lock:
                order = self._orders.get(epoch)
                if order is None:
                    # Only a few epochs are live at once; dropping old ones bounds the memory.
                    if len(self._orders) > 4:
                        self._orders.pop(min(self._orders))
                    order = epoch_order(n, self.seed, epoch, shuffle=self.shuffle)
                    self._orders[epoch] = order
            here = epochs == epoch
            index[here] = order[stream[here] % n]
        return epochs, index

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """Compute batch `step` in the calling thread (a pure function of seed and step)."""
        epochs, index = self.positions(step)
        size, k = self.augmenter.input_size, self.frames.num_keypoints
        b = len(index)
        out = {
            "image": np.empty((b, size, size, 3), np.float32),
            "keypoints": np.empty((b, k, 2), np.float32),
            "affine": np.empty((b, 2, 3), np.float32),
            "index": index.astype(np.int64),
        }
        for j, (epoch, i) in enumerate(zip(epochs, index, strict=True)):
            rng = sample_rng(self.seed, int(epoch), int(i)) if self.train else None
            sample = self.augmenter(
                self.frames.load_image(int(i)), self.frames.keypoints[i], rng, train=self.train
            )
            np.multiply(sample.image, _GAIN, out=out["image"][j])
            out["image"][j] += _OFFSET
            out["keypoints"][j] = sample.keypoints
            out["affine"][j] = sample.affine
        return out

    def _steps(self) -> Iterator[int]:
        step = self.start_step
        while self.stop_step is None or step < self.stop_step:
            yield step
            step += 1

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if self.workers == 0:
            for step in self._steps():
                yield self.batch(step)
            return
        # A window of `prefetch` batches is always in flight, so the workers augment while the
        # consumer trains; cv2 and NumPy release the GIL for the heavy parts.
        steps = self._steps()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="jaxpose-batches")
        pending: collections.deque = collections.deque()
        try:
            for step in steps:
                pending.append(pool.submit(self.batch, step))
                if len(pending) >= self.prefetch:
                    break
            while pending:
                batch = pending.popleft().result()
                step = next(steps, None)
                if step is not None:
                    pending.append(pool.submit(self.batch, step))
                yield batch
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)


def iterate_batches(
    frames: LabelledFrames,
    augmenter: Augmenter,
    batch_size: int,
    seed: int,
    *,
    train: bool,
    epochs: float | None = None,
    steps: int | None = None,
    **options,
) -> Batches:
    """Batches of `frames` (see `Batches` for the dict layout and the options)."""
    return Batches(
        frames, augmenter, batch_size, seed, train=train, epochs=epochs, steps=steps, **options
    )
