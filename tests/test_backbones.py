"""ImageNet backbones: golden outputs of the ported pretrained weights, feature strides, loading errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.models import (
    FEATURE_STRIDES,
    EfficientNetLite0,
    MobileNetV2,
    load_pretrained,
)
from jaxpose.models.backbones import depthwise_conv

from .conftest import SHARED

WEIGHTS = SHARED / "weights"
needs_weights = pytest.mark.skipif(
    not WEIGHTS.is_dir(),
    reason=f"pretrained weights folder not found at {WEIGHTS} (set JAXPOSE_SHARED to the shared/ folder)",
)


def _jit_apply(model: nnx.Module, method: str = "__call__"):
    """Jitted inference-mode apply of ``model.method``, splitting the graph once."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def apply(state, x):
        return getattr(nnx.merge(graphdef, state), method)(x, train=False)

    return lambda x: apply(state, x)


@pytest.fixture(scope="module")
def efficientnet():
    model = EfficientNetLite0(rngs=nnx.Rngs(0))
    if WEIGHTS.is_dir():
        load_pretrained(model, "efficientnet_lite0", weights_dir=WEIGHTS)
    return model


@pytest.fixture(scope="module")
def mobilenet():
    model = MobileNetV2(rngs=nnx.Rngs(0))
    if WEIGHTS.is_dir():
        load_pretrained(model, "mobilenet_v2_headless", weights_dir=WEIGHTS)
    return model


@needs_weights
def test_efficientnet_lite0_reproduces_golden_logits_and_class(efficientnet):
    golden = np.load(WEIGHTS / "efficientnet_lite0" / "golden_chelsea.npz")
    logits = np.asarray(_jit_apply(efficientnet)(jnp.asarray(golden["input_nhwc"])))
    assert logits.shape == (1, 1000)
    np.testing.assert_allclose(logits, golden["logits"], rtol=0, atol=2e-5)

    classes = json.loads((WEIGHTS / "imagenet1k_classes.json").read_text())
    probs = np.asarray(jax.nn.softmax(logits[0]))
    top3 = [classes[i] for i in np.argsort(probs)[::-1][:3]]
    # SOURCE.md: tiger cat 0.385, Egyptian cat 0.363, tabby 0.167.
    assert top3 == ["tiger cat", "Egyptian cat", "tabby"]
    np.testing.assert_allclose(np.sort(probs)[::-1][:3], [0.385, 0.363, 0.167], atol=2e-3)


@needs_weights
def test_mobilenet_v2_reproduces_golden_features(mobilenet):
    golden = np.load(WEIGHTS / "mobilenet_v2_headless" / "golden_chelsea.npz")
    feats = np.asarray(_jit_apply(mobilenet)(jnp.asarray(golden["input_nhwc"])))
    assert feats.shape == (1, 1280)
    np.testing.assert_allclose(feats, golden["features"], rtol=0, atol=2e-5)


