"""ImageNet CNN backbones in Flax NNX: EfficientNet-Lite0 and MobileNetV2 1.0.

Both networks are stacks of inverted-residual ("MBConv") blocks: an optional 1x1 expand conv,
a depthwise conv that carries the block's stride, and a linear 1x1 project conv, each followed by
batch norm (ReLU6 after all but the project conv). They differ in padding (TensorFlow 'SAME' for
EfficientNet-Lite0, symmetric k//2 for MobileNetV2), batch-norm eps (1e-3 vs 1e-5), stage layout
and the names of their pretrained tensors.

All tensors are NHWC float32. ``features(x, train=...)`` returns a dict of feature maps keyed by
output stride (4, 8, 16, 32) for dense heads; the stride-32 map is the 1280-channel head conv
output, so that every pretrained tensor is used. Pretrained weights are loaded with
:func:`jaxpose.models.load_pretrained`, which relies on each model's ``torch_variables()`` map
from PyTorch state_dict key to NNX variable.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "depthwise_conv",
    "DepthwiseConv",
    "ConvBN",
    "InvertedResidual",
    "EfficientNetLite0",
    "MobileNetV2",
    "FEATURE_STRIDES",
]

FEATURE_STRIDES: tuple[int, ...] = (4, 8, 16, 32)

# Kinds of tensor conversion from PyTorch layout (see jaxpose.models.weights).
CONV = "conv"  # OIHW -> HWIO (depthwise (C,1,kh,kw) -> (kh,kw,1,C))
LINEAR = "linear"  # (out, in) -> (in, out)
VECTOR = "vector"  # unchanged

TorchVariables = dict[str, tuple[nnx.Variable, str]]


def _padding(kernel: int, mode: str):
    """Returns the lax padding for a square kernel: 'SAME' or explicit symmetric k // 2."""
    if mode == "same":
        return "SAME"
    if mode == "symmetric":
        p = kernel // 2
        return ((p, p), (p, p))
    raise ValueError(f"padding mode must be 'same' or 'symmetric', got {mode!r}")


