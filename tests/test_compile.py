"""agrad.compile (issue 11): a traced and replayed function gives exactly what the eager
function gives (bit for bit), on every backend, for training steps, networks on DAGs,
transforms, broadcasting and indexing; it retraces on a new signature; it refuses what
it cannot replay; and in steady state a replay allocates no arrays."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest

import agrad
from agrad import nn
from agrad.optim import lr_scheduler


def _data(on_backend, n=16, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (on_backend(rng.standard_normal((n, d)), dtype="float32"),
            on_backend(rng.integers(0, classes, n), dtype=None))


def _same(actual, expected, on_backend=None):
    """Bit for bit on NumPy and array-api-strict. On CuPy a CUDA graph computes matrix
    products with its own cuBLAS calls (or a reduction kernel), and cuBLAS may pick other
    algorithms for them: equal to rounding."""
    actual = actual.numpy() if hasattr(actual, "numpy") else np.asarray(actual)
    expected = expected.numpy() if hasattr(expected, "numpy") else np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if getattr(on_backend, "backend", None) == "cupy":
        tol = 1e-4 if actual.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)
    else:
        assert actual.dtype == expected.dtype and actual.tobytes() == expected.tobytes(), (actual, expected)


def _model_and_optimizer(kind, device):
    agrad.manual_seed(0)
    model = nn.MLP([6, 5, 3], device=device)
    if kind == "sgd":
        opt = agrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    else:
        opt = agrad.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-4)
    return model, opt


def _twins(kind, device=None, **compile_options):
    """The same model and optimizer twice: (model, optimizer, eager step) and (model,
    optimizer, compiled step)."""
    m1, o1 = _model_and_optimizer(kind, device)
    m2, o2 = _model_and_optimizer(kind, device)
    return (m1, o1, _step(m1, o1)), (m2, o2, agrad.compile(_step(m2, o2), **compile_options))


def _step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = nn.logistic_loss(model(x), y, check_labels=False)
        loss.backward()
        opt.step()
        return loss
    return step


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("static_outputs", [False, True])
def test_a_compiled_training_step_is_bit_identical_to_eager(kind, static_outputs, on_backend):
    x, y = _data(on_backend)
    (m1, o1, eager), (m2, o2, compiled) = _twins(kind, on_backend.device, static_outputs=static_outputs)
    s1, s2 = lr_scheduler.CosineAnnealingLR(o1, T_max=6), lr_scheduler.CosineAnnealingLR(o2, T_max=6)
    for _ in range(6):
        l1, l2 = eager(x, y), compiled(x, y)
        _same(l2, l1, on_backend)
        s1.step()  # the scheduler runs outside: its rate reaches every replay
        s2.step()
    assert compiled.traces == 2  # the first step (no optimizer state yet), then the steady state
    for a, b in zip(m1.parameters(), m2.parameters()):
        _same(b, a, on_backend)
        _same(b.grad, a.grad, on_backend)
    assert o1.steps == o2.steps == 6


def test_returned_values_are_not_overwritten_by_the_next_call(on_backend):
    x, y = _data(on_backend)
    model, opt = _model_and_optimizer("sgd", on_backend.device)
    step = agrad.compile(_step(model, opt))
    losses = [step(x, y) for _ in range(4)]
    grads_before = model[0].weight.grad.numpy().copy()
    kept = model[0].weight.grad
    step(x, y)
    assert len({float(loss) for loss in losses}) == 4  # each call's loss is its own
    np.testing.assert_array_equal(kept.numpy(), grads_before)


def test_fresh_gradients_reuse_only_what_no_one_can_see(on_backend):
    """Without static outputs each call's gradients are new arrays, as eagerly. The replay
    may write them into the last call's arrays (and Tensors) only where nothing but the
    parameter's .grad refers to them: a gradient kept, a view of it, a weak reference, a
    Tensor updated in place, made to require a gradient or replaced stays untouched, and
    every value is the eager one."""
    import weakref

    x, y = _data(on_backend)
    (m1, o1, eager), (m2, o2, compiled) = _twins("sgd", on_backend.device)
    w1, w2 = m1[0].weight, m2[0].weight

    def both():
        _same(compiled(x, y), eager(x, y), on_backend)
        for a, b in zip(m1.parameters(), m2.parameters()):
            _same(b.grad, a.grad, on_backend)

    for _ in range(4):
        both()
    kept = w2.grad
    saved = kept.numpy().copy()
    both()
    assert w2.grad is not kept and kept.numpy().tobytes() == saved.tobytes()
    del kept
    view = w2.grad._data[0:2, ...]
    saved = np.asarray(agrad.Tensor(view).numpy()).copy()
    both()
    assert np.asarray(agrad.Tensor(view).numpy()).tobytes() == saved.tobytes()
    del view
    ref = weakref.ref(w2.grad)
    both()
    assert ref() is not w2.grad
    data = w2.grad._data
    both()
    assert w2.grad._data is not data
    del data
    with agrad.no_grad():
        w2.grad += 1.0  # updated in place (and the eager twin alike)
        w1.grad += 1.0
    touched = w2.grad
    both()
    assert w2.grad is not touched
    w2.grad.requires_grad = True
    touched = w2.grad
    both()
    assert w2.grad is not touched and not w2.grad.requires_grad
    del touched
    w2.grad = agrad.Tensor(w2.grad.numpy() * 0)  # replaced from outside
    both()
    for _ in range(3):
        both()
    assert compiled.traces == 2


@pytest.mark.parametrize("graphs", [False, True])
def test_static_gradients_keep_their_tensor_unless_it_was_touched(graphs, on_backend, monkeypatch):
    """With static outputs a gradient's buffer is the same every call, so the replay keeps
    the Tensor around it; a Tensor the user replaced, updated in place or made to require
    a gradient is replaced by a fresh one, and the values are the eager ones throughout.
    With ``graphs`` on NumPy, through the stand-in CUDA graph (its results are the graph's)."""
    if graphs and on_backend.backend != "numpy":
        pytest.skip("the stand-in graph runs on NumPy (CuPy captures real graphs either way)")
    if graphs:
        monkeypatch.setattr(agrad.backend, "graph_capturer", lambda xp: _stand_in_capture)
    x, y = _data(on_backend)
    (m1, o1, eager), (m2, o2, compiled) = _twins("sgd", on_backend.device, static_outputs=True)
    for _ in range(5):  # the first step (state appears), the trace, the first replay (on CuPy: and the capture)
        eager(x, y), compiled(x, y)
    w = m2[0].weight

    def replace():
        w.grad = agrad.tensor(w.grad.numpy() + 1.0)

    touches = {None: lambda: None, "in place": lambda: w.grad.__imul__(2.0), "replaced": replace,
               "requires_grad": lambda: setattr(w.grad, "requires_grad", True)}
    for touch in [None, "in place", None, "requires_grad", None, "replaced", None]:
        with agrad.no_grad():
            touches[touch]()
        kept = w.grad
        _same(compiled(x, y), eager(x, y), on_backend)
        for a, b in zip(m1.parameters(), m2.parameters()):
            _same(b, a, on_backend)
            _same(b.grad, a.grad, on_backend)
        buffered = on_backend.backend in ("numpy", "cupy")  # (array-api-strict has no out=: new arrays)
        assert (w.grad is kept) == (touch is None and buffered), touch
        assert w.grad._version == 0 and not w.grad.requires_grad
    if graphs:
        assert _program(compiled).graph_reason.startswith("launched as a CUDA graph")


def test_views_are_expressions_in_numpy_replays():
    """matrix_transpose and expand_dims (any int axis) are written inline in a NumPy replay,
    not called through their wrappers, with the eager values."""
    def f(x):
        return (agrad.matrix_transpose(x), agrad.expand_dims(x, axis=0), agrad.expand_dims(x, axis=-1),
                agrad.expand_dims(x, axis=1), agrad.expand_dims(x, axis=-3), agrad.sum(x.mT @ x))
    compiled = agrad.compile(f)
    for seed in range(3):
        x = agrad.tensor(np.random.default_rng(seed).standard_normal((2, 3)))
        for got, want in zip(compiled(x), f(x)):
            _same(got, want)
    source = _program(compiled).source
    assert source.count(" = v0.mT") == 2 and source.count(" = v0[k") == 4, source  # no call for any of the six


def test_a_network_on_a_dag_compiles(on_backend):
    x, y = _data(on_backend, d=3, classes=2)
    x = agrad.astype(x, "float64")
    parents, acts = [[0, 1], [1, 2], [3, 4, 0], [5, 3]], ["tanh", "sigmoid", "tanh", "identity"]

    def make():
        net = nn.UnitNetwork(3, parents, acts, 2, rng=agrad.random.generator(1), dtype="float64",
                             device=on_backend.device)
        return net, agrad.optim.SGD(net.parameters(), lr=0.2)

    (n1, o1), (n2, o2) = make(), make()
    eager, compiled = _step(n1, o1), agrad.compile(_step(n2, o2))
    for _ in range(4):
        _same(compiled(x, y), eager(x, y), on_backend)
    for a, b in zip(n1.parameters(), n2.parameters()):
        _same(b, a, on_backend)


def test_transforms_compile(on_backend):
    f = lambda v: agrad.sum(agrad.sin(v) * v ** 2)  # noqa: E731
    x = on_backend(np.array([0.3, -0.7, 1.1]))
    v = on_backend(np.array([1.0, 0.5, -2.0]))
    for g in (agrad.grad(f), agrad.hessian(f), lambda x, v: agrad.jvp(agrad.grad(f), (x,), (v,))[1],
              lambda x, v: agrad.hvp(f, x, v)):
        args = (x, v) if g.__code__.co_argcount == 2 else (x,)
        c = agrad.compile(g)
        for _ in range(3):
            _same(c(*args), g(*args), on_backend)
        assert c.traces == 1


def test_broadcasting_and_indexing(on_backend):
    w = agrad.tensor(on_backend(np.array([0.5, -1.0, 2.0])), requires_grad=True)
    idx = on_backend(np.array([0, 2, 2, 1]), dtype=None)

    def f(x):
        return agrad.grad(lambda w: agrad.sum((x[idx] * w[None, :] + w) ** 2))(w)

    c = agrad.compile(f)
    for seed in range(3):
        x = on_backend(np.random.default_rng(seed).standard_normal((3, 3)))
        _same(c(x), f(x), on_backend)  # new values, same signature: replayed
    assert c.traces == 1


def test_a_new_signature_retraces():
    c = agrad.compile(lambda x: agrad.sum(agrad.tanh(x)))
    c(np.ones(3))
    c(np.ones(3))
    c(np.ones(4))  # another shape
    c(np.ones(3, np.float32))  # another dtype
    c(np.ones(3))
    assert c.traces == 3


@pytest.mark.parametrize("body", ["if", "float", "item", "print", "numpy"])
def test_what_cannot_be_replayed_is_a_clear_error(body):
    def f(x):
        y = agrad.sum(x * x)
        if body == "if" and y > 0:
            y = y * 2
        if body == "float":
            return float(y)
        if body == "item":
            return y.item()
        if body == "print":
            print(y)
        if body == "numpy":
            return np.asarray(y)
        return y

    with pytest.raises(agrad.CompileError, match="compiled function|compile"):
        agrad.compile(f)(np.ones(3))


def test_random_numbers_and_schedulers_inside_are_errors():
    drop = nn.Dropout(0.5)
    with pytest.raises(agrad.CompileError, match="Dropout"):
        agrad.compile(lambda x: agrad.sum(drop(x)))(agrad.tensor(np.ones(3)))
    model, opt = _model_and_optimizer("sgd", None)
    sched = lr_scheduler.StepLR(opt, 1)

    def step(x, y):
        loss = _step(model, opt)(x, y)
        sched.step()
        return loss

    x, y = np.ones((4, 6), np.float32), np.zeros(4, np.int64)
    with pytest.raises(agrad.CompileError, match="scheduler"):
        agrad.compile(step)(x, y)
    # the failed trace left everything as it was: eager still works
    assert isinstance(opt.param_groups[0]["lr"], float)
    assert float(_step(model, opt)(agrad.tensor(x), agrad.tensor(y))) > 0


def test_the_replay_allocates_no_arrays_in_steady_state():
    # NumPy's ufuncs keep bounded iteration buffers for broadcast operands (8192 elements
    # each, whatever the array size), so the arrays here are far larger than that: any
    # array the replay allocated would show, NumPy's buffers don't.
    rng = np.random.default_rng(0)
    batch = 4096
    x = rng.standard_normal((batch, 64)).astype(np.float32)
    y = rng.integers(0, 64, batch)
    agrad.manual_seed(0)
    model = nn.MLP([64, 128, 64])
    opt = agrad.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = agrad.compile(_step(model, opt), static_outputs=True)
    for _ in range(3):
        step(x, y)
    smallest = batch * 64 * 4  # bytes of the smallest (batch, features) array of the step
    tracemalloc.start()
    try:
        for _ in range(3):
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            step(x, y)
            _, peak = tracemalloc.get_traced_memory()
            assert peak - before < smallest // 2, f"a replay allocated {peak - before} bytes"
    finally:
        tracemalloc.stop()
    # the eager step, for contrast, allocates many arrays that size
    eager = _step(model, opt)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    eager(agrad.tensor(x), agrad.tensor(y))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak - before > 4 * smallest


# ----------------------------------------------------------------------- CUDA graphs
# On CuPy a replay is captured as a CUDA graph (the tests above run that way on a GPU).
# Here a stand-in capture runs the same machinery on NumPy: what the graph records is
# re-run at each launch, writing where it wrote at capture, as a graph's kernels do.


def _stand_in_capture(body, outside):
    saved = [a.copy() for a in outside]
    result = body()
    for a, s in zip(outside, saved):  # a capture records the work without running it
        a[...] = s
    fixed = list(result)
    launches = []

    def launch():
        launches.append(1)
        for r, new in zip(fixed, body()):
            if new is not r:
                r[...] = new  # a graph writes to the addresses of its capture

    launch.launches = launches
    return launch, result


@pytest.fixture
def stand_in_graphs(monkeypatch):
    monkeypatch.setattr(agrad.backend, "graph_capturer", lambda xp: _stand_in_capture)


def _program(compiled):
    (programs,) = [p for p in compiled.programs.values() if p[0].replays]
    return programs[0]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("static_outputs", [False, True])
def test_a_graph_replay_is_bit_identical_to_eager(kind, static_outputs, stand_in_graphs):
    x, y = (agrad.tensor(a) for a in _data(lambda a, dtype: np.asarray(a, dtype=dtype)))
    (m1, o1, eager), (m2, o2, compiled) = _twins(kind, static_outputs=static_outputs)
    s1, s2 = lr_scheduler.CosineAnnealingLR(o1, T_max=8), lr_scheduler.CosineAnnealingLR(o2, T_max=8)
    losses = []
    for _ in range(8):
        l1, l2 = eager(x, y), compiled(x, y)
        assert l1.numpy().tobytes() == l2.numpy().tobytes()
        losses.append((l1, l2))
        s1.step()  # a changing learning rate reaches the graph through a device scalar
        s2.step()
    program = _program(compiled)
    assert program.graph_reason.startswith("launched as a CUDA graph"), program.graph_reason
    assert "fill" in program.graph.parts.source  # the learning rate (and Adam's corrections)
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())
    if not static_outputs:  # outputs kept from earlier calls are theirs, not the graph's memory
        assert all(l1.numpy().tobytes() == l2.numpy().tobytes() for l1, l2 in losses)