@pytest.mark.parametrize(
    ("fixture", "channels"),
    [
        ("efficientnet", {4: 24, 8: 40, 16: 112, 32: 1280}),
        ("mobilenet", {4: 24, 8: 32, 16: 96, 32: 1280}),
    ],
)
def test_feature_maps_have_strides_4_to_32(fixture, channels, request):
    model = request.getfixturevalue(fixture)
    x = jax.random.normal(jax.random.key(0), (2, 128, 128, 3))
    feats = _jit_apply(model, "features")(x)
    assert tuple(sorted(feats)) == FEATURE_STRIDES
    assert model.feature_channels == channels
    for stride, fmap in feats.items():
        assert fmap.shape == (2, 128 // stride, 128 // stride, channels[stride])
        assert np.isfinite(np.asarray(fmap)).all()
    # Batch elements are independent in inference mode.
    single = _jit_apply(model, "features")(x[:1])
    np.testing.assert_allclose(single[32], feats[32][:1], atol=1e-5)


@needs_weights
def test_manifest_keys_match_model_variables(efficientnet, mobilenet):
    for model, folder in [
        (efficientnet, "efficientnet_lite0"),
        (mobilenet, "mobilenet_v2_headless"),
    ]:
        manifest = json.loads((WEIGHTS / folder / "manifest.json").read_text())
        names = [t["name"] for t in manifest["tensors"]]
        assert len(names) == manifest["num_tensors"]
        assert sorted(model.torch_variables()) == sorted(names)
        # The manifest counts trainable parameters, not batch-norm running statistics.
        n_params = sum(
            int(np.prod(v.shape))
            for k, (v, _) in model.torch_variables().items()
            if not k.endswith(("running_mean", "running_var"))
        )
        assert n_params == manifest["num_parameters"]


@needs_weights
def test_wrong_architecture_load_fails_naming_key_and_shapes(efficientnet):
    before = np.asarray(efficientnet.stem.conv.kernel[...]).copy()
    with pytest.raises(ValueError) as err:
        load_pretrained(efficientnet, "mobilenet_v2_headless", weights_dir=WEIGHTS)
    msg = str(err.value)
    assert "EfficientNetLite0" in msg and "'_conv_stem.weight'" in msg
    assert "'features.0.0.weight'" in msg and "(32, 3, 3, 3)" in msg
    # Nothing was assigned.
    np.testing.assert_array_equal(np.asarray(efficientnet.stem.conv.kernel[...]), before)


@needs_weights
def test_shape_mismatch_names_key_and_both_shapes():
    model = EfficientNetLite0(num_classes=10, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"'_fc.weight'.*\(1000, 1280\).*\(10, 1280\)"):
        load_pretrained(model, "efficientnet_lite0", weights_dir=WEIGHTS)
    # A new classifier on the pretrained trunk: skip the file's head.
    load_pretrained(model, "efficientnet_lite0", weights_dir=WEIGHTS, include_head=False)
    reference = np.load(WEIGHTS / "efficientnet_lite0" / "efficientnet_lite0_imagenet.npz")
    np.testing.assert_array_equal(
        np.asarray(model.stem.conv.kernel[...]),
        reference["_conv_stem.weight"].transpose(2, 3, 1, 0),
    )


def test_missing_weights_folder_says_where_it_looked(tmp_path, monkeypatch, mobilenet):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="JAXPOSE_WEIGHTS") as err:
        load_pretrained(mobilenet, "mobilenet_v2_headless", weights_dir=missing)
    assert str(missing) in str(err.value)
    monkeypatch.setenv("JAXPOSE_WEIGHTS", str(missing))
    with pytest.raises(FileNotFoundError, match=r"\$JAXPOSE_WEIGHTS") as err:
        load_pretrained(mobilenet, "mobilenet_v2_headless")
    assert str(missing) in str(err.value)
    with pytest.raises(KeyError, match="resnet50"):
        load_pretrained(mobilenet, "resnet50", weights_dir=missing)


@pytest.mark.parametrize("padding", ["same", "symmetric"])
@pytest.mark.parametrize(("kernel", "stride", "size"), [(3, 2, 8), (5, 1, 7), (5, 2, 9)])
def test_depthwise_conv_matches_xla_value_and_gradients(padding, kernel, stride, size):
    kx, kk, kg = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (2, size, size + 1, 6))
    w = jax.random.normal(kk, (kernel, kernel, 1, 6))
    if padding == "same":  # TensorFlow SAME: the odd pixel goes bottom/right.
        pads = jax.lax.padtype_to_pads(x.shape[1:3], (kernel, kernel), (stride, stride), "SAME")
    else:
        pads = [(kernel // 2, kernel // 2)] * 2

    def reference(x, w):
        return jax.lax.conv_general_dilated(
            x,
            w,
            (stride, stride),
            pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=6,
        )

    def fast(x, w):
        return depthwise_conv(x, w, stride=stride, padding=padding)

    y_ref = reference(x, w)
    np.testing.assert_allclose(fast(x, w), y_ref, atol=1e-5)
    cotangent = jax.random.normal(kg, y_ref.shape)
    grads = jax.vjp(fast, x, w)[1](cotangent)
    grads_ref = jax.vjp(reference, x, w)[1](cotangent)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-4)


def test_train_mode_uses_batch_statistics_and_updates_running_ones():
    model = MobileNetV2(rngs=nnx.Rngs(3))
    x = 3.0 * jax.random.normal(jax.random.key(0), (4, 32, 32, 3)) + 1.0
    mean_before = np.asarray(model.stem.bn.mean[...]).copy()

    @nnx.jit
    def step(model, x):
        def loss_fn(model):
            return jnp.mean(model(x, train=True) ** 2)

        return nnx.value_and_grad(loss_fn)(model)

    loss, grads = step(model, x)
    assert np.isfinite(float(loss))
    # Running statistics moved towards the batch statistics (momentum 0.99).
    assert not np.allclose(np.asarray(model.stem.bn.mean[...]), mean_before)
    depthwise_grad = np.asarray(grads.blocks[0].depthwise.conv.kernel[...])
    assert np.isfinite(depthwise_grad).all() and np.abs(depthwise_grad).max() > 0
