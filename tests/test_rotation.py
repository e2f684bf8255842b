"""Axis-angle rotations: agreement with cv2.Rodrigues, inversion, and gradients at the identity."""

from __future__ import annotations

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpose.geometry.rotation import rotate, rotation_matrix, rotation_vector


def _random_rotvecs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Axis-angle vectors with angles spread over [0, pi), plus the special cases."""
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    angles = rng.uniform(0.0, np.pi, size=(n, 1))
    special = [
        np.zeros(3),
        np.array([1e-12, 0.0, 0.0]),
        np.array([0.0, -3e-9, 2e-9]),
        np.array([1e-5, 2e-5, -1e-5]),
        np.array([0.0, 0.0, np.pi - 1e-3]),
        np.array([np.pi - 1e-7, 0.0, 0.0]),
        (np.pi - 1e-9) * np.array([1.0, -2.0, 2.0]) / 3.0,
        (np.pi - 1e-5) * np.array([0.6, 0.0, -0.8]),
    ]
    return np.concatenate([np.stack(special), axes * angles])


def _cv2_rodrigues(v: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(v, np.float64).reshape(3, 1))[0]


def test_rotation_matrix_agrees_with_cv2_rodrigues():
    rng = np.random.default_rng(0)
    vecs = _random_rotvecs(rng, 64)
    expected = np.stack([_cv2_rodrigues(v) for v in vecs])
    with jax.enable_x64(True):
        got = np.asarray(rotation_matrix(jnp.asarray(vecs)))
    err = np.abs(got - expected).max()
    print(f"\nrotation_matrix vs cv2.Rodrigues, float64: max |dR| = {err:.2e}")
    assert err < 1e-14
    # float32 (JAX's default) is still accurate to a few ulp
    got32 = np.asarray(rotation_matrix(jnp.asarray(vecs, jnp.float32)))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, atol=1e-6)


def test_rotation_matrix_is_orthonormal_with_det_one():
    rng = np.random.default_rng(1)
    vecs = np.concatenate([_random_rotvecs(rng, 32), rng.normal(scale=5.0, size=(16, 3))])
    with jax.enable_x64(True):
        r = np.asarray(rotation_matrix(jnp.asarray(vecs)))
    eye = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(np.swapaxes(r, -1, -2) @ r, eye, atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-14)


def test_rotation_vector_inverts_rotation_matrix():
    rng = np.random.default_rng(2)
    vecs = _random_rotvecs(rng, 64)
    with jax.enable_x64(True):
        back = np.asarray(rotation_vector(rotation_matrix(jnp.asarray(vecs))))
    # Inverse to rounding for angles in [0, pi): relative accuracy even at 1e-12 rad, and
    # absolute accuracy a hair below pi, where the trace no longer resolves the angle.
    err = np.linalg.norm(back - vecs, axis=-1)
    scale = np.maximum(np.linalg.norm(vecs, axis=-1), 1e-300)
    print(f"\nrotation_vector(rotation_matrix(v)) - v: max abs {err.max():.2e}")
    tiny = np.linalg.norm(vecs, axis=-1) < 1e-4
    assert np.all(err[tiny] <= 1e-12 * scale[tiny] + 1e-30)
    assert err[~tiny].max() < 1e-12
    near_pi = np.linalg.norm(vecs, axis=-1) > np.pi - 1e-4
    # and against OpenCV's inverse
    # (OpenCV rounds angles below ~1e-8 rad to zero and loses up to 1e-7 rad near pi, where
    # ours stays within 1e-12, so compare in between)
    cv = np.stack([cv2.Rodrigues(_cv2_rodrigues(v))[0].ravel() for v in vecs])
    assert np.abs(back - cv)[~tiny & ~near_pi].max() < 1e-12


def test_rotation_vector_at_exactly_pi_gives_the_same_rotation():
    # At angle pi, v and -v are the same rotation: compare matrices, and check |v| = pi.
    axes = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    vecs = np.pi * axes / np.linalg.norm(axes, axis=-1, keepdims=True)
    with jax.enable_x64(True):
        r = rotation_matrix(jnp.asarray(vecs))
        v = rotation_vector(r)
        np.testing.assert_allclose(np.asarray(rotation_matrix(v)), np.asarray(r), atol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(v), axis=-1), np.pi, atol=1e-14)
    np.testing.assert_allclose(np.abs(np.asarray(v)), np.abs(vecs), atol=1e-14)


def test_rotate_matches_matrix_product():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(10, 3))
    with jax.enable_x64(True):
        for v in _random_rotvecs(rng, 6):
            v = jnp.asarray(v)
            expected = pts @ np.asarray(rotation_matrix(v)).T
            np.testing.assert_allclose(
                np.asarray(rotate(v, jnp.asarray(pts))), expected, atol=1e-14
            )


def test_gradient_at_zero_rotation_is_finite_and_correct():
    # dR/dv_i at v = 0 is hat(e_i): the generators of so(3). NaN here would poison any
    # optimiser started at the identity.
    with jax.enable_x64(True):
        zero = jnp.zeros(3)
        jac_pair = jax.jit(
            lambda v: (jax.jacfwd(rotation_matrix)(v), jax.jacrev(rotation_matrix)(v))
        )
        for jac in jac_pair(zero):
            jac = np.asarray(jac)  # (3, 3, 3): [row, col, component]
            assert np.all(np.isfinite(jac))
            for i in range(3):
                hat = np.cross(np.eye(3)[i], np.eye(3)).T  # column j = e_i x e_j
                np.testing.assert_allclose(jac[..., i], hat, atol=1e-15)
        # the inverse: d rotation_vector / dR at the identity is finite too
        jac_inv = np.asarray(jax.jit(jax.jacfwd(rotation_vector))(jnp.eye(3)))
        assert np.all(np.isfinite(jac_inv))
        # and the composition is the identity map to first order
        comp = jax.jit(jax.jacfwd(lambda v: rotation_vector(rotation_matrix(v))))(zero)
        np.testing.assert_allclose(np.asarray(comp), np.eye(3), atol=1e-12)


@pytest.mark.parametrize(
    "v", [[0.3, -0.2, 0.9], [1e-6, 2e-6, -1e-6], [0.0, 0.0, 0.0], [2.0, 1.5, -1.0]]
)
def test_check_grads_float64(v):
    with jax.enable_x64(True):
        v = jnp.asarray(v, jnp.float64)
        kw = dict(order=1, modes=("fwd", "rev"))
        check_grads(jax.jit(rotation_matrix), (v,), **kw)
        check_grads(jax.jit(rotate), (v, jnp.array([0.5, -1.0, 2.0])), **kw)
        if float(jnp.linalg.norm(v)) > 1e-3:  # away from the small-angle switch of the FD step
            r = rotation_matrix(v)
            # perturb along the manifold, R exp(hat(w)), so finite differences stay on SO(3)
            f = lambda w: rotation_vector(r @ rotation_matrix(w))
            check_grads(jax.jit(f), (jnp.zeros(3),), **kw)


@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_batch_shapes(shape):
    rng = np.random.default_rng(4)
    vecs = rng.normal(size=(*shape, 3))
    with jax.enable_x64(True):
        r = rotation_matrix(jnp.asarray(vecs))
        v = rotation_vector(r)
        r_back = np.asarray(rotation_matrix(v))
    assert r.shape == (*shape, 3, 3)
    assert v.shape == (*shape, 3)
    flat = vecs.reshape(-1, 3)
    expected = np.stack([_cv2_rodrigues(x) for x in flat]).reshape(*shape, 3, 3)
    np.testing.assert_allclose(np.asarray(r), expected, atol=1e-14)
    np.testing.assert_allclose(r_back, expected, atol=1e-14)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="last axis of 3"):
        rotation_matrix(jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(\*, 3, 3\)"):
        rotation_vector(jnp.zeros((4, 3)))
