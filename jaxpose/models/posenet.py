"""Pose network = backbone + heatmap head + decoder, and builders from names / Hydra configs.

Inputs are NHWC float32 images normalised with the ImageNet mean and std (the data loader does
that). A backbone whose pretrained weights expect another normalisation (EfficientNet-Lite0:
``(pixel - 127) / 128``) is wrapped in :class:`Renormalize`, which converts inside the network, so
every backbone takes the same input.

Configuration (``conf/backbone/*.yaml``, ``conf/head/*.yaml``) holds plain values::

    backbone: {name: resnet18, pretrained: false}
    head: {name: heatmap, feature_stride: 32, fuse_strides: [16, 8], upsample: pixel_shuffle,
           output_stride: 4, channels: 128, locref: true, locref_std: 7.2801,
           heatmap_bias: -4.0, decoder: argmax, beta: 1.0}

:func:`architecture_signature` names everything that fixes the parameter shapes (not the decoder
nor ``pretrained``), so a checkpoint can refuse to load into another architecture.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.models.backbones import EfficientNetLite0, MobileNetV2
from jaxpose.models.heads import (
    LOCREF_STD,
    HeatmapHead,
    decode_argmax,
    decode_soft_argmax,
)
from jaxpose.models.resnet import ResNet18, ResNet50
from jaxpose.models.weights import load_pretrained

__all__ = [
    "BACKBONES",
    "DECODERS",
    "HEAD_DEFAULTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PoseNet",
    "Renormalize",
    "architecture_signature",
    "build_backbone",
    "build_posenet",
    "build_posenet_from_config",
    "param_count",
]

BACKBONES = ("efficientnet_lite0", "mobilenet_v2", "resnet18", "resnet50", "small_cnn")
DECODERS = ("argmax", "soft_argmax")

# RGB statistics of ImageNet in [0, 1] units: the data loader normalises with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Head configuration keys and their defaults (conf/head/heatmap.yaml states the same values).
HEAD_DEFAULTS: dict[str, Any] = {
    "name": "heatmap",
    "feature_stride": 32,
    "fuse_strides": (16, 8),
    "upsample": "pixel_shuffle",
    "output_stride": 4,
    "channels": 128,
    "locref": True,
    "locref_std": LOCREF_STD,
    "heatmap_bias": -4.0,
    "decoder": "argmax",
    "beta": 1.0,
}
_BACKBONE_KEYS = ("name", "pretrained", "weights_dir")


class Renormalize(nnx.Module):
    """Feeds ImageNet mean/std normalised images to a backbone expecting ``(pixel - mean) / std``
    in 0-255 pixel units, by a fixed per-channel affine map in front of it.

    Args:
        backbone: a module with ``features(x, *, train)`` and ``feature_channels``.
        mean: the backbone's expected per-channel mean, 0-255 units (scalar or 3 values).
        std: the backbone's expected per-channel std, 0-255 units.
    """

    def __init__(self, backbone: nnx.Module, *, mean, std):
        self.net = backbone
        imagenet_mean = 255.0 * np.asarray(IMAGENET_MEAN)
        imagenet_std = 255.0 * np.asarray(IMAGENET_STD)
        # pixel = x * imagenet_std + imagenet_mean; wanted (pixel - mean) / std.
        scale = imagenet_std / np.asarray(std, dtype=np.float64)
        shift = (imagenet_mean - np.asarray(mean, dtype=np.float64)) / np.asarray(std)
        self.scale = nnx.static(tuple(float(v) for v in np.broadcast_to(scale, (3,))))
        self.shift = nnx.static(tuple(float(v) for v in np.broadcast_to(shift, (3,))))
        self.feature_channels = nnx.static(dict(backbone.feature_channels))

    def features(self, x: jax.Array, *, train: bool) -> dict[int, jax.Array]:
        """The wrapped backbone's ``features`` of the renormalised ``(B, H, W, 3)`` batch."""
        x = x * jnp.asarray(self.scale, x.dtype) + jnp.asarray(self.shift, x.dtype)
        return self.net.features(x, train=train)


