"""Images of a calibration board seen through synthetic cameras, for end-to-end calibration tests.

Rendering is inverse mapping: every pixel is undistorted once to a ray (float64, cached per
camera since it does not depend on the pose), each frame the rays are intersected with the board
plane through one homography, and the printed texture is sampled there with `cv2.remap`. The
board frame is `Board`'s (origin at the top-left outer corner of the pattern, x right, y down,
z into the board), so a detector run on the images should find the corners where
`project_points` puts `board_points`.

What a frame goes through, in order:

    texture    the printed board (ink 20, paper 230 grey levels) in a white paper margin, sampled
               bilinearly from the mip level with one to two texels per pixel (so a distant
               board does not alias); `supersample=2` renders at twice the resolution and
               averages 2x2 blocks, as a sensor pixel integrates light over its area.
    composite  over a static, smooth random background (a floor texture, never flat); pixels
               that miss the board, see it from behind, or lie where the lens model has no
               inverse are background.
    lighting   gain and bias, and radial vignetting (1 - vignetting * rho^2, rho = 1 at the
               image corner farthest from the principal point).
    blur       Gaussian, sigma in pixels (defocus, motion).
    noise      Gaussian sensor noise, then clip and round to uint8.

    >>> from jaxpose.synth import Board, board_trajectory, make_rig
    >>> from jaxpose.synth.render import write_board_videos
    >>> cal = make_rig(4, seed=0)
    >>> board = Board()
    >>> poses = board_trajectory(board, 120, seed=1, rig=cal)
    >>> write_board_videos("videos", cal, board, poses, seed=2)   # videos/cam0.mp4, ...
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import cv2
import jax
import numpy as np
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from jaxpose.geometry.camera import Camera, pixel_to_plane, stack_cameras, undistort
from jaxpose.io.atomic import atomic_path
from jaxpose.io.calibration import Calibration
from jaxpose.synth.board import CHARUCO, Board
from jaxpose.synth.rig import max_valid_radius

# Grey levels of the printed board under unit gain: black ink is not black, paper not saturated.
_INK = 20.0
_PAPER = 230.0
# Texture coordinate given to pixels that must miss the texture (remap then returns the border).
_OUTSIDE = -1.0e6
# Undistortion runs in fixed-size chunks, so one compiled function serves every image size.
_CHUNK = 1 << 17
_MAX_CACHED_GRIDS = 16
_DEFAULT_MARGIN_MM = 10.0
_MAX_TEXTURE_PIXELS = 4.0e6
_ARUCO_GRID = "aruco_grid"  # Board.kind of a cv2.aruco.GridBoard


# --- the printed board --------------------------------------------------------------------------


def board_texture(
    board: Board, *, pixels_per_mm: float = 8.0, margin_mm: float = _DEFAULT_MARGIN_MM
) -> tuple[np.ndarray, np.ndarray]:
    """The printed board as a grey image, with a white paper margin round the pattern.

    A square is drawn as a whole number of pixels, round(square_mm * pixels_per_mm), so the
    corners fall exactly on pixel edges; the returned affine carries the resulting scale.
    ChArUco boards come from OpenCV's own `CharucoBoard.generateImage` (legacy layout
    included); checkerboards are drawn square by square with the top-left square black (as
    `Board.draw` and OpenCV's ChArUco boards); an ArUco grid marker by marker, each marker
    round(marker_mm * scale) pixels (exact when marker_mm / square_mm is a ratio of whole texels,
    as 15 / 20 at 8 px/mm; otherwise within half a texel).

    Args:
        board: the board.
        pixels_per_mm: texture resolution (rounded as above).
        margin_mm: white margin on every side of the pattern, mm (rounded to whole pixels).

    Returns:
        image: (H, W) uint8, 0 = ink, 255 = paper.
        mm_to_texture: (3, 3) float64 affine taking board-frame (x, y, 1) in mm to texture pixel
            coordinates (u, v, 1), with (0, 0) the centre of the top-left texture pixel.
    """
    if not pixels_per_mm > 0:
        raise ValueError(f"pixels_per_mm must be positive, got {pixels_per_mm}")
    if not margin_mm >= 0:
        raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
    square_px = max(int(round(board.square_mm * pixels_per_mm)), 2)
    scale = square_px / float(board.square_mm)
    margin_px = int(round(margin_mm * scale))
    cols, rows = board.squares
    pitch_px = square_px  # the square, or for an ArUco grid the marker pitch
    if board.kind == _ARUCO_GRID:
        marker_px = max(int(round(board.marker_mm * scale)), 3)
        gap_px = pitch_px - marker_px
        width, height = (n * pitch_px - gap_px + 2 * margin_px for n in (cols, rows))
    else:
        width, height = cols * square_px + 2 * margin_px, rows * square_px + 2 * margin_px
    if board.kind == CHARUCO:
        image = board.opencv_board().generateImage((width, height), marginSize=margin_px)
        image = np.ascontiguousarray(image, np.uint8)
    elif board.kind == _ARUCO_GRID:
        # Drawn marker by marker (ids row-major, as cv2.aruco.GridBoard) so every marker edge
        # falls on a whole texel.
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, board.dictionary))
        image = np.full((height, width), 255, np.uint8)
        for r in range(rows):
            for c in range(cols):
                marker = cv2.aruco.generateImageMarker(dictionary, r * cols + c, marker_px)
                y0, x0 = margin_px + r * pitch_px, margin_px + c * pitch_px
                image[y0 : y0 + marker_px, x0 : x0 + marker_px] = marker
    else:
        image = np.full((height, width), 255, np.uint8)
        for r in range(rows):
            for c in range(cols):
                if (r + c) % 2 == 0:
                    y0, x0 = margin_px + r * square_px, margin_px + c * square_px
                    image[y0 : y0 + square_px, x0 : x0 + square_px] = 0
    # Pixel centres sit half a pixel inside the pixel edges the pattern is drawn on.
    offset = margin_px - 0.5
    mm_to_texture = np.array([[scale, 0.0, offset], [0.0, scale, offset], [0.0, 0.0, 1.0]])
    return image, mm_to_texture


class _Mipmap:
    """A texture as premultiplied (grey, alpha) float32 levels, each half the previous size."""

    def __init__(self, image: np.ndarray, mm_to_texture: np.ndarray):
        image = np.asarray(image)
        if image.ndim != 2 or image.dtype != np.uint8:
            raise ValueError(
                f"texture must be a 2D uint8 image, got {image.dtype} shape {image.shape}"
            )
        affine = np.asarray(mm_to_texture, np.float64)
        if affine.shape != (3, 3):
            raise ValueError(f"mm_to_texture must be 3x3, got shape {affine.shape}")
        num = max(1, min(6, int(np.log2(min(image.shape) / 8.0)) + 1))
        # Pad (transparent) to a multiple of 2^(levels-1) so each halving is exact.
        step = 1 << (num - 1)
        h, w = image.shape
        ph, pw = -h % step, -w % step
        level = np.zeros((h + ph, w + pw, 2), np.float32)
        level[:h, :w, 0] = _INK + (_PAPER - _INK) / 255.0 * image
        level[:h, :w, 1] = 1.0
        self.levels = [level]
        self.affines = [affine]
        for _ in range(num - 1):
            lh, lw = level.shape[:2]
            level = cv2.resize(level, (lw // 2, lh // 2), interpolation=cv2.INTER_AREA)
            # Texel centres: u_next = (u + 0.5) / 2 - 0.5.
            halve = np.array([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25], [0.0, 0.0, 1.0]])
            self.levels.append(level)
            self.affines.append(halve @ self.affines[-1])

    def choose(self, footprint: float) -> int:
        """The level with at most two and (if any) at least one texel per pixel."""
        if not np.isfinite(footprint) or footprint <= 1.0:
            return 0
        return int(min(np.floor(np.log2(footprint)), len(self.levels) - 1))


@functools.lru_cache(maxsize=8)
def _default_mipmap(board: Board) -> _Mipmap:
    # 8 px/mm, but at most ~4 megapixels: a poster-sized board would otherwise take gigabytes.
    width, height = (s + 2 * _DEFAULT_MARGIN_MM for s in board.size_mm)
    pixels_per_mm = min(8.0, float(np.sqrt(_MAX_TEXTURE_PIXELS / (width * height))))
    return _Mipmap(*board_texture(board, pixels_per_mm=pixels_per_mm))


def _mipmap(board: Board, texture) -> _Mipmap:
    if texture is None:
        return _default_mipmap(board)
    if isinstance(texture, _Mipmap):
        return texture
    try:
        image, affine = texture
    except (TypeError, ValueError):
        raise ValueError(
            "texture must be (image, mm_to_texture) as board_texture returns"
        ) from None
    return _Mipmap(image, affine)


# --- cameras and their cached per-pixel rays ----------------------------------------------------


def _numpy_camera(camera: Camera) -> Camera:
    if camera.rotation.ndim != 1:
        raise ValueError(
            f"expected a single camera (rotation shape (3,)), got batch shape {camera.batch_shape}"
        )
    fields = {
        name: np.asarray(getattr(camera, name), np.float64)
        for name in (
            "rotation",
            "translation",
            "focal",
            "principal_point",
            "skew",
            "distortion",
            "image_size",
        )
    }
    return Camera(**fields, model=camera.model)


def scale_camera(camera: Camera, scale: float) -> Camera:
    """The same camera imaging at `scale` times the resolution (pixel grid resampled).

    Focal lengths and skew scale by `scale`; the principal point maps pixel centres to pixel
    centres, (c + 0.5) * scale - 0.5; the image size is rounded to whole pixels.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    cam = _numpy_camera(camera)
    if scale == 1.0:
        return cam
    return Camera(
        rotation=cam.rotation,
        translation=cam.translation,
        focal=cam.focal * scale,
        principal_point=(cam.principal_point + 0.5) * scale - 0.5,
        skew=np.asarray(cam.skew * scale),  # an array, not a NumPy scalar (float64 rigs)
        distortion=cam.distortion,
        image_size=np.maximum(np.round(cam.image_size * scale), 1.0),
        model=cam.model,
    )


def _image_shape(camera: Camera) -> tuple[int, int]:
    w, h = (int(round(float(s))) for s in camera.image_size)
    return h, w


@functools.cache
def _undistort_chunk():
    # Newton converges in a handful of steps for real lenses; 10 (not the default 20) halves the
    # one-off cost, and points that have not converged by then are flagged NaN all the same.
    return jax.jit(lambda cam, uv: undistort(cam, pixel_to_plane(cam, uv), iterations=10))


class _RayGrid:
    """Undistorted normalised coordinates (x, y) of every pixel centre, float32 (h, w) each."""

    def __init__(self, camera: Camera):
        h, w = _image_shape(camera)
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        uv = np.stack([u.ravel(), v.ravel()], -1)
        xy = np.empty_like(uv)
        solve = _undistort_chunk()
        with jax.enable_x64(True):
            for start in range(0, len(uv), _CHUNK):
                chunk = uv[start : start + _CHUNK]
                pad = np.zeros((_CHUNK, 2))
                pad[: len(chunk)] = chunk
                xy[start : start + len(chunk)] = np.asarray(solve(camera, pad))[: len(chunk)]
        # No preimage (Newton did not converge: NaN), or a preimage past the fold of the lens
        # polynomial, where the model no longer describes a real lens: background.
        limit = max_valid_radius(stack_cameras([camera]))[0]
        radius = np.hypot(xy[:, 0], xy[:, 1])
        bad = ~(radius < limit)
        xy[bad] = 0.0
        self.x = xy[:, 0].reshape(h, w).astype(np.float32)
        self.y = xy[:, 1].reshape(h, w).astype(np.float32)
        self.invalid = np.flatnonzero(bad)


_GRIDS: OrderedDict[tuple, _RayGrid] = OrderedDict()


def _ray_grid(camera: Camera) -> _RayGrid:
    key = (camera.model,) + tuple(
        np.asarray(getattr(camera, f), np.float64).tobytes()
        for f in ("focal", "principal_point", "skew", "distortion", "image_size")
    )
    grid = _GRIDS.get(key)
    if grid is None:
        grid = _GRIDS[key] = _RayGrid(camera)
        while len(_GRIDS) > _MAX_CACHED_GRIDS:
            _GRIDS.popitem(last=False)
    else:
        _GRIDS.move_to_end(key)
    return grid


@functools.lru_cache(maxsize=16)
def _radius2(width: int, height: int, cx: float, cy: float) -> np.ndarray:
    """(h, w) squared distance from the principal point over that of the farthest image corner."""
    u = np.arange(width, dtype=np.float32) - np.float32(cx)
    v = np.arange(height, dtype=np.float32) - np.float32(cy)
    # The image edge is half a pixel beyond the outermost pixel centres.
    far_x = max(cx + 0.5, width - 0.5 - cx)
    far_y = max(cy + 0.5, height - 0.5 - cy)
    far = far_x**2 + far_y**2
    return (u[None, :] ** 2 + v[:, None] ** 2) / np.float32(far)


@functools.lru_cache(maxsize=32)
def _smooth_background(width: int, height: int, seed: int) -> np.ndarray:
    """(h, w) float32 smooth random grey texture (a cluttered floor), mean ~115, in [20, 220].

    A sum of octaves of bicubically upsampled noise whose feature sizes are fixed fractions of
    the image, so a scaled-down render shows the same scene.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    out = np.zeros((height, width), np.float32)
    diag = float(np.hypot(width, height))
    for cells, amplitude in ((3, 1.0), (10, 0.6), (40, 0.35), (120, 0.2)):
        cell = diag / cells
        gh, gw = max(2, int(np.ceil(height / cell)) + 1), max(2, int(np.ceil(width / cell)) + 1)
        noise = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amplitude * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    out *= 30.0 / max(float(out.std()), 1e-6)
    out += 115.0 - float(out.mean())
    np.clip(out, 20.0, 220.0, out=out)
    out.setflags(write=False)  # cached: shared between calls
    return out


def _background(background, width: int, height: int, seed: int) -> np.ndarray:
    if background is None:
        return _smooth_background(width, height, int(seed))
    if np.ndim(background) == 0:
        return np.full((height, width), float(background), np.float32)
    background = np.asarray(background, np.float32)
    if background.ndim != 2:
        raise ValueError(f"background must be a 2D grey image, got shape {background.shape}")
    if background.shape != (height, width):
        background = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA)
    return background


# --- rendering ----------------------------------------------------------------------------------


def _check_pose(pose) -> np.ndarray:
    pose = np.asarray(pose, np.float64)
    if pose.shape != (6,):
        raise ValueError(f"pose must have shape (6,) (axis-angle, translation), got {pose.shape}")
    return pose


def _board_to_texture(camera: Camera, pose: np.ndarray, affine: np.ndarray) -> np.ndarray | None:
    """3x3 M with M (x, y, 1) ~ texture (u, v, 1) for undistorted normalised (x, y), or None
    when the camera sees the pattern edge-on or from behind.

    A board point (bx, by, 0) lands in the camera at [r1 r2 t] (bx, by, 1) = depth (x, y, 1), so
    H^-1 (x, y, 1) = (bx, by, 1) / depth: the third component is positive in front.
    """
    rc = Rotation.from_rotvec(camera.rotation).as_matrix()
    rb = Rotation.from_rotvec(np.array(pose[:3], dtype=np.float64)).as_matrix()
    rot = rc @ rb
    t = rc @ pose[3:] + camera.translation
    # The pattern is on the board's -z side; the camera centre must be there to see it.
    centre_z = -(rot.T @ t)[2]
    if not centre_z < -1e-9 * max(1.0, float(np.linalg.norm(t))):
        return None
    hom = np.stack([rot[:, 0], rot[:, 1], t], -1)
    return affine @ np.linalg.inv(hom)


def _footprint(map_x: np.ndarray, map_y: np.ndarray, shape: tuple[int, int]) -> float:
    """Median texels per pixel (sqrt |det J|) over the board, from the maps every 8th pixel."""
    s = 8
    mx, my = map_x[::s, ::s], map_y[::s, ::s]
    if min(mx.shape) < 2:
        s = 1
        mx, my = map_x, map_y
    h, w = shape
    inside = (mx > -1) & (mx < w) & (my > -1) & (my < h)
    ux, vx = (mx[:-1, 1:] - mx[:-1, :-1]) / s, (my[:-1, 1:] - my[:-1, :-1]) / s
    uy, vy = (mx[1:, :-1] - mx[:-1, :-1]) / s, (my[1:, :-1] - my[:-1, :-1]) / s
    ok = inside[:-1, :-1] & inside[:-1, 1:] & inside[1:, :-1]
    if not ok.any():
        return 1.0
    det = np.abs(ux[ok] * vy[ok] - vx[ok] * uy[ok])
    return float(np.sqrt(np.median(det)))


def _render_linear(
    camera: Camera,
    pose: np.ndarray,
    mip: _Mipmap,
    supersample: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied board grey and coverage (alpha), float32 (h, w), at the camera's size."""
    hi = scale_camera(camera, supersample)
    shape = _image_shape(camera)
    grid = _ray_grid(hi)
    m0 = _board_to_texture(camera, pose, mip.affines[0])
    if m0 is None:
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def maps(m):
        m = m.astype(np.float32)
        x, y = grid.x, grid.y
        c = m[2, 0] * x + m[2, 1] * y + m[2, 2]
        front = c > 1e-12
        c[~front] = 1.0
        mx = (m[0, 0] * x + m[0, 1] * y + m[0, 2]) / c
        my = (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / c
        mx[~front] = _OUTSIDE
        mx.ravel()[grid.invalid] = _OUTSIDE
        return mx, my

    map_x, map_y = maps(m0)
    level = mip.choose(_footprint(map_x, map_y, mip.levels[0].shape[:2]))
    if level:
        map_x, map_y = maps(mip.affines[level] @ np.linalg.inv(mip.affines[0]) @ m0)
    sampled = cv2.remap(
        mip.levels[level],
        map_x,
        map_y,
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0.0, 0.0, 0.0, 0.0),
    )
    if supersample > 1:
        sampled = cv2.resize(sampled, shape[::-1], interpolation=cv2.INTER_AREA)
    return sampled[..., 0], sampled[..., 1]


def _finish(
    grey: np.ndarray,
    alpha: np.ndarray,
    background: np.ndarray,
    camera: Camera,
    *,
    gain: float,
    bias: float,
    vignetting: float,
    blur_sigma_px: float,
    noise_std: float,
    rng: np.random.Generator,
) -> np.ndarray:
    out = grey + (1.0 - alpha) * background
    h, w = out.shape
    factor = np.float32(gain)
    if vignetting:
        cx, cy = (float(c) for c in camera.principal_point)
        vig = 1.0 - np.float32(vignetting) * _radius2(w, h, cx, cy)
        out *= factor * vig
    else:
        out *= factor
    out += np.float32(bias)
    if blur_sigma_px > 0:
        out = cv2.GaussianBlur(out, (0, 0), float(blur_sigma_px), borderType=cv2.BORDER_REFLECT)
    if noise_std > 0:
        out += np.float32(noise_std) * rng.standard_normal(out.shape, dtype=np.float32)
    out += 0.5
    np.clip(out, 0.0, 255.0, out=out)
    return out.astype(np.uint8)


def _check_options(supersample, blur_sigma_px, noise_std, vignetting) -> int:
    if isinstance(supersample, bool) or supersample not in (1, 2, 3, 4):
        raise ValueError(f"supersample must be 1, 2, 3 or 4, got {supersample!r}")
    if not blur_sigma_px >= 0:
        raise ValueError(f"blur_sigma_px must be >= 0, got {blur_sigma_px}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if not 0 <= vignetting < 1:
        raise ValueError(f"vignetting must be in [0, 1), got {vignetting}")
    return int(supersample)


def render_board(
    camera: Camera,
    board: Board,
    pose,
    *,
    texture: tuple[np.ndarray, np.ndarray] | None = None,
    background: np.ndarray | float | None = None,
    blur_sigma_px: float = 0.0,
    noise_std: float = 0.0,
    gain: float = 1.0,
    bias: float = 0.0,
    vignetting: float = 0.0,
    seed: int = 0,
    supersample: int = 1,
    image_scale: float = 1.0,
) -> np.ndarray:
    """One grey image of a board at a pose, seen through one camera (Brown-Conrady or fisheye).

    The first call for a camera's intrinsics (and `image_scale`, `supersample`) undistorts every
    pixel (under a second per megapixel); later calls reuse those rays. After that a 1280x1024
    frame takes ~25-40 ms (~100 ms with `supersample=2`) on a 2-core CPU.

    Args:
        camera: a single `Camera` (NumPy or JAX fields).
        board: the board.
        pose: (6,) board -> world pose, axis-angle then translation (mm), as `board_trajectory`.
        texture: (image, mm_to_texture) as `board_texture` returns; default
            `board_texture(board)` (at fewer pixels per mm if it would exceed 4 megapixels).
        background: None for a smooth random texture drawn from `seed`, a grey level for a flat
            one, or a (h, w) grey image (resized to the output size if it differs).
        blur_sigma_px: Gaussian blur, pixels of the output image.
        noise_std: Gaussian sensor noise, grey levels.
        gain: multiplies the whole scene (exposure, illumination).
        bias: added after the gain (black level).
        vignetting: darkening at the farthest image corner, in [0, 1).
        seed: seed of the sensor noise and of the default background.
        supersample: render at this many times the resolution and average blocks (2 removes
            most edge aliasing).
        image_scale: render a camera of `image_scale` times the resolution (`scale_camera`);
            compare with `project_points` of `scale_camera(camera, image_scale)`.

    Returns:
        (h, w) uint8 grey image.
    """
    supersample = _check_options(supersample, blur_sigma_px, noise_std, vignetting)
    camera = scale_camera(camera, image_scale)
    pose = _check_pose(pose)
    mip = _mipmap(board, texture)
    grey, alpha = _render_linear(camera, pose, mip, supersample)
    h, w = grey.shape
    return _finish(
        grey,
        alpha,
        _background(background, w, h, seed),
        camera,
        gain=gain,
        bias=bias,
        vignetting=vignetting,
        blur_sigma_px=blur_sigma_px,
        noise_std=noise_std,
        rng=np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))),
    )


