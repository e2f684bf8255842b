"""The 3D terms of the multi-view loss: zero at the truth, gradients that point to it; the
temporal and limb terms: zero for smooth motion and rigid bones, NaN-safe, robust."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import jax.scipy.optimize
import numpy as np
import pytest

from jaxpose.geometry.rotation import rotation_matrix
from jaxpose.synth import make_study
from jaxpose.train.multiview_loss import (
    MultiViewLossConfig,
    camera_prior,
    label_geometry_loss,
    limb_loss,
    multiview_losses,
    temporal_loss,
)


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


def test_label_geometry_moves_a_perturbed_camera_back(study):
    """Bundle adjustment on the labels: zero at the true rig, positive for a moved camera, and
    gradient steps on that camera's translation bring it back (the other cameras fix the
    gauge); NaN labels (unlabelled views) neither count nor poison the gradient."""
    rig, truth, _ = _arrays(study)
    labels = truth.at[0, 2].set(jnp.nan)  # one view of frame 0 unlabelled
    assert float(label_geometry_loss(rig, labels)) < 1e-6
    offset = jnp.array([4.0, -3.0, 2.0])
    moved = dataclasses.replace(rig, translation=rig.translation.at[1].add(offset))
    assert float(label_geometry_loss(moved, labels)) > 0.1

    def loss(t1):
        return label_geometry_loss(
            dataclasses.replace(rig, translation=rig.translation.at[1].set(t1)), labels
        )

    g = jax.grad(loss)(moved.translation[1])
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).sum()) > 0
    t1 = jax.scipy.optimize.minimize(loss, moved.translation[1], method="BFGS").x
    before = float(jnp.linalg.norm(offset))
    after = float(jnp.linalg.norm(t1 - rig.translation[1]))
    assert after < 0.2 * before, (before, after)


def test_shapes_are_checked(study):
    rig, truth, conf = _arrays(study)
    with pytest.raises(ValueError, match="frame, cam, kpt, 2"):
        multiview_losses(rig, truth[0], conf, truth)
    with pytest.raises(ValueError, match="must match"):
        multiview_losses(rig, truth, conf[:, :2], truth)


def _constant_velocity(rng, clips=2, frames=5, keypoints=4):
    start = rng.normal(0, 50, (clips, 1, keypoints, 3))
    velocity = rng.normal(0, 3, (clips, 1, keypoints, 3))
    return jnp.asarray(start + velocity * np.arange(frames)[None, :, None, None], jnp.float32)


def test_temporal_loss_zero_for_constant_velocity_positive_for_jitter():
    rng = np.random.default_rng(0)
    points = _constant_velocity(rng)
    valid = jnp.ones(points.shape[:-1], bool)
    loss, count = temporal_loss(points, valid)
    assert float(loss) < 1e-6
    assert int(count) == 2 * 3 * 4  # clip * (T - 2) * kpt second differences
    jittered = points + jnp.asarray(rng.normal(0, 1.0, points.shape), jnp.float32)
    assert float(temporal_loss(jittered, valid)[0]) > 0.1
    # Robust: a 100 mm jump costs linearly (scale * (d - scale / 2)), not quadratically.
    jump = points.at[0, 2, 0, 0].add(100.0)
    one = float(temporal_loss(jump, valid, huber_mm=2.0)[0]) * int(count)
    assert one == pytest.approx(2.0 * (100.0 - 1.0) + 2.0 * (200.0 - 1.0) + 2.0 * 99.0, rel=1e-3)


def test_temporal_loss_ignores_invalid_frames_in_value_and_gradient():
    rng = np.random.default_rng(1)
    points = _constant_velocity(rng)
    valid = np.ones(points.shape[:-1], bool)
    # A NaN point marked valid, and a wild point marked invalid: neither may leak.
    points = points.at[0, 1, 0].set(jnp.nan).at[1, 3, 2].set(1e6)
    valid[1, 3, 2] = False
    valid = jnp.asarray(valid)
    loss, count = temporal_loss(points, valid)
    assert float(loss) < 1e-6
    # Keypoint 0 of clip 0 loses the differences centred at t = 1, 2 (frames 0-2 and 1-3);
    # keypoint 2 of clip 1 those centred at t = 2, 3 (frames 1-3 and 2-4).
    assert int(count) == 24 - 2 - 2
    jittered = points + jnp.asarray(rng.normal(0, 1.0, points.shape), jnp.float32)
    grad = np.asarray(jax.grad(lambda p: temporal_loss(p, valid)[0])(jittered))
    assert np.all(np.isfinite(grad))
    assert np.all(grad[0, 1, 0] == 0) and np.all(grad[1, 3, 2] == 0)
    assert np.abs(grad).sum() > 0
    with pytest.raises(ValueError, match="at least 3 frames"):
        temporal_loss(points[:, :2], valid[:, :2])
    with pytest.raises(ValueError, match="clip, T, kpt, 3"):
        temporal_loss(points[0], valid[0])


def _rigid_skeleton(rng, frames=6):
    """(frame, 4, 3) a 3-bone chain moved by a random rotation and translation per frame."""
    rest = np.array([[0, 0, 0], [20, 0, 0], [20, 15, 0], [35, 15, 10]], np.float32)
    rotations = np.asarray(rotation_matrix(jnp.asarray(rng.normal(0, 1, (frames, 3)))))
    moved = np.einsum("fij,kj->fki", rotations, rest) + rng.normal(0, 100, (frames, 1, 3))
    return jnp.asarray(moved, jnp.float32)


BONES = np.array([[0, 1], [1, 2], [2, 3]])


def test_limb_loss_zero_for_a_rigid_skeleton_positive_when_a_bone_stretches():
    rng = np.random.default_rng(2)
    points = _rigid_skeleton(rng)
    valid = jnp.ones(points.shape[:-1], bool)
    loss, count = limb_loss(points, valid, BONES)
    assert float(loss) < 1e-4
    assert int(count) == 6 * 3
    # Any leading frame axes: (clip, T, kpt, 3) works the same.
    assert float(limb_loss(points.reshape(2, 3, 4, 3), valid.reshape(2, 3, 4), BONES)[0]) < 1e-4
    bone = points[4, 3] - points[4, 2]
    stretched = points.at[4, 3].add(3.0 * bone / jnp.linalg.norm(bone))  # bone 2 + 3 mm
    loss, _ = limb_loss(stretched, valid, BONES, huber_mm=10.0)
    assert float(loss) == pytest.approx(0.5 * 3.0**2 / 18, rel=1e-3)
    # The centre is the median (a constant): only the stretched frame is pulled back.
    grad = np.asarray(jax.grad(lambda p: limb_loss(p, valid, BONES)[0])(stretched))
    moved = np.abs(grad).sum(-1) > 1e-3
    assert moved[4, 2] and moved[4, 3]
    assert moved.sum() == 2
    # Reference lengths replace the batch median where they are finite.
    reference = jnp.asarray([20.0, 15.0 + 2.0, jnp.nan])
    loss, _ = limb_loss(points, valid, BONES, reference=reference, huber_mm=10.0)
    assert float(loss) == pytest.approx(0.5 * 2.0**2 / 3, rel=1e-3)
    with pytest.raises(ValueError, match="one length per bone"):
        limb_loss(points, valid, BONES, reference=jnp.ones(2))


def test_limb_loss_nan_points_and_lone_bones():
    rng = np.random.default_rng(3)
    points = _rigid_skeleton(rng, frames=3)
    valid = np.ones(points.shape[:-1], bool)
    points = points.at[0, 1].set(jnp.nan)  # bones 0 and 1 lost in frame 0
    valid[1:, 3] = False  # bone 2 left in frame 0 only: no centre, no contribution
    valid = jnp.asarray(valid)
    loss, count = limb_loss(points.at[1, 0].add(1.0), valid, BONES)
    assert int(count) == 2 * 2
    assert float(loss) > 0
    grad = np.asarray(jax.grad(lambda p: limb_loss(p, valid, BONES)[0])(points.at[1, 0].add(1.0)))
    assert np.all(np.isfinite(grad))
    assert np.all(grad[0] == 0)  # frame 0 contributes nothing: its bones are lost or alone
    assert float(limb_loss(points, valid, np.zeros((0, 2), int))[1]) == 0


def test_temporal_and_limb_gradients_through_triangulation(study):
    # The training path: predicted 2D -> triangulation -> the new terms -> gradient on the 2D.
    rig, truth, conf = _arrays(study)
    keypoints = jnp.nan_to_num(truth).at[1, :3].set(jnp.nan)  # frame 1 has one view left
    rng = np.random.default_rng(4)
    noisy = keypoints + jnp.asarray(rng.normal(0, 2.0, keypoints.shape), jnp.float32)
    bones = np.array([[0, 3], [3, 4], [4, 5]])

    def terms(k):
        out = multiview_losses(
            rig,
            k,
            conf,
            truth,
            config=MultiViewLossConfig(label_weight=0.0, consistency_weight=0.0),
        )
        valid = out["ncams"] >= 2
        temporal, _ = temporal_loss(out["points"].reshape(2, 3, -1, 3), valid.reshape(2, 3, -1))
        limb, _ = limb_loss(out["points"], valid, bones)
        return temporal + limb

    value, grad = jax.value_and_grad(terms)(noisy)
    grad = np.asarray(grad)
    assert np.isfinite(float(value)) and float(value) > 0
    assert np.all(np.isfinite(grad))
    assert np.all(grad[1, 3:] == 0)  # the lone view of frame 1 triangulates nothing
    assert np.abs(grad).sum() > 0
