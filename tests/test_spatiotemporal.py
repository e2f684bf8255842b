"""Spatiotemporal refinement: accuracy on a synthetic study, graceful degradation (unseen
keypoints, empty frames), seamless chunks, disabled terms, the banded solver, gradients."""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
import scipy.io

from jaxpose.io import load_dannce_calibration
from jaxpose.synth import make_study
from jaxpose.triangulation import triangulate_frames
from jaxpose.triangulation.spatiotemporal import (
    SpatiotemporalConfig,
    _band_factor,
    _band_solve,
    _temporal_band,
    fill_gaps,
    refine_spatiotemporal,
    spatiotemporal_cost,
)
from tests.conftest import data_path

# Small chunks so that a 96-frame study has several chunk boundaries and compiles fast. The start
# is "robust" triangulation: on this study it has the MPJPE of "robust_refine" (1.469 mm both)
# and compiles in a third of the time.
CONFIG = SpatiotemporalConfig(chunk_size=48, overlap=12, initial_method="robust")


def mpjpe(estimate, truth):
    return float(np.nanmean(np.linalg.norm(estimate - truth, axis=-1)))


@pytest.fixture(scope="module")
def study():
    return make_study(
        num_frames=96,
        noise_px=2.0,
        outlier_fraction=0.1,
        occlusion_fraction=0.2,
        num_board_frames=0,
        seed=3,
    )


@pytest.fixture(scope="module")
def initial(study):
    rig = study.calibration.rig.astype(jnp.float32)
    return np.asarray(
        triangulate_frames(
            rig,
            study.points_2d.astype(np.float32),
            study.confidence.astype(np.float32),
            method=CONFIG.initial_method,
        ).points
    )


def refine(study, initial, config=CONFIG, **kwargs):
    args = dict(initial=initial, bones=study.skeleton.edges, config=config, progress=False)
    args.update(kwargs)
    points_2d = args.pop("points_2d", study.points_2d)
    confidence = args.pop("confidence", study.confidence)
    return refine_spatiotemporal(study.calibration.rig, points_2d, confidence, **args)


def test_refinement_beats_robust_triangulation(study, initial):
    result = refine(study, initial)
    before, after = mpjpe(initial, study.points_3d), mpjpe(result.points, study.points_3d)
    print(f"MPJPE robust triangulation {before:.3f} mm -> spatiotemporal {after:.3f} mm")
    assert after < 0.85 * before
    assert np.isfinite(result.points).all()  # every gap bridged
    assert result.cost_after < result.cost_before
    assert result.converged.all() and (result.iterations >= 1).all()
    assert result.points.shape == study.points_3d.shape
    assert result.error.shape == result.ncams.shape == study.points_3d.shape[:2]
    # the outliers are left out of ncams: at most the inlier views
    inliers = (study.visible & ~study.outlier).sum(1)
    assert np.mean(result.ncams <= inliers) > 0.99
    assert np.nanmax(result.error) < CONFIG.inlier_threshold_px


def test_deterministic(study, initial):
    a, b = refine(study, initial), refine(study, initial)
    np.testing.assert_array_equal(a.points, b.points)


def test_chunk_boundaries_leave_no_step(study, initial):
    """Chunked (boundaries blended over the overlaps) against one chunk of the whole recording."""
    chunked = refine(study, initial)
    whole = refine(study, initial, config=dataclasses.replace(CONFIG, chunk_size=96))
    assert len(chunked.chunk_starts) >= 2 and len(whole.chunk_starts) == 1
    diff = np.linalg.norm(chunked.points - whole.points, axis=-1)
    print(f"chunked vs whole: max {diff.max():.4f} mm, mean {diff.mean():.5f} mm")
    assert diff.max() < 0.1 and diff.mean() < 0.01
    # no jump: the largest acceleration near a boundary is no larger than elsewhere
    accel = np.linalg.norm(np.diff(chunked.points, 2, axis=0), axis=-1).max(1)
    accel_whole = np.linalg.norm(np.diff(whole.points, 2, axis=0), axis=-1).max(1)
    assert np.abs(accel - accel_whole).max() < 0.1