# --- sequences ----------------------------------------------------------------------------------


def iter_board_images(
    calibration: Calibration,
    board: Board,
    poses,
    *,
    seed: int,
    lighting_variation: float = 0.2,
    blur_range: tuple[float, float] = (0.0, 1.2),
    noise_std: float = 2.0,
    vignetting: float = 0.2,
    supersample: int = 1,
    image_scale: float = 1.0,
    texture: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = True,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Render a board trajectory in every camera of a rig, frame by frame, one image at a time.

    Each camera has its own static background; each (frame, camera) its own gain
    (1 +- lighting_variation), bias (+- 25 lighting_variation grey levels), blur sigma (uniform in
    `blur_range`) and sensor noise, all drawn from `seed` and the (frame, camera) index, so any
    one image can be reproduced alone.

    Args:
        calibration: the rig and camera names.
        board: the board.
        poses: (frame, 6) board -> world poses, as `board_trajectory`.
        seed: seed of every random choice.
        lighting_variation: relative spread of the gain; the bias spreads 25 times that.
        blur_range: (low, high) Gaussian blur sigma, output pixels.
        noise_std: Gaussian sensor noise, grey levels.
        vignetting: darkening at the farthest image corner, every camera.
        supersample: as `render_board`.
        image_scale: as `render_board`.
        texture: as `render_board`.
        progress: show a tqdm progress bar.

    Yields:
        (frame, cam, image): indices and the (h, w) uint8 image, frame-major.
    """
    supersample = _check_options(supersample, blur_range[0], noise_std, vignetting)
    lo, hi = (float(b) for b in blur_range)
    if not 0 <= lo <= hi:
        raise ValueError(f"blur_range must be (low, high) with 0 <= low <= high, got {blur_range}")
    if not 0 <= lighting_variation < 1:
        raise ValueError(f"lighting_variation must be in [0, 1), got {lighting_variation}")
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 2 or poses.shape[1] != 6:
        raise ValueError(f"poses must have shape (frame, 6), got {poses.shape}")
    mip = _mipmap(board, texture)
    cameras = [scale_camera(calibration.rig[i], image_scale) for i in range(len(calibration))]
    backgrounds = []
    for i, cam in enumerate(cameras):
        h, w = _image_shape(cam)
        cam_seed = np.random.SeedSequence(seed, spawn_key=(0, i)).generate_state(1)[0]
        backgrounds.append(_smooth_background(w, h, int(cam_seed)))
    with tqdm(
        total=len(poses) * len(cameras), disable=not progress, desc="render", unit="img"
    ) as bar:
        for f, pose in enumerate(poses):
            for i, cam in enumerate(cameras):
                rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, f, i)))
                gain = 1.0 + lighting_variation * rng.uniform(-1.0, 1.0)
                bias = 25.0 * lighting_variation * rng.uniform(-1.0, 1.0)
                sigma = rng.uniform(lo, hi)
                grey, alpha = _render_linear(cam, pose, mip, supersample)
                image = _finish(
                    grey,
                    alpha,
                    backgrounds[i],
                    cam,
                    gain=gain,
                    bias=bias,
                    vignetting=vignetting,
                    blur_sigma_px=sigma,
                    noise_std=noise_std,
                    rng=rng,
                )
                bar.update()
                yield f, i, image


def render_board_sequence(calibration: Calibration, board: Board, poses, **options) -> np.ndarray:
    """Every image of `iter_board_images` in one (frame, cam, h, w) uint8 array.

    Needs every camera to have the same image size; prefer `write_board_images` or
    `write_board_videos` (or iterate `iter_board_images`) for long sequences.
    """
    scale = options.get("image_scale", 1.0)
    shapes = {
        _image_shape(scale_camera(calibration.rig[i], scale)) for i in range(len(calibration))
    }
    if len(shapes) != 1:
        raise ValueError(
            f"cameras have different image sizes {sorted(shapes)}; use iter_board_images"
        )
    (h, w) = shapes.pop()
    poses = np.asarray(poses, np.float64)
    out = np.empty((len(poses), len(calibration), h, w), np.uint8)
    for f, i, image in iter_board_images(calibration, board, poses, **options):
        out[f, i] = image
    return out


def write_board_images(
    out_dir: str | os.PathLike, calibration: Calibration, board: Board, poses, **options
) -> dict[str, Path]:
    """Write `out_dir/<camera name>/frame_%04d.png` for every image of `iter_board_images`.

    Each file is written atomically. Options are those of `iter_board_images`.

    Returns:
        The folder of each camera's images, by camera name.
    """
    out_dir = Path(out_dir)
    folders = {name: out_dir / name for name in calibration.names}
    for f, i, image in iter_board_images(calibration, board, poses, **options):
        path = folders[calibration.names[i]] / f"frame_{f:04d}.png"
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), image):
                raise OSError(f"could not write {path}")
    return folders


def write_board_videos(
    out_dir: str | os.PathLike,
    calibration: Calibration,
    board: Board,
    poses,
    *,
    fps: float = 30.0,
    fourcc: str = "mp4v",
    **options,
) -> dict[str, Path]:
    """Write one video per camera, `out_dir/<camera name>.mp4`, of `iter_board_images`.

    Frames are stored as 3-channel grey (what most codecs accept). Each file appears only once
    complete (written under a temporary name, then renamed). Options are those of
    `iter_board_images`.

    Returns:
        Each camera's video path, by camera name.
    """
    out_dir = Path(out_dir)
    paths = {name: out_dir / f"{name}.mp4" for name in calibration.names}
    scale = options.get("image_scale", 1.0)
    writers: list[cv2.VideoWriter] = []
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(paths[name])) for name in calibration.names]
        try:
            for i, tmp in enumerate(tmps):
                h, w = _image_shape(scale_camera(calibration.rig[i], scale))
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
                writers.append(writer)
                if not writer.isOpened():
                    raise OSError(
                        f"cannot open a {fourcc!r} video writer for {paths[calibration.names[i]]} "
                        f"({w}x{h} at {fps} fps)"
                    )
            for _, i, image in iter_board_images(calibration, board, poses, **options):
                writers[i].write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        finally:
            for writer in writers:
                writer.release()
    return paths
