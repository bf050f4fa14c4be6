"""In-place updates that differentiate (agrad.inplace): augmented and item assignment,
views and version counters, on every backend, in both modes and at second order.

The reference for each rule is PyTorch's behaviour; the reference for each derivative
is a central difference of the same program in float64 on the backend under test.
"""

from __future__ import annotations

import numpy as np
import pytest

import agrad
from agrad import backend as B
from agrad.tape import REGISTRY

from . import checks
from .op_cases import cases


def check_both_modes(f, *xs):
    """Reverse mode to second order, forward mode and the two paired (tests/checks.py)."""
    checks.check_both_modes(f, *xs, order=2, rtol=1e-6)


def _host(x):
    return x.numpy() if isinstance(x, agrad.Tensor) else np.asarray(x)


# --------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("write", ["slice", "iadd", "ellipsis", "row"])
def test_building_an_array_by_assignment_differentiates(write, on_backend, rng):
    def f(x):
        z = agrad.zeros((3, 3), dtype=x.dtype, device=x.device)
        if write == "slice":
            z[:2, :2] = x
        elif write == "iadd":
            z[:2, :2] += x
        elif write == "ellipsis":
            w = z[:2, :2]
            w[...] = x
        else:
            z[0, :2] = x[0]
            z[2, 1:] = x[1]
        return agrad.sum(z * z * 2.0)

    x = on_backend(rng.standard_normal((2, 2)))
    g = agrad.grad(f)(x)
    np.testing.assert_allclose(g.numpy(), 4.0 * x.numpy())
    check_both_modes(f, x)


def test_the_same_tensor_stands_for_the_updated_value(on_backend, rng):
    x = on_backend(rng.standard_normal(4))
    x.requires_grad_()
    z = x * 2.0
    before = z
    z += x  # z = 3 x
    assert z is before and not z.is_leaf
    agrad.sum(z * z).backward()
    np.testing.assert_allclose(x.grad.numpy(), 18.0 * x.numpy())


def test_uses_recorded_before_an_update_keep_the_old_value(on_backend, rng):
    # PyTorch gives 4 and 1 here: c was computed from a before the update.
    x = on_backend(rng.standard_normal(3))
    w = on_backend(rng.standard_normal(3))
    x.requires_grad_()
    w.requires_grad_()
    a = x * 2.0
    c = a + 1.0
    a += w
    agrad.sum(c + a).backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0] * 3)
    np.testing.assert_allclose(w.grad.numpy(), [1.0] * 3)


def test_a_constant_that_becomes_differentiable_keeps_its_earlier_uses_constant(on_backend, rng):
    x = on_backend(rng.standard_normal(3))
    x.requires_grad_()
    z = agrad.zeros(3, dtype=x.dtype, device=x.device)
    c = z + 1.0  # z was a constant here
    z[1:] = x[:2]
    agrad.sum(c * x + z).backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 1.0])


def test_an_update_that_reads_its_target_keeps_a_copy(on_backend, rng):
    x = on_backend(rng.standard_normal(3))
    y = on_backend(rng.standard_normal(3))
    x.requires_grad_()
    y.requires_grad_()
    a = x * 1.0
    a *= y  # multiply's derivative in y reads the old a: PyTorch keeps it too
    a **= 2.0
    agrad.sum(a).backward()
    xv, yv = x.numpy(), y.numpy()
    np.testing.assert_allclose(x.grad.numpy(), 2 * xv * yv * yv)
    np.testing.assert_allclose(y.grad.numpy(), 2 * xv * xv * yv)


def test_an_update_of_its_own_alias(on_backend, rng):
    def f(x):
        z = x * 1.0
        z[1] *= z[0]  # the value is a view of the memory written
        z[0] = z[2]
        return z

    check_both_modes(f, on_backend(rng.standard_normal((3, 2))))


# --------------------------------------------------------------------------- indices


