"""Seeded synthetic camera rigs, and exact float64 projection with a visibility test.

World frame: z up, the arena floor is z = 0, units are mm. Cameras stand on a ring around the
arena, each aimed at (a jittered point near) the arena centre, and every camera is checked to see
the whole arena (floor and the space above it up to a rearing mouse's height).

Everything here is NumPy float64, so synthetic ground truth is exact; `project_points` is the same
model as `jaxpose.geometry.project` (and as `cv2.projectPoints` for skew-free cameras).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from jaxpose.geometry.camera import FISHEYE, Camera, make_camera, stack_cameras
from jaxpose.io.calibration import Calibration

MIN_CAMERAS = 2
MAX_CAMERAS = 16

# Heights (mm above the floor) of the arena volume every camera must see: the floor and a
# rearing mouse's head.
_ARENA_HEIGHTS = (0.0, 100.0)


def look_at_rotation(
    eye: Sequence[float] | np.ndarray,
    target: Sequence[float] | np.ndarray,
    up: Sequence[float] | np.ndarray = (0.0, 0.0, 1.0),
    *,
    roll: float = 0.0,
) -> np.ndarray:
    """Axis-angle world -> camera rotation of a camera at `eye` looking at `target`.

    The camera z axis points from `eye` to `target`, the image x axis (right) is horizontal with
    respect to `up`, and the image y axis points down (OpenCV convention).

    Args:
        eye: (3,) camera centre in world coordinates.
        target: (3,) the point the optical axis passes through.
        up: (3,) the world direction that appears as "up" in the image.
        roll: rotation about the optical axis, radians (positive turns the image clockwise).

    Returns:
        (3,) float64 axis-angle vector, world -> camera (as `cv2.Rodrigues` would give).

    Raises:
        ValueError: if `eye == target` or the viewing direction is parallel to `up`.
    """
    eye, target, up = (np.asarray(a, np.float64).reshape(3) for a in (eye, target, up))
    forward = target - eye
    norm = np.linalg.norm(forward)
    if norm < 1e-12:
        raise ValueError(f"eye and target coincide at {eye}; a camera needs a viewing direction")
    z = forward / norm
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9 * max(np.linalg.norm(up), 1e-300):
        raise ValueError(
            f"viewing direction {z} is parallel to up {up}; the image x axis is undefined"
        )
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    world_to_cam = np.stack([x, y, z])  # rows: camera axes in world coordinates
    c, s = np.cos(roll), np.sin(roll)
    roll_m = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return Rotation.from_matrix(roll_m @ world_to_cam).as_rotvec()


def _as_numpy_rig(rig: Camera | Calibration) -> Camera:
    rig = rig.rig if isinstance(rig, Calibration) else rig
    if rig.rotation.ndim != 2:
        raise ValueError(
            f"expected a rig (leading cam axis, rotation shape (cam, 3)), "
            f"got rotation shape {rig.rotation.shape}"
        )
    return Camera(
        rotation=np.asarray(rig.rotation, np.float64),
        translation=np.asarray(rig.translation, np.float64),
        focal=np.asarray(rig.focal, np.float64),
        principal_point=np.asarray(rig.principal_point, np.float64),
        skew=np.asarray(rig.skew, np.float64),
        distortion=np.asarray(rig.distortion, np.float64),
        image_size=np.asarray(rig.image_size, np.float64),
        model=rig.model,
    )


def camera_centers(rig: Camera | Calibration) -> np.ndarray:
    """(cam, 3) float64 camera centres in world coordinates, C = -R^T t."""
    rig = _as_numpy_rig(rig)
    rot = Rotation.from_rotvec(rig.rotation).as_matrix()
    return -np.einsum("cji,cj->ci", rot, rig.translation)


def _radial_factor(model: str, coeffs: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Distorted radius / undistorted radius on the normalised plane, for radii `r` (*, n)."""
    r2 = r * r
    if model == FISHEYE:
        theta = np.arctan(r)
        t2 = theta * theta
        k1, k2, k3, k4 = (coeffs[..., i, None] for i in range(4))
        theta_d = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        return np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
    k1, k2, k3 = (coeffs[..., i, None] for i in (0, 1, 4))
    return 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))


