"""Levenberg-Marquardt for many small, independent least-squares problems.

Written for one problem (a parameter vector of a few entries and a residual vector) and
batched with `jax.vmap`: triangulation refinement solves one 3-parameter problem per
(frame, keypoint). Iterations run without gradient; one final Gauss-Newton step carries the
derivative of the optimum (implicit function theorem), so the solution is differentiable with
respect to everything the residual function closes over, at the cost of one step.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array


def robust_weights(sq_residuals: Array, *, loss: str, scale: float) -> Array:
    """IRLS weights rho'(s) for squared residual norms s, for the named robust loss.

    Args:
        sq_residuals: (*,) squared norms of each observation's residual (e.g. px^2).
        loss: "linear" (plain least squares), "huber" or "cauchy".
        scale: where the loss turns robust, in residual units (e.g. px).
    """
    s = sq_residuals / (scale * scale)
    if loss == "linear":
        return jnp.ones_like(s)
    if loss == "huber":
        return jnp.where(s <= 1.0, 1.0, 1.0 / jnp.sqrt(jnp.maximum(s, 1.0)))
    if loss == "cauchy":
        return 1.0 / (1.0 + s)
    raise ValueError(f"unknown robust loss {loss!r}; expected 'linear', 'huber' or 'cauchy'")


def robust_cost(sq_residuals: Array, *, loss: str, scale: float) -> Array:
    """rho(s) summed: the robust cost whose IRLS weights `robust_weights` gives."""
    s = sq_residuals / (scale * scale)
    if loss == "linear":
        rho = s
    elif loss == "huber":
        rho = jnp.where(s <= 1.0, s, 2.0 * jnp.sqrt(jnp.maximum(s, 1.0)) - 1.0)
    elif loss == "cauchy":
        rho = jnp.log1p(s)
    else:
        raise ValueError(f"unknown robust loss {loss!r}; expected 'linear', 'huber' or 'cauchy'")
    return scale * scale * jnp.sum(rho)


def levenberg_marquardt(
    residual_fn: Callable[[Array], Array],
    x0: Array,
    *,
    weights: Array | None = None,
    iterations: int = 10,
    loss: str = "linear",
    loss_scale: float = 1.0,
    initial_damping: float = 1e-3,
) -> Array:
    """Minimise sum_i w_i rho(|r_i(x)|^2) for one small problem.

    Args:
        residual_fn: x (p,) -> residuals (n, d): n observations of dimension d (d = 2 for pixels).
        x0: (p,) starting point.
        weights: (n,) non-negative observation weights (confidence); zero removes one.
        iterations: fixed number of LM iterations (static, so the loop compiles once).
        loss: robust loss applied per observation ("linear", "huber", "cauchy").
        loss_scale: residual norm where the robust loss departs from quadratic.
        initial_damping: starting Marquardt lambda (relative to the diagonal of J^T W J).

    Returns:
        (p,) the minimiser, differentiable through its implicit definition.
    """
    x0 = jnp.asarray(x0)
    n_params = x0.shape[-1]

    def flat_residual(x):
        r = residual_fn(x)
        return r.reshape(r.shape[0], -1)

    r0 = flat_residual(x0)
    w = jnp.ones(r0.shape[0], r0.dtype) if weights is None else jnp.asarray(weights, r0.dtype)

    def normal_equations(x, w_obs):
        r = flat_residual(x)
        jac = jax.jacfwd(flat_residual)(x)  # (n, d, p)
        sq = jnp.sum(r * r, -1)
        wr = w_obs * robust_weights(sq, loss=loss, scale=loss_scale)
        h = jnp.einsum("n,ndp,ndq->pq", wr, jac, jac)
        g = jnp.einsum("n,ndp,nd->p", wr, jac, r)
        return h, g

    def cost(x, w_obs):
        r = flat_residual(x)
        sq = jnp.sum(r * r, -1)
        per = jax.vmap(lambda s: robust_cost(s[None], loss=loss, scale=loss_scale))(sq)
        return jnp.sum(w_obs * per)

    w_ng = jax.lax.stop_gradient(w)

    def step(_, state):
        x, lam = state
        h, g = normal_equations(x, w_ng)
        damped = h + lam * jnp.diag(jnp.diag(h) + 1e-12)
        delta = jnp.linalg.solve(damped, -g)
        x_new = x + delta
        old, new = cost(x, w_ng), cost(x_new, w_ng)
        better = jnp.isfinite(new) & (new < old)
        x = jnp.where(better, x_new, x)
        lam = jnp.where(better, lam * 0.3, lam * 10.0)
        return x, lam

    x_star, _ = jax.lax.fori_loop(
        0, iterations, step, (jax.lax.stop_gradient(x0), jnp.asarray(initial_damping, x0.dtype))
    )
    x_star = jax.lax.stop_gradient(x_star)
    # One Newton step from the converged point: its value is x_star (the gradient is ~0 there) and
    # its derivative is the implicit -H^-1 d(grad)/d(.), exact at an optimum. H is the exact
    # Hessian of the cost (small problems: cheap), falling back to Gauss-Newton if it is not
    # positive definite.
    total = lambda x: 0.5 * cost(x, w)
    g = jax.grad(total)(x_star)
    h_exact = jax.hessian(lambda x: 0.5 * cost(x, w_ng))(x_star)
    h_gn, _ = normal_equations(x_star, w_ng)
    eig_min = jnp.linalg.eigvalsh(h_exact)[0]
    h = jnp.where(jnp.all(jnp.isfinite(h_exact)) & (eig_min > 0), h_exact, h_gn)
    h = jax.lax.stop_gradient(h) + 1e-12 * jnp.eye(n_params, dtype=x0.dtype)
    return x_star - jnp.linalg.solve(h, g)
