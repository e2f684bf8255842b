"""Training: losses, the loop (resume, determinism, metrics), checkpoints and `jaxpose train`.

Everything trains tiny networks on a synthetic DeepLabCut project written to a temporary folder:
64x64 frames with a coloured dot at each labelled body part, batch 2, a few steps.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
import yaml
from flax import nnx

from jaxpose.cli import main
from jaxpose.data import box_affine, load_dlc_project
from jaxpose.models.heads import decode_argmax
from jaxpose.train import (
    LOSSES,
    CheckpointError,
    LossError,
    MetricsWriter,
    TrainError,
    coordinate_loss,
    heatmap_loss,
    heatmap_targets,
    load_trained,
    locref_targets,
    read_metrics,
    total_loss,
    train,
)
from jaxpose.train import trainer as trainer_module
from jaxpose.train.inference import predict_images

SIZE = 64
BODYPARTS = ("nose", "tail", "paw")
COLOURS = ((255, 40, 40), (40, 255, 40), (60, 60, 255))  # RGB, one per body part


# ---------------------------------------------------------------------------------------------
# Synthetic data


def write_project(root, *, frames: int = 12, nan_every: int = 0, seed: int = 0):
    """A DeepLabCut project of `frames` 64x64 images with a 3 px dot at each body part.

    `nan_every` > 0 leaves body part 1 unlabelled in every such frame (its dot is still drawn).
    """
    rng = np.random.default_rng(seed)
    folder = root / "labeled-data" / "synth"
    folder.mkdir(parents=True)
    index, values = [], []
    for i in range(frames):
        image = np.full((SIZE, SIZE, 3), 40, np.uint8)
        points = rng.uniform(10, SIZE - 11, size=(len(BODYPARTS), 2))
        for (x, y), colour in zip(points, COLOURS, strict=True):
            # 4 bits of sub-pixel precision: the dot is centred on the label.
            centre = (int(round(x * 16)), int(round(y * 16)))
            cv2.circle(image, centre, 3 * 16, colour, -1, lineType=cv2.LINE_AA, shift=4)
        cv2.imwrite(str(folder / f"img{i:03d}.png"), image[..., ::-1])
        if nan_every and i % nan_every == 0:
            points[1] = np.nan
        index.append(f"labeled-data/synth/img{i:03d}.png")
        values.append(points.reshape(-1))
    columns = pd.MultiIndex.from_product(
        [["tester"], list(BODYPARTS), ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    pd.DataFrame(np.array(values), index=index, columns=columns).to_csv(
        folder / "CollectedData_tester.csv"
    )
    config = {"Task": "synth", "scorer": "tester", "bodyparts": list(BODYPARTS), "skeleton": []}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return write_project(tmp_path_factory.mktemp("project"))


# ---------------------------------------------------------------------------------------------
# A tiny stand-in network with the PoseNet interface (features -> head -> heatmap + offsets)


class TinyBackbone(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(3, 16, (3, 3), strides=(2, 2), rngs=rngs)
        self.bn1 = nnx.BatchNorm(16, rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, (3, 3), strides=(2, 2), rngs=rngs)
        self.bn2 = nnx.BatchNorm(32, rngs=rngs)

    def features(self, x, *, train: bool):
        x = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
        return {4: jax.nn.relu(self.bn2(self.conv2(x), use_running_average=not train))}


class TinyHead(nnx.Module):
    def __init__(self, num_keypoints: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(32, 32, (3, 3), rngs=rngs)
        self.heatmap = nnx.Conv(32, num_keypoints, (1, 1), rngs=rngs)
        self.offset = nnx.Conv(32, 2 * num_keypoints, (1, 1), rngs=rngs)
        self.k = num_keypoints

    def __call__(self, features, *, train: bool):
        y = jax.nn.relu(self.conv(features[4]))
        offset = self.offset(y)
        return {"heatmap": self.heatmap(y), "offset": offset.reshape(*offset.shape[:3], self.k, 2)}


class TinyPoseNet(nnx.Module):
    def __init__(self, num_keypoints: int, width: int, *, rngs: nnx.Rngs):
        self.backbone = TinyBackbone(rngs=rngs)
        self.head = TinyHead(num_keypoints, rngs=rngs)
        self.width = width

    def __call__(self, images, *, train: bool):
        return self.head(self.backbone.features(images, train=train), train=train)

    def predict(self, images):
        outputs = self(images, train=False)
        return decode_argmax(outputs["heatmap"], outputs["offset"], 4, 7.2801)


@functools.partial(nnx.jit, static_argnums=(0, 1))
def build_tiny(num_keypoints, width, rngs):
    # jitted: one compilation instead of one per initialiser shape (slow with a cold cache)
    return TinyPoseNet(num_keypoints, width, rngs=rngs)


def use_tiny_model(monkeypatch):
    """Makes `train` and `load_trained` build the stand-in network instead of a PoseNet."""

    def build(cfg, *, num_keypoints, pretrained=None, rngs=None):
        rngs = rngs if rngs is not None else nnx.Rngs(cfg.seed)
        return build_tiny(num_keypoints, int(cfg.head.get("width", 32)), rngs)

    def signature(model):
        return f"TinyPoseNet(k={model.head.k}, width={model.width})"

    monkeypatch.setattr(trainer_module, "build_model", build)
    monkeypatch.setattr(trainer_module, "model_signature", signature)


@pytest.fixture
def tiny_model(monkeypatch):
    use_tiny_model(monkeypatch)


NO_AUGMENT = {
    "crop": False,  # 64x64 frames letterboxed into a 64x64 input: the identity
    "rotation": 10.0,
    "scale": [0.9, 1.1],
    "translate": 0.05,
    "brightness": 0.1,
    "contrast": 0.1,
    "blur_prob": 0.0,
    "noise_prob": 0.0,
    "cutout_prob": 0.0,
}


def config(project, out, *, seed=0, **train):
    options = {
        "steps": 6,
        "batch_size": 2,
        "lr": 3e-3,
        "warmup_steps": 1,
        "checkpoint_every": 3,
        "log_every": 1,
        "eval_batch_size": 4,
        "progress": False,
    }
    return {
        "data": str(project),
        "out": str(out),
        "backbone": {"name": "tiny", "pretrained": False},
        "head": {"name": "tiny"},
        "augment": dict(NO_AUGMENT),
        "loss": {
            "heatmap": {"weight": 1.0, "sigma": 3.0},
            "locref": {"weight": 0.05, "radius": 8.0, "std": 7.2801},
        },
        "input_size": SIZE,
        "seed": seed,
        "split": {"train_fraction": 0.75, "seed": 0},
        "train": options | train,
    }


# ---------------------------------------------------------------------------------------------
# Losses


def test_heatmap_targets_peak_on_the_cell_centre():
    stride, sigma = 4, 3.0
    # cell (i=2, j=5) is centred at x = 5*4 + 1.5, y = 2*4 + 1.5
    keypoints = jnp.array([[[21.5, 9.5], [30.0, 7.0]]])
    t = heatmap_targets(keypoints, (8, 10), stride, sigma)
    assert t.shape == (1, 8, 10, 2)
    assert float(t[0, 2, 5, 0]) == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(t[0, ..., 0]), (8, 10)) == (2, 5)
    # off-centre keypoint: exactly the Gaussian of the distance to a cell centre
    d2 = (30.0 - (7 * 4 + 1.5)) ** 2 + (7.0 - (1 * 4 + 1.5)) ** 2
    assert float(t[0, 1, 7, 1]) == pytest.approx(np.exp(-d2 / (2 * sigma**2)), rel=1e-5)
    disk = heatmap_targets(keypoints, (8, 10), stride, 4.0, kind="disk")
    assert set(np.unique(disk).tolist()) == {0.0, 1.0}


def test_locref_targets_decode_back_to_the_keypoint():
    stride, std = 4, 7.2801
    keypoints = jnp.array([[[17.3, 22.8]]])
    targets, mask = locref_targets(keypoints, (16, 16), stride, radius=6.0, std=std)
    i, j = np.nonzero(np.asarray(mask[0, :, :, 0]))
    assert len(i) > 1
    centres = np.stack([j * stride + 1.5, i * stride + 1.5], -1)
    decoded = centres + np.asarray(targets[0, i, j, 0]) * std
    np.testing.assert_allclose(decoded, np.broadcast_to([17.3, 22.8], decoded.shape), atol=1e-4)
    assert np.all(np.hypot(*(centres - [17.3, 22.8]).T) <= 6.0)


def test_targets_decode_back_to_the_keypoints():
    """The training targets and the model's argmax + locref decoder agree on the pixel grid."""
    stride, std = 4, 7.2801
    keypoints = jnp.asarray(np.random.default_rng(1).uniform(2, 62, (2, 3, 2)), jnp.float32)
    t = jnp.clip(heatmap_targets(keypoints, (16, 16), stride, 3.0), 1e-6, 1 - 1e-6)
    offsets, _ = locref_targets(keypoints, (16, 16), stride, radius=8.0, std=std)
    decoded, _ = decode_argmax(jnp.log(t / (1 - t)), offsets, stride, std)
    np.testing.assert_allclose(decoded, keypoints, atol=1e-4)


