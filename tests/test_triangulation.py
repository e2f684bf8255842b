"""Triangulation: properties, agreement with OpenCV, NaN safety, gradients, real-rig acceptance."""

from __future__ import annotations

import cv2
import jax
import jax.numpy as jnp
import jax.test_util  # noqa: F401  (check_grads)
import numpy as np
import pytest
import scipy.io

from jaxpose.geometry import make_camera, project_rig, stack_cameras
from jaxpose.io import load_calibration, load_dannce_calibration
from jaxpose.triangulation import (
    triangulate,
    triangulate_dlt,
    triangulate_frames,
    triangulate_point,
)
from tests.conftest import data_path


def ring_rig(num_cameras: int, seed: int = 0, radius: float = 600.0):
    """Cameras on a ring looking at the origin, with mild distortion."""
    rng = np.random.default_rng(seed)
    cams = []
    for i in range(num_cameras):
        az = 2 * np.pi * i / num_cameras + rng.uniform(-0.2, 0.2)
        eye = np.array([radius * np.cos(az), radius * np.sin(az), rng.uniform(200, 400)])
        z = -eye / np.linalg.norm(eye)
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        r = np.stack([x, y, z])  # world -> camera rows
        cams.append(
            make_camera(
                rotation=cv2.Rodrigues(r)[0].ravel(),
                translation=-r @ eye,
                focal=rng.uniform(900, 1200),
                principal_point=(640 + rng.uniform(-10, 10), 512 + rng.uniform(-10, 10)),
                distortion=(rng.uniform(-0.2, 0.0), rng.uniform(0, 0.05), 1e-3, -1e-3, 0.0),
                image_size=(1280, 1024),
            )
        )
    return stack_cameras(cams)


def observe(rig, points, noise=0.0, seed=0):
    """(n, 3) -> (n, cam, 2) in float64."""
    with jax.enable_x64(True):
        uv = np.asarray(project_rig(rig, points))
    uv = np.moveaxis(uv, 0, 1)
    return uv + np.random.default_rng(seed).normal(0, noise, uv.shape)


@pytest.fixture(scope="module")
def rig4():
    return ring_rig(4)


@pytest.fixture(scope="module")
def points():
    return np.random.default_rng(1).uniform(-80, 80, (64, 3))


@pytest.mark.parametrize("method", ["dlt", "robust", "refine", "robust_refine"])
def test_noise_free_round_trip(rig4, points, method):
    uv = observe(rig4, points)
    with jax.enable_x64(True):
        out = triangulate(rig4, uv, method=method)
        np.testing.assert_allclose(np.asarray(out.points), points, atol=1e-6)
        assert np.all(np.asarray(out.ncams) == 4)
        assert np.asarray(out.error).max() < 1e-6


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_batch_shapes(rig4, batch):
    pts = np.random.default_rng(2).uniform(-50, 50, (*batch, 3))
    uv = np.moveaxis(observe(rig4, pts.reshape(-1, 3)), 0, 0).reshape(*batch, 4, 2)
    out = triangulate(rig4.astype(jnp.float32), uv.astype(np.float32))
    assert out.points.shape == (*batch, 3)
    assert out.error.shape == batch and out.ncams.shape == batch
    assert out.used.shape == (*batch, 4) and out.covariance.shape == (*batch, 3, 3)
    np.testing.assert_allclose(np.asarray(out.points), pts, atol=0.05)