@pytest.mark.parametrize("key", [
    (slice(None, None, -2),), (Ellipsis, 1), (None, 1), (1, None, slice(1, None)), (-1,),
    (slice(3, 0, -1), slice(None, None, 2)), (),
])
def test_every_basic_index(key, on_backend, rng):
    x = on_backend(rng.standard_normal((4, 3)))
    ref = np.zeros((4, 3))
    region = ref[key].shape
    v = on_backend(rng.standard_normal(region))

    def f(x, v):
        z = x * 1.0
        z[key] = v
        return z * x

    expected = x.numpy().copy()
    expected[key] = v.numpy()
    np.testing.assert_allclose(f(x, v).numpy(), expected * x.numpy())
    check_both_modes(f, x, v)


def _ints(values, like):
    return agrad.asarray(values, dtype=agrad.int64, device=like.device)


def test_integer_arrays_and_masks(on_backend, rng):
    def f(x, v):
        idx, rows, cols = _ints([2, 0, 3], x), _ints([0, 1, 1], x), _ints([2, 0, 1], x)
        z = x * 1.0
        z[idx] = v * 3.0  # a row index: whole rows
        z[rows, cols] = v[:, 2]
        z[z > 0.5] = 0.25  # a boolean mask (on values the derivative can't change)
        z[:, idx[:2]] -= v[:2, 1]  # an integer array after a slice, updated
        return z

    check_both_modes(f, on_backend(rng.standard_normal((4, 3))), on_backend(rng.standard_normal((3, 3))))


def test_repeated_indices_keep_the_last_write_and_its_derivative(on_backend, rng):
    v = on_backend(rng.standard_normal(5))

    def f(v):
        z = agrad.zeros(4, dtype=v.dtype, device=v.device)
        z[_ints([1, 0, 1, 1, 3], v)] = v
        return z

    out = f(v).numpy()
    vh = v.numpy()
    np.testing.assert_array_equal(out, [vh[1], vh[3], 0.0, vh[4]])  # the last of each repeated index
    g = agrad.grad(lambda v: agrad.sum(f(v) * agrad.arange(1.0, 5.0, dtype=v.dtype, device=v.device)))(v)
    np.testing.assert_array_equal(g.numpy(), [0.0, 1.0, 0.0, 2.0, 4.0])  # only the kept values count
    check_both_modes(f, v)


def test_zero_dimensional_boolean_index(on_backend, rng):
    def f(x):
        z = x * 1.0
        z[agrad.asarray(True, device=x.device)] = x[0] * 2.0
        z[agrad.asarray(False, device=x.device)] = 7.0
        return z

    check_both_modes(f, on_backend(rng.standard_normal((2, 3))))


def test_values_are_cast_and_broadcast(on_backend, rng):
    x = on_backend(rng.standard_normal((2, 3)), dtype="float32")
    v = on_backend(rng.standard_normal(3))  # float64 into float32: cast, as NumPy does
    x.requires_grad_()
    v.requires_grad_()
    z = x * 1.0
    z[:] = v
    z += v  # float64 into float32 in place: NumPy's same_kind cast
    assert z.dtype == agrad.float32
    agrad.sum(z).backward()
    np.testing.assert_allclose(v.grad.numpy(), [4.0] * 3)
    assert v.grad.dtype == agrad.float64 and x.grad is None  # z[:] = v overwrote all of x's part
    i = on_backend(np.array([1, 2]), dtype=None)
    with pytest.raises(TypeError):
        i += v[:2]  # a float into an integer array (NumPy: not the same kind; the standard: no promotion)
    with pytest.raises(ValueError, match="shape"):
        z += agrad.ones((4, 2, 3), dtype=z.dtype, device=z.device)  # broadcasting may not grow z
    with pytest.raises(ValueError, match="broadcast"):
        z[0] = v[:2]


# --------------------------------------------------------------------------- views


def test_an_update_of_a_view_reaches_its_base(on_backend, rng):
    def f(x, y):
        b = x * 1.0
        v = b[1:3]  # a view
        v *= y  # b sees it, values and derivative
        w = agrad.reshape(b, (2, 2))[0]  # a view of a view
        w += y[0]
        t = b.mT if b.ndim == 2 else agrad.expand_dims(b, axis=0).mT  # transposed view
        t[0, 0] = y[1] * y[1]
        return b * agrad.sum(v)

    check_both_modes(f, on_backend(rng.standard_normal(4)), on_backend(rng.standard_normal(2)))


