"""A mouse-like skeleton and a seeded, smooth animation of it walking, turning and rearing.

The animation is built so that ground truth stays physically plausible:

* the spine and tail are dragged along the path of the neck like a rope pulled by one end, so
  the body bends through turns, follows the path, cannot jump, and every spine and tail
  segment keeps its length;
* the head, shoulders and hips are rigid offsets in the local frame of their spine point, and
  the legs swing on a sphere about their shoulder or hip (a trot: diagonal pairs move together,
  paws lift a few mm in the swing phase), so every edge of the skeleton keeps its rest length;
* rearing pitches the whole front body about `spine_3`, which again preserves every length.

World frame: z up, arena floor z = 0, mm. Body frame (rest pose): x forward, y left, z up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

# fmt: off
MOUSE_KEYPOINTS = (
    "snout", "ear_l", "ear_r", "head", "neck", "chest",
    "spine_1", "spine_2", "spine_3", "tail_base", "tail_mid", "tail_tip",
    "shoulder_l", "shoulder_r", "forepaw_l", "forepaw_r",
    "hip_l", "hip_r", "hindpaw_l", "hindpaw_r",
)
# fmt: on

# Rest pose of a walking mouse, body frame (x forward, y left, z up), mm: about 96 mm from snout
# to tail base and an 80 mm tail; paws stand 3 mm above the floor (paw thickness).
_MOUSE_REST = {
    "snout": (52.0, 0.0, 22.0),
    "ear_l": (30.0, 9.0, 36.0),
    "ear_r": (30.0, -9.0, 36.0),
    "head": (36.0, 0.0, 30.0),
    "neck": (22.0, 0.0, 30.0),
    "chest": (18.0, 0.0, 14.0),
    "spine_1": (8.0, 0.0, 33.0),
    "spine_2": (-8.0, 0.0, 35.0),
    "spine_3": (-26.0, 0.0, 32.0),
    "tail_base": (-44.0, 0.0, 24.0),
    "tail_mid": (-84.0, 0.0, 12.0),
    "tail_tip": (-124.0, 0.0, 6.0),
    "shoulder_l": (16.0, 10.0, 20.0),
    "shoulder_r": (16.0, -10.0, 20.0),
    "forepaw_l": (20.0, 12.0, 3.0),
    "forepaw_r": (20.0, -12.0, 3.0),
    "hip_l": (-30.0, 12.0, 20.0),
    "hip_r": (-30.0, -12.0, 20.0),
    "hindpaw_l": (-30.0, 15.0, 3.0),
    "hindpaw_r": (-30.0, -15.0, 3.0),
}

# fmt: off
_MOUSE_EDGES = (
    ("snout", "head"), ("head", "ear_l"), ("head", "ear_r"), ("head", "neck"),
    ("neck", "chest"), ("neck", "spine_1"), ("spine_1", "spine_2"), ("spine_2", "spine_3"),
    ("spine_3", "tail_base"), ("tail_base", "tail_mid"), ("tail_mid", "tail_tip"),
    ("spine_1", "shoulder_l"), ("spine_1", "shoulder_r"),
    ("shoulder_l", "forepaw_l"), ("shoulder_r", "forepaw_r"),
    ("spine_3", "hip_l"), ("spine_3", "hip_r"),
    ("hip_l", "hindpaw_l"), ("hip_r", "hindpaw_r"),
)
# fmt: on

# The chain that follows the neck's path, head to tail.
_CHAIN = ("neck", "spine_1", "spine_2", "spine_3", "tail_base", "tail_mid", "tail_tip")
# Points carried rigidly by the neck frame: head (turns with head yaw and pitch) and chest.
_HEAD = ("head", "snout", "ear_l", "ear_r")
# (paw, attachment, frame point, trot phase offset): diagonal pairs share a phase.
_LEGS = (
    ("forepaw_l", "shoulder_l", "spine_1", 0.0),
    ("forepaw_r", "shoulder_r", "spine_1", np.pi),
    ("hindpaw_l", "hip_l", "spine_3", np.pi),
    ("hindpaw_r", "hip_r", "spine_3", 0.0),
)
# Everything in front of spine_3 pitches up when the mouse rears.
_FRONT = (
    "neck",
    "spine_1",
    "spine_2",
    "chest",
    "shoulder_l",
    "shoulder_r",
    "forepaw_l",
    "forepaw_r",
) + _HEAD


@dataclasses.dataclass(frozen=True, eq=False)
class Skeleton:
    """Keypoint names, the edges between them and a rest pose.

    Attributes:
        names: (kpt,) keypoint names, unique.
        edges: pairs of keypoint indices joined by a bone.
        rest_pose: (kpt, 3) float64 rest positions in the body frame (x forward, y left, z up),
            mm; read-only.
        symmetric_pairs: (left, right) keypoint index pairs, for flip augmentation and checks.
    """

    names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    rest_pose: np.ndarray
    symmetric_pairs: tuple[tuple[int, int], ...] = ()

    def __post_init__(self):
        names = tuple(str(n) for n in self.names)
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"keypoint names must be unique, repeated: {dupes}")
        rest = np.array(self.rest_pose, dtype=np.float64)
        if rest.shape != (len(names), 3):
            raise ValueError(
                f"rest_pose must have shape (kpt, 3) = ({len(names)}, 3), got {rest.shape}"
            )
        rest.setflags(write=False)
        edges = tuple((int(a), int(b)) for a, b in self.edges)
        pairs = tuple((int(a), int(b)) for a, b in self.symmetric_pairs)
        for what, items in (("edge", edges), ("symmetric pair", pairs)):
            for a, b in items:
                if not (0 <= a < len(names) and 0 <= b < len(names)) or a == b:
                    raise ValueError(
                        f"{what} ({a}, {b}) must join two different keypoints in [0, {len(names)})"
                    )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "rest_pose", rest)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "symmetric_pairs", pairs)

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of a keypoint by name."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"no keypoint named {name!r}; keypoints are {list(self.names)}"
            ) from None

    def edge_lengths(self, points: np.ndarray) -> np.ndarray:
        """Bone lengths (*batch, edge) of poses (*batch, kpt, 3)."""
        points = np.asarray(points)
        if points.shape[-2:] != (self.num_keypoints, 3):
            raise ValueError(
                f"points must end in (kpt, 3) = ({self.num_keypoints}, 3), got {points.shape}"
            )
        a, b = np.asarray(self.edges).T
        return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)


def mouse_skeleton() -> Skeleton:
    """The default 20-keypoint mouse: snout to tail tip, ears, four limbs (shoulder/hip, paw)."""
    names = MOUSE_KEYPOINTS
    idx = {n: i for i, n in enumerate(names)}
    pairs = tuple((idx[n], idx[n[:-2] + "_r"]) for n in names if n.endswith("_l"))
    return Skeleton(
        names=names,
        edges=tuple((idx[a], idx[b]) for a, b in _MOUSE_EDGES),
        rest_pose=np.array([_MOUSE_REST[n] for n in names]),
        symmetric_pairs=pairs,
    )


# --- random smooth signals ------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, n: int, sigma_frames: float) -> np.ndarray:
    """(n,) stationary Gaussian noise with unit variance, smoothed over ~`sigma_frames`."""
    sigma = max(float(sigma_frames), 0.5)
    half = int(np.ceil(4 * sigma))
    t = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= np.sqrt(np.sum(kernel**2))  # unit variance out of unit-variance white noise
    white = rng.standard_normal(n + 2 * half)
    return np.convolve(white, kernel, mode="valid")


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)  # C2: velocity and acceleration continuous


def _envelope(t: np.ndarray, start: float, stop: float, ramp: float) -> np.ndarray:
    """1 on [start + ramp, stop - ramp], 0 outside [start, stop], smooth in between."""
    return _smoothstep((t - start) / ramp) * _smoothstep((stop - t) / ramp)


# --- the path of the neck -------------------------------------------------------------------


def _walk(
    rng: np.random.Generator,
    num_steps: int,
    dt: float,
    speed: np.ndarray,
    turn_noise: np.ndarray,
    path_radius: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate a heading / speed walk that steers away from the arena wall.

    Returns positions (steps, 2) and headings (steps,) radians.
    """
    pos = np.empty((num_steps, 2))
    heading = np.empty(num_steps)
    p = rng.uniform(-0.3, 0.3, 2) * path_radius / np.sqrt(2)
    theta = rng.uniform(0.0, 2 * np.pi)
    look_ahead = 60.0
    soft = path_radius - 20.0
    for i in range(num_steps):
        h = np.array([np.cos(theta), np.sin(theta)])
        ahead = p + look_ahead * h
        excess = (np.hypot(*ahead) - soft) / 40.0
        omega = turn_noise[i]
        if excess > 0:
            # Turn toward the side where the centre lies (left if the centre is to the left).
            side = h[0] * -p[1] - h[1] * -p[0]
            omega += 4.0 * min(excess, 1.0) * (1.0 if side >= 0 else -1.0)
        theta += float(np.clip(omega, -4.0, 4.0)) * dt
        p = p + speed[i] * dt * np.array([np.cos(theta), np.sin(theta)])
        r = np.hypot(*p)
        if r > path_radius:  # slide along the wall rather than cross it
            p *= path_radius / r
        pos[i] = p
        heading[i] = theta
    return pos, heading