def test_coordinate_loss_is_zero_at_the_soft_argmax():
    keypoints = jnp.array([[[5 * 4 + 1.5, 9 * 4 + 1.5]]])  # a cell centre of a 16x16 map
    x, y = jnp.arange(16) * 4 + 1.5, jnp.arange(16) * 4 + 1.5
    d2 = (x[None, :] - keypoints[0, 0, 0]) ** 2 + (y[:, None] - keypoints[0, 0, 1]) ** 2
    outputs = {"heatmap": (-d2 / (2 * 3.0**2))[None, :, :, None]}  # log of a Gaussian
    assert float(coordinate_loss(outputs, keypoints, stride=4)) < 1e-4
    assert float(coordinate_loss(outputs, keypoints + 2.0, stride=4)) > 1.0


def outputs_for(keypoints, key=0):
    b, k, _ = keypoints.shape
    k1, k2 = jax.random.split(jax.random.key(key))
    return {
        "heatmap": jax.random.normal(k1, (b, 8, 8, k)),
        "offset": jax.random.normal(k2, (b, 8, 8, k, 2)),
    }


LOSS_CONFIG = {
    "heatmap": {"weight": 1.0, "sigma": 3.0},
    "locref": {"weight": 0.05, "radius": 8.0, "std": 7.2801},
    "coordinate": {"weight": 0.1, "beta": 2.0},
}


