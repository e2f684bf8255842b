"""Pose networks: ResNet trunks, the heatmap head, decoders, PoseNet builders and config groups."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.models import (
    BACKBONES,
    FEATURE_STRIDES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    HeatmapHead,
    PoseNet,
    ResNet18,
    ResNet50,
    architecture_signature,
    build_backbone,
    build_posenet,
    build_posenet_from_config,
    decode_argmax,
    decode_soft_argmax,
    param_count,
)
from jaxpose.models.heads import depth_to_space, upsample_nearest

from .conftest import REPO, SHARED

WEIGHTS = SHARED / "weights"
CONF = REPO / "conf"

# Small heads keep the compiled programs small; the architecture is the same at any width.
TINY_HEAD = {"channels": 16}


def _abstract(build):
    """Shapes-only construction: no initialiser runs (fast even for ResNet-50)."""
    return nnx.eval_shape(build)


# ---------------------------------------------------------------------------------------------
# ResNets


def test_resnet_parameter_counts_match_torchvision_trunks():
    # torchvision resnet18 / resnet50 minus their 1000-class fc (513 000 / 2 049 000).
    assert param_count(_abstract(lambda: ResNet18(rngs=nnx.Rngs(0)))) == 11_689_512 - 513_000
    assert param_count(_abstract(lambda: ResNet50(rngs=nnx.Rngs(0)))) == 25_557_032 - 2_049_000


def test_resnet50_feature_shapes():
    model = _abstract(lambda: ResNet50(rngs=nnx.Rngs(0)))
    feats = nnx.eval_shape(
        lambda m, x: m.features(x, train=False), model, jnp.zeros((1, 32, 32, 3))
    )
    assert model.feature_channels == {4: 256, 8: 512, 16: 1024, 32: 2048}
    assert {s: f.shape for s, f in feats.items()} == {
        s: (1, 32 // s, 32 // s, c) for s, c in model.feature_channels.items()
    }


@pytest.fixture(scope="module")
def resnet18():
    return ResNet18(rngs=nnx.Rngs(0))


def test_resnet18_features_strides_and_train_mode(resnet18):
    assert resnet18.feature_channels == {4: 64, 8: 128, 16: 256, 32: 512}
    # 32 px, not 64: XLA:CPU runs a 3x3 conv on a 2x2 map with 512 channels ~40x slower than
    # on a 1x1 or 3x3 map (230 ms), and 64 px gives the stride-32 map that size.
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    graphdef, state = nnx.split(resnet18)

    @jax.jit
    def features(state, x):
        model = nnx.merge(graphdef, state)
        return model.features(x, train=False), model.features(x, train=True), nnx.state(model)

    feats, feats_train, new_state = features(state, x)
    assert tuple(sorted(feats)) == FEATURE_STRIDES
    for stride, fmap in feats.items():
        assert fmap.shape == (2, 32 // stride, 32 // stride, resnet18.feature_channels[stride])
        assert np.isfinite(np.asarray(fmap)).all()
    # Residual branches start as the identity (zero BN scale), yet the trunk is not constant.
    assert float(jnp.std(feats[32])) > 0
    # Batch statistics differ from the initial running ones, and the running ones moved.
    assert not np.allclose(feats[32], feats_train[32])
    moved = nnx.merge(graphdef, new_state).stem.bn.mean[...]
    assert (
        float(jnp.abs(moved).max()) > 0
        and float(jnp.abs(state["stem"]["bn"]["mean"][...]).max()) == 0
    )


def test_resnets_refuse_pretrained_with_a_clear_error():
    for name in ("resnet18", "resnet50"):
        with pytest.raises(
            ValueError, match=rf"no pretrained weights are shipped for {name}.*pretrained=false"
        ):
            build_backbone(name, pretrained=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown backbone 'resnet34'.*resnet18"):
        build_backbone("resnet34", pretrained=False, rngs=nnx.Rngs(0))


# ---------------------------------------------------------------------------------------------
# Head


def test_depth_to_space_places_channels_as_documented():
    x = jnp.arange(2 * 3 * 4 * 8, dtype=jnp.float32).reshape(2, 3, 4, 8)  # f = 2, C = 2
    y = np.asarray(depth_to_space(x, 2))
    assert y.shape == (2, 6, 8, 2)
    for dy in range(2):
        for dx in range(2):
            for c in range(2):
                np.testing.assert_array_equal(y[:, dy::2, dx::2, c], x[..., (dy * 2 + dx) * 2 + c])
    np.testing.assert_array_equal(upsample_nearest(x, 2)[:, 1::2, ::2], x)
    with pytest.raises(ValueError, match="multiple of 2"):
        depth_to_space(jnp.zeros((1, 2, 2, 6)), 2)


FEATURE_CHANNELS = {4: 8, 8: 12, 16: 16, 32: 24}


def _random_features(size: int, batch: int = 2) -> dict[int, jax.Array]:
    keys = jax.random.split(jax.random.key(3), 4)
    return {
        s: jax.random.normal(k, (batch, size // s, size // s, c))
        for k, (s, c) in zip(keys, FEATURE_CHANNELS.items(), strict=True)
    }


@pytest.mark.parametrize("upsample", ["pixel_shuffle", "resize_conv"])
@pytest.mark.parametrize(
    ("feature_stride", "fuse", "output_stride"),
    [(32, (16, 8), 4), (16, (), 2), (32, (8,), 8), (8, (), 8)],
)
def test_head_output_shapes(upsample, feature_stride, fuse, output_stride):
    head = _abstract(
        lambda: HeatmapHead(
            FEATURE_CHANNELS,
            3,
            feature_stride=feature_stride,
            fuse_strides=fuse,
            output_stride=output_stride,
            upsample=upsample,
            channels=8,
            rngs=nnx.Rngs(0),
        )
    )
    feats = {
        s: jax.ShapeDtypeStruct((2, 64 // s, 64 // s, c), jnp.float32)
        for s, c in FEATURE_CHANNELS.items()
    }
    out = nnx.eval_shape(lambda h, f: h(f, train=True), head, feats)
    n = 64 // output_stride
    assert out["heatmap"].shape == (2, n, n, 3)
    assert out["offset"].shape == (2, n, n, 3, 2)
    assert head.signature() == (
        f"heatmap(feature_stride={feature_stride},fuse={'+'.join(map(str, fuse)) or 'none'},"
        f"upsample={upsample},channels=8,stride={output_stride},locref=True,K=3)"
    )


def _equations(jaxpr):
    """All equations of a jaxpr, including those of nested jaxprs (pjit, custom_vjp...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


def test_head_starts_with_low_confidence_and_no_transposed_convolution():
    feats = _random_features(64)
    for upsample in ("pixel_shuffle", "resize_conv"):
        head = HeatmapHead(FEATURE_CHANNELS, 4, upsample=upsample, channels=8, rngs=nnx.Rngs(1))
        graphdef, state = nnx.split(head)

        def apply(state, graphdef=graphdef):
            return nnx.merge(graphdef, state)(feats, train=False)

        out = jax.jit(apply)(state)
        prob = jax.nn.sigmoid(out["heatmap"])
        assert float(prob.max()) < 0.05 and float(prob.min()) > 0.005  # bias -4: 0.018
        assert float(jnp.abs(out["offset"]).max()) < 0.1  # offsets start near the cell centre
        # A transposed convolution lowers to a convolution with lhs_dilation > 1.
        dilations = [
            e.params["lhs_dilation"]
            for e in _equations(jax.make_jaxpr(apply)(state).jaxpr)
            if e.primitive.name == "conv_general_dilated"
        ]
        assert dilations and all(d == (1, 1) for d in dilations)

    no_locref = HeatmapHead(FEATURE_CHANNELS, 4, locref=False, channels=8, rngs=nnx.Rngs(1))
    assert nnx.eval_shape(lambda h: h(feats, train=False), no_locref)["offset"] is None


def test_pixel_shuffle_starts_as_nearest_upsampling():
    # ICNR initialisation: the four sub-pixels of each input pixel get the same value.
    head = HeatmapHead(
        FEATURE_CHANNELS,
        2,
        feature_stride=8,
        output_stride=4,
        fuse_strides=(),
        channels=8,
        rngs=nnx.Rngs(2),
    )
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 8))
    y = np.asarray(head.stages[0](x, train=False))
    np.testing.assert_allclose(y[:, 0::2, 0::2], y[:, 1::2, 1::2], atol=1e-6)
    np.testing.assert_allclose(y[:, 0::2, 0::2], y[:, 0::2, 1::2], atol=1e-6)


