"""Heatmap pose head (upsampling without transposed convolutions) and keypoint decoders.

:class:`HeatmapHead` reads one backbone feature map (``feature_stride``, e.g. 32), projects it to
``channels`` with a 1x1 conv, and doubles its resolution stage by stage until ``output_stride``
(2, 4 or 8), adding a 1x1 projection of the backbone's own map at each stride in
``fuse_strides`` on the way (a light feature-pyramid skip). Each upsampling stage is either

- ``"pixel_shuffle"``: a 3x3 conv to ``4 * channels`` then depth-to-space (Shi et al. 2016), or
- ``"resize_conv"``: nearest-neighbour 2x resize then a 3x3 conv (Odena et al. 2016),

followed by batch norm and ReLU. Transposed convolutions are deliberately absent: their kernel
gradient is 10-50x slower on XLA:CPU (shared/CPU-PERF.md). The pixel-shuffle conv starts with
"ICNR" weights (the four sub-pixel filters equal), so at initialisation it is exactly a
nearest-neighbour upsampling of a 3x3 conv and has no checkerboard pattern (Aitken et al. 2017).

Two 1x1 convs then give heatmap logits ``(B, h, w, K)`` and, if ``locref``, DeepLabCut-style
location-refinement offsets ``(B, h, w, K, 2)`` (x, y) in units of ``locref_std`` input pixels.

Decoders turn these into keypoints ``(B, K, 2)`` (x, y) in input pixels, with the cell-centre
convention of the issue-4 contract: heatmap cell ``(i, j)`` is centred at input pixel
``(j * stride + (stride - 1) / 2, i * stride + (stride - 1) / 2)`` (pixel ``i`` covers
``[i - 0.5, i + 0.5]``). Both return a confidence in [0, 1], the sigmoid of the peak logit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpose.models.resnet import ConvBNReLU

__all__ = [
    "LOCREF_STD",
    "UPSAMPLE_MODES",
    "HeatmapHead",
    "PixelShuffleUp",
    "ResizeConvUp",
    "cell_centres",
    "decode_argmax",
    "decode_soft_argmax",
    "depth_to_space",
    "upsample_nearest",
]

# DeepLabCut's ``locref_stdev``: offsets are predicted in units of this many input pixels.
LOCREF_STD = 7.2801
UPSAMPLE_MODES = ("pixel_shuffle", "resize_conv")


def depth_to_space(x: jax.Array, factor: int) -> jax.Array:
    """Pixel shuffle: ``(B, H, W, f*f*C)`` -> ``(B, f*H, f*W, C)``.

    Channel ``(dy * f + dx) * C + c`` of input pixel ``(h, w)`` becomes channel ``c`` of output
    pixel ``(f * h + dy, f * w + dx)`` (TensorFlow's ``depth_to_space`` order).
    """
    b, h, w, c = x.shape
    if c % (factor * factor):
        raise ValueError(f"depth_to_space: {c} channels is not a multiple of {factor}^2")
    c_out = c // (factor * factor)
    y = x.reshape(b, h, w, factor, factor, c_out).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, h * factor, w * factor, c_out)


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
    """Nearest-neighbour upsampling ``(B, H, W, C)`` -> ``(B, f*H, f*W, C)``.

    A broadcast and reshape: its gradient is a cheap sum over the ``f x f`` copies.
    """
    b, h, w, c = x.shape
    y = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, factor, w, factor, c))
    return y.reshape(b, h * factor, w * factor, c)


class PixelShuffleUp(nnx.Module):
    """2x upsampling: 3x3 conv to ``4 * out`` channels, depth-to-space, batch norm, ReLU.

    Args:
        in_features: input channels.
        out_features: output channels.
        rngs: random streams for initialisation.
    """

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        # ICNR: draw one He-normal (fan-out of a plain conv) 3x3 kernel and repeat it for the four
        # sub-pixels, so the shuffled output starts as a nearest-neighbour upsampling.
        init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
        kernel = init(rngs.params(), (3, 3, in_features, out_features))
        self.conv = nnx.Conv(
            in_features,
            4 * out_features,
            kernel_size=(3, 3),
            padding=((1, 1), (1, 1)),
            use_bias=False,
            kernel_init=lambda *_: jnp.tile(kernel, (1, 1, 1, 4)),
            rngs=rngs,
        )
        self.bn = nnx.BatchNorm(out_features, momentum=0.9, epsilon=1e-5, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """``(B, H, W, in)`` -> ``(B, 2H, 2W, out)``."""
        y = depth_to_space(self.conv(x), 2)
        return jax.nn.relu(self.bn(y, use_running_average=not train))


class ResizeConvUp(nnx.Module):
    """2x upsampling: nearest-neighbour resize, 3x3 conv, batch norm, ReLU.

    Args:
        in_features: input channels.
        out_features: output channels.
        rngs: random streams for initialisation.
    """

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.conv = ConvBNReLU(in_features, out_features, kernel=3, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """``(B, H, W, in)`` -> ``(B, 2H, 2W, out)``."""
        return self.conv(upsample_nearest(x, 2), train=train)


class HeatmapHead(nnx.Module):
    """Heatmap (+ location refinement) head on a backbone's feature maps.

    Args:
        in_features: backbone channels by stride, e.g. ``backbone.feature_channels``
            (``{4: 64, 8: 128, 16: 256, 32: 512}`` for ResNet-18).
        num_keypoints: K, heatmap channels.
        feature_stride: stride of the backbone map the head starts from.
        fuse_strides: finer backbone strides whose maps are added (after a 1x1 conv + batch
            norm) on the way up; each must lie in ``[output_stride, feature_stride)``.
        output_stride: input pixels per heatmap cell (2, 4 or 8, at most ``feature_stride``).
        upsample: ``"pixel_shuffle"`` or ``"resize_conv"`` (see the module docstring).
        channels: width of every upsampling stage.
        locref: also predict location-refinement offsets.
        heatmap_bias: initial bias of the heatmap logits; -4 makes the initial sigmoid 0.018,
            close to the background of Gaussian targets, so early training does not spend its
            steps pushing the whole map down.
        rngs: random streams for initialisation.
    """

    def __init__(
        self,
        in_features: Mapping[int, int],
        num_keypoints: int,
        *,
        feature_stride: int = 32,
        fuse_strides: Sequence[int] = (16, 8),
        output_stride: int = 4,
        upsample: str = "pixel_shuffle",
        channels: int = 128,
        locref: bool = True,
        heatmap_bias: float = -4.0,
        rngs: nnx.Rngs,
    ):
        in_features = {int(s): int(c) for s, c in in_features.items()}
        fuse_strides = tuple(sorted({int(s) for s in fuse_strides}, reverse=True))
        if num_keypoints < 1:
            raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if feature_stride not in in_features:
            raise ValueError(
                f"feature_stride={feature_stride} is not a backbone stride; the backbone gives "
                f"{sorted(in_features)}"
            )
        if output_stride not in (2, 4, 8) or output_stride > feature_stride:
            raise ValueError(
                f"output_stride must be 2, 4 or 8 and at most feature_stride={feature_stride}, "
                f"got {output_stride}"
            )
        for s in fuse_strides:
            if s not in in_features or not output_stride <= s < feature_stride:
                raise ValueError(
                    f"fuse_strides: {s} must be a backbone stride ({sorted(in_features)}) in "
                    f"[output_stride={output_stride}, feature_stride={feature_stride})"
                )

        self.in_features = nnx.static(in_features)
        self.num_keypoints = num_keypoints
        self.feature_stride = feature_stride
        self.fuse_strides = fuse_strides
        self.output_stride = output_stride
        self.upsample = upsample
        self.channels = channels
        self.locref = locref

        self.lateral = ConvBNReLU(in_features[feature_stride], channels, kernel=1, rngs=rngs)
        stage = PixelShuffleUp if upsample == "pixel_shuffle" else ResizeConvUp
        n_stages = (feature_stride // output_stride).bit_length() - 1
        self.stages = nnx.List([stage(channels, channels, rngs=rngs) for _ in range(n_stages)])
        # Skips end in batch norm without ReLU: the sum goes through one ReLU.
        self.skips = nnx.Dict(
            {
                str(s): ConvBNReLU(in_features[s], channels, kernel=1, relu=False, rngs=rngs)
                for s in fuse_strides
            }
        )
        self.heatmap = nnx.Conv(
            channels,
            num_keypoints,
            kernel_size=(1, 1),
            kernel_init=nnx.initializers.normal(0.01),
            bias_init=nnx.initializers.constant(heatmap_bias),
            rngs=rngs,
        )
        # Offsets start near 0 (the cell centre), the prior of location refinement.
        self.offset = (
            nnx.Conv(
                channels,
                2 * num_keypoints,
                kernel_size=(1, 1),
                kernel_init=nnx.initializers.normal(0.001),
                rngs=rngs,
            )
            if locref
            else None
        )

    def __call__(
        self, features: Mapping[int, jax.Array], *, train: bool
    ) -> dict[str, jax.Array | None]:
        """Heatmap logits and offsets from backbone feature maps.

        Args:
            features: backbone maps by stride (``backbone.features(x, train=...)``); the input
                side must be a multiple of ``feature_stride`` so the maps line up.
            train: batch statistics in batch norm.

        Returns:
            ``{"heatmap": (B, h, w, K) logits, "offset": (B, h, w, K, 2) or None}``, with
            ``h = H / output_stride`` for an ``H``-pixel input.
        """
        y = self.lateral(features[self.feature_stride], train=train)
        stride = self.feature_stride
        for stage in self.stages:
            y = stage(y, train=train)
            stride //= 2
            if stride in self.fuse_strides:
                skip = features[stride]
                if skip.shape[1:3] != y.shape[1:3]:
                    raise ValueError(
                        f"the stride-{stride} backbone map is {skip.shape[1:3]} but the upsampled "
                        f"stride-{self.feature_stride} map is {y.shape[1:3]}: the input height "
                        f"and width must be multiples of {self.feature_stride}"
                    )
                y = jax.nn.relu(y + self.skips[str(stride)](skip, train=train))
        heatmap = self.heatmap(y)
        offset = None
        if self.offset is not None:
            offset = self.offset(y)
            offset = offset.reshape(*offset.shape[:3], self.num_keypoints, 2)
        return {"heatmap": heatmap, "offset": offset}

    def signature(self) -> str:
        """Everything that fixes the parameter shapes, e.g.
        ``heatmap(feature_stride=32,fuse=16+8,upsample=pixel_shuffle,channels=128,stride=4,
        locref=True,K=4)``."""
        fuse = "+".join(str(s) for s in self.fuse_strides) or "none"
        return (
            f"heatmap(feature_stride={self.feature_stride},fuse={fuse},upsample={self.upsample},"
            f"channels={self.channels},stride={self.output_stride},locref={self.locref},"
            f"K={self.num_keypoints})"
        )


# ---------------------------------------------------------------------------------------------
# Decoders


def cell_centres(shape: tuple[int, int], stride: int) -> tuple[jax.Array, jax.Array]:
    """Input-pixel centres of heatmap cells: ``(x (w,), y (h,))`` for a ``(h, w)`` heatmap;
    cell ``(i, j)`` is centred at ``(x[j], y[i])``."""
    h, w = shape
    offset = (stride - 1) / 2.0
    return (
        jnp.arange(w, dtype=jnp.float32) * stride + offset,
        jnp.arange(h, dtype=jnp.float32) * stride + offset,
    )


def _check_heatmap(heatmap: jax.Array, stride: int) -> None:
    if heatmap.ndim != 4:
        raise ValueError(f"heatmap must be (B, h, w, K), got shape {heatmap.shape}")
    if stride < 1:
        raise ValueError(f"stride must be a positive number of input px per cell, got {stride}")


def decode_argmax(
    heatmap: jax.Array,
    offset: jax.Array | None,
    stride: int,
    locref_std: float = LOCREF_STD,
) -> tuple[jax.Array, jax.Array]:
    """DeepLabCut decoding: the best cell's centre plus its location-refinement offset.

    Args:
        heatmap: ``(B, h, w, K)`` logits.
        offset: ``(B, h, w, K, 2)`` (x, y) offsets in units of ``locref_std`` px, or ``None``
            (the cell centre is returned, quantised to ``stride``).
        stride: input px per heatmap cell.
        locref_std: px per offset unit; must equal the one the offsets were trained with.

    Returns:
        ``(keypoints (B, K, 2) input px, confidence (B, K))``; confidence is the sigmoid of the
        peak logit, in [0, 1].
    """
    _check_heatmap(heatmap, stride)
    b, h, w, k = heatmap.shape
    if offset is not None and offset.shape != (b, h, w, k, 2):
        raise ValueError(f"offset must be (B, h, w, K, 2) = {(b, h, w, k, 2)}, got {offset.shape}")
    flat = heatmap.reshape(b, h * w, k)
    index = jnp.argmax(flat, axis=1)  # (B, K)
    peak = jnp.take_along_axis(flat, index[:, None, :], axis=1)[:, 0]
    x, y = cell_centres((h, w), stride)
    keypoints = jnp.stack([x[index % w], y[index // w]], axis=-1)
    if offset is not None:
        at_peak = jnp.take_along_axis(
            offset.reshape(b, h * w, k, 2), index[:, None, :, None], axis=1
        )[:, 0]
        keypoints = keypoints + at_peak * locref_std
    return keypoints, jax.nn.sigmoid(peak)


def decode_soft_argmax(
    heatmap: jax.Array, stride: int, beta: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """Integral regression: the expected cell centre under ``softmax(beta * logits)`` over cells.

    Differentiable in the logits (usable in a coordinate loss). For a heatmap whose logits are
    quadratic around the peak (a Gaussian after the softmax) the expectation is the sub-pixel peak;
    mass far from the peak (a second animal, a flat background with a small ``beta``) pulls the
    estimate towards it.

    Args:
        heatmap: ``(B, h, w, K)`` logits.
        stride: input px per heatmap cell.
        beta: inverse temperature; larger values concentrate the softmax on the peak.

    Returns:
        ``(keypoints (B, K, 2) input px, confidence (B, K))``; confidence is the sigmoid of the
        peak logit (as :func:`decode_argmax`, so one likelihood cut-off means the same for both
        decoders), in [0, 1]. It is not the softmax mass, which depends on ``beta`` and the
        heatmap size.
    """
    _check_heatmap(heatmap, stride)
    b, h, w, k = heatmap.shape
    prob = jax.nn.softmax(beta * heatmap.reshape(b, h * w, k), axis=1).reshape(b, h, w, k)
    x, y = cell_centres((h, w), stride)
    keypoints = jnp.stack(
        [jnp.einsum("bhwk,w->bk", prob, x), jnp.einsum("bhwk,h->bk", prob, y)], axis=-1
    )
    return keypoints, jax.nn.sigmoid(jnp.max(heatmap, axis=(1, 2)))
