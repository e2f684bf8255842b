"""Batched triangulation: any leading batch of points, or (frame, cam, kpt) arrays."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxpose.geometry.camera import Camera
from jaxpose.triangulation.core import Triangulation, prepare_views, triangulate_views

METHODS = ("dlt", "robust", "refine", "robust_refine")


def _check(rig: Camera, points_2d: Array, confidence: Array) -> None:
    if rig.rotation.ndim != 2:
        raise ValueError(
            f"triangulation needs a rig (cameras with a leading cam axis), got batch shape "
            f"{rig.batch_shape}"
        )
    num_cameras = rig.rotation.shape[0]
    if num_cameras < 2:
        raise ValueError(f"triangulation needs at least 2 cameras, the rig has {num_cameras}")
    if points_2d.ndim < 2 or points_2d.shape[-2:] != (num_cameras, 2):
        raise ValueError(
            f"points_2d must have shape (*batch, cam={num_cameras}, 2), got {points_2d.shape}"
        )
    if confidence.shape != points_2d.shape[:-1]:
        raise ValueError(
            f"confidence must have shape {points_2d.shape[:-1]} (points_2d without its last "
            f"axis), got {confidence.shape}"
        )


def method_options(method: str) -> dict:
    """The `triangulate_point` switches for a method name."""
    if method not in METHODS:
        raise ValueError(f"unknown triangulation method {method!r}; expected one of {METHODS}")
    return dict(robust="robust" in method, refine="refine" in method)


# Points per step of the loop over a large batch. Every stage makes a few passes over (cam, n)
# arrays; in chunks of this size they stay in the CPU caches from one pass to the next (8 cameras,
# 1e5 points: about 2x faster than all points at once).
CHUNK_POINTS = 65_536


def _triangulate_chunk(rig, points_2d, confidence, *, method, options):
    options = dict(options)
    views = prepare_views(
        rig,
        points_2d[..., 0].T,
        points_2d[..., 1].T,
        confidence.T,
        min_confidence=options.pop("min_confidence", 0.0),
    )
    return triangulate_views(rig, views, **method_options(method), **options)


@functools.partial(jax.jit, static_argnames=("method", "options"))
def _triangulate_flat(rig, points_2d, confidence, method, options):
    """(n, cam, 2) views -> `Triangulation` of n points.

    The views of all points are weighed and undistorted together as (cam, n) arrays, and the
    method's stages run on them as vectorised loops over points (see
    `jaxpose.triangulation.core.triangulate_views`), in a loop over chunks of at most
    `CHUNK_POINTS` points (the last one padded with missing views).
    """
    chunk = functools.partial(_triangulate_chunk, rig, method=method, options=options)
    n, num_cameras = points_2d.shape[:2]
    if n <= CHUNK_POINTS:
        return chunk(points_2d, confidence)
    steps = -(-n // CHUNK_POINTS)
    size = -(-n // steps)
    pad = steps * size - n
    points_2d = jnp.pad(points_2d, ((0, pad), (0, 0), (0, 0)), constant_values=jnp.nan)
    confidence = jnp.pad(confidence, ((0, pad), (0, 0)))
    out = jax.lax.map(
        lambda pc: chunk(*pc),
        (points_2d.reshape(steps, size, num_cameras, 2), confidence.reshape(steps, size, -1)),
    )
    return jax.tree_util.tree_map(lambda a: a.reshape(steps * size, *a.shape[2:])[:n], out)


def triangulate(
    rig: Camera,
    points_2d: Array,
    confidence: Array | None = None,
    *,
    method: str = "robust_refine",
    **options,
) -> Triangulation:
    """Triangulate a batch of points.

    Args:
        rig: cameras with a leading `cam` axis.
        points_2d: (*batch, cam, 2) distorted pixels, NaN where a view is missing.
        confidence: (*batch, cam) per-view confidence; defaults to 1 wherever points_2d is finite.
        method: "dlt" (weighted linear), "robust" (DLT on views kept by MSAC over view pairs),
            "refine" (DLT then Levenberg-Marquardt on reprojection error), or "robust_refine".
        **options: passed to `triangulate_point` (threshold_px, min_confidence, refine_iterations,
            refine_loss, refine_loss_scale_px, sigma_px).

    Returns:
        A `Triangulation` whose arrays have the leading shape `batch`.
    """
    points_2d = jnp.asarray(points_2d)
    if confidence is None:
        confidence = jnp.all(jnp.isfinite(points_2d), -1).astype(points_2d.dtype)
    confidence = jnp.asarray(confidence, points_2d.dtype)
    _check(rig, points_2d, confidence)
    method_options(method)
    batch = points_2d.shape[:-2]
    num_cameras = points_2d.shape[-2]
    flat = _triangulate_flat(
        rig,
        points_2d.reshape(-1, num_cameras, 2),
        confidence.reshape(-1, num_cameras),
        method,
        tuple(sorted(options.items())),
    )
    return jax.tree_util.tree_map(lambda a: a.reshape(*batch, *a.shape[1:]), flat)


def triangulate_frames(
    rig: Camera,
    points_2d: Array,
    confidence: Array | None = None,
    *,
    method: str = "robust_refine",
    chunk_size: int | None = None,
    progress: bool = False,
    **options,
) -> Triangulation:
    """Triangulate (frame, cam, kpt, 2) arrays into (frame, kpt, ...) results.

    Args:
        chunk_size: frames per call, to bound memory on long recordings (None: all at once).
            The last chunk is padded so that every call has one shape (one compilation).
        progress: show a progress bar over the chunks.
        Other arguments as `triangulate`.
    """
    points_2d = np.asarray(points_2d)
    if points_2d.ndim != 4 or points_2d.shape[-1] != 2:
        raise ValueError(f"points_2d must have shape (frame, cam, kpt, 2), got {points_2d.shape}")
    if confidence is None:
        confidence = np.all(np.isfinite(points_2d), -1).astype(points_2d.dtype)
    confidence = np.asarray(confidence, points_2d.dtype)
    if confidence.shape != points_2d.shape[:-1]:
        raise ValueError(
            f"confidence must have shape (frame, cam, kpt) = {points_2d.shape[:-1]}, "
            f"got {confidence.shape}"
        )
    p = np.moveaxis(points_2d, 1, 2)  # (frame, kpt, cam, 2)
    c = np.moveaxis(confidence, 1, 2)
    num_frames = p.shape[0]
    if num_frames == 0:
        raise ValueError("no frames to triangulate")
    if chunk_size is None or chunk_size >= num_frames:
        return triangulate(rig, p, c, method=method, **options)
    starts = range(0, num_frames, chunk_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"triangulate ({method})", unit="chunk")
    parts = []
    for start in starts:
        stop = min(start + chunk_size, num_frames)
        pp, cc = p[start:stop], c[start:stop]
        pad = chunk_size - (stop - start)
        if pad:
            pp = np.concatenate([pp, np.full((pad, *pp.shape[1:]), np.nan, pp.dtype)])
            cc = np.concatenate([cc, np.zeros((pad, *cc.shape[1:]), cc.dtype)])
        out = triangulate(rig, pp, cc, method=method, **options)
        parts.append(jax.tree_util.tree_map(lambda a, n=stop - start: np.asarray(a[:n]), out))
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)


@dataclasses.dataclass(frozen=True)
class Triangulator:
    """Triangulation settings as one object, so a config can build it (`_target_`) and a
    pipeline can call it on (frame, cam, kpt, 2) arrays.

    Attributes:
        method: "dlt", "robust", "refine" or "robust_refine".
        threshold_px: inlier threshold of robust view selection.
        min_confidence: views at or below this confidence are ignored.
        refine_iterations: Levenberg-Marquardt iterations.
        refine_loss: robust loss of the refinement ("linear", "huber", "cauchy").
        refine_loss_scale_px: where that loss turns robust.
        sigma_px: pixel noise at confidence 1, for the 3D covariance.
        chunk_size: frames per compiled call (bounds memory on long recordings).
    """

    method: str = "robust_refine"
    threshold_px: float = 15.0
    min_confidence: float = 0.0
    refine_iterations: int = 8
    refine_loss: str = "huber"
    refine_loss_scale_px: float = 5.0
    sigma_px: float = 1.0
    chunk_size: int = 256

    def __post_init__(self):
        method_options(self.method)
        if self.threshold_px <= 0 or self.refine_loss_scale_px <= 0 or self.sigma_px <= 0:
            raise ValueError("threshold_px, refine_loss_scale_px and sigma_px must be positive")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {self.chunk_size}")

    def options(self) -> dict:
        return dict(
            threshold_px=float(self.threshold_px),
            min_confidence=float(self.min_confidence),
            refine_iterations=int(self.refine_iterations),
            refine_loss=str(self.refine_loss),
            refine_loss_scale_px=float(self.refine_loss_scale_px),
            sigma_px=float(self.sigma_px),
        )

    def __call__(
        self,
        rig: Camera,
        points_2d: Array,
        confidence: Array | None = None,
        *,
        progress: bool = False,
    ) -> Triangulation:
        """(frame, cam, kpt, 2) pixels and (frame, cam, kpt) confidence -> (frame, kpt) results."""
        out = triangulate_frames(
            rig,
            points_2d,
            confidence,
            method=self.method,
            chunk_size=self.chunk_size,
            progress=progress,
            **self.options(),
        )
        return jax.tree_util.tree_map(np.asarray, out)