def test_head_rejects_bad_settings_and_misaligned_inputs():
    with pytest.raises(ValueError, match="upsample must be one of"):
        HeatmapHead(FEATURE_CHANNELS, 2, upsample="transposed", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="fuse_strides: 4 must be"):
        HeatmapHead(FEATURE_CHANNELS, 2, fuse_strides=(4,), output_stride=8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="output_stride must be 2, 4 or 8"):
        HeatmapHead(FEATURE_CHANNELS, 2, output_stride=16, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="feature_stride=64 is not a backbone stride"):
        HeatmapHead(FEATURE_CHANNELS, 2, feature_stride=64, rngs=nnx.Rngs(0))
    head = _abstract(lambda: HeatmapHead(FEATURE_CHANNELS, 2, channels=8, rngs=nnx.Rngs(0)))
    feats = {s: jnp.zeros((1, -(-48 // s), -(-48 // s), c)) for s, c in FEATURE_CHANNELS.items()}
    with pytest.raises(ValueError, match="multiples of 32"):
        nnx.eval_shape(lambda h: h(feats, train=False), head)


# ---------------------------------------------------------------------------------------------
# Decoders


def _gaussian_logits(centres: np.ndarray, shape: tuple[int, int], stride: int, sigma_px: float):
    """(B, h, w, K) log-Gaussian logits peaked at ``centres`` (B, K, 2) input px."""
    h, w = shape
    x = np.arange(w) * stride + (stride - 1) / 2
    y = np.arange(h) * stride + (stride - 1) / 2
    dx = x[None, None, :, None] - centres[:, None, None, :, 0]
    dy = y[None, :, None, None] - centres[:, None, None, :, 1]
    return jnp.asarray(-(dx**2 + dy**2) / (2 * sigma_px**2), jnp.float32)


# At least 3 sigma (15 px) inside the 64 px input: nearer the border the softmax is truncated and
# soft-argmax is biased inwards (see test_soft_argmax_is_biased_inwards_at_the_border).
CENTRES = np.array([[[20.3, 31.7], [41.9, 16.25]], [[33.5, 33.5], [15.1, 48.8]]], np.float32)
SIGMA = 5.0


def test_soft_argmax_finds_a_sub_pixel_gaussian_peak():
    stride = 4
    logits = _gaussian_logits(CENTRES, (16, 16), stride, sigma_px=SIGMA)
    points, conf = jax.jit(decode_soft_argmax, static_argnums=1)(logits, stride)
    np.testing.assert_allclose(points, CENTRES, atol=0.1)
    # Logits of a Gaussian probability map (what a BCE-trained heatmap approximates), peak 0.9.
    p = 0.9 * jnp.exp(logits)
    bce_logits = jnp.log(p) - jnp.log1p(-p)
    points, conf = decode_soft_argmax(bce_logits, stride, beta=1.0)
    np.testing.assert_allclose(points, CENTRES, atol=0.1)
    assert conf.shape == (2, 2) and bool(jnp.all((conf >= 0) & (conf <= 1)))
    np.testing.assert_allclose(conf, jax.nn.sigmoid(bce_logits.max(axis=(1, 2))))


def test_soft_argmax_is_biased_inwards_at_the_border():
    edge = np.array([[[1.0, 30.0]]], np.float32)
    points, _ = decode_soft_argmax(_gaussian_logits(edge, (16, 16), 4, sigma_px=SIGMA), 4)
    assert 1.5 < float(points[0, 0, 0]) < 5.0  # pulled right, towards the map
    np.testing.assert_allclose(points[0, 0, 1], 30.0, atol=0.1)


def test_soft_argmax_gradient_is_finite_and_moves_the_point():
    logits = _gaussian_logits(CENTRES, (16, 16), 4, sigma_px=SIGMA)
    grad = jax.grad(lambda h: decode_soft_argmax(h, 4, beta=2.0)[0][0, 0, 0])(logits)
    assert bool(jnp.all(jnp.isfinite(grad)))
    # Raising logits right of the peak moves x right.
    assert float(grad[0, 8, 7, 0]) > 0 > float(grad[0, 8, 3, 0])
    # Extreme logits stay finite (the softmax is shifted by its max).
    huge = decode_soft_argmax(1e4 * logits, 4)
    assert bool(jnp.all(jnp.isfinite(huge[0])))


def test_argmax_with_offsets_is_exact_and_cell_centred_without():
    stride, std = 4, 7.2801
    logits = _gaussian_logits(CENTRES, (16, 16), stride, sigma_px=SIGMA)
    # Offsets pointing from every cell centre to the keypoint, in std units (the locref target).
    x = np.arange(16) * stride + 1.5
    dx = (CENTRES[:, None, None, :, 0] - x[None, None, :, None]) / std
    dy = (CENTRES[:, None, None, :, 1] - x[None, :, None, None]) / std
    dx, dy = np.broadcast_arrays(dx, dy)
    offset = jnp.asarray(np.stack([dx, dy], axis=-1), jnp.float32)
    points, conf = jax.jit(decode_argmax, static_argnums=2)(logits, offset, stride, std)
    np.testing.assert_allclose(points, CENTRES, atol=1e-4)
    np.testing.assert_allclose(conf, jax.nn.sigmoid(logits.max(axis=(1, 2))), atol=1e-6)
    # Without offsets: the nearest cell centre (j * 4 + 1.5).
    coarse, _ = decode_argmax(logits, None, stride)
    np.testing.assert_allclose(coarse, np.round((CENTRES - 1.5) / stride) * stride + 1.5)
    # vmap over an extra leading axis.
    batched = jax.vmap(lambda h, o: decode_argmax(h, o, stride, std)[0])(logits[None], offset[None])
    np.testing.assert_allclose(batched[0], points)
    with pytest.raises(ValueError, match="offset must be"):
        decode_argmax(logits, offset[..., 0], stride)
    with pytest.raises(ValueError, match="heatmap must be"):
        decode_soft_argmax(logits[0], stride)


# ---------------------------------------------------------------------------------------------
# PoseNet


def test_posenet_resnet18_trains_and_predicts():
    model = build_posenet(
        backbone="resnet18",
        head=TINY_HEAD | {"decoder": "argmax"},
        num_keypoints=3,
        rngs=nnx.Rngs(0),
    )
    assert isinstance(model, PoseNet) and model.output_stride == 4
    images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def grad(params, rest, images):
        def loss_fn(params):
            m = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, rest))
            out = m(images, train=True)
            return jnp.mean(jax.nn.sigmoid(out["heatmap"])) + jnp.mean(out["offset"] ** 2)

        return jax.value_and_grad(loss_fn)(params)

    loss, grads = grad(params, rest, images)
    assert np.isfinite(float(loss))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    for layer in ("stem", "stages"):  # the trunk learns, from its first layer on
        assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["backbone"][layer])) > 0

    # predict: eval mode + the configured decoder (the decoders are checked numerically below).
    points, conf = nnx.eval_shape(lambda m: m.predict(images), model)
    assert points.shape == (2, 3, 2) and conf.shape == (2, 3)