def test_matches_opencv_two_views(rig4, points):
    """Agrees with cv2.triangulatePoints on undistorted normalised coordinates (2 views)."""
    uv = observe(rig4, points, noise=0.5)
    pair = rig4[np.array([0, 1])]
    with jax.enable_x64(True):
        ours = np.asarray(triangulate(pair, uv[:, :2], method="dlt").points)
    projs, norm = [], []
    for c in range(2):
        cam = pair[c]
        k = np.asarray(cam.intrinsic_matrix())
        und = cv2.undistortPoints(
            uv[:, c, None],
            k,
            np.asarray(cam.distortion),
            criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15),
        )[:, 0]
        r = cv2.Rodrigues(np.asarray(cam.rotation))[0]
        projs.append(np.hstack([r, np.asarray(cam.translation)[:, None]]))
        norm.append(und.T)
    h = cv2.triangulatePoints(projs[0], projs[1], norm[0], norm[1])
    ref = (h[:3] / h[3]).T
    # Both minimise algebraic errors that differ in weighting; with 0.5 px noise they agree closely.
    assert np.median(np.linalg.norm(ours - ref, axis=-1)) < 0.05


def test_confidence_scale_invariance(rig4, points):
    uv = observe(rig4, points, noise=1.0)
    conf = np.random.default_rng(3).uniform(0.2, 1.0, uv.shape[:2])
    with jax.enable_x64(True):
        for method in ("dlt", "robust_refine"):
            a = np.asarray(triangulate(rig4, uv, conf, method=method).points)
            b = np.asarray(triangulate(rig4, uv, 7.5 * conf, method=method).points)
            np.testing.assert_allclose(a, b, atol=1e-8)


def test_low_confidence_view_is_ignored(rig4, points):
    uv = observe(rig4, points, noise=0.3)
    uv_bad = uv.copy()
    uv_bad[:, 2] += 300.0  # camera 2 is wildly wrong ...
    conf = np.ones(uv.shape[:2])
    conf[:, 2] = 0.05  # ... but says so
    with jax.enable_x64(True):
        ref = np.asarray(
            triangulate(rig4[np.array([0, 1, 3])], uv[:, [0, 1, 3]], method="dlt").points
        )
        out = triangulate(rig4, uv_bad, conf, method="dlt", min_confidence=0.1)
    np.testing.assert_allclose(np.asarray(out.points), ref, atol=1e-9)
    assert np.all(np.asarray(out.ncams) == 3)


def test_missing_views_and_nan_safety(rig4, points):
    uv = observe(rig4, points[:6], noise=0.5)
    uv[0, 1:] = np.nan  # one view left: no point
    uv[1, :] = np.nan  # no views
    uv[2, 0] = np.nan  # three views: fine
    conf = np.ones(uv.shape[:2])
    conf[3, 2:] = 0.0  # two views: fine
    rig = rig4.astype(jnp.float32)
    out = triangulate(rig, uv.astype(np.float32), conf.astype(np.float32))
    assert np.all(np.isnan(np.asarray(out.points[:2])))
    assert list(np.asarray(out.ncams)) == [0, 0, 3, 2, 4, 4]
    assert np.all(np.isfinite(np.asarray(out.points[2:])))
    assert np.all(np.isnan(np.asarray(out.error[:2])))

    def loss(uv, conf, rig):
        res = triangulate(rig, uv, conf)
        return jnp.sum(jnp.where(jnp.isfinite(res.points), res.points, 0.0))

    grads = jax.grad(loss, argnums=(0, 1, 2))(
        jnp.asarray(uv, jnp.float32), jnp.asarray(conf, jnp.float32), rig
    )
    for leaf in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(np.asarray(leaf))), "NaN leaked into a gradient"
    g_uv = np.asarray(grads[0])
    assert np.all(g_uv[0] == 0) and np.all(g_uv[1] == 0)  # invalid points get no gradient
    assert np.any(g_uv[2:] != 0)


def test_robust_rejects_gross_outlier(rig4, points):
    uv = observe(rig4, points, noise=0.5)
    uv[:, 3] += np.array([150.0, -90.0])
    with jax.enable_x64(True):
        plain = np.asarray(triangulate(rig4, uv, method="dlt").points)
        robust = triangulate(rig4, uv, method="robust_refine")
    err_plain = np.linalg.norm(plain - points, axis=-1).mean()
    err_robust = np.linalg.norm(np.asarray(robust.points) - points, axis=-1).mean()
    assert err_robust < err_plain / 5
    assert not np.asarray(robust.used)[:, 3].any()
    assert np.all(np.asarray(robust.ncams) == 3)