def test_arrays_replaced_from_outside_make_a_new_capture(stand_in_graphs):
    x, y = (agrad.tensor(a) for a in _data(lambda a, dtype: np.asarray(a, dtype=dtype)))
    (m1, o1, eager), (m2, o2, compiled) = _twins("sgd")
    for i in range(7):
        if i == 4:  # e.g. a checkpoint loaded: new arrays behind the parameters
            state = {k: v * 0.5 for k, v in m1.state_dict().items()}
            m1.load_state_dict(state)
            m2.load_state_dict(state)
        assert eager(x, y).numpy().tobytes() == compiled(x, y).numpy().tobytes()
    program = _program(compiled)
    assert program.graph.captures == 2
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_capture_that_fails_falls_back_with_the_reason(monkeypatch):
    def refuse(body, outside):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(agrad.backend, "graph_capturer", lambda xp: refuse)
    x, y = (agrad.tensor(a) for a in _data(lambda a, dtype: np.asarray(a, dtype=dtype)))
    (m1, o1, eager), (m2, o2, compiled) = _twins("adam")
    with pytest.warns(UserWarning, match="without a CUDA graph: the capture failed.*not permitted"):
        for _ in range(4):
            assert eager(x, y).numpy().tobytes() == compiled(x, y).numpy().tobytes()
    assert "without a CUDA graph" in _program(compiled).graph_reason
    assert compiled(x, y).numpy().tobytes() == eager(x, y).numpy().tobytes()