@pytest.mark.skipif(not WEIGHTS.is_dir(), reason=f"pretrained weights not found at {WEIGHTS}")
def test_pretrained_efficientnet_reproduces_golden_features_from_imagenet_input():
    backbone = build_backbone("efficientnet_lite0", pretrained=True, rngs=nnx.Rngs(0))
    # Every variable came from the file (the placeholders are NaN).
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(nnx.state(backbone)))
    assert not hasattr(backbone.net, "fc")  # trunk only
    golden = np.load(WEIGHTS / "efficientnet_lite0" / "golden_chelsea.npz")
    # Its weights expect (pixel - 127) / 128; PoseNet inputs are ImageNet mean/std normalised.
    pixels = golden["input_nhwc"] * 128.0 + 127.0
    images = (pixels / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    graphdef, state = nnx.split(backbone)
    pooled = jax.jit(
        lambda state, x: jnp.mean(nnx.merge(graphdef, state).features(x, train=False)[32], (1, 2))
    )(state, jnp.asarray(images, jnp.float32))
    np.testing.assert_allclose(pooled, golden["pooled_features"], rtol=0, atol=1e-4)


@pytest.mark.skipif(not WEIGHTS.is_dir(), reason=f"pretrained weights not found at {WEIGHTS}")
def test_pretrained_mobilenet_is_filled_from_the_file():
    backbone = build_backbone("mobilenet_v2", pretrained=True, rngs=nnx.Rngs(0))
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(nnx.state(backbone)))
    reference = np.load(WEIGHTS / "mobilenet_v2_headless" / "mobilenet_v2_headless_imagenet.npz")
    for key, (var, _) in list(backbone.torch_variables().items())[::25]:
        np.testing.assert_array_equal(
            var[...], reference[key].transpose(2, 3, 1, 0) if var.ndim == 4 else reference[key]
        )