def test_nan_keypoints_give_finite_loss_and_gradients():
    keypoints = jnp.array([[[10.0, 12.0], [np.nan, np.nan]], [[np.nan, 3.0], [20.0, 25.0]]])
    outputs = outputs_for(keypoints)

    def loss(outputs):
        return total_loss(outputs, keypoints, stride=4, config=LOSS_CONFIG)[0]

    value, grads = jax.jit(jax.value_and_grad(loss))(outputs)
    assert np.isfinite(float(value))
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g))
    # the unlabelled keypoints' channels get no gradient at all
    assert float(jnp.abs(grads["heatmap"][0, ..., 1]).max()) == 0.0
    assert float(jnp.abs(grads["heatmap"][1, ..., 0]).max()) == 0.0
    assert float(jnp.abs(grads["heatmap"][0, ..., 0]).max()) > 0.0
    # and the loss ignores them: it equals the loss of the labelled ones alone
    labelled = heatmap_loss(
        {
            "heatmap": jnp.stack([outputs["heatmap"][0, ..., 0], outputs["heatmap"][1, ..., 1]])[
                ..., None
            ]
        },
        jnp.array([[[10.0, 12.0]], [[20.0, 25.0]]]),
        stride=4,
        sigma=3.0,
    )
    masked = heatmap_loss(outputs, keypoints, stride=4, sigma=3.0)
    assert float(masked) == pytest.approx(float(labelled), rel=1e-6)


def test_all_unlabelled_batch_has_zero_loss():
    keypoints = jnp.full((2, 2, 2), jnp.nan)
    value, terms = total_loss(outputs_for(keypoints), keypoints, stride=4, config=LOSS_CONFIG)
    assert float(value) == 0.0 and all(float(v) == 0.0 for v in terms.values())


