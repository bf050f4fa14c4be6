"""Shared pieces of the benchmarks: the seed network's weights, hand-written backprop,
and timing in rotating rounds."""

from __future__ import annotations

import statistics
import time

import numpy as np

import agrad
from agrad import backend as B

SIZES = (784, 72, 10)
LR = 0.1


def initial_weights(dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Host weights every contender starts from (uniform +-1/sqrt(fan_in), as agrad.nn.Linear)."""
    rng = np.random.default_rng(seed)
    w = {}
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:]), start=1):
        b = 1 / np.sqrt(n_in)
        w[f"W{i}"] = rng.uniform(-b, b, (n_in, n_out)).astype(dtype)
        w[f"b{i}"] = rng.uniform(-b, b, (n_out,)).astype(dtype)
    return w


def batch(n: int, dtype: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, SIZES[0])).astype(dtype), rng.integers(0, SIZES[-1], n)


def sync(xp_name: str) -> None:
    """Wait for queued GPU work, so that timings measure it."""
    if xp_name == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()
    elif xp_name == "torch-cuda":
        import torch

        torch.cuda.synchronize()


class HandWritten:
    """The seed network with explicit backpropagation formulas, in the backend's namespace:
    the same array work as agrad with no tape (the floor for that backend)."""

    name = "hand-written"

    def __init__(self, weights, x, y, backend_name):
        self.xp = B.creation_namespace(backend_name)
        self.p = {k: B.from_numpy(v.copy(), backend=backend_name) for k, v in weights.items()}
        self.x = B.from_numpy(x, backend=backend_name)
        self.y = B.from_numpy(y, backend=backend_name)
        self.backend = backend_name

    def grads(self):
        xp, p, x, y = self.xp, self.p, self.x, self.y
        h = xp.tanh(x @ p["W1"] + p["b1"])
        f = h @ p["W2"] + p["b2"]
        m = xp.max(f, axis=1, keepdims=True)
        e = xp.exp(f - m)
        s = xp.sum(e, axis=1, keepdims=True)
        onehot = xp.astype(xp.expand_dims(y, axis=1) == xp.arange(f.shape[1]), f.dtype)
        loss = xp.mean(xp.log(s[:, 0]) + m[:, 0] - xp.sum(f * onehot, axis=1))
        df = (e / s - onehot) / f.shape[0]
        dh = df @ xp.matrix_transpose(p["W2"])
        da = dh * (1.0 - h * h)
        return loss, {"W2": xp.matrix_transpose(h) @ df, "b2": xp.sum(df, axis=0),
                      "W1": xp.matrix_transpose(x) @ da, "b1": xp.sum(da, axis=0)}

    def step(self):
        _, g = self.grads()
        for k, v in g.items():
            self.p[k] -= LR * v

    def host_grads(self):
        return {k: B.to_numpy(v) for k, v in self.grads()[1].items()}


class HandWrittenInPlace:
    """The best hand-written NumPy step a performance-minded user writes: the same formulas
    with every result computed into a buffer allocated once (``out=``) and in-place updates.
    NumPy only (the floor the issue asks agrad to reach)."""

    name = "hand-written in-place"

    def __init__(self, weights, x, y, backend_name):
        if backend_name != "numpy":
            raise RuntimeError("the in-place hand-written step is NumPy code")
        self.p = {k: v.copy() for k, v in weights.items()}
        self.x, self.y = x, y
        self.classes = np.arange(SIZES[-1])
        self.g = {k: np.empty_like(v) for k, v in weights.items()}
        self.buffers = {}  # batch size -> the step's buffers (a last, smaller batch gets its own)
        self.backend = backend_name

    def _buffers(self, n):
        if n not in self.buffers:
            (_, d_h, d_out), dt = SIZES, self.p["W1"].dtype
            self.buffers[n] = (np.empty((n, d_h), dt), np.empty((n, d_out), dt), np.empty((n, 1), dt),
                               np.empty((n, d_out), dt), np.empty((n, 1), dt), np.empty((n, d_out), dt),
                               np.empty((n, d_out), bool), np.empty((n, d_h), dt), np.empty((n, d_h), dt))
        return self.buffers[n]

    def step(self):
        p, g, x = self.p, self.g, self.x
        h, f, m, e, s, onehot, self.hit, self.dh, self.da = self._buffers(x.shape[0])
        np.matmul(x, p["W1"], out=h)
        h += p["b1"]
        np.tanh(h, out=h)
        np.matmul(h, p["W2"], out=f)
        f += p["b2"]
        np.maximum.reduce(f, axis=1, keepdims=True, out=m)  # the ufunc reductions: np.max's wrapper costs us
        np.subtract(f, m, out=e)
        np.exp(e, out=e)
        np.add.reduce(e, axis=1, keepdims=True, out=s)
        np.equal(self.y[:, None], self.classes, out=self.hit)
        np.copyto(onehot, self.hit)
        # the loss, mean(log s + m - f[y]), left as a 0-d array (converting it would sync a GPU)
        loss = np.add.reduce(np.log(s) + m - np.add.reduce(f * onehot, axis=1, keepdims=True), axis=None) / len(s)
        df = e  # softmax - onehot, scaled, reusing e's buffer
        np.divide(e, s, out=df)
        df -= onehot
        df *= 1.0 / x.shape[0]
        np.matmul(df, p["W2"].T, out=self.dh)
        np.multiply(h, h, out=self.da)
        np.subtract(1.0, self.da, out=self.da)
        self.da *= self.dh
        # A batch of one makes the weight gradients outer products: NumPy's matmul is 5-6x
        # slower than a broadcast multiply for a contraction of length 1.
        (np.multiply if x.shape[0] == 1 else np.matmul)(h.T, df, out=g["W2"])
        np.add.reduce(df, axis=0, out=g["b2"])
        (np.multiply if x.shape[0] == 1 else np.matmul)(x.T, self.da, out=g["W1"])
        np.add.reduce(self.da, axis=0, out=g["b1"])
        for k in p:
            g[k] *= LR
            p[k] -= g[k]
        return loss

    def host_grads(self):
        saved = {k: v.copy() for k, v in self.p.items()}
        self.step()
        grads = {k: (saved[k] - self.p[k]) / LR for k in self.p}
        self.p = saved
        return grads


def _fused_logistic_loss(f, y):
    """(mean loss, softmax(f) - onehot(y)): the NumPy calls of agrad's fused logistic loss."""
    m = np.maximum.reduce(f, axis=1, keepdims=True)
    e = np.exp(f - m)
    s = np.add.reduce(e, axis=1, keepdims=True)
    onehot = (y[:, None] == np.arange(f.shape[1])).astype(f.dtype)
    per_example = np.log(s[:, 0]) + m[:, 0] - np.add.reduce(f * onehot, axis=1)
    return np.add.reduce(per_example, axis=None) / per_example.shape[0], e / s - onehot


class EagerArrayWork:
    """The NumPy calls agrad's eager step makes (nn.MLP's fused linear layers, the fused
    logistic loss and its VJP, the outer products of a batch of one, ``w -= lr * g``), in
    the same order and form, without the tape: what eager agrad would cost if its Python
    bookkeeping were free. NumPy only; a diagnostic beside the floor, which is leaner."""

    name = "eager's array work, no tape"

    def __init__(self, weights, x, y, backend_name):
        if backend_name != "numpy":
            raise RuntimeError("the eager array work is NumPy code")
        self.p = {k: v.copy() for k, v in weights.items()}
        self.x, self.y = x, y
        self.backend = backend_name

    def grads(self):
        p, x, y = self.p, self.x, self.y
        a = x @ p["W1"]
        a += p["b1"]
        h = np.tanh(a)
        f = h @ p["W2"]
        f += p["b2"]
        loss, softmax_minus_onehot = _fused_logistic_loss(f, y)
        df = softmax_minus_onehot * (np.ones_like(loss) / f.shape[0])
        dh = df @ p["W2"].mT
        da = dh * (1.0 - h * h)
        outer = x.shape[0] == 1  # agrad's weight gradients for a batch of one: outer products
        return loss, {"W2": h.mT * df if outer else h.mT @ df, "b2": np.add.reduce(df, axis=0),
                      "W1": x.mT * da if outer else x.mT @ da, "b1": np.add.reduce(da, axis=0)}

    def step(self):
        _, g = self.grads()
        for k, v in g.items():
            self.p[k] -= LR * v

    def host_grads(self):
        return self.grads()[1]


class MinimalTape:
    """The same step on the barest reverse-mode tape (about 50 lines, NumPy only): nodes
    holding a value, their parents and one VJP closure, a topological sweep, ``w -= lr *
    g``; eager agrad's array calls. What the tape mechanism itself costs, without what
    agrad's eager mode checks on every op (versions of saved inputs, backends and
    devices, dtypes, shapes and broadcasting, forward-mode tangents, tracing hooks,
    modules and optimizer groups). A diagnostic, not a design to adopt."""

    name = "minimal tape, no checks"

    class Node:
        __slots__ = ("value", "grad", "parents", "vjp")

        def __init__(self, value, parents=(), vjp=None):
            self.value, self.grad, self.parents, self.vjp = value, None, parents, vjp

    def __init__(self, weights, x, y, backend_name):
        if backend_name != "numpy":
            raise RuntimeError("the minimal tape is NumPy code")
        self.p = {k: self.Node(v.copy()) for k, v in weights.items()}
        self.x, self.y = self.Node(x), y
        self.backend = backend_name

    def _linear(self, x, w, b):
        out = x.value @ w.value
        out += b.value
        outer = x.value.shape[0] == 1

        def vjp(g):
            return (g @ w.value.mT if x.vjp is not None else None,
                    x.value.mT * g if outer else x.value.mT @ g, np.add.reduce(g, axis=0))
        return self.Node(out, (x, w, b), vjp)

    def _tanh(self, a):
        h = np.tanh(a.value)
        return self.Node(h, (a,), lambda g: (g * (1.0 - h * h),))

    def _loss(self, f, y):
        loss, softmax_minus_onehot = _fused_logistic_loss(f.value, y)
        return self.Node(loss, (f,), lambda g: (softmax_minus_onehot * (g / f.value.shape[0]),))

    @staticmethod
    def _backward(root):
        order, seen, stack = [], set(), [(root, False)]
        while stack:  # post-order over the recorded nodes
            t, done = stack.pop()
            if done:
                order.append(t)
            elif id(t) not in seen:
                seen.add(id(t))
                stack.append((t, True))
                stack.extend((q, False) for q in t.parents if q.vjp is not None and id(q) not in seen)
        pending = {id(root): np.ones_like(root.value)}
        for t in reversed(order):
            for q, gq in zip(t.parents, t.vjp(pending.pop(id(t)))):
                if gq is None:
                    continue
                if q.vjp is None:  # a leaf
                    q.grad = gq if q.grad is None else q.grad + gq
                else:
                    pending[id(q)] = gq if id(q) not in pending else pending[id(q)] + gq

    def forward(self):
        p = self.p
        hidden = self._tanh(self._linear(self.x, p["W1"], p["b1"]))
        return self._loss(self._linear(hidden, p["W2"], p["b2"]), self.y)

    def step(self):
        loss = self.forward()
        for q in self.p.values():
            q.grad = None
        self._backward(loss)
        for q in self.p.values():
            q.value -= LR * q.grad

    def host_grads(self):
        for q in self.p.values():
            q.grad = None
        self._backward(self.forward())
        return {k: q.grad for k, q in self.p.items()}


class Agrad:
    """agrad: nn.MLP, the fused logistic loss, backward and optim.SGD."""

    name = "agrad"

    def __init__(self, weights, x, y, backend_name):
        with agrad.use_backend(backend_name):
            self.model = agrad.nn.MLP(list(SIZES), dtype=str(weights["W1"].dtype))
            l1, l2 = self.model.linear_layers()
            with agrad.no_grad():  # replacing a parameter's values is an update
                for layer, i in ((l1, 1), (l2, 2)):
                    layer.weight.data = B.from_numpy(weights[f"W{i}"].copy(), backend=backend_name)
                    layer.bias.data = B.from_numpy(weights[f"b{i}"].copy(), backend=backend_name)
            self.x = agrad.Tensor(B.from_numpy(x, backend=backend_name))
            self.y = agrad.Tensor(B.from_numpy(y, backend=backend_name))
        self.opt = agrad.optim.SGD(self.model.parameters(), lr=LR)
        self.backend = backend_name

    def forward(self):
        return agrad.nn.logistic_loss(self.model(self.x), self.y, check_labels=False)

    def step(self):
        loss = self.forward()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def host_grads(self):
        self.opt.zero_grad()
        self.forward().backward()
        l1, l2 = self.model.linear_layers()
        return {"W1": l1.weight.grad.numpy(), "b1": l1.bias.grad.numpy(),
                "W2": l2.weight.grad.numpy(), "b2": l2.bias.grad.numpy()}


class AgradCompiled(Agrad):
    """agrad's step as a user writes it, under ``agrad.compile``: traced once, then replayed
    (on CuPy as a CUDA graph). ``static_outputs``: the loss and gradients live in buffers
    the next step overwrites, as a performance-minded user would ask for."""

    name = "agrad compiled"
    drops_grads = False  # opt.zero_grad() after opt.step() instead of before the forward pass

    def __init__(self, weights, x, y, backend_name):
        super().__init__(weights, x, y, backend_name)
        model, opt, drops = self.model, self.opt, self.drops_grads

        @agrad.compile(static_outputs=True)
        def step(xb, yb):
            if not drops:
                opt.zero_grad()
            loss = agrad.nn.logistic_loss(model(agrad.Tensor(xb)), yb, check_labels=False)
            loss.backward()
            opt.step()
            if drops:
                opt.zero_grad()
            return loss

        self.compiled = step
        self.xr, self.yr = self.x._data, self.y._data

    def step(self):
        return self.compiled(self.xr, self.yr)

    def host_grads(self):
        """The gradients the compiled step computes (read from the parameters, or where the
        step drops them, from its update: SGD's w - lr g); the parameters are put back after."""
        params = self.model.parameters()
        saved = [p.numpy().copy() for p in params]
        self.step()
        grads = {name: (s - p.numpy()) / LR if self.drops_grads else p.grad.numpy().copy()
                 for name, s, p in zip(("W1", "b1", "W2", "b2"), saved, params)}
        with agrad.no_grad():
            for p, v in zip(params, saved):
                p.data = B.from_numpy(v, backend=self.backend)
        return grads


class AgradCompiledGradsDropped(AgradCompiled):
    """The compiled step with ``opt.zero_grad()`` after ``opt.step()``: the gradients are
    not kept after the step, the contract of the in-place floor (which scales them in
    place). The replay may then compute the update into a gradient's buffer, as the floor
    does, instead of a temporary beside it."""

    name = "agrad compiled, grads dropped"
    drops_grads = True


class AgradCompiledNatural:
    """agrad's step as a user naturally writes it under ``agrad.compile``: core ops
    (``x @ W + b``, not nn.MLP's fused linear), ``agrad.nn.cross_entropy`` with its default
    label check, no ``static_outputs``, the inputs passed as Tensors."""

    name = "agrad compiled, natural"

    def __init__(self, weights, x, y, backend_name):
        with agrad.use_backend(backend_name):
            self.p = {k: agrad.nn.Parameter(B.from_numpy(v.copy(), backend=backend_name))
                      for k, v in weights.items()}
            self.x = agrad.Tensor(B.from_numpy(x, backend=backend_name))
            self.y = agrad.Tensor(B.from_numpy(y, backend=backend_name))
        self.opt = agrad.optim.SGD(list(self.p.values()), lr=LR)
        self.backend = backend_name
        p, opt = self.p, self.opt

        @agrad.compile
        def step(x, y):
            opt.zero_grad()
            h = agrad.tanh(x @ p["W1"] + p["b1"])
            loss = agrad.nn.cross_entropy(h @ p["W2"] + p["b2"], y)
            loss.backward()
            opt.step()
            return loss

        self.compiled = step

    def step(self):
        return self.compiled(self.x, self.y)

    def host_grads(self):
        saved = {k: q.numpy().copy() for k, q in self.p.items()}
        self.step()
        grads = {k: q.grad.numpy().copy() for k, q in self.p.items()}
        with agrad.no_grad():
            for k, q in self.p.items():
                q.data = B.from_numpy(saved[k], backend=self.backend)
        return grads


class Torch:
    """PyTorch eager: the same network, F.cross_entropy, SGD."""

    name = "pytorch"

    def __init__(self, weights, x, y, backend_name):
        import torch

        self.torch = torch
        dev = "cuda" if backend_name == "cupy" else "cpu"
        if dev == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("PyTorch has no CUDA here")
        self.p = {k: torch.tensor(v.copy(), device=dev, requires_grad=True) for k, v in weights.items()}
        self.x = torch.tensor(x, device=dev)
        self.y = torch.tensor(y, device=dev)
        self.opt = torch.optim.SGD(list(self.p.values()), lr=LR)
        self.backend = "torch-cuda" if dev == "cuda" else "torch"

    def loss(self):
        F = self.torch.nn.functional
        p = self.p
        h = self.torch.tanh(self.x @ p["W1"] + p["b1"])
        return F.cross_entropy(h @ p["W2"] + p["b2"], self.y)

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        self.loss().backward()
        self.opt.step()

    def host_grads(self):
        self.opt.zero_grad(set_to_none=True)
        self.loss().backward()
        return {k: v.grad.detach().cpu().numpy() for k, v in self.p.items()}


class TorchCudaGraph(Torch):
    """PyTorch with the step captured as a CUDA graph (torch.cuda.graphs' whole-step recipe:
    warm up on a side stream, capture forward, backward and SGD once, replay)."""

    name = "pytorch cuda graph"

    def __init__(self, weights, x, y, backend_name):
        if backend_name != "cupy":
            raise RuntimeError("CUDA graphs need a GPU")
        super().__init__(weights, x, y, backend_name)
        self.graph = None

    def _capture(self):
        torch = self.torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                Torch.step(self)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.static_loss = self.loss()
            self.static_loss.backward()
            self.opt.step()

    def step(self):
        if self.graph is None:
            self._capture()
        self.graph.replay()


class HipsAutograd:
    """HIPS autograd: grad of the loss over a dict of weights, then an SGD update."""

    name = "hips-autograd"

    def __init__(self, weights, x, y, backend_name):
        import autograd
        import autograd.numpy as anp

        self.p = {k: v.copy() for k, v in weights.items()}
        onehot = np.eye(SIZES[-1], dtype=x.dtype)[y]

        def loss(p):
            h = anp.tanh(anp.dot(x, p["W1"]) + p["b1"])
            f = anp.dot(h, p["W2"]) + p["b2"]
            m = anp.max(f, axis=1, keepdims=True)
            lse = anp.log(anp.sum(anp.exp(f - m), axis=1)) + m[:, 0]
            return anp.mean(lse - anp.sum(f * onehot, axis=1))

        self.grad = autograd.grad(loss)
        self.backend = "numpy"

    def step(self):
        g = self.grad(self.p)
        for k in self.p:
            self.p[k] -= LR * g[k]

    def host_grads(self):
        return self.grad(self.p)


def available(cls, backend_name: str = "numpy") -> bool:
    try:
        if cls in (Torch, TorchCudaGraph):
            import torch

            if backend_name == "cupy" and not torch.cuda.is_available():
                return False
        if cls is HipsAutograd:
            import autograd  # noqa: F401
    except ImportError:
        return False
    return True


def time_rounds(contenders, steps: int, rounds: int, pause: float = 0.3) -> dict[str, float]:
    """Median seconds per step for each contender, timed in rotating rounds.

    A pause separates contenders: on 2 cores, torch's and NumPy's thread pools
    starve each other when run back to back.
    """
    times = {c.name: [] for c in contenders}
    for c in contenders:  # warm up
        for _ in range(3):
            c.step()
        sync(c.backend)
    for r in range(rounds):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for c in order:
            time.sleep(pause)
            sync(c.backend)
            t0 = time.perf_counter()
            for _ in range(steps):
                c.step()
            sync(c.backend)
            times[c.name].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in times.items()}
