"""Multi-view training (jaxpose.train.multiview) on a tiny rendered study, and the small backbone."""

from __future__ import annotations

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.io.calibration import Calibration, load_calibration, save_calibration
from jaxpose.io.dlc import read_dlc
from jaxpose.models.small import SmallCNN
from jaxpose.synth.animal import render_study_videos, write_labelled_frames
from jaxpose.synth.study import make_study
from jaxpose.train.metrics import read_metrics
from jaxpose.train.multiview import (
    MultiViewError,
    MultiViewTrainConfig,
    _make_pool,
    labelled_bone_lengths,
    load_multiview_project,
    load_multiview_run,
    make_batch,
    train_multiview,
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """3 cameras at 160x128 px, 12 video frames, frames 0, 2, ..., 10 labelled."""
    root = tmp_path_factory.mktemp("mv") / "project"
    study = make_study(num_cameras=3, num_frames=12, num_board_frames=0, seed=1)
    render_study_videos(study, root, scale=0.125, progress=False)
    write_labelled_frames(study, root, frames=range(0, 12, 2), scale=0.125, progress=False)
    return root


def _config(project, out, **changes) -> MultiViewTrainConfig:
    options = dict(
        project=str(project),
        out=str(out),
        scale_factor=0.5,  # 80x64 views, padded to 96x64
        steps=6,
        warmup_steps=1,
        batch_frames=2,
        unlabelled_frames_per_batch=1,
        min_confidence=0.0,  # 3D terms active from the first step
        label3d_weight=0.01,
        consistency_weight=0.01,
        progress=False,
        workers=0,
        checkpoint_every=3,
    )
    return MultiViewTrainConfig(**(options | changes))


def test_small_cnn_features_contract():
    net = SmallCNN(nnx.Rngs(0), widths=(8, 16, 24, 32))
    maps = net.features(jnp.zeros((2, 64, 96, 3)), train=False)
    assert {s: m.shape for s, m in maps.items()} == {
        4: (2, 16, 24, 8),
        8: (2, 8, 12, 16),
        16: (2, 4, 6, 24),
        32: (2, 2, 3, 32),
    }
    assert dict(net.feature_channels) == {4: 8, 8: 16, 16: 24, 32: 32}
    with pytest.raises(ValueError, match="widths"):
        SmallCNN(nnx.Rngs(0), widths=(8, 16))


def test_project_loading_and_batch(project):
    mv = load_multiview_project(project)
    assert mv.camera_names == ("cam0", "cam1", "cam2")
    assert mv.frames.tolist() == [0, 2, 4, 6, 8, 10]
    truth = read_dlc(project / "labeled-data" / "cam1" / "CollectedData_synthetic.h5")
    np.testing.assert_allclose(mv.labels[:, 1], truth.xy, atol=1e-4)
    cfg = _config(project, project.parent / "unused")
    pool = _make_pool(cfg, mv)
    batch = make_batch(pool, cfg, 3)
    assert batch["image"].shape == (3 * 3, 64, 96, 3)
    # Without augmentation the inverse affine maps input-px labels back onto the originals.
    plain = make_batch(pool, dataclasses.replace(cfg, augment={}), 3, train=False)
    back = np.einsum("vij,vkj->vki", plain["inverse"][:, :, :2], plain["keypoints"])
    back = back + plain["inverse"][:, None, :, 2]
    originals = plain["labels"].reshape(back.shape)
    ok = np.isfinite(back).all(-1)
    assert ok.sum() > 20
    np.testing.assert_allclose(back[ok], originals[ok], atol=1e-3)
    # Deterministic for (seed, step); another step differs.
    np.testing.assert_array_equal(make_batch(pool, cfg, 3)["image"], batch["image"])
    assert not np.array_equal(make_batch(pool, cfg, 4)["image"], batch["image"])


def test_camera_missing_from_calibration(project, tmp_path):
    cal = load_calibration(project / "calibration.toml")
    partial = tmp_path / "two.toml"
    save_calibration(cal.subset(["cam0", "cam1"]), partial)
    with pytest.raises(MultiViewError, match="cam2"):
        load_multiview_project(project, calibration=partial)
    extra = Calibration(
        jax.tree.map(lambda a: np.concatenate([a, a[:1]]), cal.rig), (*cal.names, "cam9")
    )
    save_calibration(extra, tmp_path / "four.toml")
    with pytest.raises(MultiViewError, match="cam9"):
        load_multiview_project(project, calibration=tmp_path / "four.toml")


def test_train_losses_terms_resume_and_cameras(project, tmp_path):
    # One run of 6 steps with every term, trainable cameras and an interruption at step 3.
    cfg = _config(project, tmp_path / "run", train_cameras=True, camera_lr=0.05)
    first = train_multiview(cfg, stop_after=3)
    assert first.step == 3
    rest = train_multiview(dataclasses.replace(cfg, resume=True))
    assert rest.start_step == 3 and rest.step == 6
    names = set(first.metrics[0])
    terms = {"heatmap", "coordinate", "label3d", "consistency", "camera_prior", "camera_label"}
    assert terms <= names
    assert "locref" not in names  # weight 0: neither computed nor logged
    assert not {"temporal", "limb"} & names  # off by default
    for row in first.metrics + rest.metrics:
        assert all(np.isfinite(v) for v in row.values())
    assert rest.metrics[-1]["heatmap"] < first.metrics[0]["heatmap"]
    # The cameras moved, and the trained calibration was written.
    trained = load_calibration(tmp_path / "run" / "calibration_trained.toml")
    moved = np.abs(np.asarray(trained.rig.rotation) - np.asarray(load_calibration(
        project / "calibration.toml").rig.rotation)).max()  # fmt: skip
    assert moved > 1e-5
    # Uninterrupted run: identical continuation.
    whole = train_multiview(dataclasses.replace(cfg, out=str(tmp_path / "whole")))
    a = [r["loss"] for r in first.metrics + rest.metrics]
    b = [r["loss"] for r in whole.metrics]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    # The saved run loads back and predicts like the trained model.
    model, meta = load_multiview_run(tmp_path / "run")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 64, 96, 3)), jnp.float32)
    np.testing.assert_allclose(model.predict(x)[0], whole.model.predict(x)[0], atol=1e-3)
    assert meta["camera_names"] == ["cam0", "cam1", "cam2"]
    with pytest.raises(MultiViewError, match="already holds checkpoints"):
        train_multiview(cfg)