def build_backbone(
    name: str,
    *,
    pretrained: bool,
    rngs: nnx.Rngs,
    weights_dir: str | os.PathLike | None = None,
) -> nnx.Module:
    """A backbone trunk taking ImageNet mean/std normalised images.

    Args:
        name: ``efficientnet_lite0``, ``mobilenet_v2``, ``resnet18``, ``resnet50`` or
            ``small_cnn`` (plain 3x3 convolutions, for fast runs on a CPU).
        pretrained: load the ImageNet weights (only the first two have them, from
            ``weights_dir``, else ``$JAXPOSE_WEIGHTS``, else ``shared/weights``).
        rngs: random streams for initialisation.
        weights_dir: folder holding the weight sub-folders (see
            :func:`jaxpose.models.load_pretrained`).

    Returns:
        A module with ``features(x, *, train) -> {4, 8, 16, 32: map}`` and ``feature_channels``.
        EfficientNet-Lite0 comes without its classifier, wrapped in :class:`Renormalize`.

    Raises:
        ValueError: unknown name, or ``pretrained`` for a backbone without weights.
        FileNotFoundError: the weights are missing (the message says where it looked).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if name == "small_cnn":
        from jaxpose.models.small import SmallCNN

        if pretrained:
            raise ValueError(
                "small_cnn has no pretrained weights (it is a small trunk for fast CPU runs): "
                "set backbone.pretrained=false"
            )
        return SmallCNN(rngs=rngs)
    if name in ("resnet18", "resnet50"):
        if pretrained:
            raise ValueError(
                f"no pretrained weights are shipped for {name}: set backbone.pretrained=false "
                "to train it from scratch, or use efficientnet_lite0 / mobilenet_v2 for "
                "ImageNet weights"
            )
        return ResNet18(rngs=rngs) if name == "resnet18" else ResNet50(rngs=rngs)
    if name == "mobilenet_v2":
        if pretrained:
            return _load_into_abstract(
                lambda: MobileNetV2(rngs=nnx.Rngs(0)), "mobilenet_v2_headless", weights_dir
            )
        return MobileNetV2(rngs=rngs)

    def efficientnet_trunk(rngs: nnx.Rngs) -> EfficientNetLite0:
        model = EfficientNetLite0(rngs=rngs)
        # Trunk only: the ImageNet classifier and its dropout would be dead parameters and state.
        del model.fc, model.dropout
        return model

    if pretrained:
        trunk = _load_into_abstract(
            lambda: efficientnet_trunk(nnx.Rngs(0)), "efficientnet_lite0", weights_dir
        )
    else:
        trunk = efficientnet_trunk(rngs)
    return Renormalize(trunk, mean=127.0, std=128.0)


def _load_into_abstract(
    build: Callable[[], nnx.Module], weights: str, weights_dir: str | os.PathLike | None
) -> nnx.Module:
    """Builds a backbone shape-only and fills every variable from a weight file.

    Skips the random initialisation that the weights overwrite anyway: run eagerly it compiles
    one small XLA program per parameter shape, 10-20 s on a cold start for EfficientNet-Lite0.
    """
    graphdef, state = nnx.split(nnx.eval_shape(build))
    # NaN placeholders: a variable the file does not fill could not pass unnoticed.
    state = jax.tree.map(lambda v: jnp.asarray(np.full(v.shape, np.nan, v.dtype)), state)
    model = nnx.merge(graphdef, state)
    n_filled = len(model.torch_variables(include_head=False))
    n_variables = len(jax.tree.leaves(state))
    if n_filled != n_variables:  # a backbone whose weight map misses some of its variables
        raise RuntimeError(
            f"{type(model).__name__} has {n_variables} variables but the weight map fills "
            f"{n_filled}; cannot build it pretrained"
        )
    return load_pretrained(model, weights, weights_dir=weights_dir, include_head=False)


class PoseNet(nnx.Module):
    """Backbone + heatmap head, with the decoder that turns outputs into keypoints.

    Args:
        backbone: module with ``features(x, *, train)`` and ``feature_channels``.
        head: a :class:`~jaxpose.models.HeatmapHead` (or any head with ``output_stride``,
            ``signature()`` and ``__call__(features, *, train) -> {"heatmap", "offset"}``).
        backbone_name: name used in :func:`architecture_signature`.
        decoder: ``"argmax"`` (+ offsets when the head has them) or ``"soft_argmax"``.
        locref_std: px per offset unit (argmax decoder); must equal the training loss's.
        beta: soft-argmax inverse temperature.
    """

    def __init__(
        self,
        backbone: nnx.Module,
        head: nnx.Module,
        *,
        backbone_name: str,
        decoder: str = "argmax",
        locref_std: float = LOCREF_STD,
        beta: float = 1.0,
    ):
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        self.backbone = backbone
        self.head = head
        self.backbone_name = backbone_name
        self.decoder = decoder
        self.locref_std = float(locref_std)
        self.beta = float(beta)

    @property
    def output_stride(self) -> int:
        """Input pixels per heatmap cell."""
        return self.head.output_stride

    def __call__(self, images: jax.Array, *, train: bool) -> dict[str, jax.Array | None]:
        """Head outputs for a ``(B, H, W, 3)`` normalised batch (H, W multiples of 32):
        ``{"heatmap": (B, H/s, W/s, K) logits, "offset": (B, H/s, W/s, K, 2) or None}``."""
        return self.head(self.backbone.features(images, train=train), train=train)

    def decode(self, outputs: Mapping[str, jax.Array | None]) -> tuple[jax.Array, jax.Array]:
        """``(keypoints (B, K, 2) input px, confidence (B, K) in [0, 1])`` from head outputs."""
        if self.decoder == "soft_argmax":
            return decode_soft_argmax(outputs["heatmap"], self.output_stride, self.beta)
        return decode_argmax(
            outputs["heatmap"], outputs.get("offset"), self.output_stride, self.locref_std
        )

    def predict(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Eval-mode keypoints ``(B, K, 2)`` in input px and confidence ``(B, K)``."""
        return self.decode(self(images, train=False))