def test_a_view_taken_before_an_update_of_its_base_sees_it(on_backend, rng):
    def f(x, y):
        b = x * 2.0
        v = b[:2]  # taken first
        u = agrad.flip(b, axis=0)  # another view
        b += y  # an update of the base
        b[3] = y[0] * y[1]
        return agrad.concat([v * v, u])

    check_both_modes(f, on_backend(rng.standard_normal(4)), on_backend(rng.standard_normal(4)))


def test_a_view_of_a_constant_makes_its_base_differentiable(on_backend, rng):
    x = on_backend(rng.standard_normal(3))
    x.requires_grad_()
    z = agrad.zeros((2, 3), dtype=x.dtype, device=x.device)
    row = z[1]
    row[...] = x  # PyTorch: z.requires_grad becomes True (CopySlices)
    assert z.requires_grad and row.requires_grad
    agrad.sum(z * z).backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())


def test_an_update_under_no_grad_through_a_view_is_caught(on_backend, rng):
    # The case: a graph that saved w, then w changed through a view.
    w = on_backend(rng.standard_normal(4))
    x = on_backend(rng.standard_normal(4))
    x.requires_grad_()
    y = agrad.sum(w * x)
    v = w[0:2]
    with agrad.no_grad():
        v += 10.0
    with pytest.raises(RuntimeError, match=r"argument 0 of multiply.*updated in place by `\+=`"):
        y.backward()


def test_a_detached_alias_shares_the_version(on_backend, rng):
    x = on_backend(rng.standard_normal(3))
    x.requires_grad_()
    a = agrad.exp(x)
    d = a.detach()
    d[0] = 1.0  # changes a's memory: exp's derivative reads it
    with pytest.raises(RuntimeError, match="the output of exp.*item assignment"):
        agrad.sum(a).backward()


def test_tensors_on_one_array_share_one_version(on_backend, rng):
    w = on_backend(rng.standard_normal(3))
    x = on_backend(rng.standard_normal(3))
    x.requires_grad_()
    for alias in (lambda: agrad.asarray(w, dtype=w.dtype), lambda: agrad.Tensor(w), lambda: w.detach(),
                  lambda: agrad.stop_gradient(w)):
        y = agrad.sum(w * x)
        a = alias()
        with agrad.no_grad():
            a += 1.0
        with pytest.raises(RuntimeError, match="updated in place"):
            y.backward()


def test_updates_that_overwrite_saved_values_are_errors_as_in_pytorch(on_backend, rng):
    x = on_backend(rng.standard_normal(3))
    x.requires_grad_()
    e = agrad.exp(x)
    e += 1.0
    with pytest.raises(RuntimeError, match="output of exp"):
        agrad.sum(e).backward()
    b = x * 1.0
    s = agrad.sin(b[1:])
    b[2] = 0.0
    with pytest.raises(RuntimeError, match="argument 0 of sin"):
        agrad.sum(s).backward()
    # ... and no error where no derivative reads them
    c = x * 1.0
    m = c * 3.0  # 3.0 is a constant: multiply's derivative in c reads only the 3.0
    c += 1.0
    x.grad = None
    agrad.sum(m).backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0] * 3)


def test_leaves_and_their_views_are_refused_while_recording(on_backend, rng):
    w = on_backend(rng.standard_normal(3))
    w.requires_grad_()
    with pytest.raises(RuntimeError, match="leaf that requires a gradient"):
        w += 1.0
    with pytest.raises(RuntimeError, match="view of a leaf"):
        w[1:][0] = 1.0
    with agrad.no_grad():
        w[1:][0] = 5.0  # how optimizers and initialisers work
        w *= 2.0
    assert w.requires_grad and w.is_leaf and w.numpy()[1] == 10.0


