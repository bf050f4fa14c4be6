"""Forward mode for every registered op, and the function transforms built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import agrad
from agrad.tape import REGISTRY

from .op_cases import cases

CASES = cases(np.random.default_rng(1))


def test_every_op_has_a_jvp_rule():
    missing = sorted(n for n, p in REGISTRY.items() if "jvp" not in p.rules)
    assert not missing, f"primitives without a forward-mode rule: {missing}"


def _split(host):
    wrt = [i for i, h in enumerate(host) if h.dtype.kind == "f"]
    return wrt


def _bind(f, xs, wrt):
    def g(*sel):
        full = list(xs)
        for i, s in zip(wrt, sel):
            full[i] = s
        return f(*full)

    return g


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_jvp_is_the_adjoint_of_vjp_and_matches_finite_differences(name, on_backend):
    rng = np.random.default_rng(7)
    for f, host, kwargs in CASES[name]:
        xs = [on_backend(h) if h.dtype.kind == "f" else on_backend(h, dtype=None) for h in host]
        wrt = _split(host)
        g = _bind(f, xs, wrt)
        vs_host = [rng.standard_normal(host[i].shape) for i in wrt]
        vs = [on_backend(v) for v in vs_host]
        out, t = agrad.jvp(g, [xs[i] for i in wrt], vs)
        u_host = rng.standard_normal(out.shape)
        _, pullback = agrad.vjp(g, *[xs[i] for i in wrt])
        jtu = pullback(on_backend(u_host))
        lhs = float(np.sum(u_host * t.numpy()))  # <u, J v>
        rhs = sum(float(np.sum(a.numpy() * v)) for a, v in zip(jtu, vs_host))  # <J^T u, v>
        assert math.isclose(lhs, rhs, rel_tol=kwargs.get("rtol", 1e-9), abs_tol=1e-10), (name, lhs, rhs)
        # central differences on the host, in float64
        eps = kwargs.get("eps", 1e-6)
        with agrad.use_backend("numpy"):
            hx = [agrad.tensor(h) for h in host]
            gh = _bind(f, hx, wrt)
            plus = gh(*[agrad.tensor(host[i] + eps * v) for i, v in zip(wrt, vs_host)]).numpy()
            minus = gh(*[agrad.tensor(host[i] - eps * v) for i, v in zip(wrt, vs_host)]).numpy()
        np.testing.assert_allclose(t.numpy(), (plus - minus) / (2 * eps), rtol=kwargs.get("rtol", 1e-5),
                                   atol=kwargs.get("atol", 1e-6), err_msg=name)


def test_seed_function_in_forward_mode(on_backend):
    def f(x):
        a = agrad.exp(x)
        c = a + a ** 2
        return agrad.exp(c) + agrad.sin(c)

    xs = np.array([-1.0, 0.0, 0.5])
    _, t = agrad.jvp(f, (on_backend(xs),), (on_backend(np.ones(3)),))
    e = np.exp(xs)
    np.testing.assert_allclose(t.numpy(), (np.exp(e + e * e) + np.cos(e + e * e)) * (e + 2 * e * e), rtol=1e-12)


def test_jacobian_closed_form_and_modes_agree(on_backend):
    A = np.array([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    x = np.array([0.2, -0.4, 0.7])
    a = on_backend(A)

    def f(x):
        return agrad.tanh(a @ x)

    expected = (1 - np.tanh(A @ x) ** 2)[:, None] * A
    jf = agrad.jacobian(f, mode="forward")(on_backend(x)).numpy()
    jr = agrad.jacobian(f, mode="reverse")(on_backend(x)).numpy()
    ja = agrad.jacobian(f)(on_backend(x)).numpy()
    np.testing.assert_allclose(jf, expected, rtol=1e-12)
    np.testing.assert_allclose(jr, expected, rtol=1e-12)
    np.testing.assert_allclose(ja, expected, rtol=1e-12)


def test_auto_mode_picks_the_cheaper_direction(monkeypatch):
    from agrad import transforms

    calls = {"jvp": 0, "vjp": 0}
    real_jvp, real_vjp = transforms.jvp, transforms.vjp

    def count(kind, fn):
        def wrapped(*a, **k):
            calls[kind] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(transforms, "jvp", count("jvp", real_jvp))
    monkeypatch.setattr(transforms, "vjp", count("vjp", real_vjp))
    wide = lambda x: agrad.concat([x, x * 2.0, x * 3.0])  # noqa: E731  R^2 -> R^6: forward
    agrad.jacobian(wide)(np.array([1.0, 2.0]))
    assert calls == {"jvp": 1, "vjp": 0}  # one jvp, vmapped over the 2 basis vectors
    calls.update(jvp=0, vjp=0)
    narrow = lambda x: agrad.sum(x * x, axis=0)  # noqa: E731  R^(3x2) -> R^2: reverse
    agrad.jacobian(narrow)(np.ones((3, 2)))
    assert calls == {"jvp": 0, "vjp": 1}


def test_hessian_and_hvp(on_backend):
    x = np.array([0.3, -0.7, 1.1])

    def f(x):
        return agrad.sum(agrad.sin(x) * x ** 2) + agrad.sum(x) ** 2

    diag = 2 * np.sin(x) + 4 * x * np.cos(x) - x ** 2 * np.sin(x)
    expected = np.diag(diag) + 2.0
    h = agrad.hessian(f)(on_backend(x)).numpy()
    np.testing.assert_allclose(h, expected, rtol=1e-12)
    v = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(agrad.hvp(f, on_backend(x), on_backend(v)).numpy(), expected @ v, rtol=1e-12)


def test_nested_forward_and_reverse_compositions():
    f = lambda y: agrad.sin(y) * y  # noqa: E731
    x = 0.7
    second = 2 * math.cos(x) - x * math.sin(x)
    one, x64 = agrad.tensor(1.0, dtype="float64"), agrad.tensor(x, dtype="float64")
    jj = agrad.jvp(lambda a: agrad.jvp(f, (a,), (one,))[1], (x64,), (one,))[1]
    assert math.isclose(float(jj), second, rel_tol=1e-12)  # forward over forward
    gj = agrad.grad(lambda a: agrad.jvp(f, (a,), (agrad.ones_like(a),))[1])(agrad.tensor(x, dtype='float64'))
    assert math.isclose(float(gj), second, rel_tol=1e-12)  # reverse over forward
    jg = agrad.jvp(agrad.grad(f), (agrad.tensor(x, dtype='float64'),), (agrad.tensor(1.0, dtype='float64'),))[1]
    assert math.isclose(float(jg), second, rel_tol=1e-12)  # forward over reverse


def test_transforms_take_pytrees():
    params = {"w": np.array([[1.0, 2.0], [3.0, 4.0]]), "b": np.array([0.5, -0.5])}
    batch = (np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 2.0]))

    def loss(p, data):
        x, y = data
        return agrad.mean((x @ p["w"] + p["b"] - y[:, None]) ** 2)

    g = agrad.grad(loss)(params, batch)
    assert set(g) == {"w", "b"} and g["w"].shape == (2, 2) and g["b"].shape == (2,)
    r = batch[0] @ params["w"] + params["b"] - batch[1][:, None]
    np.testing.assert_allclose(g["b"].numpy(), (2 * r / r.size).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(g["w"].numpy(), batch[0].T @ (2 * r / r.size), rtol=1e-12)
    tangent = {"w": np.ones((2, 2)), "b": np.zeros(2)}
    _, t = agrad.jvp(lambda p: loss(p, batch), (params,), (tangent,))
    assert math.isclose(float(t), float(np.sum(g["w"].numpy())), rel_tol=1e-12)
    (gv,) = agrad.vjp(lambda p: loss(p, batch), params)[1](1.0)
    np.testing.assert_allclose(gv["w"].numpy(), g["w"].numpy())


def test_grad_has_aux():
    g, aux = agrad.grad(lambda x: (agrad.sum(x * x), {"norm": agrad.sum(x)}), has_aux=True)(np.array([1.0, 2.0]))
    np.testing.assert_allclose(g.numpy(), [2.0, 4.0])
    assert float(aux["norm"]) == 3.0
    with pytest.raises(TypeError, match="pair"):
        agrad.grad(lambda x: agrad.sum(x), has_aux=True)(np.ones(2))


def test_custom_vjp_is_used_and_checked():
    calls = []

    @agrad.custom_vjp
    def f(x, y):
        return agrad.sin(x) * y

    def f_fwd(x, y):
        return f(x, y), (agrad.cos(x), agrad.sin(x), y)

    def f_bwd(res, g):
        calls.append(1)
        cos_x, sin_x, y = res
        return cos_x * g * y, sin_x * g

    f.defvjp(f_fwd, f_bwd)
    x, y = np.array([0.3, 1.2]), np.array([2.0, -1.0])
    gx, gy = agrad.grad(lambda a, b: agrad.sum(f(a, b)), argnums=(0, 1))(x, y)
    assert calls == [1]  # one bwd call for both arguments
    np.testing.assert_allclose(gx.numpy(), np.cos(x) * y)
    np.testing.assert_allclose(gy.numpy(), np.sin(x))
    agrad.check_grad(lambda a, b: f(a, b), x, y)
    # Forward mode transposes the (linear) backward rule.
    _, t = agrad.jvp(lambda a: f(a, agrad.tensor(y)), (x,), (np.array([1.0, 0.5]),))
    np.testing.assert_allclose(t.numpy(), np.cos(x) * y * [1.0, 0.5])


def test_custom_jvp_rule_is_used_in_forward_mode():
    @agrad.custom_jvp
    def softplus(x):
        return agrad.log1p(agrad.exp(x))

    @softplus.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return softplus(x), t * 2.0  # deliberately not the true derivative: proves the rule is used

    x = np.array([0.5, 2.0])
    _, t = agrad.jvp(softplus, (x,), (np.ones(2),))
    np.testing.assert_allclose(t.numpy(), [2.0, 2.0])
    g = agrad.grad(lambda a: agrad.sum(softplus(a)))(x)  # reverse mode transposes the rule (as JAX)
    np.testing.assert_allclose(g.numpy(), [2.0, 2.0])


def test_stop_gradient_in_both_modes():
    f = lambda x: agrad.sum(x * agrad.stop_gradient(x))  # noqa: E731
    np.testing.assert_allclose(agrad.grad(f)(np.array([3.0])).numpy(), [3.0])
    _, t = agrad.jvp(f, (np.array([3.0]),), (np.array([1.0]),))
    assert float(t) == 3.0


def _saved_bytes(root):
    """Bytes of the arrays the graph keeps for the backward pass."""
    seen, total, stack = set(), 0, [root]
    while stack:
        t = stack.pop()
        if t._prim is None or id(t) in seen:
            continue
        seen.add(id(t))
        for a in t._inputs:
            if hasattr(a, "nbytes") and id(a) not in seen:
                seen.add(id(a))
                total += a.nbytes
        stack.extend(a for a in t._args if isinstance(a, agrad.Tensor))
    return total


def test_checkpoint_saves_memory_on_a_deep_network_and_keeps_gradients():
    rng = np.random.default_rng(0)
    ws = [agrad.tensor(rng.standard_normal((64, 64)) * 0.1, requires_grad=True) for _ in range(24)]
    x = agrad.tensor(rng.standard_normal((256, 64)))

    def block(h, *block_ws):
        for w in block_ws:
            h = agrad.tanh(h @ w)
        return h

    def plain():
        return agrad.sum(block(x, *ws))

    ck = agrad.checkpoint(block)

    def checkpointed():
        h = x
        for k in range(0, 24, 6):
            h = ck(h, *ws[k:k + 6])
        return agrad.sum(h)

    loss_plain, loss_ck = plain(), checkpointed()
    saved_plain, saved_ck = _saved_bytes(loss_plain), _saved_bytes(loss_ck)
    assert saved_ck * 4 < saved_plain, (saved_ck, saved_plain)
    loss_plain.backward()
    grads = [w.grad.numpy() for w in ws]
    for w in ws:
        w.grad = None
    loss_ck.backward()
    for w, g in zip(ws, grads):
        np.testing.assert_allclose(w.grad.numpy(), g, rtol=1e-12)


def test_checkpoint_higher_order_and_forward_mode():
    def block(x, w):
        return agrad.tanh(x @ w)

    ck = agrad.checkpoint(block)
    x = agrad.tensor(np.array([[0.5, -1.0, 0.2]]))
    w = np.random.default_rng(1).standard_normal((3, 2)) * 0.5
    agrad.check_grad(lambda w_: ck(x, w_), w, order=2)
    _, t1 = agrad.jvp(lambda w_: ck(x, w_), (w,), (np.ones((3, 2)),))
    _, t2 = agrad.jvp(lambda w_: block(x, w_), (w,), (np.ones((3, 2)),))
    np.testing.assert_allclose(t1.numpy(), t2.numpy(), rtol=1e-12)


def test_jacobian_and_hessian_of_pytree_arguments():
    params = {"a": np.array([1.0, 2.0]), "b": np.array(0.5)}
    f = lambda p: p["a"] * p["b"] + p["a"] ** 2  # noqa: E731
    for mode in ("forward", "reverse"):
        j = agrad.jacobian(f, mode=mode)(params)
        np.testing.assert_allclose(j["a"].numpy(), np.diag(0.5 + 2 * params["a"]))
        np.testing.assert_allclose(j["b"].numpy(), params["a"])
    h = agrad.hessian(lambda p: agrad.sum(p["a"] ** 3))(params)
    np.testing.assert_allclose(h["a"]["a"].numpy() if isinstance(h["a"], dict) else h["a"].numpy(),
                               np.diag(6 * params["a"]))