def test_unseen_keypoint_stays_nan_and_warns(study, initial):
    points_2d = study.points_2d.copy()
    points_2d[:, :, 4] = np.nan
    start = initial.copy()
    start[:, 4] = np.nan
    with (
        pytest.warns(UserWarning, match=r"keypoints \[4\].*stay NaN"),
        pytest.warns(UserWarning, match=r"bones \[\(3, 4\), \(4, 5\), \(4, 6\)\] have no length"),
    ):
        result = refine(study, start, points_2d=points_2d)
    assert np.isnan(result.points[:, 4]).all()
    assert (result.ncams[:, 4] == 0).all() and np.isnan(result.error[:, 4]).all()
    others = np.delete(result.points, 4, axis=1)
    assert np.isfinite(others).all()
    assert mpjpe(others, np.delete(study.points_3d, 4, axis=1)) < 1.5


def test_frames_without_data_are_bridged(study, initial):
    """Frames 40-51 have no 2D data at all (and no starting points): the temporal term bridges
    them; the default (triangulated) start works too."""
    gap = slice(40, 52)
    points_2d = study.points_2d.copy()
    confidence = study.confidence.copy()
    points_2d[gap] = np.nan
    confidence[gap] = 0.0
    start = initial.copy()
    start[gap] = np.nan
    result = refine(study, start, points_2d=points_2d, confidence=confidence)
    assert np.isfinite(result.points).all()
    assert (result.ncams[gap] == 0).all()
    err_gap = np.linalg.norm(result.points[gap] - study.points_3d[gap], axis=-1).mean()
    err_lin = np.linalg.norm(fill_gaps(start)[0][gap] - study.points_3d[gap], axis=-1).mean()
    print(f"12-frame gap: refined {err_gap:.2f} mm, linear interpolation {err_lin:.2f} mm")
    assert err_gap < 1.2 * err_lin + 0.5
    outside = np.r_[0:40, 52:96]
    assert mpjpe(result.points[outside], study.points_3d[outside]) < 1.5
    # the first frames empty too, started from the default (robust) triangulation
    points_2d[:10] = np.nan
    confidence[:10] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        default_start = refine(study, None, points_2d=points_2d, confidence=confidence)
    assert np.isfinite(default_start.points).all()
    assert (default_start.ncams[:10] == 0).all()


def test_disabled_terms_are_not_computed(study, initial):
    """With limb weight 0 the bones and their lengths cannot matter, and the banded
    preconditioner is exact (one conjugate gradient step per Levenberg-Marquardt step, up to
    float32 round-off). (`test_cost_terms_and_weights` checks the other terms.)"""
    config = dataclasses.replace(CONFIG, limb_weight=0.0)
    a = refine(study, initial, config=config)
    b = refine(study, initial, config=config, bone_lengths=np.full(len(study.skeleton.edges), 1e4))
    np.testing.assert_array_equal(a.points, b.points)
    assert a.terms_after["limb"] == 0.0
    assert a.cg_iterations.sum() <= 1.5 * a.iterations.sum()


def test_bone_lengths_as_unknowns(study, initial):
    true = np.linalg.norm(
        np.diff(study.points_3d[:, np.asarray(study.skeleton.edges)], axis=2)[:, :, 0], axis=-1
    ).mean(0)
    wrong = true * 1.1
    config = dataclasses.replace(CONFIG, refine_bone_lengths=True, limb_weight=2.0)
    result = refine(study, initial, config=config, bone_lengths=wrong)
    assert result.chunk_bone_lengths.shape == (len(result.chunk_starts), len(true))
    err_before = np.abs(wrong - true).mean()
    err_after = np.abs(result.chunk_bone_lengths - true).mean()
    print(f"bone length error {err_before:.2f} mm -> {err_after:.2f} mm")
    assert err_after < 0.3 * err_before