def test_cuda_graph_false_and_backends_without_graphs_replay_plainly(stand_in_graphs):
    x, y = (agrad.tensor(a) for a in _data(lambda a, dtype: np.asarray(a, dtype=dtype)))
    model, opt = _model_and_optimizer("sgd", None)
    compiled = agrad.compile(_step(model, opt), cuda_graph=False)
    for _ in range(4):
        compiled(x, y)
    program = _program(compiled)
    assert program.graph is None and "off" in program.graph_reason


def test_matrix_products_in_a_cuda_graph_call_cublas_directly(on_backend):
    """CuPy refuses cuBLAS in a capture; agrad calls cuBLAS's gemm itself there. Every
    layout (contiguous, transposed views, strided, vectors, an empty contraction), both
    dtypes, with and without ``out``, and recorded in a real capture then relaunched."""
    if on_backend.backend != "cupy":
        pytest.skip("CUDA graphs exist on the cupy backend only")
    import cupy

    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        def arr(*shape, dtype=dtype):
            return cupy.asarray(rng.standard_normal(shape), dtype=dtype)

        a, b, wide = arr(5, 7), arr(7, 3), arr(7, 12)
        cases = [(a, b), (arr(7, 5).T, b), (a, arr(3, 7).T), (arr(7, 5).T, arr(3, 7).T), (a, wide[:, ::4]),
                 (arr(7), b), (a, arr(7)), (arr(7), arr(7)), (arr(1, 7), arr(7, 1)), (arr(5, 0), arr(0, 3))]
        tol = 1e-5 if dtype == "float32" else 1e-12
        for x, w in cases:
            xp = agrad.backend.namespace_of((x,), "test")
            assert agrad.backend.capturable(xp.matmul, xp, [x, w]) is agrad.backend._matmul_by_cublas
            expected = cupy.matmul(x, w)
            got = agrad.backend._matmul_by_cublas(x, w)
            assert got.shape == expected.shape and got.dtype == expected.dtype
            cupy.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
            out = cupy.full(expected.shape, cupy.nan, dtype=dtype)
            assert agrad.backend._matmul_by_cublas(x, w, out=out) is out
            cupy.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
        x, w = arr(64, 784), arr(72, 784).T
        out = cupy.empty((64, 72), dtype=dtype)
        launch, _ = agrad.backend._capture_cuda_graph(lambda: agrad.backend._matmul_by_cublas(x, w, out=out), [])
        out2 = cupy.empty((64, 72), dtype=dtype)
        launch2, _ = agrad.backend._capture_cuda_graph(lambda: agrad.backend._matmul_by_cublas(x, w, out=out2), [])
        # each graph owns its cuBLAS workspace: two graphs launched on two streams never share one
        (_, stream, _, workspace), (_, stream2, _, workspace2) = launch.keep_alive, launch2.keep_alive
        assert workspace is not None and workspace2 is not None and workspace.ptr != workspace2.ptr
        device = cupy.cuda.Device().id
        assert not {(device, stream.ptr), (device, stream2.ptr)} & set(agrad.backend._GEMM_WORKSPACES)
        for _ in range(2):  # the graph reads its operands' memory at each launch
            launch()
            launch2()
            cupy.testing.assert_allclose(out, x @ w, rtol=tol, atol=tol)
            cupy.testing.assert_allclose(out2, out, rtol=tol, atol=tol)
            x[...] = arr(64, 784)


