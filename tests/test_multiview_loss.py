"""The 3D terms of the multi-view loss: zero at the truth, gradients that point to it."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.synth import make_study
from jaxpose.train.multiview_loss import MultiViewLossConfig, camera_prior, multiview_losses


@pytest.fixture(scope="module")
def study():
    return make_study(
        num_cameras=4,
        num_frames=6,
        noise_px=0.0,
        occlusion_fraction=0.0,
        num_board_frames=0,
        seed=3,
    )


def _arrays(study):
    rig = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), study.calibration.rig)
    truth = jnp.asarray(
        np.where(study.visible[..., None], study.points_2d_true, np.nan), jnp.float32
    )
    conf = jnp.asarray(study.visible, jnp.float32)
    return rig, truth, conf


def test_losses_vanish_at_the_truth(study):
    rig, truth, conf = _arrays(study)
    out = multiview_losses(rig, jnp.nan_to_num(truth), conf, truth)
    assert float(out["label"]) < 1e-3
    assert float(out["consistency"]) < 1e-3
    seen = np.asarray(out["ncams"]) >= 2
    err = np.linalg.norm(np.asarray(out["points"])[seen] - study.points_3d[seen], axis=-1)
    assert err.max() < 0.05  # mm


def test_a_label_in_one_view_teaches_the_others(study):
    rig, truth, conf = _arrays(study)
    # Predictions: the truth in camera 0, shifted by 6 px in the other cameras.
    shifted = jnp.nan_to_num(truth).at[:, 1:].add(6.0)
    labels = jnp.full_like(truth, jnp.nan).at[:, 0].set(truth[:, 0])  # labels in camera 0 only
    config = MultiViewLossConfig(consistency_weight=0.0)
    grad = jax.grad(lambda k: multiview_losses(rig, k, conf, labels, config=config)["label"])(
        shifted
    )
    grad = np.asarray(grad)
    assert np.all(np.isfinite(grad))
    # Unlabelled cameras receive gradient, and a step against it lowers the loss.
    assert np.abs(grad[:, 1:]).sum() > 0
    before = float(multiview_losses(rig, shifted, conf, labels, config=config)["label"])
    after = float(
        multiview_losses(rig, shifted - 20.0 * grad, conf, labels, config=config)["label"]
    )
    assert after < before


def test_missing_views_and_disabled_terms(study):
    rig, truth, conf = _arrays(study)
    keypoints = jnp.nan_to_num(truth).at[0, :3].set(jnp.nan)  # frame 0: only one view left
    out = multiview_losses(
        rig, keypoints, conf, truth, config=MultiViewLossConfig(label_weight=0.0)
    )
    assert float(out["label"]) == 0.0
    assert np.all(np.asarray(out["ncams"])[0] == 0)
    assert np.all(np.isnan(np.asarray(out["points"])[0]))
    g = jax.grad(lambda k: multiview_losses(rig, k, conf, truth)["consistency"])(keypoints)
    assert np.all(np.isfinite(np.asarray(g)[1:]))


def test_camera_prior_and_trainable_cameras(study):
    rig, truth, conf = _arrays(study)
    moved = dataclasses.replace(rig, translation=rig.translation.at[1, 0].add(3.0))
    prior = camera_prior(moved, rig, sigma={"translation": 1.5})
    assert float(prior) == pytest.approx(0.5 * (3.0 / 1.5) ** 2, rel=1e-5)
    with pytest.raises(KeyError, match="no field"):
        camera_prior(moved, rig, sigma={"tilt": 1.0})
    # The label term's gradient with respect to the cameras is finite and non-zero.
    keypoints = jnp.nan_to_num(truth)
    g = jax.grad(lambda r: multiview_losses(r, keypoints, conf, truth)["label"])(moved)
    assert np.isfinite(np.asarray(g.translation)).all()
    assert np.abs(np.asarray(g.translation)).sum() > 0


def test_shapes_are_checked(study):
    rig, truth, conf = _arrays(study)
    with pytest.raises(ValueError, match="frame, cam, kpt, 2"):
        multiview_losses(rig, truth[0], conf, truth)
    with pytest.raises(ValueError, match="must match"):
        multiview_losses(rig, truth, conf[:, :2], truth)
