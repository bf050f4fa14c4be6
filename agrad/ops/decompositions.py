"""The linalg extension's solvers and decompositions, with reverse and forward rules:
inv, solve, det, slogdet, cholesky, eigh / eigvalsh, svd / svdvals, qr.

The rules are the standard ones (Giles, "Collected matrix derivative results for forward
and reverse mode AD", 2008; Murray 2016 for Cholesky; Townsend 2016 for the SVD), written
with ``xp`` operations so that they run on raw arrays and, recorded, on Tensors (higher
order). Everything is batched over leading axes. Conventions where a derivative does
not exist, as in JAX:

- ``eigh`` and ``cholesky`` differentiate the symmetric part of their input
  ((x + x^T) / 2): their gradients are symmetric.
- eigenvector and singular-vector derivatives divide by differences of eigenvalues
  (squared singular values): repeated ones give inf/nan, never a silent finite value.
- ``det`` and ``inv`` of a singular matrix give inf/nan derivatives.
- a decomposition that returns several arrays is one primitive per array (the
  factorisation runs once per array used): each output's rule is exact by itself.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import backend
from ..batching import rules
from ..tape import is_traced, primitive
from ..tensor import ArrayLike, Tensor


def _mT(xp, a):
    return xp.matrix_transpose(a)


def _col(xp, v):
    """(..., n) -> (..., n, 1)."""
    return xp.expand_dims(v, axis=-1)


def _diag_embed(xp, v):
    """(..., n) -> (..., n, n) with v on the diagonal."""
    n = v.shape[-1]
    return _eye_like(xp, n, v) * xp.expand_dims(v, axis=-2)


def _diag(xp, a):
    """The diagonal of the last two axes of a square (..., n, n)."""
    return xp.sum(a * _eye_like(xp, a.shape[-1], a), axis=-1)


def _eye_like(xp, n, like):
    """An (n, n) identity with ``like``'s dtype, beside it (a constant)."""
    raw = like._data if isinstance(like, Tensor) else like
    rxp = backend.namespace_of((raw,), "linalg")
    eye = backend.create(rxp, "eye", n, dtype=raw.dtype, device=raw.device)
    return Tensor(eye) if isinstance(like, Tensor) else eye


def _sym(xp, a):
    return (a + _mT(xp, a)) * 0.5


def _off_diagonal_inverse(xp, w):
    """F[i, j] = 1 / (w_j - w_i) off the diagonal, 0 on it (w: (..., n))."""
    diff = xp.expand_dims(w, axis=-2) - xp.expand_dims(w, axis=-1)
    eye = _eye_like(xp, w.shape[-1], w)
    return (1.0 - eye) / (diff + eye)


def _square(x: ArrayLike, op: str) -> None:
    s = tuple(x.shape)
    if len(s) < 2 or s[-1] != s[-2]:
        raise ValueError(f"agrad.linalg.{op}: needs square matrices in the last two axes, got shape {s}")


# --------------------------------------------------------------------------- inv, solve, det, slogdet


inv_p = primitive(
    "inv", lambda xp, a: xp.linalg.inv(a),
    vjp=[lambda xp, g, ans, a: -_mT(xp, ans) @ g @ _mT(xp, ans)],
    jvp=[lambda xp, t, ans, a: -ans @ t @ ans],
    batch=rules.matrix_op,
)


def inv(x: ArrayLike, /) -> Tensor:
    """The inverse of each square matrix."""
    _square(x, "inv")
    return inv_p(x)


def _solve_vjp(xp, g, ans, wanted, a, b, vector):
    # Both cotangents share the solve with a^T: one rule for all the arguments.
    gb = xp.linalg.solve(_mT(xp, a), _col(xp, g) if vector else g)
    x = _col(xp, ans) if vector else ans
    ga = -gb @ _mT(xp, x) if wanted[0] else None
    return [ga, (gb[..., 0] if vector else gb) if wanted[1] else None]