def test_a_first_graph_replay_failing_part_way_is_an_error_not_a_silent_second_step(stand_in_graphs, monkeypatch):
    def no_kernel(x, w):
        raise TypeError("no kernel for these dtypes")

    monkeypatch.setattr(agrad.backend, "capturable", lambda fn, xp, operands: no_kernel if fn is xp.matmul else None)
    x, y = (agrad.tensor(a) for a in _data(lambda a, dtype: np.asarray(a, dtype=dtype)))
    model, opt = _model_and_optimizer("sgd", None)
    compiled = agrad.compile(_step(model, opt))
    compiled(x, y)  # traced (no momentum yet)
    compiled(x, y)  # traced again (with momentum): the steady state
    with pytest.warns(UserWarning, match="first run failed"), \
            pytest.raises(agrad.CompileError, match="part way.*partly updated"):
        compiled(x, y)
    program = _program(compiled)
    assert program.graph is None
    before = [p.numpy().copy() for p in model.parameters()]
    compiled(x, y)  # replays without a graph from now on
    assert any((p.numpy() != b).any() for p, b in zip(model.parameters(), before))


def test_a_changed_hyperparameter_or_reset_state_retraces():
    x, y = (agrad.tensor(a) for a in _data(lambda a, dtype: np.asarray(a, dtype=dtype)))
    (m1, o1, eager), (m2, o2, compiled) = _twins("sgd")
    for i in range(8):
        if i == 3:  # a hyperparameter the replay bakes in
            o1.param_groups[0]["momentum"] = o2.param_groups[0]["momentum"] = 0.5
        if i == 5:  # state dropped (as after loading a fresh optimizer state)
            o1.load_state_dict({**o1.state_dict(), "state": {}})
            o2.load_state_dict({**o2.state_dict(), "state": {}})
        _same(compiled(x, y), eager(x, y))
    assert compiled.traces == 5  # first step, steady state, new momentum, no state, steady state again
    for a, b in zip(m1.parameters(), m2.parameters()):
        _same(b, a)