def _depthwise(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise_fast_grad(x, kernel, stride, pads):
    return _depthwise(x, kernel, stride, pads)


def _depthwise_fwd(x, kernel, stride, pads):
    return _depthwise(x, kernel, stride, pads), (x, kernel)


def _depthwise_bwd(stride, pads, res, g):
    x, kernel = res
    kh, kw = kernel.shape[:2]
    _, ho, wo, _ = g.shape
    # Input gradient: XLA's own transpose of the convolution.
    _, vjp_x = jax.vjp(lambda x_: _depthwise(x_, kernel, stride, pads), x)
    (dx,) = vjp_x(g)
    # Kernel gradient as kh*kw shifted multiply-adds, 3-20x faster than XLA's on CPU
    # (shared/CPU-PERF.md). Tap (i, j) of output pixel (h, w) reads padded input
    # (h * stride + i, w * stride + j); trailing padded rows the forward never read are skipped.
    xp = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    taps = []
    for i in range(kh):
        for j in range(kw):
            window = jax.lax.slice(
                xp,
                (0, i, j, 0),
                (xp.shape[0], i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, xp.shape[3]),
                (1, stride, stride, 1),
            )
            taps.append(jnp.einsum("nhwc,nhwc->c", window, g))
    dk = jnp.stack(taps).reshape(kh, kw, 1, -1).astype(kernel.dtype)
    return dx, dk


_depthwise_fast_grad.defvjp(_depthwise_fwd, _depthwise_bwd)


def depthwise_conv(
    x: jax.Array, kernel: jax.Array, *, stride: int = 1, padding: str = "same"
) -> jax.Array:
    """Depthwise 2D convolution (NHWC, HWIO kernel ``(kh, kw, 1, C)``) with a fast kernel gradient.

    The forward pass and input gradient are XLA's; the kernel gradient is computed as
    ``kh * kw`` shifted multiply-adds, which is several times faster on XLA:CPU.

    Args:
        x: ``(batch, height, width, C)`` input.
        kernel: ``(kh, kw, 1, C)`` kernel.
        stride: spatial stride.
        padding: ``'same'`` (TensorFlow) or ``'symmetric'`` (``k // 2`` on every side).

    Returns:
        ``(batch, height', width', C)`` output.
    """
    kh, kw, one, c = kernel.shape
    if one != 1 or c != x.shape[-1]:
        raise ValueError(f"depthwise kernel must be (kh, kw, 1, {x.shape[-1]}), got {kernel.shape}")
    pads = _padding(kh, padding)
    if isinstance(pads, str):
        pads = jax.lax.padtype_to_pads(x.shape[1:3], (kh, kw), (stride, stride), pads)
    pads = tuple(tuple(int(v) for v in p) for p in pads)
    return _depthwise_fast_grad(x, kernel, stride, pads)


class DepthwiseConv(nnx.Module):
    """Bias-free depthwise convolution with a fast kernel gradient (see :func:`depthwise_conv`).

    The kernel is stored as ``kernel`` with shape ``(k, k, 1, C)``, the same variable name and
    layout as ``nnx.Conv(..., feature_group_count=C)``.

    Args:
        features: channels (input = output).
        kernel: square kernel size.
        stride: spatial stride.
        padding: ``'same'`` or ``'symmetric'``.
        rngs: random streams for initialisation.
    """

    def __init__(self, features: int, *, kernel: int, stride: int, padding: str, rngs: nnx.Rngs):
        # He-normal over the k*k taps of each channel (fan-in = fan-out per group = k*k).
        init = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")
        self.kernel = nnx.Param(init(rngs.params(), (kernel, kernel, 1, features)))
        self.stride = stride
        self.padding = padding

    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the depthwise convolution to an NHWC batch."""
        return depthwise_conv(x, self.kernel[...], stride=self.stride, padding=self.padding)


class ConvBN(nnx.Module):
    """Bias-free convolution, batch norm and optional ReLU6.

    Args:
        in_features: input channels.
        out_features: output channels.
        kernel: square kernel size.
        stride: spatial stride.
        groups: ``feature_group_count``; ``groups == in_features == out_features`` is depthwise.
        padding: ``'same'`` (TensorFlow, extra pixel bottom/right at stride 2) or
            ``'symmetric'`` (PyTorch-style ``kernel // 2`` on every side).
        eps: batch-norm epsilon.
        activation: apply ReLU6 after batch norm.
        rngs: random streams for parameter initialisation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        padding: str = "same",
        eps: float,
        activation: bool = True,
        rngs: nnx.Rngs,
    ):
        _padding(kernel, padding)  # validates the mode
        if groups > 1 and groups == in_features == out_features:
            self.conv = DepthwiseConv(
                in_features, kernel=kernel, stride=stride, padding=padding, rngs=rngs
            )
        else:
            self.conv = self._dense_conv(
                in_features, out_features, kernel, stride, groups, padding, rngs
            )
        # TF momentum 0.99 == PyTorch momentum 0.01.
        self.bn = nnx.BatchNorm(out_features, momentum=0.99, epsilon=eps, rngs=rngs)
        self.activation = activation

    @staticmethod
    def _dense_conv(in_features, out_features, kernel, stride, groups, padding, rngs):
        return nnx.Conv(
            in_features,
            out_features,
            kernel_size=(kernel, kernel),
            strides=(stride, stride),
            padding=_padding(kernel, padding),
            feature_group_count=groups,
            use_bias=False,
            kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Applies conv, batch norm (running statistics unless ``train``) and ReLU6."""
        y = self.bn(self.conv(x), use_running_average=not train)
        return jax.nn.relu6(y) if self.activation else y

    def torch_variables(self, conv: str, bn: str) -> TorchVariables:
        """Maps PyTorch names ``{conv}.weight`` and ``{bn}.*`` to this layer's variables."""
        return {
            f"{conv}.weight": (self.conv.kernel, CONV),
            f"{bn}.weight": (self.bn.scale, VECTOR),
            f"{bn}.bias": (self.bn.bias, VECTOR),
            f"{bn}.running_mean": (self.bn.mean, VECTOR),
            f"{bn}.running_var": (self.bn.var, VECTOR),
        }


class InvertedResidual(nnx.Module):
    """Inverted-residual block: [1x1 expand] -> depthwise kxk (strided) -> linear 1x1 project.

    The residual ``x + block(x)`` is added only when ``stride == 1`` and the channel count is
    unchanged. No squeeze-excite (neither EfficientNet-Lite nor MobileNetV2 has one).

    Args:
        in_features: input channels.
        out_features: output channels.
        expand: expansion ratio; 1 means no expand conv.
        kernel: depthwise kernel size.
        stride: depthwise stride.
        padding: ``'same'`` or ``'symmetric'`` (see :class:`ConvBN`).
        eps: batch-norm epsilon.
        rngs: random streams for parameter initialisation.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        expand: int,
        kernel: int,
        stride: int,
        padding: str,
        eps: float,
        rngs: nnx.Rngs,
    ):
        hidden = in_features * expand
        self.expand = (
            ConvBN(in_features, hidden, eps=eps, padding=padding, rngs=rngs)
            if expand != 1
            else None
        )
        self.depthwise = ConvBN(
            hidden,
            hidden,
            kernel=kernel,
            stride=stride,
            groups=hidden,
            padding=padding,
            eps=eps,
            rngs=rngs,
        )
        self.project = ConvBN(
            hidden, out_features, padding=padding, eps=eps, activation=False, rngs=rngs
        )
        self.stride = stride
        self.residual = stride == 1 and in_features == out_features

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Applies the block to an NHWC batch."""
        y = x if self.expand is None else self.expand(x, train=train)
        y = self.project(self.depthwise(y, train=train), train=train)
        return x + y if self.residual else y


def _taps(strides: Sequence[int], stem_stride: int = 2) -> dict[int, int]:
    """Index of the last block at each cumulative output stride (the feature-map taps)."""
    taps, total = {}, stem_stride
    for i, s in enumerate(strides):
        total *= s
        taps[total] = i
    return taps


class _MBConvNet(nnx.Module):
    """Shared stem -> blocks -> 1x1 head-conv trunk of both backbones."""

    stem: ConvBN
    blocks: nnx.List
    head_conv: ConvBN
    _tap_index: dict[int, int]

    def _build(
        self,
        stages: Sequence[tuple[int, int, int, int, int]],
        *,
        padding: str,
        eps: float,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds stem (3->32, stride 2), blocks from (expand, out, repeats, stride, kernel)
        stages, and the 1x1 head conv to 1280 channels."""
        self.stem = ConvBN(3, 32, kernel=3, stride=2, padding=padding, eps=eps, rngs=rngs)
        blocks, strides, cin = [], [], 32
        for expand, cout, repeats, stride, kernel in stages:
            for r in range(repeats):
                s = stride if r == 0 else 1
                blocks.append(
                    InvertedResidual(
                        cin,
                        cout,
                        expand=expand,
                        kernel=kernel,
                        stride=s,
                        padding=padding,
                        eps=eps,
                        rngs=rngs,
                    )
                )
                strides.append(s)
                cin = cout
        self.blocks = nnx.List(blocks)
        self.head_conv = ConvBN(cin, 1280, padding=padding, eps=eps, rngs=rngs)
        self._tap_index = nnx.static(
            {k: v for k, v in _taps(strides).items() if k in FEATURE_STRIDES[:-1]}
        )
        self.feature_channels = nnx.static(
            {
                **{k: blocks[i].project.bn.num_features for k, i in self._tap_index.items()},
                32: 1280,
            }
        )

    def features(self, x: jax.Array, *, train: bool) -> dict[int, jax.Array]:
        """Feature maps at output strides 4, 8, 16 and 32.

        Args:
            x: ``(batch, height, width, 3)`` float32 image batch, already normalised as the
                pretrained weights expect.
            train: use batch statistics (and update the running ones) instead of the stored
                running statistics.

        Returns:
            Dict from stride to an NHWC map; strides 4/8/16 are the outputs of the last block at
            that stride, stride 32 is the 1280-channel head conv (after BN and ReLU6). With
            'same' padding a map is ``ceil(size / stride)`` pixels on a side.
        """
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected an NHWC RGB batch (batch, h, w, 3), got shape {x.shape}")
        out = {}
        y = self.stem(x, train=train)
        for i, block in enumerate(self.blocks):
            y = block(y, train=train)
            for stride, idx in self._tap_index.items():
                if idx == i:
                    out[stride] = y
        out[32] = self.head_conv(y, train=train)
        return out

    def pooled_features(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Global-average-pooled stride-32 features, ``(batch, 1280)``."""
        return jnp.mean(self.features(x, train=train)[32], axis=(1, 2))


# (expand, out channels, repeats, first stride, kernel)
_EFFICIENTNET_LITE0_STAGES = (
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 40, 2, 2, 5),
    (6, 80, 3, 2, 3),
    (6, 112, 3, 1, 5),
    (6, 192, 4, 2, 5),
    (6, 320, 1, 1, 3),
)
_MOBILENET_V2_STAGES = (
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 32, 3, 2, 3),
    (6, 64, 4, 2, 3),
    (6, 96, 3, 1, 3),
    (6, 160, 3, 2, 3),
    (6, 320, 1, 1, 3),
)


class EfficientNetLite0(_MBConvNet):
    """EfficientNet-Lite0 (no squeeze-excite, ReLU6, TF 'SAME' padding, BN eps 1e-3).

    Input: RGB scaled as ``(pixel - 127) / 128``, NHWC float32.

    Args:
        num_classes: classifier outputs (1000 for the ImageNet weights).
        dropout: dropout rate before the classifier (training only).
        rngs: random streams for initialisation (and ``dropout`` when training).
    """

    def __init__(self, *, num_classes: int = 1000, dropout: float = 0.2, rngs: nnx.Rngs):
        self._build(_EFFICIENTNET_LITE0_STAGES, padding="same", eps=1e-3, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.fc = nnx.Linear(1280, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """ImageNet logits, ``(batch, num_classes)``, for an NHWC batch."""
        pooled = self.pooled_features(x, train=train)
        return self.fc(self.dropout(pooled, deterministic=not train))

    def torch_variables(self, *, include_head: bool = True) -> TorchVariables:
        """Map from the PyTorch state_dict key (efficientnet_lite_pytorch names) to variable."""
        out = self.stem.torch_variables("_conv_stem", "_bn0")
        for i, block in enumerate(self.blocks):
            p = f"_blocks.{i}"
            if block.expand is not None:
                out |= block.expand.torch_variables(f"{p}._expand_conv", f"{p}._bn0")
            out |= block.depthwise.torch_variables(f"{p}._depthwise_conv", f"{p}._bn1")
            out |= block.project.torch_variables(f"{p}._project_conv", f"{p}._bn2")
        out |= self.head_conv.torch_variables("_conv_head", "_bn1")
        if include_head:
            out["_fc.weight"] = (self.fc.kernel, LINEAR)
            out["_fc.bias"] = (self.fc.bias, VECTOR)
        return out


class MobileNetV2(_MBConvNet):
    """MobileNetV2 1.0 trunk without classifier (symmetric padding, BN eps 1e-5, ReLU6).

    Input: RGB normalised with ImageNet mean/std, NHWC float32. ``__call__`` returns the
    global-average-pooled 1280-d features (the pretrained weights have no classifier).

    Args:
        rngs: random streams for parameter initialisation.
    """

    def __init__(self, *, rngs: nnx.Rngs):
        self._build(_MOBILENET_V2_STAGES, padding="symmetric", eps=1e-5, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Pooled features, ``(batch, 1280)``, for an NHWC batch."""
        return self.pooled_features(x, train=train)

    def torch_variables(self, *, include_head: bool = True) -> TorchVariables:
        """Map from the PyTorch state_dict key (``features.N...``) to variable.

        ``include_head`` is accepted for a uniform interface; there is no classifier.
        """
        out = self.stem.torch_variables("features.0.0", "features.0.1")
        for i, block in enumerate(self.blocks):
            p = f"features.{i + 1}.conv"
            layers = [block.depthwise, block.project]
            if block.expand is not None:
                layers.insert(0, block.expand)
            for j, layer in enumerate(layers):
                out |= layer.torch_variables(f"{p}.{3 * j}", f"{p}.{3 * j + 1}")
        n = len(self.blocks) + 1
        out |= self.head_conv.torch_variables(f"features.{n}.0", f"features.{n}.1")
        return out