def _drag(path: np.ndarray, heading0: float, lengths: Sequence[float]) -> np.ndarray:
    """Drag a chain behind a lead point along its path, like a rope pulled by one end.

    Each step, every link's rear point moves straight toward its (new) front point until the
    link has its length again. Links keep their length exactly, the chain bends through turns
    and follows the lead's path, and no point ever moves further in a step than the point
    pulling it, so the chain cannot jump. The chain starts straight behind the first heading.

    Args:
        path: (steps, 2) lead positions.
        heading0: the lead's heading at the first step, radians.
        lengths: link lengths, head to tail.

    Returns:
        (steps, 1 + len(lengths), 2) chain positions, the lead first.
    """
    n = len(lengths)
    back = -np.array([np.cos(heading0), np.sin(heading0)])
    offsets = np.concatenate([[0.0], np.cumsum(lengths)])
    chain = np.empty((len(path), n + 1, 2))
    chain[0] = path[0] + offsets[:, None] * back
    # Plain Python floats: the recurrence is sequential and tiny, NumPy calls would dominate.
    xs = chain[0, :, 0].tolist()
    ys = chain[0, :, 1].tolist()
    lens = [float(v) for v in lengths]
    for i in range(1, len(path)):
        xs[0], ys[0] = float(path[i, 0]), float(path[i, 1])
        for k in range(n):
            dx, dy = xs[k + 1] - xs[k], ys[k + 1] - ys[k]
            norm = (dx * dx + dy * dy) ** 0.5
            if norm > 1e-12:  # a coincident point keeps its place (the link points nowhere)
                xs[k + 1] = xs[k] + lens[k] * dx / norm
                ys[k + 1] = ys[k] + lens[k] * dy / norm
        chain[i, :, 0] = xs
        chain[i, :, 1] = ys
    return chain


