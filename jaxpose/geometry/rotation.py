"""Rotations as axis-angle (Rodrigues) vectors, the parameterisation OpenCV and Anipose store.

Both directions are smooth at the identity: the small-angle branch uses Taylor series and the
"double where" trick so that gradients stay finite at exactly zero rotation.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array


def _hat(v: Array) -> Array:
    """(*, 3) -> (*, 3, 3) cross-product matrix, so that hat(a) @ b == cross(a, b)."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = jnp.zeros_like(x)
    return jnp.stack(
        [
            jnp.stack([zero, -z, y], axis=-1),
            jnp.stack([z, zero, -x], axis=-1),
            jnp.stack([-y, x, zero], axis=-1),
        ],
        axis=-2,
    )


def _rodrigues_coefficients(rotvec: Array) -> tuple[Array, Array]:
    """a = sin(t)/t and b = (1 - cos(t))/t^2 for t = |rotvec|, with Taylor series near t = 0
    (the double `where` keeps gradients finite at exactly zero)."""
    theta2 = jnp.sum(rotvec**2, axis=-1)
    small = theta2 < 1e-8
    safe_theta2 = jnp.where(small, 1.0, theta2)
    safe_theta = jnp.sqrt(safe_theta2)
    a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(safe_theta) / safe_theta)
    b = jnp.where(small, 0.5 - theta2 / 24.0, (1.0 - jnp.cos(safe_theta)) / safe_theta2)
    return a, b


def rotation_matrix(rotvec: Array) -> Array:
    """Axis-angle vector (*, 3) -> rotation matrix (*, 3, 3), as `cv2.Rodrigues`.

    R = I + a K + b K^2 with K = hat(rotvec), a = sin(t)/t, b = (1 - cos(t))/t^2, t = |rotvec|.
    """
    rotvec = jnp.asarray(rotvec)
    if rotvec.shape[-1] != 3:
        raise ValueError(f"rotation vectors must have a last axis of 3, got shape {rotvec.shape}")
    a, b = _rodrigues_coefficients(rotvec)
    k = _hat(rotvec)
    eye = jnp.eye(3, dtype=rotvec.dtype)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def rotate(rotvec: Array, points: Array) -> Array:
    """Rotate points (*, 3) by the axis-angle vector rotvec (3,) (Rodrigues' formula, no matrix)."""
    a, b = _rodrigues_coefficients(rotvec)
    cross1 = jnp.cross(rotvec, points)
    cross2 = jnp.cross(rotvec, cross1)
    return points + a * cross1 + b * cross2


def rotation_vector(matrix: Array) -> Array:
    """Rotation matrix (*, 3, 3) -> axis-angle vector (*, 3), the inverse of `rotation_matrix`.

    Uses the quaternion route (Shepperd's method picks the best-conditioned branch), which is
    stable for all angles including 0 and pi.
    """
    m = jnp.asarray(matrix)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be (*, 3, 3), got shape {m.shape}")
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    # Four candidate quaternions (w, x, y, z), each accurate when its leading term is large.
    cands = jnp.stack(
        [
            jnp.stack(
                [
                    1 + trace,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                -1,
            ),
            jnp.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + m00 - m11 - m22,
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            jnp.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 - m00 + m11 - m22,
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                -1,
            ),
            jnp.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 - m00 - m11 + m22,
                ],
                -1,
            ),
        ],
        axis=-2,
    )
    which = jnp.argmax(jnp.stack([trace, m00, m11, m22], -1), axis=-1)
    q = jnp.take_along_axis(cands, which[..., None, None], axis=-2)[..., 0, :]
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    q = jnp.where(q[..., :1] < 0, -q, q)  # w >= 0: angle in [0, pi]
    w, xyz = q[..., 0], q[..., 1:]
    sin_half = jnp.linalg.norm(xyz, axis=-1)
    small = sin_half < 1e-7
    safe_sin = jnp.where(small, 1.0, sin_half)
    angle = 2.0 * jnp.arctan2(sin_half, w)
    scale = jnp.where(small, 2.0 / jnp.where(small, w, 1.0), angle / safe_sin)
    return xyz * scale[..., None]