def test_tight_prior_holds_cameras(project, tmp_path):
    # A tiny prior sigma holds the cameras at the reference calibration.
    tight = _config(
        project, tmp_path / "b", steps=3, train_cameras=True, camera_lr=0.05,
        camera_prior_sigma={"rotation": 1e-6, "translation": 1e-4}, camera_prior_weight=1.0,
    )  # fmt: skip
    held = train_multiview(tight)
    ref = load_calibration(project / "calibration.toml").rig
    assert np.abs(np.asarray(held.calibration.rig.rotation) - np.asarray(ref.rotation)).max() < 1e-6
    assert np.abs(np.asarray(held.calibration.rig.translation - ref.translation)).max() < 1e-3


def test_unlabelled_frames_give_consistency_gradient(project, tmp_path):
    # Only the consistency term, on a batch whose labelled frames carry no labels at all:
    # every gradient comes from the unlabelled (and unlabelled-like) views.
    from jaxpose.train.checkpoint import split_model
    from jaxpose.train.multiview import build_multiview_model, make_multiview_step
    from jaxpose.train.trainer import make_optimizer

    cfg = _config(
        project, tmp_path / "c", loss={"heatmap": {"weight": 0.0}}, label3d_weight=0.0,
        batch_frames=1, unlabelled_frames_per_batch=1,
    )  # fmt: skip
    mv = load_multiview_project(project)
    pool = _make_pool(cfg, mv)
    batch = make_batch(pool, cfg, 0)
    batch["keypoints"][:] = np.nan
    batch["labels"][:] = np.nan
    model = build_multiview_model(cfg.backbone, cfg.head, num_keypoints=len(mv.bodyparts),
                                  rngs=nnx.Rngs(0))  # fmt: skip
    graphdef, params, rest = split_model(model)
    optimizer, _ = make_optimizer(cfg.options())
    step = make_multiview_step(graphdef, optimizer, None, cfg, num_frames=2, num_cameras=3)
    reference = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), mv.calibration.rig)
    opt_state = {"model": optimizer.init(params)}
    _, _, _, metrics = step(
        params, rest, opt_state, reference,
        batch["image"], batch["keypoints"], batch["inverse"], batch["labels"],
    )  # fmt: skip
    # 2D weights 0 and label3d 0: those terms are neither computed nor reported.
    assert set(metrics) == {"loss", "consistency", "grad_norm"}
    assert float(metrics["consistency"]) > 0
    assert float(metrics["grad_norm"]) > 0