def test_broadcast_views_are_refused(on_backend, rng):
    b = agrad.broadcast_to(on_backend(rng.standard_normal(3)), (2, 3))
    with pytest.raises(ValueError, match="broadcast view"):
        b += 1.0
    with pytest.raises(ValueError, match="broadcast view"):
        b[0] = 1.0
    x = on_backend(rng.standard_normal(3))
    for new in (agrad.tile(x, (1,)), agrad.repeat(x, 1)):  # new arrays, as in NumPy (not broadcast views)
        new += 1.0
    np.testing.assert_array_equal(new.numpy(), x.numpy() + 1.0)
    mask = on_backend(np.array([True, False]), dtype=None)
    for new in (agrad.tile(mask, (1,)), agrad.repeat(mask, 1)):  # booleans have no positive() to copy them
        new[0] = False
    np.testing.assert_array_equal(mask.numpy(), [True, False])


# --------------------------------------------------------------------------- modes and transforms


def test_forward_mode_and_no_grad(on_backend, rng):
    x = on_backend(rng.standard_normal(3))
    v = on_backend(rng.standard_normal(3))

    def f(x):
        z = agrad.zeros((2, 3), dtype=x.dtype, device=x.device)
        with agrad.no_grad():  # forward mode is not the tape's: tangents still flow
            z[0] = x * x
        z[1] += agrad.sin(x)
        return z

    _, t = agrad.jvp(f, (x,), (v,))
    xv, vv = x.numpy(), v.numpy()
    np.testing.assert_allclose(t.numpy(), [2 * xv * vv, np.cos(xv) * vv])


def test_hessians_and_nested_transforms(on_backend, rng):
    def f(x):
        z = x * 1.0
        z[1:] *= x[:-1]
        z[0] = agrad.sum(agrad.asarray(z[1:], copy=True) ** 2)  # (pow reads its input: not z's memory)
        return agrad.sum(z * z)

    def f_functional(x):
        z1 = x[1:] * x[:-1]
        z = agrad.concat([agrad.reshape(agrad.sum(z1 ** 2), (1,)), z1])
        return agrad.sum(z * z)

    x = on_backend(rng.standard_normal(4))
    np.testing.assert_allclose(agrad.hessian(f)(x).numpy(), agrad.hessian(f_functional)(x).numpy(), rtol=1e-10)
    np.testing.assert_allclose(agrad.jacobian(agrad.grad(f), mode="reverse")(x).numpy(),
                               agrad.hessian(f_functional)(x).numpy(), rtol=1e-10)


def test_a_long_loop_of_updates_does_not_grow_without_bound(on_backend, rng):
    x = on_backend(rng.standard_normal(3))
    x.requires_grad_()
    h = agrad.zeros(3, dtype=x.dtype, device=x.device)
    for _ in range(50):
        h[...] = x * 2.0
        agrad.sum(h).backward()
    assert len(h._past.entries) <= 2
    np.testing.assert_allclose(x.grad.numpy(), [100.0] * 3)


def test_lists_of_numpy_scalars_keep_their_dtype():
    assert agrad.tensor([np.float64(0.5)]).dtype == agrad.float64  # as PyTorch
    assert agrad.tensor([0.5]).dtype == agrad.float32  # Python floats: the default dtype


# --------------------------------------------------------------------------- the engine's own claims


def _nodes(out):
    seen, stack, found = set(), [out], []
    while stack:
        t = stack.pop()
        if not isinstance(t, agrad.Tensor) or t._prim is None or id(t) in seen:
            continue
        seen.add(id(t))
        found.append(t)
        stack.extend(t._args)
    return found


def _float_array(x):
    xp = B.namespace_of((x,))
    return xp is not None and hasattr(x, "dtype") and xp.isdtype(x.dtype, "real floating")


