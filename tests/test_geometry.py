"""The camera model: agreement with OpenCV on real calibrations, round trips, gradients, batching.

Test points are made in 3D and projected (never sampled as pixels): with k1 = -0.33 and no k2 the
corners of a 1280x1024 sleap-mouse-8cam image lie outside the range of the distortion map, so
no undistorted point exists there and OpenCV's iteration diverges. Each camera therefore gets
points whose undistorted radius lies where the radial map is monotonic and whose projection
falls inside the image.
"""

from __future__ import annotations

import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpose.geometry import (
    FISHEYE,
    Camera,
    backproject,
    camera_to_world,
    depth,
    distort,
    make_camera,
    pixel_to_plane,
    plane_to_pixel,
    project,
    project_rig,
    stack_cameras,
    undistort,
    undistort_points,
    undistort_points_rig,
    world_to_camera,
)
from jaxpose.io import load_calibration, load_dannce_calibration
from tests.conftest import data_path

CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 1000, 1e-16)
# cv2.fisheye.undistortPoints writes -1e6 for a point whose Newton step never gets below an
# EPS criterion, which 1e-16 rad can be; a plain iteration count (quadratic convergence) is safe.
FISHEYE_CRITERIA = (cv2.TERM_CRITERIA_COUNT, 100, 0.0)
NUM_POINTS = 64  # one shape for every camera, so each jitted function compiles once per dtype

REAL_CALIBRATIONS = {
    "sleap-mouse-8cam": (("sleap-mouse-8cam", "calibration.toml"), 8),
    "sleap-anipose-minimal-session": (
        (
            "sleap-anipose-minimal-session",
            "tests",
            "data",
            "minimal_session",
            "calibration.toml",
        ),
        4,
    ),
    "eks-fly-3cam": (("eks-fly-3cam", "calibration.toml"), 3),
}
REAL_CAMERAS = [(key, i) for key, (_, n) in REAL_CALIBRATIONS.items() for i in range(n)]

_project = jax.jit(project)
_undistort_points = jax.jit(undistort_points)
_backproject = jax.jit(backproject)
_depth = jax.jit(depth)


@functools.cache
def _load(key: str):
    return load_calibration(data_path(*REAL_CALIBRATIONS[key][0]))