def test_bad_config(project, tmp_path):
    with pytest.raises(MultiViewError, match="camera_prior_sigma"):
        train_multiview(_config(project, tmp_path / "x", camera_prior_sigma={"zoom": 1.0}))
    shutil.rmtree(tmp_path / "x", ignore_errors=True)


def test_train_command_on_a_multi_camera_project(project, tmp_path, capsys):
    from jaxpose.cli import main as cli_main

    out = tmp_path / "cli"
    code = cli_main([
        "train", f"data={project}", f"out={out}", "backbone=small_cnn", "train.steps=2",
        "train.warmup_steps=1", "train.progress=false", "multiview.enabled=true",
        "multiview.options={scale_factor: 0.5, batch_frames: 1, unlabelled_frames_per_batch: 1,"
        " workers: 0, min_confidence: 0.0}",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "multi-view" in capsys.readouterr().out
    assert len(read_metrics(out / "metrics.csv")) == 2
    code = cli_main([
        "train", f"data={project}", f"out={tmp_path / 'bad'}", "multiview.enabled=true",
        "multiview.options={no_such_option: 1}",
    ])  # fmt: skip
    assert code == 1
    assert "no_such_option" in capsys.readouterr().err


def test_temporal_and_limb_terms(project, tmp_path):
    # The fixture labels every other frame, so runs of 3 consecutive frames exist only when
    # unlabelled_frames lists them all (an explicit list is taken as given).
    cfg = _config(
        project, tmp_path / "tl", steps=2, temporal_weight=0.01, clips_per_batch=2,
        limb_weight=0.01, limb_reference="labels", unlabelled_frames=tuple(range(12)),
    )  # fmt: skip
    mv = load_multiview_project(project)
    assert len(mv.skeleton) == 19 and mv.skeleton[0] == ("snout", "head")  # from config.yaml
    pool = _make_pool(cfg, mv)
    assert pool.clip_frames.shape == (10, 3)  # starts 0..9
    batch = make_batch(pool, cfg, 0)
    # 2 labelled + 1 unlabelled + 2 clips of 3 consecutive frames, times 3 cameras.
    assert batch["image"].shape[0] == (2 + 1 + 6) * 3
    clips = batch["frames"][3:].reshape(2, 3)
    assert np.all(np.diff(clips, axis=1) == 1)
    assert np.isnan(batch["labels"][3:]).all()
    np.testing.assert_array_equal(make_batch(pool, cfg, 0)["frames"], batch["frames"])
    # Bone lengths of the triangulated labels are the study's (rigid) ones.
    study = make_study(num_cameras=3, num_frames=12, num_board_frames=0, seed=1)
    bones = np.array([[mv.bodyparts.index(a), mv.bodyparts.index(b)] for a, b in mv.skeleton])
    truth = np.linalg.norm(
        study.points_3d[0, bones[:, 0]] - study.points_3d[0, bones[:, 1]], axis=-1
    )
    lengths = labelled_bone_lengths(mv, bones)  # NaN: never labelled in 2 views at both ends
    seen = np.isfinite(lengths)
    assert 5 <= seen.sum() < len(bones)
    np.testing.assert_allclose(lengths[seen], truth[seen], atol=0.1)

    result = train_multiview(cfg)
    for row in result.metrics:
        assert np.isfinite(row["temporal"]) and row["temporal"] > 0
        assert np.isfinite(row["limb"]) and row["limb"] > 0
        assert np.isfinite(row["loss"])
    assert {"temporal", "limb"} <= set(read_metrics(tmp_path / "tl" / "metrics.csv")[0])
    summary = json.loads((tmp_path / "tl" / "train_summary.json").read_text())
    assert summary["num_clips"] == 10 and summary["bones"][0] == ["snout", "head"]

    with pytest.raises(MultiViewError, match="'tail_tipp'.*fix the bones option"):
        train_multiview(dataclasses.replace(cfg, out=str(tmp_path / "b1"),
                                            bones=(("snout", "tail_tipp"),)))  # fmt: skip
    with pytest.raises(MultiViewError, match="limb_weight=0.01 needs bones"):
        train_multiview(dataclasses.replace(cfg, out=str(tmp_path / "b2"), bones=()))
    with pytest.raises(MultiViewError, match="clip_length=2 must be >= 3"):
        train_multiview(dataclasses.replace(cfg, out=str(tmp_path / "b3"), clip_length=2))
    with pytest.raises(MultiViewError, match="no run of clip_length=3 consecutive"):
        _make_pool(dataclasses.replace(cfg, unlabelled_frames=(1, 3, 5, 7, 9, 11)), mv)