def _frame(forward_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit forward and left vectors (*, 3) in the floor plane from (*, 2) directions."""
    f = forward_xy / np.maximum(np.linalg.norm(forward_xy, axis=-1, keepdims=True), 1e-12)
    zero = np.zeros_like(f[..., :1])
    forward = np.concatenate([f, zero], -1)
    left = np.concatenate([-f[..., 1:], f[..., :1], zero], -1)
    return forward, left


def _place(base, forward, left, offset):
    """World points base + offset (*, 3) expressed in the (forward, left, up) frame."""
    return (
        base
        + offset[..., 0:1] * forward
        + offset[..., 1:2] * left
        + offset[..., 2:3] * np.array([0.0, 0.0, 1.0])
    )


def _rotate_about(points, origin, axis, angle):
    """Rodrigues rotation of points (frame, n, 3) about per-frame axes through origins."""
    v = points - origin[:, None]
    a = axis[:, None]
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    rotated = v * c + np.cross(a, v) * s + a * np.sum(a * v, -1, keepdims=True) * (1 - c)
    return origin[:, None] + rotated


def _pitch(offset, angle):
    """Rotate (*, 3) body-frame offsets in the forward-up plane; positive raises the front."""
    c, s = np.cos(angle), np.sin(angle)
    x, y, z = offset[..., 0], offset[..., 1], offset[..., 2]
    x_new, z_new = x * c - z * s, x * s + z * c
    return np.stack([x_new, np.broadcast_to(y, x_new.shape), z_new], -1)


def animate(
    skeleton: Skeleton,
    num_frames: int,
    *,
    seed: int,
    fps: float = 30.0,
    arena_radius_mm: float = 200.0,
    rear_interval_s: float = 6.0,
) -> np.ndarray:
    """A seeded, smooth animation of the mouse skeleton exploring a round arena.

    The mouse walks (speed 0-150 mm/s, smooth random heading changes, steering away from the
    wall), its body following the spine's path through turns; it trots (diagonal paws in phase,
    lifting a few mm in the swing), bobs and turns its head, and rears now and then (about once
    every `rear_interval_s`: it stops and pitches the front body up about `spine_3` so the head
    rises to ~60-80 mm). All keypoints stay inside the arena; every bone keeps its rest length.

    Args:
        skeleton: a skeleton with the keypoint names of `mouse_skeleton()` (its rest pose may
            differ, e.g. be scaled).
        num_frames: number of frames, >= 1.
        seed: seed for `numpy.random.default_rng`; the same seed gives bit-identical output.
        fps: frames per second (motion is defined in seconds).
        arena_radius_mm: radius of the arena, centred on the origin.
        rear_interval_s: mean time between rearing bouts, seconds.

    Returns:
        (frame, kpt, 3) float64 keypoint positions in the world frame, mm.

    Raises:
        ValueError: for a skeleton without the mouse keypoints or a bad option.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise ValueError(f"num_frames must be an integer, got {num_frames!r}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not rear_interval_s > 0:
        raise ValueError(f"rear_interval_s must be positive, got {rear_interval_s}")
    missing = [n for n in MOUSE_KEYPOINTS if n not in skeleton.names]
    if missing:
        raise ValueError(f"animate needs the mouse keypoints; the skeleton lacks {missing}")
    rest = {n: skeleton.rest_pose[skeleton.index(n)] for n in MOUSE_KEYPOINTS}
    # The body reaches this far from the neck's path: snout ahead, paws (swinging) to the side.
    head_reach = max(np.linalg.norm(rest[n][:2] - rest["neck"][:2]) for n in _HEAD)
    side_reach = max(abs(rest[n][1]) + np.linalg.norm(rest[n] - rest[a]) for n, a, _, _ in _LEGS)
    margin = max(head_reach, side_reach) + 5.0
    path_radius = arena_radius_mm - margin
    if path_radius < 40.0:
        raise ValueError(
            f"arena_radius_mm={arena_radius_mm} is too small for the mouse; "
            f"it needs at least {margin + 40.0:.0f} mm"
        )

    rng = np.random.default_rng(seed)
    dt = 1.0 / fps
    # Warm-up: walk briskly before frame 0 so the tail already has a path behind it.
    warm = int(np.ceil(4.0 * fps))
    total = warm + num_frames
    t = (np.arange(total) - warm) * dt  # seconds; output frames are t >= 0

    # Rearing bouts (in output time): the mouse slows to a stop, pitches up, comes back down.
    pitch = np.zeros(total)
    stop = np.zeros(total)
    start = rng.uniform(0.5, 1.0) * rear_interval_s
    while start < t[-1]:
        duration = rng.uniform(1.2, 2.5)
        # Pitch chosen so the head rises to ~60-80 mm (the pivot is spine_3, ~60 mm behind it).
        height = rng.uniform(60.0, 80.0)
        lever = np.linalg.norm(rest["head"][[0, 2]] - rest["spine_3"][[0, 2]])
        angle = np.arcsin(np.clip((height - rest["spine_3"][2]) / lever, -1.0, 1.0))
        angle -= np.arctan2(
            rest["head"][2] - rest["spine_3"][2], rest["head"][0] - rest["spine_3"][0]
        )
        pitch = np.maximum(pitch, angle * _envelope(t, start + 0.4, start + 0.4 + duration, 0.4))
        stop = np.maximum(stop, _envelope(t, start, start + duration + 0.8, 0.4))
        start += duration + 0.8 + rng.exponential(rear_interval_s)

    # Speed: a smooth random level in (0, 150) mm/s, floored during the warm-up, zero when rearing.
    level = _smooth_noise(rng, total, 1.0 * fps)
    speed = 150.0 / (1.0 + np.exp(-1.6 * (level + 0.3)))
    floor = 100.0 * (1.0 - _smoothstep((t + 1.0) / 1.0))
    speed = np.maximum(speed, floor) * (1.0 - stop)
    turn = 1.6 * _smooth_noise(rng, total, 0.4 * fps)
    path, heading = _walk(rng, total, dt, speed, turn, path_radius)

    # Spine and tail follow the neck's path at their rest (horizontal) link lengths.
    chain_rest = np.array([rest[n] for n in _CHAIN])
    links3 = np.linalg.norm(np.diff(chain_rest, axis=0), axis=-1)
    dz = np.diff(chain_rest[:, 2])
    links = np.sqrt(np.maximum(links3**2 - dz**2, 0.0))
    chain_xy = _drag(path, heading[0], links)[warm:]  # (frame, chain, 2)
    pts = {}
    for k, name in enumerate(_CHAIN):
        pts[name] = np.concatenate([chain_xy[:, k], np.full((num_frames, 1), rest[name][2])], -1)

    def body_frame(name):
        k = _CHAIN.index(name)
        return _frame(chain_xy[:, k - 1] - chain_xy[:, k])  # toward the head

    # Head: turns with the walking direction, plus head scanning (yaw) and bobbing (pitch).
    gait_rate = speed[warm:] / 35.0  # strides per second: a ~35 mm stride
    gait = 2 * np.pi * np.cumsum(gait_rate) * dt + rng.uniform(0, 2 * np.pi)
    moving = np.clip(speed[warm:] / 100.0, 0.0, 1.0)
    yaw = heading[warm:] + np.deg2rad(20.0) * _smooth_noise(rng, num_frames, 0.5 * fps)
    head_pitch = (
        np.deg2rad(4.0) * np.sin(2 * gait) * moving
        + np.deg2rad(6.0) * _smooth_noise(rng, num_frames, 0.3 * fps)
        + 0.3 * pitch[warm:]  # looks further up while rearing
    )
    fwd, left = _frame(np.stack([np.cos(yaw), np.sin(yaw)], -1))
    for name in _HEAD:
        offset = _pitch(rest[name] - rest["neck"], head_pitch[:, None])[:, 0]
        pts[name] = _place(pts["neck"], fwd, left, offset)
    fwd, left = body_frame("spine_1")
    pts["chest"] = _place(pts["neck"], fwd, left, (rest["chest"] - rest["neck"])[None])

    # Legs: a trot. Each leg swings on a sphere about its shoulder/hip: back in stance, forward
    # with an outward (lifting) arc in swing.
    for paw, attach, frame_pt, phase in _LEGS:
        fwd, left = body_frame(frame_pt)
        pts[attach] = _place(pts[frame_pt], fwd, left, (rest[attach] - rest[frame_pt])[None])
        leg = rest[paw] - rest[attach]
        length = np.linalg.norm(leg)
        direction = leg / length
        p = gait + phase
        swing = np.deg2rad(18.0) * moving * np.cos(p)
        lift = np.deg2rad(35.0) * moving * np.maximum(-np.sin(p), 0.0) ** 2
        d = _pitch(direction[None], swing[:, None])[:, 0]
        side = 1.0 if rest[paw][1] >= 0 else -1.0
        c, s = np.cos(side * lift), np.sin(side * lift)
        d = np.stack([d[:, 0], d[:, 1] * c - d[:, 2] * s, d[:, 1] * s + d[:, 2] * c], -1)
        pts[paw] = _place(pts[attach], fwd, left, length * d)

    out = np.stack([pts[n] for n in MOUSE_KEYPOINTS], 1)
    # Rearing: pitch the front body up about a horizontal axis through spine_3.
    front = [MOUSE_KEYPOINTS.index(n) for n in _FRONT]
    _, left3 = body_frame("spine_3")
    out[:, front] = _rotate_about(out[:, front], pts["spine_3"], -left3, pitch[warm:])
    order = [skeleton.index(n) for n in MOUSE_KEYPOINTS]
    result = np.zeros((num_frames, skeleton.num_keypoints, 3))
    result[:, order] = out
    return result