def max_valid_radius(rig: Camera | Calibration, *, r_max: float = 5.0) -> np.ndarray:
    """(cam,) largest undistorted normalised radius up to which each lens model is one-to-one.

    Polynomial distortion bends back on itself at large radii (strong barrel distortion maps far
    off-axis points back into the image); points beyond this radius are not really imaged.
    """
    rig = _as_numpy_rig(rig)
    r = np.linspace(0.0, r_max, 5001)
    rd = r * _radial_factor(rig.model, rig.distortion, np.broadcast_to(r, (len(rig.focal), r.size)))
    falling = np.diff(rd, axis=-1) <= 0
    first = np.where(falling.any(-1), falling.argmax(-1), r.size - 1)
    return r[first]


def _to_camera_frames(rig: Camera, points: np.ndarray) -> np.ndarray:
    """(*pts, 3) world points -> (cam, n, 3) camera-frame points, n = prod(pts)."""
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must have a last axis of 3, got shape {points.shape}")
    rot = Rotation.from_rotvec(rig.rotation).as_matrix()  # (cam, 3, 3)
    return np.einsum("cij,nj->cni", rot, points.reshape(-1, 3)) + rig.translation[:, None, :]


def project_points(rig: Camera | Calibration, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 projection of world points into every camera of a rig.

    Args:
        rig: a `Camera` rig (leading cam axis) or a `Calibration`.
        points: (*pts, 3) world points, mm.

    Returns:
        uv: (cam, *pts, 2) distorted pixel coordinates (meaningless where depth <= 0).
        depth: (cam, *pts) depth along each optical axis (positive in front of the camera).
    """
    rig = _as_numpy_rig(rig)
    points = np.asarray(points, np.float64)
    xc = _to_camera_frames(rig, points)
    shape = (len(rig.focal), *points.shape[:-1])
    return _camera_to_pixels(rig, xc).reshape(*shape, 2), xc[..., 2].reshape(shape)


def _camera_to_pixels(rig: Camera, xc: np.ndarray) -> np.ndarray:
    """(cam, n, 3) camera-frame points -> (cam, n, 2) distorted pixels."""
    z = xc[..., 2]
    # Points at or behind the camera would divide by ~0; give them a harmless plane position.
    safe_z = np.where(np.abs(z) > 1e-12, z, 1e-12)
    xy = xc[..., :2] / safe_z[..., None]
    r = np.linalg.norm(xy, axis=-1)
    k = rig.distortion
    if rig.model == FISHEYE:
        xd = xy * _radial_factor(rig.model, k, r)[..., None]
    else:
        x, y = xy[..., 0], xy[..., 1]
        radial = _radial_factor(rig.model, k, r)
        p1, p2 = k[:, 2, None], k[:, 3, None]
        xd = np.stack(
            [
                x * radial + 2.0 * p1 * x * y + p2 * (r * r + 2.0 * x * x),
                y * radial + p1 * (r * r + 2.0 * y * y) + 2.0 * p2 * x * y,
            ],
            -1,
        )
    fx, fy = rig.focal[:, 0, None], rig.focal[:, 1, None]
    cx, cy = rig.principal_point[:, 0, None], rig.principal_point[:, 1, None]
    u = fx * xd[..., 0] + rig.skew[:, None] * xd[..., 1] + cx
    v = fy * xd[..., 1] + cy
    return np.stack([u, v], -1)


def in_view(
    rig: Camera | Calibration,
    points: np.ndarray,
    *,
    margin_px: float = 0.0,
    min_depth_mm: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Project points and say which cameras image them.

    A point is in view when it is in front of the camera (depth > `min_depth_mm`), projects inside
    the image with `margin_px` to spare, and lies inside the radius where the lens model is
    one-to-one (see `max_valid_radius`).

    Args:
        rig: a `Camera` rig or a `Calibration`.
        points: (*pts, 3) world points, mm.
        margin_px: keep this many pixels away from the image border.
        min_depth_mm: nearest depth that counts as in front.

    Returns:
        uv: (cam, *pts, 2) pixel coordinates (as `project_points`).
        visible: (cam, *pts) bool.
    """
    rig = _as_numpy_rig(rig)
    points = np.asarray(points, np.float64)
    xc = _to_camera_frames(rig, points)
    shape = (len(rig.focal), *points.shape[:-1])
    uv = _camera_to_pixels(rig, xc).reshape(*shape, 2)
    front = xc[..., 2] > min_depth_mm
    r = np.linalg.norm(xc[..., :2], axis=-1) / np.where(front, xc[..., 2], 1.0)
    one_to_one = r < max_valid_radius(rig)[:, None]
    size = rig.image_size.reshape(-1, *([1] * (uv.ndim - 2)), 2)
    # Pixel centres run from 0 to size - 1; the image edge is half a pixel further out.
    inside = np.all((uv >= margin_px - 0.5) & (uv <= size - 0.5 - margin_px), axis=-1)
    visible = inside & front.reshape(shape) & one_to_one.reshape(shape)
    return uv, visible


def _arena_samples(radius: float, num: int = 48) -> np.ndarray:
    ang = np.linspace(0.0, 2 * np.pi, num, endpoint=False)
    ring = np.stack([radius * np.cos(ang), radius * np.sin(ang)], -1)
    pts = [np.concatenate([ring, np.full((num, 1), h)], -1) for h in _ARENA_HEIGHTS]
    pts += [np.array([[0.0, 0.0, h]]) for h in _ARENA_HEIGHTS]
    return np.concatenate(pts)


def _sample_distortion(rng: np.random.Generator, corner_radius: float) -> np.ndarray:
    """Brown-Conrady coefficients whose radial map stays one-to-one well past the image corner."""
    for _ in range(1000):
        k1 = rng.uniform(-0.25, 0.05)
        k2 = rng.uniform(-0.02, 0.12)
        k3 = rng.uniform(-1e-3, 1e-3)
        p1, p2 = rng.normal(0.0, 1e-3, 2)
        coeffs = np.array([[k1, k2, p1, p2, k3]])
        r = np.linspace(0.0, 2.0, 2001)
        rd = r * _radial_factor("brown_conrady", coeffs, r[None])[0]
        slope = np.diff(rd)
        falling = np.flatnonzero(slope <= 0)
        reach = rd[falling[0]] if falling.size else rd[-1]
        # The image corner must lie comfortably inside the one-to-one part of the lens map.
        if reach > 1.15 * corner_radius:
            return coeffs[0]
    raise RuntimeError("could not sample a one-to-one distortion; the field of view is too wide")


def make_rig(
    num_cameras: int,
    *,
    seed: int,
    radius_mm: float = 500.0,
    height_mm: tuple[float, float] = (250.0, 450.0),
    image_size: tuple[int, int] | Sequence[tuple[int, int]] = (1280, 1024),
    hfov_deg: tuple[float, float] = (50.0, 70.0),
    look_at: Sequence[float] = (0.0, 0.0, 0.0),
    arena_radius_mm: float = 200.0,
) -> Calibration:
    """A seeded ring of Brown-Conrady cameras around an arena, all looking at its centre.

    Cameras stand at jittered, evenly spread azimuths on a ring of radius ~`radius_mm` at heights
    in `height_mm`, aimed at `look_at` (jittered by ~1 cm) with a small roll. Focal lengths give a
    horizontal field of view in `hfov_deg`; the principal point is within 2 % of the image centre;
    distortion is realistic Brown-Conrady (k1 in [-0.25, 0.05], small k2, p1/p2 ~ 1e-3, k3 ~ 0)
    and one-to-one over the whole image. Should the arena (radius `arena_radius_mm`, floor to
    100 mm up) not fit in a camera's image, its focal length is shortened until it does.

    Args:
        num_cameras: 2 to 16.
        seed: seed for `numpy.random.default_rng`; the same seed gives bit-identical rigs.
        radius_mm: ring radius, mm (each camera jittered by up to 5 %).
        height_mm: (low, high) range of camera heights above the floor, mm.
        image_size: one (width, height) for all cameras, or a sequence of them to draw from.
        hfov_deg: (low, high) range of horizontal field of view, degrees.
        look_at: (3,) the point the cameras aim at.
        arena_radius_mm: radius of the arena every camera must see.

    Returns:
        A `Calibration` with float64 NumPy fields, cameras named cam0, cam1, ...

    Raises:
        ValueError: for a camera count outside [2, 16] or a malformed option.
    """
    if isinstance(num_cameras, bool) or not isinstance(num_cameras, (int, np.integer)):
        raise ValueError(f"num_cameras must be an integer, got {num_cameras!r}")
    if not MIN_CAMERAS <= num_cameras <= MAX_CAMERAS:
        raise ValueError(
            f"num_cameras must be in [{MIN_CAMERAS}, {MAX_CAMERAS}], got {num_cameras}"
        )
    lo_h, hi_h = (float(h) for h in height_mm)
    if not 0.0 < lo_h <= hi_h:
        raise ValueError(f"height_mm must be (low, high) with 0 < low <= high, got {height_mm}")
    lo_f, hi_f = (float(f) for f in hfov_deg)
    if not 10.0 <= lo_f <= hi_f <= 120.0:
        raise ValueError(f"hfov_deg must be (low, high) within [10, 120] degrees, got {hfov_deg}")
    if radius_mm <= arena_radius_mm:
        raise ValueError(
            f"radius_mm ({radius_mm}) must exceed arena_radius_mm ({arena_radius_mm}): "
            "cameras stand outside the arena"
        )
    sizes = np.asarray(image_size, np.float64)
    if sizes.shape == (2,):
        sizes = sizes[None]
    if sizes.ndim != 2 or sizes.shape[1] != 2 or np.any(sizes < 16):
        raise ValueError(
            f"image_size must be (width, height) or a sequence of them, got {image_size!r}"
        )
    target0 = np.asarray(look_at, np.float64).reshape(3)

    rng = np.random.default_rng(seed)
    spacing = 2 * np.pi / num_cameras
    azimuth = rng.uniform(0, 2 * np.pi) + spacing * np.arange(num_cameras)
    azimuth += rng.uniform(-0.25, 0.25, num_cameras) * spacing
    arena = _arena_samples(arena_radius_mm)

    cameras = []
    for i in range(num_cameras):
        w, h = sizes[rng.integers(len(sizes))]
        ring = radius_mm * rng.uniform(0.95, 1.05)
        eye = np.array(
            [ring * np.cos(azimuth[i]), ring * np.sin(azimuth[i]), rng.uniform(lo_h, hi_h)]
        )
        target = target0 + np.append(rng.uniform(-10.0, 10.0, 2), 0.0)
        rotation = look_at_rotation(eye, target, roll=np.deg2rad(rng.uniform(-3.0, 3.0)))
        hfov = np.deg2rad(rng.uniform(lo_f, hi_f))
        fx = 0.5 * w / np.tan(0.5 * hfov)
        fy = fx * rng.uniform(0.995, 1.005)
        pp = np.array([w, h]) * (0.5 + rng.uniform(-0.02, 0.02, 2))
        corner = np.hypot(max(pp[0], w - pp[0]) / fx, max(pp[1], h - pp[1]) / fy)
        distortion = _sample_distortion(rng, corner)
        translation = -Rotation.from_rotvec(rotation).as_matrix() @ eye
        cam = make_camera(
            rotation=rotation,
            translation=translation,
            focal=(fx, fy),
            principal_point=pp,
            distortion=distortion,
            image_size=(w, h),
        )
        # Shorten the focal length (deterministically) until the whole arena is in view.
        for _ in range(50):
            _, vis = in_view(stack_cameras([cam]), arena, margin_px=0.02 * min(w, h))
            if vis.all():
                break
            cam = make_camera(
                rotation=rotation,
                translation=translation,
                focal=cam.focal * 0.95,
                principal_point=pp,
                distortion=distortion,
                image_size=(w, h),
            )
        else:
            raise ValueError(
                f"camera {i} cannot see the whole arena of radius {arena_radius_mm} mm; "
                "move the cameras further out or higher"
            )
        cameras.append(cam)

    metadata = {
        "source": "jaxpose.synth.make_rig",
        "seed": int(seed) if isinstance(seed, (int, np.integer)) else str(seed),
        "arena_radius_mm": float(arena_radius_mm),
        "units": "mm",
    }
    names = tuple(f"cam{i}" for i in range(num_cameras))
    return Calibration(stack_cameras(cameras), names, metadata)