def test_loss_registry_rejects_unknown_names_and_skips_zero_weights():
    keypoints = jnp.array([[[10.0, 12.0]]])
    outputs = outputs_for(keypoints)
    with pytest.raises(
        LossError, match=r"'heatmp'.*known terms: \['coordinate', 'heatmap', 'locref'\]"
    ):
        total_loss(outputs, keypoints, stride=4, config={"heatmp": {"weight": 1.0}})
    assert set(LOSSES) == {"heatmap", "locref", "coordinate"}
    no_offsets = {"heatmap": outputs["heatmap"], "offset": None}
    # weight 0: not computed, so a head without offsets is fine ...
    _, terms = total_loss(
        no_offsets,
        keypoints,
        stride=4,
        config={"heatmap": {"weight": 1.0}, "locref": {"weight": 0.0}},
    )
    assert set(terms) == {"heatmap"}
    # ... but a weighted locref term needs them
    with pytest.raises(LossError, match="locref"):
        total_loss(no_offsets, keypoints, stride=4, config={"locref": {"weight": 1.0}})
    with pytest.raises(LossError, match="weight 0"):
        total_loss(outputs, keypoints, stride=4, config={"heatmap": {"weight": 0.0}})


# ---------------------------------------------------------------------------------------------
# The training loop


def _params(model):
    return jax.tree.leaves(nnx.state(model, nnx.Param))


@pytest.fixture(scope="module")
def runs(project, tmp_path_factory):
    """One uninterrupted 6-step run and one stopped at step 3 and resumed to 6 (stand-in net).

    Tests reading these runs back (load_trained) request `tiny_model` too.
    """
    tmp = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    try:
        use_tiny_model(mp)
        full = train(config(project, tmp / "full"))
        first = train(config(project, tmp / "resumed"), stop_after=3)
        second = train(config(project, tmp / "resumed", resume=True))
        other_seed = train(config(project, tmp / "seed1", seed=1, steps=3, warmup_steps=1))
    finally:
        mp.undo()  # later tests (the CLI) train real networks
    return {"full": full, "first": first, "second": second, "seed1": other_seed}