def test_refinement_lowers_reprojection_error(rig4, points):
    uv = observe(rig4, points, noise=2.0)
    conf = np.random.default_rng(4).uniform(0.3, 1.0, uv.shape[:2])
    with jax.enable_x64(True):
        dlt = triangulate(rig4, uv, conf, method="dlt")
        ref = triangulate(rig4, uv, conf, method="refine", refine_loss="linear")

    # LM minimises the confidence-weighted squared reprojection error, DLT does not
    def cost(res):
        with jax.enable_x64(True):
            proj = np.moveaxis(np.asarray(project_rig(rig4, res.points)), 0, 1)
        return np.sum(conf * np.sum((proj - uv) ** 2, -1), -1)

    assert np.all(cost(ref) <= cost(dlt) + 1e-9)
    assert cost(ref).sum() < cost(dlt).sum()


def test_covariance_matches_monte_carlo(rig4):
    point = np.array([[10.0, -20.0, 30.0]])
    sigma = 1.5
    uv0 = observe(rig4, point)[0]
    rng = np.random.default_rng(5)
    samples = uv0 + rng.normal(0, sigma, (3000, 4, 2))
    with jax.enable_x64(True):
        est = np.asarray(triangulate(rig4, samples, method="refine", refine_loss="linear").points)
        cov = np.asarray(
            triangulate(rig4, uv0[None], method="refine", sigma_px=sigma).covariance[0]
        )
    emp = np.cov(est.T)
    # first-order propagation: within Monte-Carlo error (~5 % for 3000 samples)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), np.sqrt(np.diag(emp)), rtol=0.1)


def test_gradients_float64(rig4):
    point = np.array([[5.0, 3.0, -2.0]])
    uv = observe(rig4, point, noise=1.0)[0]
    conf = np.array([0.9, 0.5, 0.8, 0.7])
    with jax.enable_x64(True):
        uv = jnp.asarray(uv)
        conf = jnp.asarray(conf)
        # Jitted: check_grads evaluates each function many times, and eagerly every
        # refinement iteration would dispatch op by op.
        f_dlt = jax.jit(lambda u, c: triangulate_dlt(rig4, u, c))
        jax.test_util.check_grads(f_dlt, (uv, conf), order=1, modes=("rev",), rtol=1e-4)

        @jax.jit
        def f_ref(u, c):
            return triangulate_point(
                rig4, u, c, robust=False, refine=True, refine_loss="linear", refine_iterations=20
            ).points

        jax.test_util.check_grads(f_ref, (uv, conf), order=1, modes=("rev",), rtol=1e-4)

        # with respect to camera parameters (e.g. focal lengths and translations)
        @jax.jit
        def f_cam(focal, trans):
            rig = jax.tree_util.tree_map(lambda a: a, rig4)
            rig = type(rig)(**{**rig.__dict__, "focal": focal, "translation": trans})
            return triangulate_point(
                rig, uv, conf, robust=False, refine=True, refine_loss="linear", refine_iterations=20
            ).points

        jax.test_util.check_grads(
            f_cam,
            (jnp.asarray(rig4.focal), jnp.asarray(rig4.translation)),
            order=1,
            modes=("rev",),
            rtol=1e-4,
        )


def test_jit_matches_eager(rig4, points):
    uv = observe(rig4, points[:8], noise=1.0)
    with jax.enable_x64(True):
        f = lambda u: triangulate_point(rig4, u, jnp.ones(4)).points
        eager = np.stack([np.asarray(f(jnp.asarray(u))) for u in uv[:3]])
        jitted = np.stack([np.asarray(jax.jit(f)(jnp.asarray(u))) for u in uv[:3]])
    np.testing.assert_allclose(eager, jitted, atol=1e-9)