def test_replaced_module_attributes_and_modes_retrace():
    x = agrad.tensor(np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32))
    agrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.5), nn.Tanh())
    model.eval()
    f = lambda x: agrad.sum(model(x))  # noqa: E731
    c = agrad.compile(f)
    _same(c(x), f(x))
    _same(c(x), f(x))
    model[0].weight = nn.Parameter(np.ones((6, 5), np.float32))  # a new parameter object
    _same(c(x), f(x))
    assert c.traces == 2
    model.train()  # dropout is live again: not a replay of the eval-mode program
    with pytest.raises(agrad.CompileError, match="Dropout"):
        c(x)


def test_a_parameter_swapped_in_an_optimizer_group_retraces():
    x, y = (agrad.tensor(a) for a in _data(lambda a, dtype: np.asarray(a, dtype=dtype)))
    (m1, o1, eager), (m2, o2, compiled) = _twins("sgd")
    for i in range(5):
        if i == 3:  # the group's list keeps its length: the replay must not update the old Tensor
            for opt in (o1, o2):
                opt.param_groups[0]["params"][0] = nn.Parameter(np.zeros((6, 5), np.float32))
        _same(compiled(x, y), eager(x, y))
    assert compiled.traces == 3
    for a, b in zip(m1.parameters(), m2.parameters()):
        _same(b, a)


def _random_program(seed: int):
    """A random function of two square matrices: elementwise maths, views (transposes,
    reversed slices, reshapes) read after the value they view could have been overwritten,
    matrix products and broadcast reductions: what buffer sharing must get right."""
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(int(rng.integers(6, 16))):
        steps.append((int(rng.integers(0, 11)), int(rng.integers(0, 1 << 30)), int(rng.integers(0, 1 << 30))))

    def f(x, w):
        vals = [x, w]
        for op, i, j in steps:
            a, b = vals[i % len(vals)], vals[j % len(vals)]
            vals.append([lambda: agrad.tanh(a), lambda: a * a, lambda: 1.0 - a, lambda: a + b, lambda: a * b,
                         lambda: a.mT, lambda: a[::-1], lambda: agrad.reshape(agrad.reshape(a, (-1,)), a.shape),
                         lambda: agrad.tanh(a @ b), lambda: a - agrad.sum(b, axis=1, keepdims=True),
                         lambda: agrad.sin(a[:, ::-1])][op]())
        return sum(agrad.sum(v * (k + 1.0)) for k, v in enumerate(vals[-4:]))
    return f


class _CheckedBackend:
    """agrad.backend as agrad.compile's code generation sees it, with every ``out=`` call checked: the buffer
    overlaps no input, unless an elementwise operation writes over that very input. NumPy
    computes overlapping calls correctly anyway (it copies); CuPy does not: this check is
    what makes a plan that would be wrong on a GPU fail here."""

    def __getattr__(self, name):
        return getattr(agrad.backend, name)

    def out_function(self, fn, xp, operand=None, keywords=(), result=None):
        into = agrad.backend.out_function(fn, xp, operand, keywords, result)
        if into is None:
            return None
        elementwise = agrad.backend.is_elementwise(fn, xp)

        def checked(*args, out, **kwargs):
            for a in list(args) + list(kwargs.values()):
                if isinstance(a, np.ndarray) and np.shares_memory(a, out):
                    assert elementwise and a is out, f"{fn} reads the buffer it writes"
            return into(*args, out=out, **kwargs)
        return checked


@pytest.mark.parametrize("graphs", [False, True])
@pytest.mark.parametrize("static_outputs", [False, True])
def test_random_programs_with_shared_buffers_are_bit_identical(graphs, static_outputs, monkeypatch):
    monkeypatch.setattr(sys.modules["agrad.compile.codegen"], "backend", _CheckedBackend())  # (out= chosen there)
    if graphs:
        monkeypatch.setattr(agrad.backend, "graph_capturer", lambda xp: _stand_in_capture)
    rng = np.random.default_rng(1)
    shared = 0
    for seed in range(40):
        f = _random_program(seed)
        g = agrad.grad(f, argnums=(0, 1))
        both = lambda x, w: (f(x, w), g(x, w))  # noqa: E731
        compiled = agrad.compile(both, static_outputs=static_outputs)
        for _ in range(3):
            x, w = (agrad.tensor(rng.standard_normal((5, 5))) for _ in range(2))
            expected, actual = both(x, w), compiled(x, w)
            for a, e in zip(agrad.tree.flatten(actual)[0], agrad.tree.flatten(expected)[0]):
                _same(a, e)
        source = _program(compiled).graph.parts.source if graphs else _program(compiled).source
        outs = [line.split("out=")[1] for line in source.splitlines() if "out=" in line]
        shared += len(outs) - len(set(outs))
    assert shared > 40  # buffers were shared: the test exercised it


@pytest.mark.parametrize("fn", [lambda x: agrad.sum(x) + 0, lambda x: 0 + agrad.sum(x), lambda x: 2 * agrad.max(x),
                                lambda x: sum(agrad.sum(r) for r in x), lambda x: agrad.mean(x) / 3 - 1.5])
def test_zero_d_results_with_python_numbers_are_recomputed_each_call(fn, on_backend):
    # NumPy returns np.float64 scalars (Python floats too) for 0-d results: values, never constants
    compiled = agrad.compile(fn)
    for seed in range(3):
        x = on_backend(np.random.default_rng(seed).standard_normal((4, 3)))
        _same(compiled(x), fn(x), on_backend)
    assert compiled.traces == 1