def constant_prediction_loss(keypoints, *, sigma: float) -> float:
    """Heatmap loss of the best prediction that ignores the image (one logit everywhere)."""
    targets = heatmap_targets(jnp.asarray(keypoints), (SIZE // 4, SIZE // 4), 4, sigma)
    logit = jnp.log(targets.mean() / (1 - targets.mean()))
    return float(optax.sigmoid_binary_cross_entropy(logit, targets).mean())


def test_loss_decreases_on_a_learnable_set(project, tmp_path, tiny_model):
    result = train(config(project, tmp_path / "run", steps=20, lr=1e-2, checkpoint_every=20))
    losses = np.array(result.losses)
    assert len(losses) == 20 and np.all(np.isfinite(losses))
    assert losses[-5:].mean() < 0.5 * losses[:5].mean()
    # below what predicting the background everywhere achieves: the dots are being localised
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    labels = load_dlc_project(project).keypoints
    baseline = constant_prediction_loss(labels, sigma=3.0)
    assert np.mean([r["heatmap"] for r in rows[-5:]]) < 0.7 * baseline
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["steps"] == 20 and summary["final_loss"] == pytest.approx(losses[-1])
    assert summary["test"]["n"] == 3 * len(BODYPARTS)  # 12 frames, 75 % train
    assert np.isfinite(summary["test"]["rmse_px"]) and summary["images_per_s"] > 0


def test_resume_continues_identically(runs, tiny_model):
    full, resumed = runs["full"], runs["second"]
    assert runs["first"].step == 3 and runs["first"].summary is None
    assert resumed.start_step == 3 and resumed.step == 6
    # the losses of steps 4-6 and the final parameters are those of the uninterrupted run
    np.testing.assert_array_equal(runs["first"].losses + resumed.losses, full.losses)
    model_a, info_a = load_trained(full.run_dir)
    model_b, info_b = load_trained(resumed.run_dir)
    assert info_a.step == info_b.step == 6
    for a, b in zip(_params(model_a), _params(model_b), strict=True):
        np.testing.assert_array_equal(a, b)
    stats_a = jax.tree.leaves(nnx.state(model_a, nnx.BatchStat))
    stats_b = jax.tree.leaves(nnx.state(model_b, nnx.BatchStat))
    for a, b in zip(stats_a, stats_b, strict=True):
        np.testing.assert_array_equal(a, b)


def test_training_is_deterministic_for_a_seed(runs):
    # two independent runs with seed 0 (the 6-step run and the first part of the resumed one)
    assert runs["first"].losses == runs["full"].losses[:3]
    # and another seed changes initialisation, batch order and augmentation
    assert runs["seed1"].losses != runs["full"].losses[:3]


def test_metrics_have_one_row_per_step(runs):
    for name in ("full", "resumed"):
        rows = read_metrics(runs["full"].run_dir.parent / name / "metrics.csv")
        assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
        assert {"loss", "heatmap", "locref", "lr", "images_per_s", "wall_time_s"} <= set(rows[0])
        np.testing.assert_allclose([r["loss"] for r in rows], runs["full"].losses, rtol=1e-6)
        # warm-up to the peak at step 2, then cosine decay
        lrs = [r["lr"] for r in rows]
        assert lrs[0] == 0.0 and lrs[1] == pytest.approx(3e-3) and lrs[1] > lrs[2] > lrs[-1]
        assert (
            len(list((runs["full"].run_dir.parent / name / "tb").glob("events.out.tfevents*"))) >= 1
        )


def test_metrics_writer_drops_rows_logged_after_the_resumed_checkpoint(tmp_path):
    # a run that logged steps 4-5 after its step-3 checkpoint, then died
    with MetricsWriter(tmp_path, columns=["loss"], tensorboard=False) as writer:
        for step in range(1, 6):
            writer.write(step, {"loss": 1.0 / step})
    with MetricsWriter(tmp_path, columns=["loss"], resume_step=3, tensorboard=False) as writer:
        writer.write(4, {"loss": 0.3})
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["loss"] == 0.3


def test_run_folder_and_load_trained(runs, tiny_model):
    run = runs["full"].run_dir
    for name in ("config.yaml", "split.json", "metrics.csv", "train_summary.json"):
        assert (run / name).is_file(), name
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]["images"]) == 9 and len(split["test"]["images"]) == 3
    assert not set(split["train"]["indices"]) & set(split["test"]["indices"])
    model, info = load_trained(run, step=3)
    assert info.step == 3 and info.bodyparts == BODYPARTS and info.input_size == SIZE
    assert info.config["train"]["steps"] == 6
    keypoints, confidence = model.predict(jnp.zeros((1, SIZE, SIZE, 3)))
    assert keypoints.shape == (1, 3, 2) and confidence.shape == (1, 3)
    with pytest.raises(CheckpointError, match="no checkpoint of step 4; saved steps: \\[3, 6\\]"):
        load_trained(run, step=4)


def test_load_trained_errors(runs, tmp_path, monkeypatch, tiny_model):
    with pytest.raises(CheckpointError, match="no such run folder"):
        load_trained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.yaml"):
        load_trained(tmp_path / "empty")
    (tmp_path / "empty" / "config.yaml").write_text(
        (runs["full"].run_dir / "config.yaml").read_text()
    )
    with pytest.raises(CheckpointError, match="saved no checkpoint yet"):
        load_trained(tmp_path / "empty")
    # a checkpoint of another architecture: both signatures are named
    monkeypatch.setattr(
        trainer_module, "model_signature", lambda model: "TinyPoseNet(k=3, width=64)"
    )
    with pytest.raises(
        CheckpointError,
        match=r"(?s)checkpoint: TinyPoseNet\(k=3, width=32\).*model:      TinyPoseNet\(k=3, width=64\)",
    ):
        load_trained(runs["full"].run_dir)


def test_existing_checkpoints_need_resume(runs, project, tiny_model):
    with pytest.raises(TrainError, match="already holds checkpoints.*train.resume=true"):
        train(config(project, runs["full"].run_dir))
    changed = config(project, runs["full"].run_dir, resume=True, lr=1e-2)
    with pytest.raises(TrainError, match=r"train.lr: 0.003 -> 0.01"):
        train(changed)