def _solve_jvp(xp, tangents, ans, a, b, vector):
    ta, tb = tangents
    x = _col(xp, ans) if vector else ans
    rhs = None
    if tb is not None:
        rhs = _col(xp, tb) if vector else tb
    if ta is not None:
        rhs = -ta @ x if rhs is None else rhs - ta @ x
    out = xp.linalg.solve(a, rhs)
    return out[..., 0] if vector else out


def _solve_batch(xp, dims, a, b, vector):
    """Batching of solve: a vector right-hand side becomes a one-column matrix (the
    examples then broadcast as stacks), leading axes padded to one rank."""
    da, db = dims
    if vector:
        b = xp.expand_dims(b, axis=-1)  # (B, M) -> (B, M, 1), or (M,) -> (M, 1)
    out, d = rules.leading_batch(solve_p)(xp, dims, a, b, vector=False)
    return (xp.squeeze(out, axis=-1) if vector else out), d


solve_p = primitive("solve", lambda xp, a, b, vector: xp.linalg.solve(a, b), vjp=_solve_vjp, jvp=_solve_jvp,
                    batch=_solve_batch)


def solve(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """X with x1 @ X = x2, for square x1 (x2 a matrix (..., M, K) or a vector (M,))."""
    _square(x1, "solve")
    vector = len(x2.shape) == 1
    return solve_p(x1, x2, vector=vector)


def _det_vjp(xp, g, ans, a):
    return xp.expand_dims(xp.expand_dims(g * ans, axis=-1), axis=-1) * _mT(xp, xp.linalg.inv(a))


det_p = primitive("det", lambda xp, a: xp.linalg.det(a), vjp=[_det_vjp],
                  jvp=[lambda xp, t, ans, a: ans * xp.sum(_diag(xp, xp.linalg.solve(a, t)), axis=-1)],
                  batch=rules.matrix_op)


def det(x: ArrayLike, /) -> Tensor:
    """The determinant of each square matrix."""
    _square(x, "det")
    return det_p(x)


logabsdet_p = primitive(
    "logabsdet", lambda xp, a: xp.linalg.slogdet(a)[1],
    vjp=[lambda xp, g, ans, a: xp.expand_dims(xp.expand_dims(g, axis=-1), axis=-1) * _mT(xp, xp.linalg.inv(a))],
    jvp=[lambda xp, t, ans, a: xp.sum(_diag(xp, xp.linalg.solve(a, t)), axis=-1)],
    batch=rules.matrix_op,
)


class SlogdetResult(NamedTuple):
    sign: Tensor
    logabsdet: Tensor


def slogdet(x: ArrayLike, /) -> SlogdetResult:
    """(sign, log|det|) of each square matrix; the sign carries no gradient."""
    _square(x, "slogdet")
    raw = x._data if isinstance(x, Tensor) else x
    xp = backend.namespace_of((raw,), "slogdet")
    return SlogdetResult(Tensor(xp.linalg.slogdet(raw)[0]), logabsdet_p(x))


# --------------------------------------------------------------------------- cholesky


def _phi(xp, a):
    """The lower triangle with the diagonal halved."""
    n = a.shape[-1]
    raw = a._data if isinstance(a, Tensor) else a
    rxp = backend.namespace_of((raw,), "cholesky")
    idx = rxp.arange(n, device=raw.device)
    lower = rxp.astype(rxp.expand_dims(idx, axis=1) >= rxp.expand_dims(idx, axis=0), raw.dtype)
    weight = lower - 0.5 * backend.create(rxp, "eye", n, dtype=raw.dtype, device=raw.device)
    return a * (Tensor(weight) if isinstance(a, Tensor) else weight)


def _cholesky_vjp(xp, g, ans, a):
    # Murray (2016): S = L^-T phi(L^T G) L^-1, symmetrised.
    p = _phi(xp, _mT(xp, ans) @ g)
    s = xp.linalg.solve(_mT(xp, ans), p)
    s = _mT(xp, xp.linalg.solve(_mT(xp, ans), _mT(xp, s)))
    return _sym(xp, s)


def _cholesky_jvp(xp, t, ans, a):
    m = xp.linalg.solve(ans, _sym(xp, t))
    m = _mT(xp, xp.linalg.solve(ans, _mT(xp, m)))
    return ans @ _phi(xp, m)


cholesky_p = primitive("cholesky", lambda xp, a: xp.linalg.cholesky(_sym(xp, a)), vjp=[_cholesky_vjp],
                       jvp=[_cholesky_jvp], batch=rules.matrix_op)


def cholesky(x: ArrayLike, /, *, upper: bool = False) -> Tensor:
    """The Cholesky factor L (L @ L^T = x) of each symmetric positive-definite matrix, or
    U = L^T with ``upper=True``. Differentiated as a function of (x + x^T) / 2."""
    from .linalg import matrix_transpose  # (late: linalg re-exports this module's functions)

    _square(x, "cholesky")
    low = cholesky_p(x)
    return matrix_transpose(low) if upper else low


# --------------------------------------------------------------------------- eigh


def _eigvalsh_vjp(xp, g, ans, a):
    v = xp.linalg.eigh(_sym(xp, a))[1]
    return v @ _diag_embed(xp, g) @ _mT(xp, v)


def _eigvalsh_jvp(xp, t, ans, a):
    v = xp.linalg.eigh(_sym(xp, a))[1]
    return _diag(xp, _mT(xp, v) @ _sym(xp, t) @ v)


eigvalsh_p = primitive("eigvalsh", lambda xp, a: xp.linalg.eigvalsh(_sym(xp, a)), vjp=[_eigvalsh_vjp],
                       jvp=[_eigvalsh_jvp], batch=rules.matrix_op)


def _eigvecs_vjp(xp, g, ans, a):
    w = xp.linalg.eigvalsh(_sym(xp, a))
    f = _off_diagonal_inverse(xp, w)
    return _sym(xp, ans @ (f * (_mT(xp, ans) @ g)) @ _mT(xp, ans))


def _eigvecs_jvp(xp, t, ans, a):
    w = xp.linalg.eigvalsh(_sym(xp, a))
    f = _off_diagonal_inverse(xp, w)
    return ans @ (f * (_mT(xp, ans) @ _sym(xp, t) @ ans))


eigh_vectors_p = primitive("eigh_vectors", lambda xp, a: xp.linalg.eigh(_sym(xp, a))[1], vjp=[_eigvecs_vjp],
                           jvp=[_eigvecs_jvp], batch=rules.matrix_op)


def _untraced(x: ArrayLike, op: str) -> tuple[object, object] | None:
    """(namespace, raw array) when nobody differentiates ``x``: then the backend factorises
    once for every output (complex input included)."""
    if is_traced(x):
        return None
    raw = x._data if isinstance(x, Tensor) else x
    return backend.namespace_of((raw,), op), raw


class EighResult(NamedTuple):
    eigenvalues: Tensor
    eigenvectors: Tensor


def eigh(x: ArrayLike, /) -> EighResult:
    """Eigenvalues (ascending) and eigenvectors (columns) of each symmetric matrix.
    Differentiated as a function of (x + x^T) / 2; repeated eigenvalues make the
    eigenvector derivatives inf/nan."""
    _square(x, "eigh")
    plain = _untraced(x, "eigh")
    if plain is not None:
        xp, raw = plain
        w, v = xp.linalg.eigh(_sym(xp, raw))  # (the same function as the differentiable path)
        return EighResult(Tensor(w), Tensor(v))
    return EighResult(eigvalsh_p(x), eigh_vectors_p(x))


def eigvalsh(x: ArrayLike, /) -> Tensor:
    """The eigenvalues (ascending) of each symmetric matrix."""
    _square(x, "eigvalsh")
    return eigvalsh_p(x)


# --------------------------------------------------------------------------- svd


def _svd_parts(xp, a):
    u, s, vh = xp.linalg.svd(a, full_matrices=False)
    return u, s, _mT(xp, vh)


def _svd_f(xp, s):
    return _off_diagonal_inverse(xp, s * s)


def _svdvals_vjp(xp, g, ans, a):
    u, s, v = _svd_parts(xp, a)
    return u @ _diag_embed(xp, g) @ _mT(xp, v)


def _svdvals_jvp(xp, t, ans, a):
    u, s, v = _svd_parts(xp, a)
    return _diag(xp, _mT(xp, u) @ t @ v)


svdvals_p = primitive("svdvals", lambda xp, a: xp.linalg.svdvals(a), vjp=[_svdvals_vjp], jvp=[_svdvals_jvp],
                      batch=rules.matrix_op)


def _svd_u_vjp(xp, g, ans, a):
    # Townsend (2016), the U part: U [F o (U^T G - G^T U)] S V^T + (I - U U^T) G S^-1 V^T.
    u, s, v = _svd_parts(xp, a)
    f = _svd_f(xp, s)
    ut_g = _mT(xp, u) @ g
    inner = (f * (ut_g - _mT(xp, ut_g))) * xp.expand_dims(s, axis=-2)
    rest = (g - u @ ut_g) / xp.expand_dims(s, axis=-2)
    return (u @ inner + rest) @ _mT(xp, v)


def _svd_v_vjp(xp, gv, a):
    u, s, v = _svd_parts(xp, a)
    f = _svd_f(xp, s)
    vt_g = _mT(xp, v) @ gv
    inner = xp.expand_dims(s, axis=-1) * (f * (vt_g - _mT(xp, vt_g)))
    rest = _mT(xp, gv - v @ vt_g) / xp.expand_dims(s, axis=-1)
    return u @ (inner @ _mT(xp, v) + rest)


def _svd_du_dv(xp, t, a):
    """Forward mode of the reduced SVD: (dU, dV) for the tangent t."""
    u, s, v = _svd_parts(xp, a)
    f = _svd_f(xp, s)
    p = _mT(xp, u) @ t @ v  # (k, k)
    s_row, s_col = xp.expand_dims(s, axis=-2), xp.expand_dims(s, axis=-1)
    du = u @ (f * (p * s_row + s_col * _mT(xp, p))) + (t @ v - u @ p) / s_row
    dv = v @ (f * (s_col * p + _mT(xp, p) * s_row)) + (_mT(xp, t) @ u - v @ _mT(xp, p)) / s_row
    return du, dv


svd_u_p = primitive("svd_u", lambda xp, a: xp.linalg.svd(a, full_matrices=False)[0], vjp=[_svd_u_vjp],
                    jvp=[lambda xp, t, ans, a: _svd_du_dv(xp, t, a)[0]], batch=rules.matrix_op)
svd_vh_p = primitive(
    "svd_vh", lambda xp, a: xp.linalg.svd(a, full_matrices=False)[2],
    vjp=[lambda xp, g, ans, a: _svd_v_vjp(xp, _mT(xp, g), a)],
    jvp=[lambda xp, t, ans, a: _mT(xp, _svd_du_dv(xp, t, a)[1])],
    batch=rules.matrix_op,
)


class SVDResult(NamedTuple):
    U: Tensor
    S: Tensor
    Vh: Tensor


def svd(x: ArrayLike, /, *, full_matrices: bool = True) -> SVDResult:
    """U, S, Vh with x = U @ diag(S) @ Vh. The derivative is defined for the reduced
    factors (``full_matrices=False``, or square x); repeated or zero singular values make
    the vectors' derivatives inf/nan."""
    if full_matrices and x.shape[-1] != x.shape[-2]:
        raw = x._data if isinstance(x, Tensor) else x
        if isinstance(x, Tensor) and (x.requires_grad or x._tangents is not None):
            raise ValueError("agrad.linalg.svd: the full (non-square) U or Vh has no unique derivative; pass "
                             "full_matrices=False")
        xp = backend.namespace_of((raw,), "svd")
        u, s, vh = xp.linalg.svd(raw, full_matrices=True)
        return SVDResult(Tensor(u), Tensor(s), Tensor(vh))
    plain = _untraced(x, "svd")
    if plain is not None:
        xp, raw = plain
        u, s, vh = xp.linalg.svd(raw, full_matrices=full_matrices)
        return SVDResult(Tensor(u), Tensor(s), Tensor(vh))
    return SVDResult(svd_u_p(x), svdvals_p(x), svd_vh_p(x))


def svdvals(x: ArrayLike, /) -> Tensor:
    """The singular values, descending."""
    return svdvals_p(x)


# --------------------------------------------------------------------------- qr


def _strict_lower(xp, m):
    return _phi(xp, m) - 0.5 * _diag_embed(xp, _diag(xp, m))


def _copyltu(xp, m):
    """The lower triangle mirrored onto the upper one (the diagonal kept)."""
    lower = _strict_lower(xp, m)
    return lower + _mT(xp, lower) + _diag_embed(xp, _diag(xp, m))


def _r_inv_t(xp, x, r):
    """x R^-T, by a solve."""
    return _mT(xp, xp.linalg.solve(r, _mT(xp, x)))


def _qr_q_vjp(xp, g, ans, a):
    q, r = xp.linalg.qr(a)
    m = -_mT(xp, g) @ q
    return _r_inv_t(xp, g + q @ _copyltu(xp, m), r)


def _qr_r_vjp(xp, g, ans, a):
    q, r = xp.linalg.qr(a)
    m = r @ _mT(xp, g)
    return _r_inv_t(xp, q @ _copyltu(xp, m), r)


def _qr_dq_dr(xp, t, a):
    q, r = xp.linalg.qr(a)
    c = _mT(xp, xp.linalg.solve(_mT(xp, r), _mT(xp, _mT(xp, q) @ t)))  # Q^T t R^-1
    low = _strict_lower(xp, c)
    omega = low - _mT(xp, low)
    dr = (c - omega) @ r
    dq = q @ omega + _mT(xp, xp.linalg.solve(_mT(xp, r), _mT(xp, t - q @ (_mT(xp, q) @ t))))
    return dq, dr


qr_q_p = primitive("qr_q", lambda xp, a: xp.linalg.qr(a)[0], vjp=[_qr_q_vjp],
                   jvp=[lambda xp, t, ans, a: _qr_dq_dr(xp, t, a)[0]], batch=rules.matrix_op)
qr_r_p = primitive("qr_r", lambda xp, a: xp.linalg.qr(a)[1], vjp=[_qr_r_vjp],
                   jvp=[lambda xp, t, ans, a: _qr_dq_dr(xp, t, a)[1]], batch=rules.matrix_op)


class QRResult(NamedTuple):
    Q: Tensor
    R: Tensor


def qr(x: ArrayLike, /, *, mode: str = "reduced") -> QRResult:
    """Q, R with x = Q @ R (Q orthonormal columns, R upper triangular). Differentiable for
    tall or square x (M >= N) in 'reduced' mode."""
    if mode not in ("reduced", "complete"):
        raise ValueError(f"agrad.linalg.qr: mode must be 'reduced' or 'complete', got {mode!r}")
    m, n = x.shape[-2], x.shape[-1]
    traced = isinstance(x, Tensor) and (x.requires_grad or x._tangents is not None)
    if traced and (m < n or (mode == "complete" and m != n)):
        raise ValueError(f"agrad.linalg.qr: differentiable for M >= N in 'reduced' mode; got shape {tuple(x.shape)} "
                         f"and mode {mode!r}")
    plain = _untraced(x, "qr")
    if plain is not None:
        xp, raw = plain
        q, r = xp.linalg.qr(raw, mode=mode)
        return QRResult(Tensor(q), Tensor(r))
    return QRResult(qr_q_p(x), qr_r_p(x))