def _random_training_loop(seed, device):
    """A training loop drawn from ``seed``: the network, optimizer (groups, momentum,
    weight decay), scheduler, loss, where zero_grad goes, gradients accumulated over two
    backward passes, clipped, a frozen parameter, changing batch sizes. Returns
    (config, build) where build() makes (model, optimizer, scheduler, step)."""
    r = np.random.default_rng(seed)
    pick = lambda options: options[int(r.integers(len(options)))]  # noqa: E731
    cfg = dict(sizes=[pick([3, 5]), pick([4, 6]), pick([2, 3])], act=pick(["tanh", "relu", "sigmoid"]),
               dtype=pick(["float32", "float64"]), freeze=r.random() < 0.25, groups=r.random() < 0.3,
               opt=pick(["sgd", "adam"]), momentum=pick([0.0, 0.9]), nesterov=r.random() < 0.5,
               weight_decay=pick([0.0, 1e-3]), schedule=pick([None, "cosine", "step"]),
               zero=pick(["before", "after", "never"]), loss=pick(["logistic", "mse"]), l2=r.random() < 0.25,
               accumulate=r.random() < 0.3, clip=r.random() < 0.3, static=r.random() < 0.5,
               batches=pick([[4], [4, 4, 3], [4, 2]]))

    def build():
        agrad.manual_seed(seed)
        model = nn.MLP(cfg["sizes"], activation=cfg["act"], dtype=cfg["dtype"], device=device)
        train = model.parameters()
        if cfg["freeze"]:
            train[0].requires_grad = False
            train = train[1:]
        groups = [{"params": train[:1], "lr": 0.05}, {"params": train[1:]}] if cfg["groups"] else train
        if cfg["opt"] == "sgd":
            opt = agrad.optim.SGD(groups, lr=0.1, momentum=cfg["momentum"],
                                  nesterov=cfg["nesterov"] and cfg["momentum"] > 0, weight_decay=cfg["weight_decay"])
        else:
            opt = agrad.optim.Adam(groups, lr=0.01, weight_decay=cfg["weight_decay"])
        schedule = {None: lambda: None, "cosine": lambda: lr_scheduler.CosineAnnealingLR(opt, T_max=7),
                    "step": lambda: lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)}[cfg["schedule"]]()

        def step(x, y):
            if cfg["zero"] == "before":
                opt.zero_grad()
            out = model(x)
            loss = nn.logistic_loss(out, y, check_labels=False) if cfg["loss"] == "logistic" else nn.mse_loss(out, y)
            if cfg["l2"]:
                loss = loss + nn.l2_penalty(model.parameters(), 1e-3)
            loss.backward()
            if cfg["accumulate"]:
                (agrad.sum(model(x) ** 2) * 1e-3).backward()
            if cfg["clip"]:
                nn.utils.clip_grad_value_(model.parameters(), 0.01)
            opt.step()
            if cfg["zero"] == "after":
                opt.zero_grad()
            return loss
        return model, opt, schedule, step
    return cfg, build


def _intervene(kind, model, opt):
    """What a user may do between two steps, each of which a replay must see."""
    if kind == "set lr":
        opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"] * 0.5
    elif kind == "reload optimizer":
        opt.load_state_dict(opt.state_dict())
    elif kind == "reload model":
        model.load_state_dict(model.state_dict())
    elif kind == "replace data":
        with agrad.no_grad():
            p = model.parameters()[-1]
            p.data = p.data * 1.0
    elif kind == "zero grads in place":
        opt.zero_grad(set_to_none=False)
    elif kind == "clear state":
        opt.state.clear()


def test_random_training_loops_are_bit_identical(on_backend):
    """Compiled == eager (loss, parameters, gradients, step by step) over random training
    loops: the optimizer features, schedulers, zero_grad placements, accumulation and
    clipping meet in combinations no hand-written test lists, and between steps the user
    sets a learning rate, reloads state, replaces a parameter's array, zeroes gradients
    in place or clears the optimizer's state."""
    kinds = [None] * 6 + ["set lr", "reload optimizer", "reload model", "replace data", "zero grads in place",
                          "clear state"]
    replays = 0
    for seed in range(16):
        cfg, build = _random_training_loop(seed, on_backend.device)
        (m1, o1, s1, eager), (m2, o2, s2, step) = build(), build()
        compiled = agrad.compile(step, static_outputs=cfg["static"])
        rng = np.random.default_rng(seed)
        for k in range(7):
            n = cfg["batches"][k % len(cfg["batches"])]
            x = on_backend(rng.standard_normal((n, cfg["sizes"][0])), dtype=cfg["dtype"])
            y = on_backend(rng.integers(0, cfg["sizes"][-1], n), dtype=None) if cfg["loss"] == "logistic" else \
                on_backend(rng.standard_normal((n, cfg["sizes"][-1])), dtype=cfg["dtype"])
            _same(compiled(x, y), eager(x, y), on_backend)
            for a, b in zip(m1.parameters(), m2.parameters()):
                _same(b, a, on_backend)
                assert (a.grad is None) == (b.grad is None), (seed, k, cfg)
                if a.grad is not None:
                    _same(b.grad, a.grad, on_backend)
            if s1 is not None:
                s1.step()
                s2.step()
            kind = kinds[int(rng.integers(len(kinds)))]
            _intervene(kind, m1, o1)
            _intervene(kind, m2, o2)
        assert o1.steps == o2.steps == 7
        replays += sum(p.replays for programs in compiled.programs.values() for p in programs)
    assert replays > 16  # steps replayed (each intervention may retrace): compiled, not traced each call