def test_signature_and_param_count_tell_architectures_apart():
    def build(backbone, **head):
        return _abstract(
            lambda: build_posenet(backbone=backbone, head=head, num_keypoints=4, rngs=nnx.Rngs(0))
        )

    base = build("resnet18")
    assert architecture_signature(base) == (
        "resnet18/heatmap(feature_stride=32,fuse=16+8,upsample=pixel_shuffle,channels=128,"
        "stride=4,locref=True,K=4)"
    )
    variants = [
        build("resnet50"),
        build("mobilenet_v2"),
        build("resnet18", upsample="resize_conv"),
        build("resnet18", locref=False),
        build("resnet18", output_stride=8),
        build("resnet18", fuse_strides=[16]),
    ]
    signatures = {architecture_signature(m) for m in [base, *variants]}
    assert len(signatures) == len(variants) + 1
    # The decoder changes no parameter, so it does not change the signature.
    assert architecture_signature(
        build("resnet18", decoder="soft_argmax")
    ) == architecture_signature(base)
    # Batch-norm statistics are not parameters.
    n_bn_stats = sum(x.size for x in jax.tree.leaves(nnx.state(base, nnx.BatchStat)))
    assert n_bn_stats > 0
    assert param_count(base) == sum(x.size for x in jax.tree.leaves(nnx.state(base))) - n_bn_stats