def test_nan_labels_train_to_finite_values(tmp_path, tiny_model):
    project = write_project(tmp_path / "nan_project", nan_every=2)
    result = train(config(project, tmp_path / "run", steps=4, checkpoint_every=4))
    assert np.all(np.isfinite(result.losses))
    model, _ = load_trained(result.run_dir)
    for p in _params(model):
        assert np.all(np.isfinite(p))
    assert result.summary["train"]["n"] < 9 * len(BODYPARTS)  # the NaN labels are not scored


def test_bad_configuration_is_reported(project, tmp_path, tiny_model):
    with pytest.raises(TrainError, match="input_size=60 must be a positive multiple of 32"):
        train(config(project, tmp_path / "a") | {"input_size": 60})
    with pytest.raises(TrainError, match=r"unknown training option\(s\) \['train.stepz'\]"):
        train(config(project, tmp_path / "b", stepz=3))
    bad_loss = config(project, tmp_path / "c")
    bad_loss["loss"] = {"heatmap": {"weight": 1.0}, "wing": {"weight": 1.0}}
    with pytest.raises(TrainError, match="'wing'.*known terms"):
        train(bad_loss)


class CentreModel(nnx.Module):
    """Predicts every keypoint at the input's centre pixel, and the mean brightness there."""

    def __init__(self, size: int):
        self.size = size

    def predict(self, images):
        centre = (self.size - 1) / 2.0
        b = images.shape[0]
        value = images[:, self.size // 2, self.size // 2, 0]
        return jnp.full((b, 2, 2), centre), jnp.stack([value, value], axis=1)


def test_predict_images_maps_back_to_original_pixels():
    images = [
        np.zeros((48, 80, 3), np.uint8),
        np.zeros((100, 60), np.uint8),
        np.zeros((30, 30, 3), np.uint8),
    ]
    keypoints, confidence = predict_images(CentreModel(32), images, input_size=32, batch_size=2)
    assert keypoints.shape == (3, 2, 2) and confidence.shape == (3, 2)
    # the letterbox keeps the frame's centre at the input's centre
    for image, points in zip(images, keypoints, strict=True):
        h, w = image.shape[:2]
        np.testing.assert_allclose(points, [[(w - 1) / 2, (h - 1) / 2]] * 2, atol=1e-9)
    # a crop: input px c maps back to the crop centre (here (20, 10), side 16)
    affine = box_affine((20.0, 10.0), 16.0, 32)
    crop, _ = predict_images(CentreModel(32), images[:1], input_size=32, affines=[affine])
    np.testing.assert_allclose(crop[0], [[20.0, 10.0]] * 2, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# `jaxpose train` with a real (tiny-input) network

CLI_OPTIONS = [
    "backbone=resnet18",
    "head.channels=32",
    "input_size=64",
    "augment=none",
    "augment.crop=false",
    "split.train_fraction=0.75",
    "train.steps=2",
    "train.batch_size=2",
    "train.warmup_steps=1",
    "train.eval_batch_size=4",
    "train.progress=false",
    "loss.heatmap.sigma=3",
]


def test_cli_trains_end_to_end(project, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", f"data={project}", f"out={out}", *CLI_OPTIONS]) == 0
    printed = capsys.readouterr().out
    assert "trained resnet18" in printed and "test  error" in printed
    for name in ("config.yaml", "split.json", "metrics.csv", "train_summary.json"):
        assert (out / name).is_file(), name
    assert [r["step"] for r in read_metrics(out / "metrics.csv")] == [1, 2]
    model, info = load_trained(out)
    assert info.step == 2 and info.bodyparts == BODYPARTS
    assert info.config["backbone"]["name"] == "resnet18"
    heatmap = model(jnp.zeros((1, SIZE, SIZE, 3)), train=False)["heatmap"]
    assert heatmap.shape[-1] == len(BODYPARTS)
    # a second call without train.resume refuses to overwrite the run ...
    assert main(["train", f"data={project}", f"out={out}", *CLI_OPTIONS]) == 1
    assert "train.resume=true" in capsys.readouterr().err
    # ... and with it continues the real network's checkpoint for one more step
    more = ["train.resume=true", "train.steps=3"]
    assert main(["train", f"data={project}", f"out={out}", *CLI_OPTIONS, *more]) == 0
    assert [r["step"] for r in read_metrics(out / "metrics.csv")] == [1, 2, 3]
    assert json.loads((out / "train_summary.json").read_text())["resumed_from"] == 2
    # the configuration now names another head: loading refuses, naming both architectures
    config = yaml.safe_load((out / "config.yaml").read_text())
    config["head"]["channels"] = 64
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(
        CheckpointError, match=r"(?s)checkpoint: resnet18/.*channels=32.*model: .*channels=64"
    ):
        load_trained(out)


def test_cli_multirun_writes_one_folder_per_run(project, tmp_path):
    out = tmp_path / "sweep"
    assert main(["train", "-m", f"data={project}", f"out={out}", *CLI_OPTIONS, "seed=0,1"]) == 0
    runs = sorted(p.parent.name for p in out.glob("*/train_summary.json"))
    assert len(runs) == 2 and all("seed=" in r for r in runs), runs
    seeds = {yaml.safe_load((out / r / "config.yaml").read_text())["seed"] for r in runs}
    assert seeds == {0, 1}


def test_cli_help_and_missing_arguments(capsys):
    res = subprocess.run(
        [sys.executable, "-m", "jaxpose.cli", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "jaxpose train data=" in res.stdout and "warmup_steps" in res.stdout
    assert main(["train", "out=/nonexistent"]) == 2
    assert "missing data" in capsys.readouterr().err


def test_every_config_group_composes_to_a_valid_training_config():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from jaxpose.cli import CONF_DIR
    from jaxpose.data import AugmentConfig

    groups = {
        g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml"))
        for g in ("backbone", "head", "augment")
    }
    assert {"efficientnet_lite0", "resnet18"} <= set(groups["backbone"])
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for group, choices in groups.items():
            for choice in choices:
                cfg = compose("train", overrides=["data=d", "out=o", f"{group}={choice}"])
                mapping = OmegaConf.to_container(cfg, resolve=True)
                assert mapping.pop("multiview")["enabled"] is False  # as `jaxpose train` does
                c = trainer_module.TrainConfig.from_mapping(mapping)
                trainer_module._validate(c)
                AugmentConfig(**c.augment, input_size=c.input_size)
                # the loss group follows the head: offsets are trained iff the head has them
                assert (c.loss["locref"]["weight"] > 0) == bool(c.head["locref"]), choice
                assert c.loss["locref"]["std"] == c.head["locref_std"]


def test_bn_recalibration_makes_eval_mode_match_batch_statistics():
    """Precise BN: after recalibrating on one batch, eval mode (running statistics) computes
    what train mode (that batch's statistics) does; stale statistics do not. The batch norm of
    a nearly constant channel is where a lag in the running mean turns into garbage."""
    from jaxpose.models import build_posenet

    model = build_posenet(
        backbone={"name": "small_cnn", "pretrained": False},
        head={"name": "heatmap", "channels": 16},
        num_keypoints=3,
        rngs=nnx.Rngs(0),
    )
    graphdef, params, rest = trainer_module.split_model(model)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(2.0, 3.0, (4, 64, 64, 3)).astype(np.float32))
    train_mode = model(images, train=True)["heatmap"]  # also moves the running stats a little
    stale = nnx.merge(graphdef, params, rest)(images, train=False)["heatmap"]
    assert float(jnp.abs(stale - train_mode).max()) > 0.1

    recalibrate = trainer_module.make_bn_recalibration(graphdef, params, rest, freeze_bn=False)
    new_rest = recalibrate(params, rest, [images])
    eval_mode = nnx.merge(graphdef, params, new_rest)(images, train=False)["heatmap"]
    np.testing.assert_allclose(np.asarray(eval_mode), np.asarray(train_mode), atol=2e-3)
    # the caller's state is not changed in place
    again = nnx.merge(graphdef, params, rest)(images, train=False)["heatmap"]
    np.testing.assert_array_equal(np.asarray(again), np.asarray(stale))