@pytest.mark.parametrize("name", sorted(n for n, p in REGISTRY.items() if p.saves is not None))
def test_saves_names_every_value_a_vjp_reads(name):
    """A primitive's ``saves`` lets in-place updates skip the error at backward for values
    its VJPs do not read: so changing those values must not change the VJP's result."""
    prim = REGISTRY[name]
    checked = 0
    for f, host, _ in cases(np.random.default_rng(3))[name]:
        xs = [agrad.tensor(h, requires_grad=h.dtype.kind == "f") for h in host]
        for t in _nodes(f(*xs)):
            if t._prim is not prim:
                continue
            xp = B.namespace_of((t._data,))
            g = xp.asarray(np.random.default_rng(4).standard_normal(t.shape))
            for i, a in enumerate(t._args):
                if not (isinstance(a, agrad.Tensor) and a.requires_grad):
                    continue
                entry = prim.saves[i] if i < len(prim.saves) else ()
                direct = {e for e in entry if not isinstance(e, tuple)}
                # ("out", j, ...): with the output intact, the VJP reads it; once it was updated it gets
                # ans=None and reads arguments j, ... instead
                alternatives = [set(e[1:]) for e in entry if isinstance(e, tuple)]
                scenarios = [(direct | ({"out"} if alternatives else set()), False)]
                if alternatives:
                    scenarios.append((direct.union(*alternatives) - {"out"}, True))
                raw = list(t._inputs)

                def vjp(inputs, ans):  # argument i's cotangent alone
                    wanted = tuple(j == i for j in range(len(inputs)))
                    return prim.rules["vjp"](xp, g, ans, wanted, *inputs, **t._params)[i]

                for reads, recompute in scenarios:
                    changed = [r + 1.75 if j not in reads and _float_array(r) else r for j, r in enumerate(raw)]
                    ans = None if recompute else t._data if "out" in reads else t._data * 3.0 - 0.5
                    np.testing.assert_array_equal(
                        _host(vjp(changed, ans)), _host(vjp(raw, t._data)),
                        err_msg=f"{name}: the VJP of argument {i} reads more than {sorted(map(str, reads))}"
                                f"{' when it recomputes the output' if recompute else ''}")
                    checked += 1
    assert checked, f"no recorded {name} node with a differentiable argument in its cases"


# --------------------------------------------------------------------------- agrad.compile


def test_compiled_programs_with_in_place_updates_replay_as_eager(on_backend, rng):
    w = agrad.nn.Parameter(on_backend(rng.standard_normal((2, 3))))
    running = agrad.zeros(3, dtype=w.dtype, device=w.device)  # state outside, updated each call
    outside = on_backend(np.zeros(2)).data  # an array captured from outside: eager updates it every call

    def step(x):
        z = agrad.zeros((3, 3), dtype=x.dtype, device=x.device)  # made anew by every eager call
        z[:2] = x @ w
        z[2, ::-1] += agrad.sum(x)
        row = z[1]
        row *= 2.0
        z[agrad.asarray([0, 0], device=x.device)] = w[1]  # repeated index: the last write
        s = agrad.sum(x * 1.0)  # a 0-d value, updated in place
        s += 1.0
        loss = agrad.sum(z * z) * s
        loss.backward()
        with agrad.no_grad():
            running[...] = running * 0.9 + agrad.mean(z, axis=0)
            captured = agrad.asarray(outside)
            captured[0] += 1.0
        return loss, z

    compiled = agrad.compile(step)
    outs = []
    for k in range(4):
        x = on_backend(rng.standard_normal((2, 2)))
        state = (on_backend(running.numpy()), on_backend(B.to_numpy(outside)))
        w.grad = None
        loss_e, z_e = step(x)
        grad_e, after_e = w.grad.numpy().copy(), (running.numpy().copy(), B.to_numpy(outside).copy())
        running[...] = state[0]
        agrad.asarray(outside)[...] = state[1]
        w.grad = None
        loss_c, z_c = compiled(x)
        assert loss_c.numpy().tobytes() == loss_e.numpy().tobytes() and z_c.numpy().tobytes() == z_e.numpy().tobytes()
        assert w.grad.numpy().tobytes() == grad_e.tobytes(), k
        assert running.numpy().tobytes() == after_e[0].tobytes()
        assert B.to_numpy(outside).tolist() == after_e[1].tolist() == [k + 1.0, 0.0], (k, B.to_numpy(outside))
        outs.append((z_c, z_c.numpy().copy()))
    assert compiled.traces == 1
    for z, values in outs:  # each call's result is an array of its own, not overwritten by the next call
        np.testing.assert_array_equal(z.numpy(), values)