def test_triangulate_frames_layout_and_chunks(rig4):
    pts = np.random.default_rng(6).uniform(-50, 50, (7, 5, 3))  # frame, kpt, 3
    uv = (
        observe(rig4, pts.reshape(-1, 3)).reshape(7, 5, 4, 2).transpose(0, 2, 1, 3)
    )  # frame,cam,kpt,2
    rig = rig4.astype(jnp.float32)
    full = triangulate_frames(rig, uv.astype(np.float32))
    chunked = triangulate_frames(rig, uv.astype(np.float32), chunk_size=3)
    assert full.points.shape == (7, 5, 3)
    np.testing.assert_allclose(np.asarray(full.points), pts, atol=0.05)
    np.testing.assert_allclose(np.asarray(chunked.points), np.asarray(full.points), atol=1e-5)


def test_bad_shapes(rig4):
    with pytest.raises(ValueError, match="cam=4"):
        triangulate(rig4, np.zeros((3, 5, 2)))
    with pytest.raises(ValueError, match="confidence"):
        triangulate(rig4, np.zeros((3, 4, 2)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="rig"):
        triangulate(rig4[0], np.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match="method"):
        triangulate(rig4, np.zeros((3, 4, 2)), method="magic")
    with pytest.raises(ValueError, match=r"\(frame, cam, kpt, 2\)"):
        triangulate_frames(rig4, np.zeros((3, 4, 2)))


# --- real data ---------------------------------------------------------------------------------


def test_float32_matches_float64_on_extreme_fly_rig():
    """eks-fly-3cam: focal lengths to 1.4e5 px, k1 to -6469; float32 within 1e-3 of float64
    relative to the extent of the data."""
    import pandas as pd

    folder = data_path("eks-fly-3cam")
    cal = load_calibration(folder / "calibration.toml")
    uv, conf = [], []
    for name in ("A", "B", "C"):
        path = folder / f"05272019_fly4_0_R1C24_Cam-{name}_rot-ccw-0.06_sec.rng=0.csv"
        a = pd.read_csv(path, header=[0, 1, 2], index_col=0).to_numpy()[:100].reshape(100, 12, 3)
        uv.append(a[..., :2])
        conf.append(a[..., 2])
    uv, conf = np.stack(uv, 2), np.stack(conf, 2)  # frame, kpt, cam
    for method in ("dlt", "robust_refine"):
        with jax.enable_x64(True):
            x64 = np.asarray(triangulate(cal.rig, uv, conf, method=method).points)
        x32 = np.asarray(
            triangulate(
                cal.rig.astype(jnp.float32),
                uv.astype(np.float32),
                conf.astype(np.float32),
                method=method,
            ).points
        )
        extent = np.linalg.norm(x64 - x64.reshape(-1, 3).mean(0), axis=-1).mean()
        rel = np.abs(x32 - x64).max() / extent
        print(f"eks-fly {method}: max |x32 - x64| / extent = {rel:.2e}")
        assert rel < 1e-3


def dannce_study(noise_px, outlier_fraction, seed=0):
    path = data_path("dannce-markerless-mouse", "demo", "markerless_mouse_1", "label3d_dannce.mat")
    cal = load_dannce_calibration(path)
    mat = scipy.io.loadmat(path)
    x3 = mat["labelData"][0, 0]["data_3d"][0, 0].reshape(-1, 22, 3)
    x3 = x3[np.all(np.isfinite(x3), -1)]
    uv = observe(cal.rig, x3)
    rng = np.random.default_rng(seed)
    noisy = uv + rng.normal(0, noise_px, uv.shape)
    if outlier_fraction:
        out = rng.random(uv.shape[:2]) < outlier_fraction
        noisy = np.where(out[..., None], rng.uniform([0, 0], [1200, 1000], uv.shape), noisy)
    return cal.rig, x3, noisy


def test_dannce_acceptance_outliers():
    """Acceptance: 2 px noise + 10 % gross outliers: robust+refined MPJPE <= DLT / 3."""
    rig, x3, uv = dannce_study(2.0, 0.10)
    rig = rig.astype(jnp.float32)
    uv = uv.astype(np.float32)
    mpjpe = {}
    for method in ("dlt", "robust_refine"):
        pts = np.asarray(triangulate(rig, uv, method=method).points)
        mpjpe[method] = np.nanmean(np.linalg.norm(pts - x3, axis=-1))
    print(f"DANNCE 2 px + 10 % outliers: MPJPE {mpjpe}")
    assert mpjpe["robust_refine"] <= mpjpe["dlt"] / 3


def test_dannce_acceptance_no_outliers():
    """Acceptance: with no outliers, refined MPJPE is no worse than DLT's."""
    rig, x3, uv = dannce_study(2.0, 0.0)
    rig = rig.astype(jnp.float32)
    uv = uv.astype(np.float32)
    mpjpe = {}
    for method in ("dlt", "refine", "robust_refine"):
        pts = np.asarray(triangulate(rig, uv, method=method).points)
        mpjpe[method] = np.nanmean(np.linalg.norm(pts - x3, axis=-1))
    print(f"DANNCE 2 px, no outliers: MPJPE {mpjpe}")
    assert mpjpe["refine"] <= mpjpe["dlt"] * 1.001
    assert mpjpe["robust_refine"] <= mpjpe["dlt"] * 1.001


def test_sleap_8cam_human_labels_reproject():
    """Real labels through a real 8-camera calibration: median reprojection error near the
    3.0 px that plain DLT reaches (SOURCE.md), and robust refinement does better."""
    import pandas as pd

    folder = data_path("sleap-mouse-8cam")
    cal = load_calibration(folder / "calibration.toml")
    df = pd.read_csv(folder / "labels" / "labels_2d_long.csv")
    df = df[(df.instance_type == "user")]
    nodes = sorted(df.node.unique())
    keys = sorted({(f, t) for f, t in zip(df.frame_idx, df.track, strict=True)})
    uv = np.full((len(keys), len(nodes), len(cal.names), 2), np.nan)
    for row in df.itertuples():
        if row.visible and np.isfinite(row.x):
            i = keys.index((row.frame_idx, row.track))
            uv[i, nodes.index(row.node), cal.index(row.camera)] = (row.x, row.y)
    with jax.enable_x64(True):
        dlt = triangulate(cal.rig, uv, method="dlt")
        rob = triangulate(cal.rig, uv, method="robust_refine", threshold_px=20.0)
    med_dlt = np.nanmedian(np.asarray(dlt.error))
    med_rob = np.nanmedian(np.asarray(rob.error))
    print(
        f"sleap-mouse-8cam median reprojection error: DLT {med_dlt:.2f} px, "
        f"robust+refine {med_rob:.2f} px"
    )
    assert med_dlt < 4.5
    assert med_rob < med_dlt


def test_view_outside_distortion_range_is_dropped():
    """A pixel with no undistorted preimage (image corner, k1 = -0.33) is not used."""
    cal = load_calibration(data_path("sleap-mouse-8cam", "calibration.toml"))
    # the point nearest every optical axis: in front of all 8 cameras
    rot = np.stack([cv2.Rodrigues(np.asarray(r))[0] for r in cal.rig.rotation])
    centers = -np.einsum("cji,cj->ci", rot, cal.rig.translation)
    proj = np.eye(3) - rot[:, 2, :, None] * rot[:, 2, None, :]
    point = np.linalg.solve(proj.sum(0), np.einsum("cij,cj->i", proj, centers))[None]
    with jax.enable_x64(True):
        uv = observe(cal.rig, point)[0]
        uv[1] = (0.0, 0.0)  # backL: its top-left corner cannot be undistorted
        res = triangulate(cal.rig, uv[None], method="dlt")
    assert int(res.ncams[0]) == 7 and not bool(res.used[0, 1])
    np.testing.assert_allclose(np.asarray(res.points[0]), point[0], atol=1e-6)