def test_build_posenet_rejects_unknown_options():
    with pytest.raises(ValueError, match=r"unknown head option\(s\) \['upsampling'\].*upsample"):
        build_posenet(
            backbone="resnet18", head={"upsampling": "x"}, num_keypoints=2, rngs=nnx.Rngs(0)
        )
    with pytest.raises(ValueError, match="unknown decoder 'mean'"):
        _abstract(
            lambda: build_posenet(
                backbone="resnet18", head={"decoder": "mean"}, num_keypoints=2, rngs=nnx.Rngs(0)
            )
        )


# ---------------------------------------------------------------------------------------------
# Hydra config groups


@pytest.fixture(scope="module")
def compose():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test_models"):
        yield compose


@pytest.mark.parametrize("head", ["heatmap", "soft_argmax"])
def test_every_config_group_composes_and_builds(compose, head):
    from jaxpose.models import HEAD_DEFAULTS

    for backbone in BACKBONES:
        # Compose the two groups on their own (no primary config needed): `+group=option`.
        cfg = compose(overrides=[f"+backbone={backbone}", f"+head={head}"])
        assert cfg.backbone.name == backbone and cfg.head.name == head
        assert set(cfg.head) == set(HEAD_DEFAULTS), "conf/head must state every head option"
        model = _abstract(
            lambda cfg=cfg: build_posenet_from_config(cfg.backbone, cfg.head, 5, nnx.Rngs(0))
        )
        out, (points, conf) = nnx.eval_shape(
            lambda m: (out := m(jnp.zeros((1, 64, 64, 3)), train=False), m.decode(out)), model
        )
        s = cfg.head.output_stride
        assert out["heatmap"].shape == (1, 64 // s, 64 // s, 5)
        assert (out["offset"] is None) == (not cfg.head.locref)
        assert model.decoder == cfg.head.decoder
        assert points.shape == (1, 5, 2) and conf.shape == (1, 5)