def test_label_checks_run_before_every_replay(monkeypatch):
    x, y = (agrad.tensor(a) for a in _data(lambda a, dtype: np.asarray(a, dtype=dtype)))
    for graphs in (False, True):
        if graphs:
            monkeypatch.setattr(agrad.backend, "graph_capturer", lambda xp: _stand_in_capture)
        m1, o1 = _model_and_optimizer("sgd", None)
        m2, o2 = _model_and_optimizer("sgd", None)

        def natural(model, opt):
            def step(x, y):
                opt.zero_grad()
                loss = nn.logistic_loss(model(x), y)  # check_labels=True, the default
                loss.backward()
                opt.step()
                return loss
            return step
        eager, compiled = natural(m1, o1), agrad.compile(natural(m2, o2))
        for i in range(5):
            if i == 3:
                bad = agrad.tensor(np.where(np.arange(16) == 5, 3, y.numpy()))
                before = [p.numpy().copy() for p in m2.parameters()]
                with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
                    compiled(x, bad)
                assert all((p.numpy() == b).all() for p, b in zip(m2.parameters(), before))  # nothing ran
            _same(compiled(x, y), eager(x, y))
        assert compiled.traces == 2
        for a, b in zip(m1.parameters(), m2.parameters()):
            _same(b, a)