def _as_dict(cfg: Mapping[str, Any] | str, what: str, allowed) -> dict[str, Any]:
    cfg = {"name": cfg} if isinstance(cfg, str) else dict(cfg)
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown {what} option(s) {unknown}; known options: {', '.join(sorted(allowed))}"
        )
    return cfg


def build_posenet(
    *,
    backbone: Mapping[str, Any] | str,
    head: Mapping[str, Any] | None = None,
    num_keypoints: int,
    rngs: nnx.Rngs,
) -> PoseNet:
    """A :class:`PoseNet` from backbone and head settings (plain dicts or Hydra configs).

    Args:
        backbone: ``{"name": ..., "pretrained": bool, "weights_dir": path or None}`` or just
            the name (then ``pretrained`` is false).
        head: head settings, keys of :data:`HEAD_DEFAULTS` (missing keys take those defaults).
        num_keypoints: K.
        rngs: random streams for initialisation.

    Raises:
        ValueError: an unknown name, option or value; the message lists the valid ones.
    """
    bb = _as_dict(backbone, "backbone", _BACKBONE_KEYS)
    if "name" not in bb:
        raise ValueError(f"backbone settings need a name (one of {', '.join(BACKBONES)})")
    hd = HEAD_DEFAULTS | _as_dict(head or {}, "head", HEAD_DEFAULTS)
    trunk = build_backbone(
        str(bb["name"]),
        pretrained=bool(bb.get("pretrained", False)),
        rngs=rngs,
        weights_dir=bb.get("weights_dir"),
    )
    fuse = hd["fuse_strides"]
    heatmap_head = HeatmapHead(
        trunk.feature_channels,
        int(num_keypoints),
        feature_stride=int(hd["feature_stride"]),
        fuse_strides=() if fuse is None else tuple(int(s) for s in fuse),
        output_stride=int(hd["output_stride"]),
        upsample=str(hd["upsample"]),
        channels=int(hd["channels"]),
        locref=bool(hd["locref"]),
        heatmap_bias=float(hd["heatmap_bias"]),
        rngs=rngs,
    )
    return PoseNet(
        trunk,
        heatmap_head,
        backbone_name=str(bb["name"]),
        decoder=str(hd["decoder"]),
        locref_std=float(hd["locref_std"]),
        beta=float(hd["beta"]),
    )


def build_posenet_from_config(
    backbone_cfg: Mapping[str, Any],
    head_cfg: Mapping[str, Any],
    num_keypoints: int,
    rngs: nnx.Rngs,
) -> PoseNet:
    """:func:`build_posenet` from the ``backbone`` and ``head`` groups of a composed config."""
    return build_posenet(
        backbone=backbone_cfg, head=head_cfg, num_keypoints=num_keypoints, rngs=rngs
    )


def param_count(model: nnx.Module) -> int:
    """Number of trainable parameters (``nnx.Param``; batch-norm statistics excluded)."""
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param))))


def architecture_signature(model: PoseNet) -> str:
    """A string naming everything that fixes the parameter shapes, e.g.
    ``resnet18/heatmap(feature_stride=32,fuse=16+8,upsample=pixel_shuffle,channels=128,stride=4,
    locref=True,K=4)``. Checkpoints store it; loading into a model with another one must fail."""
    return f"{model.backbone_name}/{model.head.signature()}"