def test_band_solver_matches_dense():
    rng = np.random.default_rng(0)
    num_frames, num_kpt = 9, 2
    a = rng.normal(size=(num_frames, num_kpt, 3, 3))
    blocks = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(3)
    mask = (rng.random((num_frames - 2, num_kpt)) < 0.8).astype(np.float64)
    with jax.enable_x64(True):
        tdiag, offs = _temporal_band(jnp.asarray(mask), 2, 1.7)
        diag = jnp.asarray(blocks) + tdiag[..., None, None] * jnp.eye(3)
        b = rng.normal(size=(num_frames, num_kpt, 3))
        x = np.asarray(_band_solve(*_band_factor(diag, offs), jnp.asarray(b)))
        # the same matrix, dense: blocks + w^2 D^T diag(mask) D per keypoint and coordinate
        d = np.zeros((num_frames - 2, num_frames))
        for r in range(num_frames - 2):
            d[r, r : r + 3] = (1.0, -2.0, 1.0)
        for k in range(num_kpt):
            h = np.kron(1.7**2 * d.T @ np.diag(mask[:, k]) @ d, np.eye(3))
            for t in range(num_frames):
                h[3 * t : 3 * t + 3, 3 * t : 3 * t + 3] += blocks[t, k]
            np.testing.assert_allclose(x[:, k].ravel(), np.linalg.solve(h, b[:, k].ravel()))


def test_cost_gradient_finite_and_correct(study):
    """NaN observations, a missing point and coinciding bone ends give finite gradients; in
    float64 they match finite differences."""
    frames = slice(0, 6)
    points_2d = study.points_2d[frames].copy()
    points_2d[0, :, 3] = np.nan
    points = study.points_3d[frames].copy()
    points[2, 5] = np.nan
    points[3, 1] = points[3, 0]  # a zero-length bone (0, 1)
    bones = study.skeleton.edges
    config = SpatiotemporalConfig(temporal_weight=0.7, limb_weight=1.3, prior_weight=0.1)
    with jax.enable_x64(True):
        rig = study.calibration.rig

        lengths = np.full(len(bones), 20.0)

        def total(x):
            terms = spatiotemporal_cost(
                rig, x, points_2d, study.confidence[frames], bones=bones, bone_lengths=lengths,
                initial=study.points_3d[frames] + 1.0, config=config,
            )  # fmt: skip
            return sum(terms.values())

        total = jax.jit(total)
        x = jnp.asarray(points)
        grad = jax.grad(total)(x)
        assert np.isfinite(np.asarray(grad)).all()
        assert (np.asarray(grad)[2, 5] == 0).all()
        safe = jnp.asarray(np.nan_to_num(points) + np.isnan(points) * study.points_3d[frames])
        jax.test_util.check_grads(total, (safe,), order=1, modes=["rev"], eps=1e-4)


def test_cost_terms_and_weights(study):
    frames = slice(0, 10)
    kwargs = dict(bones=study.skeleton.edges, initial=study.points_3d[frames])
    x = study.points_3d[frames]
    on = spatiotemporal_cost(
        study.calibration.rig, x, study.points_2d[frames], study.confidence[frames], **kwargs
    )
    assert all(float(v) >= 0 for v in on.values()) and float(on["temporal"]) > 0
    assert float(on["prior"]) == 0.0  # at the initial points
    off = spatiotemporal_cost(
        study.calibration.rig,
        x,
        study.points_2d[frames],
        study.confidence[frames],
        config=SpatiotemporalConfig(temporal_weight=0.0, limb_weight=0.0),
        **kwargs,
    )
    assert float(off["temporal"]) == float(off["limb"]) == 0.0
    assert float(off["reprojection"]) == pytest.approx(float(on["reprojection"]))
    # a disabled term is not computed at all: absurd bone lengths change nothing
    config = SpatiotemporalConfig(limb_weight=0.0)
    args = (study.calibration.rig, x, study.points_2d[frames], study.confidence[frames])
    absurd = spatiotemporal_cost(
        *args, bone_lengths=np.full(len(study.skeleton.edges), 1e6), config=config, **kwargs
    )
    kwargs["bones"] = None
    no_bones = spatiotemporal_cost(*args, config=config, **kwargs)
    assert {k: float(v) for k, v in absurd.items()} == {k: float(v) for k, v in no_bones.items()}