def test_labels_computed_inside_cannot_be_checked():
    x = agrad.tensor(np.ones((4, 3), np.float32))
    f = agrad.compile(lambda x, y: nn.logistic_loss(x, y % 3))
    with pytest.raises(agrad.CompileError, match="check_labels=False"):
        f(x, agrad.tensor(np.arange(4)))
    g = agrad.compile(lambda x, y: nn.logistic_loss(x, y % 3, check_labels=False))
    _same(g(x, agrad.tensor(np.arange(4))), nn.logistic_loss(x, agrad.tensor(np.arange(4) % 3)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # (the means of nothing: nan, as NumPy warns)
@pytest.mark.parametrize("static_outputs", [False, True])
def test_reductions_with_and_without_an_axis_are_bit_identical(static_outputs, on_backend):
    """NumPy replays call a float reduction's ufunc ``reduce`` directly where the call names
    its axis (``reduce``'s own default axis is 0, not all of them), and divide a mean by the
    count the trace found (an empty one is nan as in eager code): every form, every dtype,
    into buffers of the replay's own (static outputs) or not."""
    rng = np.random.default_rng(3)
    # a rule calling the namespace's reductions with no keywords at all (each result then
    # scaled, so that it lives in a buffer of the replay's own)
    totals = agrad.primitive("compile_test_totals",
                             lambda xp, x: xp.stack([xp.sum(x) * 2, xp.max(x) * 2, xp.min(x) * 2]), register=False)

    def reductions(x):
        means = (agrad.mean(x, axis=1), agrad.mean(x), agrad.mean(x, axis=0, keepdims=True),
                 agrad.mean(x[:, :0], axis=1), agrad.mean(x[:0])) if agrad.isdtype(x.dtype, "real floating") else ()
        return (agrad.sum(x), agrad.max(x), agrad.min(x, keepdims=True), agrad.sum(x, axis=0),
                agrad.max(x, axis=None), agrad.min(x, axis=(0, 1), keepdims=True), agrad.sum(x, axis=-1),
                totals(x)) + means

    compiled = agrad.compile(reductions, static_outputs=static_outputs)
    for dtype in ("float32", "float64", "int64"):
        x = on_backend(rng.standard_normal((3, 4)) * 10, dtype=dtype)
        for _ in range(3):
            for got, want in zip(compiled(x), reductions(x)):
                _same(got, want, on_backend)


def test_every_registered_op_compiles(on_backend):
    """Each primitive's gradient-check cases (tests/op_cases.py: found from the registry, so a
    new op cannot escape), value and gradient compiled: the replay on new inputs gives what
    eager code gives."""
    from agrad.tape import REGISTRY

    from .op_cases import cases

    all_cases = cases(np.random.default_rng(0))
    assert set(REGISTRY) <= set(all_cases)
    for name in sorted(all_cases):
        for f, host, _ in all_cases[name]:
            wrt = tuple(i for i, h in enumerate(host) if h.dtype.kind == "f")

            def loss(*xs, f=f):
                leaves = [v for v in agrad.tree.flatten(f(*xs))[0]
                          if isinstance(v, agrad.Tensor) and agrad.isdtype(v.dtype, "real floating")]
                return sum(agrad.sum(v * v) for v in leaves)

            def both(*xs, f=f, loss=loss, wrt=wrt):
                return f(*xs), (agrad.grad(loss, argnums=wrt)(*xs) if wrt else None)

            compiled = agrad.compile(both)
            for scale in (1.0, 1.0 + 1e-3, 1.0):  # trace, then replays on other values
                xs = [on_backend(h * scale) if h.dtype.kind == "f" else on_backend(h, dtype=None) for h in host]
                expected, actual = both(*xs), compiled(*xs)
                for a, e in zip(agrad.tree.flatten(actual)[0], agrad.tree.flatten(expected)[0]):
                    _same(a, e, on_backend)
            assert compiled.traces == 1, name


def test_aliased_arguments_are_part_of_the_signature(on_backend):
    f = lambda x, y: agrad.sum(x * 2.0 + y)  # noqa: E731
    compiled = agrad.compile(f)
    a, b = on_backend(np.ones(3)), on_backend(np.zeros(3))
    for x, y in [(a, a), (a, b), (b, a), (b, b), (a.data, a.data), (a.data, b.data)]:
        _same(compiled(x, y), f(x, y), on_backend)
    assert compiled.traces == 4  # one array twice, two arrays; for Tensors and raw arrays


@pytest.mark.filterwarnings("ignore:agrad.compile:UserWarning")  # (a graph reads copies: it falls back)
@pytest.mark.parametrize("graphs", [False, True])
def test_an_argument_that_is_also_a_parameter(graphs, monkeypatch):
    if graphs:
        monkeypatch.setattr(agrad.backend, "graph_capturer", lambda xp: _stand_in_capture)
    agrad.manual_seed(0)
    m1, m2 = nn.Linear(3, 2), nn.Linear(3, 2)
    m2.load_state_dict(m1.state_dict())
    o1, o2 = agrad.optim.SGD(m1.parameters(), lr=0.1), agrad.optim.SGD(m2.parameters(), lr=0.1)

    def step(model, opt):
        def f(w):  # the argument is read after the update: through the alias it sees it
            opt.zero_grad()
            loss = agrad.sum(model(agrad.ones((4, 3))) ** 2)
            loss.backward()
            opt.step()
            return loss + agrad.sum(w * w)
        return f
    eager, compiled = step(m1, o1), agrad.compile(step(m2, o2))
    other = np.ones((3, 2), np.float32)
    mine = (m1.weight.data, m2.weight.data)
    for w1, w2 in [mine, mine, (other, other), (other, other), mine, (other, other)]:
        _same(compiled(w2), eager(w1))
    for a, b in zip(m1.parameters(), m2.parameters()):
        _same(b, a)


def test_every_part_of_the_signature_retraces_on_the_fast_path():
    # The last program is tried first with a generated check of the signature; each change
    # the full cache key would see must be seen there too.
    f = lambda x, k: agrad.sum(x * k)  # noqa: E731
    compiled = agrad.compile(f)
    x32 = agrad.tensor(np.ones((2, 3), np.float32))
    calls = [(x32, 2.0), (x32, 2.0), (x32, 3.0), (agrad.tensor(np.ones((3, 3), np.float32)), 3.0),
             (agrad.tensor(np.ones((3, 3))), 3.0), (nn.Parameter(np.ones((3, 3))), 3.0), (np.ones((3, 3)), 3.0),
             (np.ones((3, 3)), 3)]
    for x, k in calls:
        _same(compiled(x, k), f(x, k))
    assert compiled.traces == 7  # all but the repeated first call
    with agrad.no_grad():
        _same(compiled(np.ones((3, 3)), 3), f(np.ones((3, 3)), 3))
    assert compiled.traces == 8
    _same(compiled(np.ones((3, 3)), 3), f(np.ones((3, 3)), 3))  # the earlier program, found by its key
    assert compiled.traces == 8
    agrad.set_default_dtype(agrad.float64)
    try:
        _same(compiled(np.ones((3, 3)), 3), f(np.ones((3, 3)), 3))
    finally:
        agrad.set_default_dtype(agrad.float32)
    assert compiled.traces == 9
    _same(compiled(np.ones((3, 3)), 3), f(np.ones((3, 3)), 3))
    with agrad.use_backend("array_api_strict"):  # where new arrays are created: part of the signature
        compiled(np.ones((3, 3)), 3)
    assert compiled.traces == 10


def _column_major_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, ldc):
    """What cuBLAS's gemm computes (C = op(A) op(B), column-major, alpha 1, beta 0), on the
    host: each operand's memory read as a column-major matrix with its leading dimension."""
    def column_major(x, rows, cols, ld):
        memory = x.ravel(order="K")  # (contiguous, in its own order)
        assert ld >= max(1, rows) and (cols - 1) * ld + rows <= memory.size
        return np.lib.stride_tricks.as_strided(memory, (rows, cols), (memory.itemsize, ld * memory.itemsize))

    op_a = column_major(a, m, k, lda) if trans_a == 0 else column_major(a, k, m, lda).T
    op_b = column_major(b, k, n, ldb) if trans_b == 0 else column_major(b, n, k, ldb).T
    assert ldc >= max(1, m)
    return op_a @ op_b


def test_the_cublas_arguments_compute_the_row_major_product():
    """The gemm arguments agrad passes to cuBLAS in a CUDA graph, checked on the CPU against a
    host emulation of cuBLAS's column-major gemm, for every operand layout."""
    rng = np.random.default_rng(0)

    def arr(*shape):
        return rng.standard_normal(shape)

    a, b, wide = arr(5, 7), arr(7, 3), arr(7, 12)
    cases = [(a, b), (arr(7, 5).T, b), (a, arr(3, 7).T), (arr(7, 5).T, arr(3, 7).T), (a, wide[:, ::4]),
             (wide.T[::2], b), (arr(1, 7), arr(7, 1)), (arr(7, 1).T, arr(7, 4)), (arr(4, 1), arr(1, 6))]
    for x, w in cases:
        args = agrad.backend._gemm_arguments(x, w)
        result = _column_major_gemm(*args)
        np.testing.assert_allclose(result.T, x @ w, rtol=1e-12, atol=1e-12)


def test_the_reductions_cupy_replays_copy_into_their_buffer():
    """CuPy's min/max fail with out= (CuPy 14, in its CUB path): its replays compute, then
    copy. The same wrapper on NumPy, into buffers of every shape a reduction gives."""
    x = np.random.default_rng(0).standard_normal((3, 4))
    for fn in (np.max, np.min):
        into = agrad.backend._copied_into(fn)
        for axis, keepdims in ((None, False), (1, True), (0, False), ((0, 1), True)):
            want = fn(x, axis=axis, keepdims=keepdims)
            out = np.full(np.shape(want), np.nan)
            assert into(x, axis=axis, keepdims=keepdims, out=out) is out
            assert out.tobytes() == np.asarray(want).tobytes()