def _to_jax(camera: Camera, dtype) -> Camera:
    """Fields as JAX arrays of `dtype`; call float64 inside `jax.enable_x64(True)`."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), camera)


def _cv_k(camera: Camera) -> np.ndarray:
    """K for OpenCV, built in NumPy float64 (Camera.intrinsic_matrix would run in JAX float32)."""
    (fx, fy), (cx, cy) = np.asarray(camera.focal), np.asarray(camera.principal_point)
    return np.array([[fx, float(camera.skew), cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _cv_project(camera: Camera, points: np.ndarray) -> np.ndarray:
    args = (np.asarray(camera.rotation), np.asarray(camera.translation), _cv_k(camera))
    pts = np.asarray(points, np.float64).reshape(-1, 1, 3)
    if camera.model == FISHEYE:
        uv, _ = cv2.fisheye.projectPoints(pts, *args, np.asarray(camera.distortion))
    else:
        uv, _ = cv2.projectPoints(pts, *args, np.asarray(camera.distortion))
    return uv.reshape(*np.shape(points)[:-1], 2)


def _cv_undistort(camera: Camera, uv: np.ndarray) -> np.ndarray:
    k, d = _cv_k(camera), np.asarray(camera.distortion)
    pts = np.asarray(uv, np.float64).reshape(-1, 1, 2)
    if camera.model == FISHEYE:
        out = cv2.fisheye.undistortPoints(pts, k, d, P=k, criteria=FISHEYE_CRITERIA)
    else:
        out = cv2.undistortPoints(pts, k, d, P=k, criteria=CRITERIA)
    return out.reshape(np.shape(uv))


def _monotonic_radius(distortion: np.ndarray) -> float:
    """First undistorted radius where r (1 + k1 r^2 + k2 r^4 + k3 r^6) stops increasing."""
    k1, k2, _, _, k3 = distortion
    r = np.linspace(0.0, 5.0, 50_001)[1:]
    r2 = r * r
    slope = 1.0 + r2 * (3.0 * k1 + r2 * (5.0 * k2 + r2 * 7.0 * k3))
    bad = np.flatnonzero(slope <= 0.0)
    return float(r[bad[0]]) if bad.size else np.inf


def _visible_points(camera: Camera, n: int = NUM_POINTS, seed: int = 0):
    """n world points (float64) in front of a Brown-Conrady camera, with undistorted radius below
    90% of the monotonic radius and an OpenCV projection inside the image; and those pixels."""
    rng = np.random.default_rng(seed)
    w, h = np.asarray(camera.image_size)
    r_max = 0.9 * _monotonic_radius(np.asarray(camera.distortion))
    half = min(r_max, 2.0 * np.hypot(w, h) / 2.0 / float(np.min(camera.focal)))
    xy = rng.uniform(-half, half, size=(50 * n, 2))
    xy = xy[np.hypot(xy[:, 0], xy[:, 1]) < r_max]
    z = rng.uniform(0.5, 1.5, size=(len(xy), 1)) * np.linalg.norm(camera.translation)
    xc = np.concatenate([xy * z, z], -1)
    r = cv2.Rodrigues(np.asarray(camera.rotation))[0]
    world = (xc - np.asarray(camera.translation)) @ r  # R^T (Xc - t), row-wise
    uv = _cv_project(camera, world)
    inside = (uv >= -0.5).all(-1) & (uv[:, 0] <= w - 0.5) & (uv[:, 1] <= h - 0.5)
    assert inside.sum() >= n, "too few visible test points; widen the sampler"
    return world[inside][:n], uv[inside][:n]


def _max_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# --- acceptance: real calibrations against OpenCV ------------------------------------------------


@pytest.mark.parametrize(("key", "index"), REAL_CAMERAS, ids=[f"{k}-{i}" for k, i in REAL_CAMERAS])
def test_project_and_undistort_agree_with_opencv_on_real_calibrations(key, index):
    cal = _load(key)
    cam = cal.rig[index]
    world, uv = _visible_points(cam, seed=index)
    und = _cv_undistort(cam, uv)
    # the OpenCV reference itself must have converged: its output is the pinhole projection
    xc = world @ cv2.Rodrigues(np.asarray(cam.rotation))[0].T + np.asarray(cam.translation)
    pinhole = (xc / xc[:, 2:]) @ _cv_k(cam).T
    assert _max_err(und, pinhole[:, :2]) < 1e-8

    with jax.enable_x64(True):
        cam64 = _to_jax(cam, jnp.float64)
        uv64 = _project(cam64, jnp.asarray(world))
        und64 = _undistort_points(cam64, jnp.asarray(uv))
    assert uv64.dtype == und64.dtype == jnp.float64
    cam32 = _to_jax(cam, jnp.float32)
    uv32 = _project(cam32, jnp.asarray(world, jnp.float32))
    und32 = _undistort_points(cam32, jnp.asarray(uv, jnp.float32))
    assert uv32.dtype == und32.dtype == jnp.float32

    errs = {
        "project f64": _max_err(uv64, uv),
        "undistort f64": _max_err(und64, und),
        "project f32": _max_err(uv32, uv),
        "undistort f32": _max_err(und32, und),
    }
    print(
        f"\n{key} {cal.names[index]:>6} vs OpenCV, max px: "
        + ", ".join(f"{k} {v:.1e}" for k, v in errs.items())
    )
    assert errs["project f64"] < 1e-6
    assert errs["undistort f64"] < 1e-6
    assert errs["project f32"] < 1e-2
    assert errs["undistort f32"] < 1e-2


@pytest.mark.parametrize("session", [1, 2])
def test_dannce_projection_reproduces_data_2d(session):
    import scipy.io

    path = data_path(
        "dannce-markerless-mouse", "demo", f"markerless_mouse_{session}", "label3d_dannce.mat"
    )
    cal = load_dannce_calibration(path)
    labels = scipy.io.loadmat(path)["labelData"].ravel()
    assert len(labels) == len(cal) == 6
    data_3d = [np.asarray(lab["data_3d"][0, 0], np.float64).reshape(-1, 3) for lab in labels]
    data_2d = np.stack(
        [np.asarray(lab["data_2d"][0, 0], np.float64).reshape(-1, 2) for lab in labels]
    )
    for d3 in data_3d[1:]:  # the same 3D labels are stored with every camera
        np.testing.assert_array_equal(d3, data_3d[0])
    keep = np.isfinite(data_3d[0]).all(-1)
    assert 0 < keep.sum() < len(keep)  # both labelled and unlabelled rows are present
    assert np.isfinite(data_2d[:, keep]).all()
    with jax.enable_x64(True):
        rig = _to_jax(cal.rig, jnp.float64)
        got = np.asarray(jax.jit(project_rig)(rig, jnp.asarray(data_3d[0][keep])))
    err = np.abs(got - data_2d[:, keep]).max(axis=(1, 2))
    print(
        f"\nDANNCE markerless_mouse_{session}: {keep.sum()} points, max px per camera "
        + " ".join(f"{e:.1e}" for e in err)
    )
    assert np.all(err < 1e-6)


# --- round trips ---------------------------------------------------------------------------------

STRONG = {
    "k1=-0.4,k2=0.2": (-0.4, 0.2, 0.0, 0.0, 0.0),
    "k1=0.5": (0.5, 0.0, 0.0, 0.0, 0.0),
    "k1,k2,p1,p2": (-0.25, 0.05, 1e-3, -5e-4, 0.0),
}


def _synthetic_camera(distortion, model="brown_conrady", **kw) -> Camera:
    args = dict(
        rotation=(0.2, -0.35, 0.1),
        translation=(15.0, -40.0, 600.0),
        focal=(700.0, 690.0),
        principal_point=(652.3, 500.8),
        distortion=distortion,
        image_size=(1280, 1024),
        model=model,
    )
    return make_camera(**(args | kw))


def _pixel_grid(camera: Camera, nu: int = 17, nv: int = 13) -> np.ndarray:
    """Pixels covering the whole image, edges and corners included: (nv, nu, 2)."""
    w, h = np.asarray(camera.image_size)
    u, v = np.meshgrid(np.linspace(-0.5, w - 0.5, nu), np.linspace(-0.5, h - 0.5, nv))
    return np.stack([u, v], -1)


@jax.jit
def _round_trips(cam: Camera, uv):
    und = undistort_points(cam, uv)
    # distort(undistort(x)) == x on the normalised plane
    xy_d = pixel_to_plane(cam, uv)
    redistorted = distort(cam, undistort(cam, xy_d))
    # the whole model: a point anywhere along the back-projected ray projects to the pixel
    origin, direction = backproject(cam, uv)
    dist = jnp.linspace(100.0, 2000.0, uv.size // 2).reshape(uv.shape[:-1])[..., None]
    reproj = project(cam, origin + dist * direction)
    via_pixels = plane_to_pixel(cam, distort(cam, pixel_to_plane(cam, und)))
    return und, xy_d, redistorted, reproj, via_pixels


@jax.jit
def _undistort_distort(cam: Camera, xy):
    return undistort(cam, distort(cam, xy))


@pytest.mark.parametrize("name", list(STRONG))
def test_project_of_backprojected_pixel_returns_it_over_whole_image(name):
    # These distortions are monotonic at every radius, so every pixel has an undistorted point.
    cam = _synthetic_camera(STRONG[name])
    grid = _pixel_grid(cam)
    with jax.enable_x64(True):
        und, xy_d, redistorted, reproj, via_pixels = _round_trips(
            _to_jax(cam, jnp.float64), jnp.asarray(grid)
        )
    plane_err = _max_err(redistorted, xy_d)
    px_err = _max_err(reproj, grid)
    und_err = _max_err(via_pixels, grid)
    print(
        f"\nround trip {name}: |distort(undistort(x)) - x| = {plane_err:.1e}, "
        f"|project(backproject(u)) - u| = {px_err:.1e} px, via pixels {und_err:.1e} px"
    )
    assert plane_err < 1e-12
    assert px_err < 1e-8
    assert und_err < 1e-9
    # and OpenCV agrees wherever its fixed-point iteration converged (checked by reprojecting)
    cv_und = _cv_undistort(cam, grid).reshape(-1, 2)
    k = _cv_k(cam)
    cv_norm = np.concatenate([cv_und, np.ones_like(cv_und[:, :1])], -1) @ np.linalg.inv(k).T
    cv_back = cv2.projectPoints(cv_norm, np.zeros(3), np.zeros(3), k, np.asarray(cam.distortion))[0]
    converged = np.abs(cv_back.reshape(-1, 2) - grid.reshape(-1, 2)).max(-1) < 1e-9
    assert converged.mean() > 0.5
    assert _max_err(np.asarray(und).reshape(-1, 2)[converged], cv_und[converged]) < 1e-6


def test_undistort_inverts_distort_inside_monotonic_region():
    rng = np.random.default_rng(5)
    # k1 = -0.36 alone folds at r = 0.962 (like sleap-mouse-8cam): go to 0.999 of the fold,
    # where the Jacobian nearly vanishes and a careless Newton step jumps past it.
    cases = STRONG | {"k1=-0.36": (-0.36, 0.0, 0.0, 0.0, 0.0)}
    for name, coeffs in cases.items():
        cam = _synthetic_camera(coeffs)
        r_max = min(0.999 * _monotonic_radius(np.asarray(cam.distortion)), 1.4)
        xy = rng.uniform(-1.0, 1.0, size=(200, 2))
        xy /= np.linalg.norm(xy, axis=-1, keepdims=True)
        xy[:100] *= r_max * rng.uniform(0, 1, size=(100, 1))
        xy[100:] *= r_max * rng.uniform(0.98, 1, size=(100, 1))  # the hard part, near the edge
        with jax.enable_x64(True):
            cj = _to_jax(cam, jnp.float64)
            back = _undistort_distort(cj, jnp.asarray(xy))
        assert _max_err(back, xy) < 1e-12, name


def test_undistort_points_flags_pixels_outside_the_distortion_range():
    cam = _load("sleap-mouse-8cam").rig[1]
    corners = np.array([[0.0, 0.0], [1279.0, 1023.0], [0.0, 511.5]])
    with jax.enable_x64(True):
        out = np.asarray(_undistort_points(_to_jax(cam, jnp.float64), jnp.asarray(corners)))
    assert np.all(np.isnan(out))


FISHEYE_D = (0.08, -0.03, 0.01, -0.002)


def test_fisheye_agrees_with_opencv():
    cam = _synthetic_camera(FISHEYE_D, model=FISHEYE, focal=(420.0, 421.5))
    rng = np.random.default_rng(6)
    # directions up to 75 degrees off axis, in camera coordinates, then to the world
    theta = rng.uniform(0.0, np.radians(75.0), size=200)
    phi = rng.uniform(0.0, 2.0 * np.pi, size=200)
    dirs = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    xc = dirs * rng.uniform(200.0, 900.0, size=(200, 1))
    r = cv2.Rodrigues(np.asarray(cam.rotation))[0]
    world = (xc - np.asarray(cam.translation)) @ r
    uv_cv = _cv_project(cam, world)
    und_cv = _cv_undistort(cam, uv_cv)
    with jax.enable_x64(True):
        cj = _to_jax(cam, jnp.float64)
        uv = _project(cj, jnp.asarray(world))
        und = _undistort_points(cj, jnp.asarray(uv_cv))
        # exact inverse of our own projection as well
        xy = jnp.asarray(xc[:, :2] / xc[:, 2:])
        back = _undistort_distort(cj, xy)
    errs = (_max_err(uv, uv_cv), _max_err(und, und_cv), _max_err(back, xy))
    print(
        f"\nfisheye vs OpenCV: project {errs[0]:.1e} px, undistort {errs[1]:.1e} px, "
        f"undistort(distort) {errs[2]:.1e}"
    )
    assert errs[0] < 1e-6
    assert errs[1] < 1e-6
    assert errs[2] < 1e-12


def test_fisheye_is_smooth_at_the_optical_axis():
    cam = _synthetic_camera(FISHEYE_D, model=FISHEYE)
    with jax.enable_x64(True):
        cj = _to_jax(cam, jnp.float64)
        on_axis = jnp.array([[0.0, 0.0], [1e-9, -2e-9]])
        np.testing.assert_allclose(
            np.asarray(jax.jit(distort)(cj, on_axis)), np.asarray(on_axis), rtol=1e-12, atol=0
        )
        jac = jax.jit(jax.jacfwd(lambda p: distort(cj, p)))(jnp.zeros(2))
        np.testing.assert_allclose(np.asarray(jac), np.eye(2), atol=1e-15)
        jac_inv = jax.jit(jax.jacrev(lambda p: undistort(cj, p)))(jnp.zeros(2))
        np.testing.assert_allclose(np.asarray(jac_inv), np.eye(2), atol=1e-15)


# --- gradients (float64) -------------------------------------------------------------------------


def _grad_camera(case: str) -> Camera:
    if case == "real-sleap":
        return _load("sleap-mouse-8cam").rig[3]  # k1 = -0.36, points out to 0.84 of the fold
    if case == "strong-brown-conrady":
        return _synthetic_camera((-0.4, 0.2, 1e-3, -2e-3, 0.01), skew=1.5)
    return _synthetic_camera(FISHEYE_D, model=FISHEYE)


@pytest.mark.parametrize("case", ["real-sleap", "strong-brown-conrady", "fisheye"])
def test_check_grads_project_and_undistort(case):
    cam = _grad_camera(case)
    if cam.model == FISHEYE:
        xc = np.array([[0.1, -0.2, 1.0], [0.6, 0.4, 1.0], [-0.9, 0.3, 1.0]]) * 500.0
        world = (xc - np.asarray(cam.translation)) @ cv2.Rodrigues(np.asarray(cam.rotation))[0]
    else:
        world, _ = _visible_points(cam, n=6, seed=11)
    # Near the fold of the radial map the inverse is strongly curved: central differences with
    # the default eps = 1e-4 carry a truncation error of ~3e-5 relative there (it falls as eps^2,
    # which shows it is not the gradient). eps = 1e-6 keeps both truncation and rounding < 1e-8.
    kw = dict(order=1, modes=("fwd", "rev"), eps=1e-6)
    with jax.enable_x64(True):
        cj = _to_jax(cam, jnp.float64)
        pts = jnp.asarray(world)
        uv = _project(cj, pts)
        # one random direction in (camera, points) jointly: every field and coordinate moves
        check_grads(_project, (cj, pts), **kw)
        # undistort_points differentiates by the implicit function theorem: checked against
        # finite differences of the converged iteration, wrt camera and pixels
        check_grads(_undistort_points, (cj, uv), **kw)
        # and the implicit Jacobian is the inverse of the forward one
        p0 = jnp.array([0.3, -0.2])
        j_fwd = jax.jit(jax.jacfwd(lambda p: distort(cj, p)))(p0)
        j_inv = jax.jit(jax.jacrev(lambda p: undistort(cj, p)))(distort(cj, p0))
        np.testing.assert_allclose(np.asarray(j_inv @ j_fwd), np.eye(2), atol=1e-12)


# --- jit, vmap and batch shapes ------------------------------------------------------------------


def test_jit_equals_eager():
    cam = _load("sleap-mouse-8cam").rig[1]
    world, uv = _visible_points(cam, n=16, seed=3)
    for dtype in (jnp.float32, jnp.float64):
        with jax.enable_x64(dtype == jnp.float64):
            cj = _to_jax(cam, dtype)
            pts, pix = jnp.asarray(world, dtype), jnp.asarray(uv, dtype)
            # An iterative solve may differ in the last bits once XLA fuses it: in the last bit of
            # the normalised coordinates, which is focal * eps (1e-4 px in float32) whatever the
            # pixel value, so near the image's left or top edge a purely relative tolerance
            # asks for more than the arithmetic has.
            rtol = 1e-6 if dtype == jnp.float32 else 1e-13
            atol = 2.0 * float(np.max(cam.focal)) * float(jnp.finfo(dtype).eps)
            for f, x in ((project, pts), (undistort_points, pix), (backproject, pix)):
                eager, jitted = f(cj, x), jax.jit(f)(cj, x)
                for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
                    assert a.dtype == b.dtype == dtype
                    np.testing.assert_allclose(
                        np.asarray(b),
                        np.asarray(a),
                        rtol=rtol,
                        atol=atol if f is undistort_points else 0,
                        err_msg=f"{f.__name__} {dtype.__name__}",
                    )


def test_vmap_over_rig_equals_per_camera_loop():
    cal = _load("sleap-mouse-8cam")
    world, _ = _visible_points(cal.rig[0], n=10, seed=4)
    with jax.enable_x64(True):
        rig = _to_jax(cal.rig, jnp.float64)
        pts = jnp.asarray(world)
        got = jax.jit(project_rig)(rig, pts)
        assert got.shape == (8, 10, 2)
        loop = np.stack([np.asarray(_project(rig[i], pts)) for i in range(len(rig))])
        np.testing.assert_allclose(np.asarray(got), loop, rtol=1e-14, atol=0)
        und = jax.jit(undistort_points_rig)(rig, got)
        loop_und = np.stack([np.asarray(_undistort_points(rig[i], got[i])) for i in range(8)])
        np.testing.assert_allclose(np.asarray(und), loop_und, rtol=1e-13, atol=0)
        # and against OpenCV, camera by camera
        for i in range(8):
            assert _max_err(got[i], _cv_project(cal.rig[i], world)) < 1e-6


@jax.jit
def _all_functions(cam: Camera, world, uv):
    return (
        project(cam, world),
        undistort_points(cam, uv),
        undistort_points(cam, uv, normalized=True),
        backproject(cam, uv),
        depth(cam, world),
    )


@pytest.mark.parametrize("shape", [(), (7,), (3, 4)])
def test_batch_shapes(shape):
    cam = _load("sleap-mouse-8cam").rig[2]
    n = int(np.prod(shape))
    world, uv = _visible_points(cam, n=12, seed=5)
    world, uv = world[:n].reshape(*shape, 3), uv[:n].reshape(*shape, 2)
    with jax.enable_x64(True):
        cj = _to_jax(cam, jnp.float64)
        got, und, und_n, (origin, direction), d = _all_functions(
            cj, jnp.asarray(world), jnp.asarray(uv)
        )
    assert got.shape == und.shape == und_n.shape == (*shape, 2)
    assert origin.shape == direction.shape == (*shape, 3)
    assert d.shape == shape
    assert _max_err(got, uv) < 1e-6
    assert _max_err(und, _cv_undistort(cam, uv)) < 1e-6
    norm_cv = cv2.undistortPoints(
        uv.reshape(-1, 1, 2), _cv_k(cam), np.asarray(cam.distortion), criteria=CRITERIA
    ).reshape(*shape, 2)
    assert _max_err(und_n, norm_cv) < 1e-12


def test_world_camera_round_trip_and_depth():
    cam = _load("sleap-anipose-minimal-session").rig[1]
    world, _ = _visible_points(cam, n=20, seed=6)
    with jax.enable_x64(True):
        cj = _to_jax(cam, jnp.float64)
        xc = jax.jit(world_to_camera)(cj, jnp.asarray(world))
        back = jax.jit(camera_to_world)(cj, xc)
        d = _depth(cj, jnp.asarray(world))
    r = cv2.Rodrigues(np.asarray(cam.rotation))[0]
    assert _max_err(xc, world @ r.T + np.asarray(cam.translation)) < 1e-9
    assert _max_err(back, world) < 1e-9
    assert np.all(np.asarray(d) > 0)


def test_backprojected_ray_passes_through_the_point():
    for key, index in (("sleap-mouse-8cam", 0), ("eks-fly-3cam", 2)):
        cam = _load(key).rig[index]
        world, uv = _visible_points(cam, n=NUM_POINTS, seed=7)
        with jax.enable_x64(True):
            cj = _to_jax(cam, jnp.float64)
            origin, direction = _backproject(cj, jnp.asarray(uv))
            center = np.asarray(cj.center())
        origin, direction = np.asarray(origin), np.asarray(direction)
        np.testing.assert_allclose(origin, np.broadcast_to(center, origin.shape), atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(direction, axis=-1), 1.0, atol=1e-14)
        offset = world - origin
        along = np.sum(offset * direction, -1)
        assert np.all(along > 0)  # in front of the camera
        miss = np.linalg.norm(offset - along[:, None] * direction, axis=-1)
        rel = miss / np.linalg.norm(offset, axis=-1)
        print(
            f"\nbackproject {key}[{index}]: max distance from point to ray {miss.max():.1e} "
            f"(relative {rel.max():.1e})"
        )
        assert rel.max() < 1e-10


# --- bad input -----------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors():
    cam = _synthetic_camera(STRONG["k1=0.5"])
    with pytest.raises(ValueError, match=r"points must have a last axis of 3.*\(5, 2\)"):
        project(cam, np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"pixel coordinates must have a last axis of 2"):
        undistort_points(cam, np.zeros((5, 3)))
    rig = stack_cameras([cam, cam])
    with pytest.raises(ValueError, match=r"expected a single camera.*\(2,\).*rig"):
        project(rig, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"expected a single camera"):
        undistort_points(rig, np.zeros((5, 2)))
    good = dict(focal=500.0, principal_point=(320.0, 240.0), image_size=(640, 480))
    with pytest.raises(ValueError, match=r"'focal' must have shape \(2,\).*got \(3,\)"):
        make_camera(**(good | dict(focal=(1.0, 2.0, 3.0))))
    with pytest.raises(ValueError, match=r"'rotation' must have shape \(3,\).*got \(3, 3\)"):
        make_camera(rotation=np.eye(3), **good)
    with pytest.raises(ValueError, match=r"'distortion' must have shape \(5,\).*brown_conrady"):
        make_camera(distortion=(0.1, 0.0, 0.0, 0.0), **good)
    with pytest.raises(ValueError, match=r"'distortion' must have shape \(4,\).*fisheye"):
        make_camera(distortion=(0.1, 0.0, 0.0, 0.0, 0.0), model=FISHEYE, **good)
    with pytest.raises(ValueError, match=r"unknown camera model 'kannala'.*brown_conrady"):
        make_camera(model="kannala", **good)
    with pytest.raises(ValueError, match=r"share one model"):
        stack_cameras([cam, _synthetic_camera(FISHEYE_D, model=FISHEYE)])
    with pytest.raises(ValueError, match=r"zero cameras"):
        stack_cameras([])
    with pytest.raises(IndexError, match=r"single Camera cannot be indexed"):
        cam[0]


def test_repr_is_readable():
    cal = _load("sleap-mouse-8cam")
    text = repr(cal.rig[0])
    for key in (
        "Camera(brown_conrady",
        "1280x1024",
        "f=[762.51, 762.51]",
        "c=[639.5, 511.5]",
        "distortion=[-0.28685",
        "rotation=",
        "translation=",
        "centre=",
    ):
        assert key in text, (key, text)
    rig_text = repr(cal.rig)
    assert rig_text.startswith("Camera rig of 8 (brown_conrady, float64)")
    for f in ("762.51", "817.65", "757.89", "865.16", "754.71", "754.84", "958.84", "860.8"):
        assert f"f=[{f}" in rig_text
    assert rig_text.count("distortion=") == 8
    text32 = repr(cal.rig.astype(jnp.float32)[2])  # JAX arrays print as well
    assert "f=[757.89, 757.89]" in text32
    assert "fisheye" in repr(_synthetic_camera(FISHEYE_D, model=FISHEYE))
    cal_text = repr(cal)
    assert all(name in cal_text for name in cal.names)