def test_bad_inputs(study, initial):
    rig = study.calibration.rig
    with pytest.raises(ValueError, match="frame, cam=6, kpt, 2"):
        refine_spatiotemporal(rig, np.moveaxis(study.points_2d, 1, 2), progress=False)
    with pytest.raises(ValueError, match="confidence must have shape"):
        refine_spatiotemporal(rig, study.points_2d, study.confidence[:, :, :3], progress=False)
    with pytest.raises(ValueError, match=r"bone 1 = \(2, 99\)"):
        refine(study, initial, bones=[(0, 1), (2, 99)])
    with pytest.raises(ValueError, match="initial points must have shape"):
        refine(study, initial[:, :3])
    with pytest.raises(ValueError, match="bone_lengths must be positive"):
        refine(study, initial, bones=[(0, 1)], bone_lengths=[-1.0])
    with pytest.raises(ValueError, match="temporal_order"):
        SpatiotemporalConfig(temporal_order=3)
    with pytest.raises(ValueError, match="overlap"):
        SpatiotemporalConfig(chunk_size=16, overlap=9)
    with pytest.raises(ValueError, match="limb_weight must be >= 0"):
        SpatiotemporalConfig(limb_weight=-1.0)


@pytest.mark.slow
def test_dannce_real_rig_track():
    """Real 6-camera DANNCE rig, the DANNCE network's contiguous 100 Hz track projected with 2 px
    noise, 10 % outliers and 40 % of the views dropped: refinement beats robust triangulation
    and fills every point."""
    root = data_path("dannce-markerless-mouse")
    rig = load_dannce_calibration(root / "demo" / "markerless_mouse_1" / "label3d_dannce.mat").rig
    track = scipy.io.loadmat(root / "tests" / "touchstones" / "save_data_AVG_torch_nearest.mat")
    truth = np.asarray(track["pred"], np.float64).transpose(0, 2, 1)[:400]
    bones = np.asarray(scipy.io.loadmat(root / "configs" / "mouse22_skeleton.mat")["joints_idx"])
    with jax.enable_x64(True):
        uv = np.moveaxis(np.asarray(jax.vmap(lambda c: _project(c, truth))(rig)), 0, 1)
    rng = np.random.default_rng(0)
    uv = uv + rng.normal(0, 2.0, uv.shape)
    outlier = rng.random(uv.shape[:-1]) < 0.1
    uv = np.where(outlier[..., None], rng.uniform([0, 0], [1200, 1000], uv.shape), uv)
    uv[rng.random(uv.shape[:-1]) < 0.4] = np.nan
    initial = np.asarray(
        triangulate_frames(
            rig.astype(jnp.float32), uv.astype(np.float32), method="robust_refine"
        ).points
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = refine_spatiotemporal(
            rig, uv, initial=initial, bones=bones.astype(int) - 1, progress=False
        )
    before, after = mpjpe(initial, truth), mpjpe(result.points, truth)
    print(
        f"DANNCE track, 40 % views dropped: robust_refine {before:.3f} mm "
        f"({np.isnan(initial[..., 0]).mean():.1%} missing) -> {after:.3f} mm"
    )
    assert after < 0.5 * before and np.isfinite(result.points).all()


def _project(camera, points):
    from jaxpose.geometry import project

    return project(camera, jnp.asarray(points))
