"""A randomized differential harness for agrad's transforms.

A case is drawn from one seed:

* a random **program** ``S0(x, y) -> scalar`` over the registered ops: broadcasting,
  0-d values, reductions, shape ops, repeated indices, values used several times,
  stacks of Tensors, checkpoint / custom_vjp / custom_jvp pieces, and in-place
  statements: item and augmented assignment on fresh arrays, on computed values that
  were used before (those uses keep the old value) and through views of them (the base
  sees the update), with basic, integer-array (repeated) and boolean-mask keys;
* a random **tower of transforms** ``S1, S2, ...``: each level turns the previous
  scalar function into a new scalar function of the same two arguments, a
  directional derivative taken with a random transform (grad with argnums, grad of a
  closure, value_and_grad, grad over a dict, vjp, jvp, jacobian in both modes, with
  aliased outputs; hessian and hvp for second order), an identity wrapper
  (checkpoint, custom_vjp, custom_jvp) that must not change any derivative, or a
  **vmap** level: the level below mapped over a batch of perturbed arguments (random
  in_axes, positive, negative or None, and out_axes; the other argument closed over,
  sometimes), outside or inside the derivative levels, or inside another vmap;
* the two arguments, sometimes the **same array object** in both positions.

Each level is checked against central finite differences of the level below it
(Richardson-extrapolated, float64, on the host), a vmap level against the loop over
its examples of the level below, so a mismatch names the first level that is wrong;
the whole tower is then run under agrad.compile, traced and replayed at other points,
against its eager values bit for bit. Inner transforms close over values the outer ones
trace, and outer levels differentiate arguments the inner ones do not: exactly the
compositions where perturbation confusion and lost sensitivities hide.

    python -m tests.fuzz --cases 20000 --backend numpy     # a long local run
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import agrad
from agrad import backend as B
from agrad.batching.batched import BatchedArray

SHAPES = [(), (3,), (2, 3), (1, 3), (2, 1)]

# --------------------------------------------------------------------------- programs


@dataclass
class Program:
    """A straight-line program: each step appends one value to the pool."""

    steps: list = field(default_factory=list)  # (name, operand indices, params)
    weights: Any = None  # host array: the output is sum(weights * last value)
    shapes: list = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"v0 = x {self.shapes[0]}", f"v1 = y {self.shapes[1]}"]
        for k, (name, ops, params) in enumerate(self.steps):
            args = ", ".join(f"v{i}" for i in ops)
            extra = "".join(f", {k2}={v!r}" for k2, v in params.items() if k2 != "const")
            if name in IN_PLACE:  # (the statement, written out)
                lines.append(f"v{k + 2} = {name}({args}{extra})  # shape {self.shapes[k + 2]}; in place on v{ops[0]}")
                continue
            lines.append(f"v{k + 2} = {name}({args}{extra})  # shape {self.shapes[k + 2]}")
        lines.append(f"out = sum(w * v{len(self.shapes) - 1})")
        return "\n".join(lines)


def _broadcast(s1: tuple, s2: tuple) -> tuple | None:
    try:
        return tuple(np.broadcast_shapes(s1, s2))
    except ValueError:
        return None


def _sin_rule_fwd(x):
    return _custom_sin(x), x


def _sin_rule_bwd(x, g):
    return (g * agrad.cos(x),)


@agrad.custom_vjp
def _custom_sin(x):
    return agrad.sin(x)


_custom_sin.defvjp(_sin_rule_fwd, _sin_rule_bwd)


@agrad.custom_jvp
def _softplus(x):
    return agrad.log1p(agrad.exp(x))


@_softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _softplus(x), t * agrad.sigmoid(x)


_checkpointed = agrad.checkpoint(lambda a, b: agrad.tanh(a * b + a))


def _unary(name: str) -> Callable:
    return {
        "sin": agrad.sin, "cos": agrad.cos, "tanh": agrad.tanh, "sigmoid": agrad.sigmoid,
        "exp_tanh": lambda a: agrad.exp(agrad.tanh(a)), "log1p_sq": lambda a: agrad.log1p(a * a),
        "sqrt_1p_sq": lambda a: agrad.sqrt(1.0 + agrad.square(a)), "square": agrad.square,
        "cube": lambda a: a ** 3.0, "pow0": lambda a: a ** 0.0, "pow1": lambda a: a ** 1.0,
        "rsqrt_1p_sq": lambda a: (1.0 + a * a) ** -0.5, "negative": lambda a: -a,
        "expm1_tanh": lambda a: agrad.expm1(agrad.tanh(a)), "custom_sin": _custom_sin, "softplus": _softplus,
        "identity": agrad.identity, "tan_small": lambda a: agrad.tan(0.5 * agrad.tanh(a)),
    }[name]


UNARY = ["sin", "cos", "tanh", "sigmoid", "exp_tanh", "log1p_sq", "sqrt_1p_sq", "square", "cube", "pow0", "pow1",
         "rsqrt_1p_sq", "negative", "expm1_tanh", "custom_sin", "softplus", "identity", "tan_small"]
BINARY = ["add", "subtract", "multiply", "safe_divide", "pow_pos", "checkpointed", "where_const"]


def _binary(name: str, a: Any, b: Any, params: dict) -> Any:
    if name == "add":
        return a + b
    if name == "subtract":
        return a - b
    if name == "multiply":
        return a * b
    if name == "safe_divide":
        return a / (1.0 + b * b)
    if name == "pow_pos":
        return (1.0 + a * a) ** agrad.tanh(b)
    if name == "checkpointed":
        return _checkpointed(a, b)
    if name == "where_const":
        return agrad.where(params["const"], a, b)
    raise KeyError(name)


# In-place statements must not overwrite a value a recorded derivative still reads: that
# is an error by design (as in PyTorch), not a finding. So the generator tracks which
# values may share memory (a group: a value and its views) and whether anything reads a
# group's values in its derivative; these steps read none of their operands' values
# (nor their own result's), every other step is taken to read all of them.
READS_NOTHING = {"add", "subtract", "negative", "identity", "sum", "mean", "reshape", "transpose", "expand_dims",
                 "squeeze", "broadcast_to", "getitem", "take0", "mask", "concat", "stack", "asarray_list",
                 "where_const"}
VIEWS = {"identity", "reshape", "transpose", "expand_dims", "squeeze", "broadcast_to", "getitem"}  # (may be views)
IN_PLACE = ["fresh_update", "late_update", "view_update"]


@dataclass
class _Groups:
    """Which pool values may share memory, and what is known about each group."""

    of: list = field(default_factory=list)  # pool index -> group
    frozen: set = field(default_factory=set)  # groups never to update: the inputs, broadcasts, values read
    basic_keys: bool = False  # in-place updates with basic keys only (the program runs under vmap)

    def add(self, group: int | None = None, frozen: bool = False) -> None:
        group = len(self.of) + 1000 if group is None else group
        self.of.append(group)
        if frozen:
            self.frozen.add(group)

    def updatable(self, i: int) -> bool:
        return self.of[i] not in self.frozen


def random_program(rng: np.random.Generator, shapes: tuple[tuple, tuple], n_steps: int,
                   basic_keys: bool = False) -> Program:
    prog = Program(shapes=list(shapes))
    groups = _Groups(basic_keys=basic_keys)
    groups.add(frozen=True)  # x and y: leaves of the transforms, never updated
    groups.add(frozen=True)
    for _ in range(n_steps):
        pool = prog.shapes
        kind = rng.choice(["unary", "binary", "binary", "reduce", "shape", "linalg", "stack", "in_place", "in_place"])
        step = _random_step(rng, str(rng.choice(IN_PLACE)), pool, groups) if kind == "in_place" else \
            _random_step(rng, kind, pool)
        if step is None:
            i = int(rng.integers(len(pool)))
            step = ("tanh", [i], {}), pool[i]
        (name, ops, params), shape = step
        prog.steps.append((name, ops, params))
        prog.shapes.append(tuple(shape))
        _track(groups, name, ops, params)
    prog.weights = rng.standard_normal(prog.shapes[-1])
    return prog


def _track(groups: _Groups, name: str, ops: list, params: dict) -> None:
    """The new value's group, and the groups a derivative now reads."""
    if name not in READS_NOTHING and name not in IN_PLACE:
        groups.frozen.update(groups.of[i] for i in ops)
    if name in ("late_update", "view_update"):
        groups.add(groups.of[ops[0]])  # the same Tensor, updated
        if params["op"] == "*=" and len(ops) > 1:
            groups.frozen.add(groups.of[ops[1]])  # multiply reads its other operand
        return
    if name == "fresh_update":
        groups.add()
        if params["op"] == "*=" and len(ops) > 1:
            groups.frozen.add(groups.of[ops[1]])
        return
    if name in VIEWS:
        groups.add(groups.of[ops[0]], frozen=name == "broadcast_to")
    else:
        groups.add(frozen=name not in READS_NOTHING)  # its own result read by its derivative


def _random_key(rng, s: tuple, basic_only: bool = False) -> tuple[Any, tuple]:
    """A key into shape ``s`` and the shape it selects: basic (slices with any step, an
    int, ``...``), an integer array with repeated entries, or a boolean mask (not when
    ``basic_only``: in-place updates of batched arrays take basic keys, by design)."""
    if not s:
        return (), ()
    kinds = ["slice", "int", "ellipsis"] + ([] if basic_only else ["int_array", "mask"])
    kind = rng.choice(kinds)
    if kind == "slice":
        step = int(rng.choice([1, 2, -1, -2]))
        start, stop = (int(v) if v is not None else None for v in rng.choice([None, 0, 1, -1], size=2))
        key: Any = (slice(start, stop, step), Ellipsis)
    elif kind == "int":
        key = (int(rng.integers(-s[0], s[0])), Ellipsis)
    elif kind == "ellipsis":
        key = (Ellipsis, slice(None, None, -1)) if len(s) > 1 else (Ellipsis,)
    elif kind == "int_array":
        key = (rng.integers(s[0], size=int(rng.integers(1, 5))),)  # repeats: the last write wins
    else:
        key = (rng.random(s) < 0.5,)
    return key, np.zeros(s)[key].shape


def _value_for(rng, pool: list, region: tuple) -> tuple[int | None, str]:
    """A pool value that broadcasts to ``region`` (else a constant)."""
    fits = [j for j, t in enumerate(pool) if _broadcast(t, region) == region]
    if fits and rng.random() < 0.85:
        return int(rng.choice(fits)), "value"
    return None, "constant"


def _in_place_step(rng, kind, pool, groups):
    if kind == "fresh_update":  # z = zeros(s); z[key] = v; z op= w
        i = _pick(rng, pool)
        s = pool[i]
    else:
        candidates = [k for k in range(2, len(pool)) if groups.updatable(k)]
        if not candidates:
            return None
        i = int(rng.choice(candidates))
        s = pool[i]
    params: dict = {"op": str(rng.choice(["=", "+=", "-=", "*="]))}
    target = s
    if kind == "view_update":
        if not s:
            return None
        view = str(rng.choice(["index", "reshape", "transpose"]))
        if view == "transpose" and len(s) != 2:
            view = "index"
        if view == "index":
            params["view"] = (slice(None, None, int(rng.choice([1, -1, 2]))),) + (Ellipsis,)
            target = np.zeros(s)[params["view"]].shape
        elif view == "reshape":
            params["view"] = "reshape"
            target = (math.prod(s),)
        else:
            params["view"] = "transpose"
            target = s[::-1]
    key, region = _random_key(rng, target, groups.basic_keys) if params["op"] == "=" or rng.random() < 0.5 \
        else ((Ellipsis,), target)
    params["key"] = key
    j, _ = _value_for(rng, pool, region)
    if params["op"] == "*=" and j is not None and kind != "fresh_update" and groups.of[j] == groups.of[i]:
        j = None  # (t[key] *= t: multiply reads the t it then writes, an error by design when key copies)
    params["constant"] = float(rng.uniform(-1.0, 1.0))
    ops = [i] if j is None else [i, j]
    out = s if kind != "view_update" or rng.random() < 0.6 else target
    params["result"] = "base" if out == s and kind == "view_update" else "target"
    return (kind, ops, params), out


def _apply_in_place(name: str, a: list, params: dict) -> Any:
    base = a[0]
    if name == "fresh_update":
        # (inside vmap, zeros_like: a fresh array of zeros with one example per example of base)
        z = agrad.zeros_like(base) if _batched(base) else agrad.zeros(base.shape, dtype=base.dtype,
                                                                       device=base.device)
        z[...] = base * 0.5  # (a fresh array holding a differentiable value)
        base = z
    target = base
    if name == "view_update":
        view = params["view"]
        target = agrad.reshape(base, (-1,)) if view == "reshape" else base.mT if view == "transpose" else base[view]
    value = a[1] if len(a) > 1 else params["constant"]
    key, op = params["key"], params["op"]
    key = tuple(_like(k, base) if isinstance(k, np.ndarray) else k for k in key)
    if op == "=":
        target[key] = value
    elif op == "+=":
        target[key] += value
    elif op == "-=":
        target[key] -= value
    else:
        target[key] *= value
    return base if params.get("result", "target") == "base" else target


def _batched(t: Any) -> bool:
    return isinstance(t, agrad.Tensor) and t._data.__class__ is BatchedArray


def _pick(rng, pool, pred=lambda s: True):
    # Favour recent values, so that programs are deep rather than wide, but reuse old ones too.
    idx = [i for i, s in enumerate(pool) if pred(s)]
    if not idx:
        return None
    w = np.array([1.0 + i for i in idx])
    return int(rng.choice(idx, p=w / w.sum()))


def _random_step(rng, kind, pool, groups=None):
    if kind in IN_PLACE:
        return _in_place_step(rng, kind, pool, groups)
    if kind == "unary":
        i = _pick(rng, pool)
        return (str(rng.choice(UNARY)), [i], {}), pool[i]
    if kind == "binary":
        i = _pick(rng, pool)
        j = _pick(rng, pool, lambda s: _broadcast(s, pool[i]) is not None)
        out = _broadcast(pool[i], pool[j])
        name = str(rng.choice(BINARY))
        params = {}
        if name == "where_const":
            params["const"] = rng.random(out) < 0.5
        if name == "checkpointed" and rng.random() < 0.3:
            j = i  # the same value in both argument positions of one checkpoint call
            out = pool[i]
        return (name, [i, j], params), out
    if kind == "reduce":
        i = _pick(rng, pool, lambda s: len(s) > 0)
        if i is None:
            return None
        s = pool[i]
        name = str(rng.choice(["sum", "mean", "logsumexp", "softmax", "log_softmax", "var"]))
        axis = int(rng.integers(len(s)))
        if name in ("softmax", "log_softmax"):
            return (name, [i], {"axis": axis}), s
        if name == "var":
            if s[axis] < 2:
                return None
            keep = bool(rng.random() < 0.5)
            out = tuple(1 if k == axis else n for k, n in enumerate(s)) if keep else s[:axis] + s[axis + 1:]
            return (name, [i], {"axis": axis, "keepdims": keep, "correction": float(rng.integers(2))}), out
        axis_p: Any = None if rng.random() < 0.3 else axis
        keep = bool(rng.random() < 0.4)
        if axis_p is None:
            out = tuple(1 for _ in s) if keep else ()
        else:
            out = tuple(1 if k == axis else n for k, n in enumerate(s)) if keep else s[:axis] + s[axis + 1:]
        return (name, [i], {"axis": axis_p, "keepdims": keep}), out
    if kind == "shape":
        i = _pick(rng, pool)
        s = pool[i]
        choice = str(rng.choice(["reshape", "transpose", "expand", "squeeze", "broadcast", "index", "take_repeat",
                                 "bool_mask"]))
        n = math.prod(s)
        if choice == "reshape":
            shape = (n,) if rng.random() < 0.5 else (1, n)
            return ("reshape", [i], {"shape": shape}), shape
        if choice == "transpose" and len(s) == 2:
            return ("transpose", [i], {}), s[::-1]
        if choice == "expand":
            return ("expand_dims", [i], {"axis": 0}), (1,) + s
        if choice == "squeeze" and 1 in s:
            ax = s.index(1)
            return ("squeeze", [i], {"axis": ax}), s[:ax] + s[ax + 1:]
        if choice == "broadcast" and _broadcast(s, (2, 3)) is not None:
            out = _broadcast(s, (2, 3))
            return ("broadcast_to", [i], {"shape": out}), out
        if choice == "index" and len(s) >= 1 and s[0] >= 2:
            return ("getitem", [i], {"key": (slice(1, None),)}), (s[0] - 1,) + s[1:]
        if choice == "take_repeat" and len(s) >= 1:
            idx = rng.integers(s[0], size=3)  # repeated indices: their gradients must add up
            return ("take0", [i], {"indices": idx}), (3,) + s[1:]
        if choice == "bool_mask" and len(s) >= 1 and n >= 1:
            mask = rng.random(s) < 0.6
            mask.reshape(-1)[0] = True
            return ("mask", [i], {"mask": mask}), (int(mask.sum()),)
        return None
    if kind == "linalg":
        i = _pick(rng, pool, lambda s: len(s) >= 1)
        if i is None:
            return None
        s = pool[i]
        j = _pick(rng, pool, lambda t: len(t) >= 1 and t[0] == s[-1] if len(t) <= 2 else False)
        if j is None:
            j = _pick(rng, pool, lambda t: len(t) >= 1 and t[-1] == s[-1])
            if j is None:
                return None
            # x @ y.T-style contraction over the last axes with tensordot
            t = pool[j]
            return ("tensordot_last", [i, j], {}), s[:-1] + t[:-1]
        t = pool[j]
        out = s[:-1] + t[1:] if len(t) == 2 else s[:-1]
        return ("matmul", [i, j], {}), out
    if kind == "stack":
        i = _pick(rng, pool, lambda s: s == ())
        j = _pick(rng, pool, lambda s: s == ())
        if i is None or j is None:
            i = _pick(rng, pool)
            j = _pick(rng, pool, lambda s: s == pool[i])
            if pool[i] and rng.random() < 0.5:
                return ("concat", [i, j], {}), (2 * pool[i][0],) + pool[i][1:]
            return ("stack", [i, j], {}), (2,) + pool[i]
        return ("asarray_list", [i, j], {}), (2,)
    return None


def run_program(prog: Program, x: Any, y: Any) -> Any:
    # Raw arrays become Tensors first: array-api-strict arrays refuse `raw <op> Tensor`.
    vals = [agrad.asarray(x), agrad.asarray(y)]
    for name, ops, params in prog.steps:
        a = [vals[i] for i in ops]
        vals.append(_apply(name, a, params))
    w = _like(prog.weights, vals[-1])
    return agrad.sum(vals[-1] * w)


def _like(host: Any, ref: Any) -> Any:
    """A host array as a constant beside ``ref`` (same backend and device)."""
    data = ref.data if isinstance(ref, agrad.Tensor) else ref
    while data.__class__ is BatchedArray:  # (inside vmap: the backend array under the examples)
        data = data.value._data
    xp = B.namespace_of((data,), "fuzz")
    dev = data.device
    return B.from_numpy(np.asarray(host), backend=xp.name, device=dev)


def _apply(name: str, a: list, params: dict) -> Any:
    if name in IN_PLACE:
        return _apply_in_place(name, a, params)
    if name in UNARY:
        return _unary(name)(a[0])
    if name in BINARY:
        p = dict(params)
        if "const" in p:
            p["const"] = _like(p["const"], a[0])
        return _binary(name, a[0], a[1], p)
    if name == "sum":
        return agrad.sum(a[0], axis=params["axis"], keepdims=params["keepdims"])
    if name == "mean":
        return agrad.mean(a[0], axis=params["axis"], keepdims=params["keepdims"])
    if name == "logsumexp":
        return agrad.logsumexp(a[0], axis=params["axis"], keepdims=params["keepdims"])
    if name == "var":
        return agrad.var(a[0], axis=params["axis"], keepdims=params["keepdims"], correction=params["correction"])
    if name == "softmax":
        return agrad.softmax(a[0], axis=params["axis"])
    if name == "log_softmax":
        return agrad.log_softmax(a[0], axis=params["axis"])
    if name == "reshape":
        return agrad.reshape(a[0], params["shape"])
    if name == "transpose":
        return agrad.matrix_transpose(a[0])
    if name == "expand_dims":
        return agrad.expand_dims(a[0], axis=params["axis"])
    if name == "squeeze":
        return agrad.squeeze(a[0], axis=params["axis"])
    if name == "broadcast_to":
        return agrad.broadcast_to(a[0], params["shape"])
    if name == "getitem":
        return a[0][params["key"]]
    if name == "take0":
        return agrad.take(a[0], _like(params["indices"], a[0]), axis=0)
    if name == "mask":
        return a[0][_like(params["mask"], a[0])]
    if name == "matmul":
        return a[0] @ a[1]
    if name == "tensordot_last":
        return agrad.tensordot(a[0], a[1], axes=([a[0].ndim - 1], [a[1].ndim - 1]))
    if name == "stack":
        return agrad.stack([a[0], a[1]])
    if name == "concat":
        return agrad.concat([a[0], a[1]], axis=0)
    if name == "asarray_list":
        return agrad.asarray([a[0], a[1]])
    raise KeyError(name)


# --------------------------------------------------------------------------- transform levels

DERIVATIVE_KINDS = ["grad", "grad_closure", "value_and_grad", "grad_dict", "vjp", "vjp_pair", "jvp", "jvp_pair",
                    "jvp_closure", "jacobian_forward", "jacobian_reverse", "gradients_api", "pullback_of_traced"]
SECOND_ORDER_KINDS = ["hessian", "hvp"]
IDENTITY_KINDS = ["checkpoint", "custom_vjp", "custom_jvp"]
VMAP_KINDS = ["vmap", "vmap_closure"]


@dataclass
class Batch:
    """A vmap level: ``sum(weights * vmap(g, in_axes, out_axes)(X, Y))`` where example k
    of X is ``x + deltas[0][k]`` (along axis ``in_axes[0]`` of X; X is x itself where
    ``in_axes[0]`` is None) and ``g`` is the level below (``pair``: it and its sine,
    stacked, so that out_axes has two places to put the examples)."""

    n: int  # examples
    in_axes: tuple  # per argument: the axis of its examples, or None (not mapped)
    out_axis: int
    pair: bool
    deltas: list  # per argument: host (n, *shape) offsets of the examples
    weights: Any  # host, the shape of vmap's output
    closure: int | None = None  # vmap_closure: the argument the mapped function closes over

    def describe(self) -> str:
        shared = f", closing over arg {self.closure}" if self.closure is not None else ""
        return (f"in_axes {self.in_axes}, out_axes {self.out_axis}, {self.n} examples"
                f"{', of (S, sin S)' if self.pair else ''}{shared}")


@dataclass
class Level:
    kind: str
    chosen: tuple  # argument positions differentiated
    v: list  # host direction per argument (zeros where not chosen)
    w: Any = None  # second direction (second-order kinds), for argument chosen[0]
    batch: Batch | None = None  # vmap levels

    def describe(self) -> str:
        if self.batch is not None:
            return f"{self.kind} ({self.batch.describe()})"
        return f"{self.kind} over args {self.chosen}"


def _dot(g: Any, v_host: Any) -> Any:
    return agrad.sum(g * _like(v_host, g))  # (Tensor first: array-api-strict arrays do not defer to Tensors)


def _replace(args: list, idx: tuple, new: tuple) -> list:
    out = list(args)
    for i, n in zip(idx, new):
        out[i] = n
    return out


def make_level(level: Level, S: Callable) -> Callable:
    """The scalar function of level ``level`` built on the scalar function ``S``."""
    ch, kind = level.chosen, level.kind

    def S_next(x: Any, y: Any) -> Any:
        args = [x, y]
        vs = [level.v[i] for i in ch]
        if kind == "grad":
            gs = agrad.grad(S, argnums=ch)(*args)
            return _sum_dots(gs, vs)
        if kind == "grad_closure":
            (j,) = ch[:1]
            g = agrad.grad(lambda z: S(*_replace(args, (j,), (z,))))(args[j])
            return _dot(g, level.v[j])
        if kind == "value_and_grad":
            value, gs = agrad.value_and_grad(S, argnums=ch)(*args)
            # value - S(...) is 0, but only if the value stays differentiable does it add nothing above.
            return _sum_dots(gs, vs) + 0.37 * value - 0.37 * S(*args)
        if kind == "grad_dict":
            g = agrad.grad(lambda d: S(d["a"], d["b"]))({"a": x, "b": y})
            return _dot(g["a"], level.v[0]) + _dot(g["b"], level.v[1])
        if kind in ("vjp", "vjp_pair"):
            f = lambda *c: S(*_replace(args, ch, c))  # noqa: E731
            if kind == "vjp":
                out, pb = agrad.vjp(f, *[args[i] for i in ch])
                gs = pb(agrad.ones_like(out))
            else:
                def f2(*c):
                    o = f(*c)
                    return (o, {"again": o})  # the same Tensor at two output positions
                out, pb = agrad.vjp(f2, *[args[i] for i in ch])
                half = agrad.full_like(out[0], 0.5)
                gs = pb((half, {"again": half}))
            return _sum_dots(gs, vs)
        if kind in ("jvp", "jvp_closure", "jvp_pair"):
            if kind == "jvp_closure":
                j = ch[0]
                _, t = agrad.jvp(lambda z: S(*_replace(args, (j,), (z,))), (args[j],), (_like(level.v[j], args[j]),))
                return t
            f = lambda *c: S(*_replace(args, ch, c))  # noqa: E731
            tangents = [_like(level.v[i], args[i]) for i in ch]
            if kind == "jvp":
                return agrad.jvp(f, [args[i] for i in ch], tangents)[1]

            def f2(*c):
                o = f(*c)
                return [o, o]
            _, (t1, t2) = agrad.jvp(f2, [args[i] for i in ch], tangents)
            return 0.5 * t1 + 0.5 * t2
        if kind in ("jacobian_forward", "jacobian_reverse"):
            mode = kind.split("_")[1]
            f = lambda *c: S(*_replace(args, ch, c))  # noqa: E731
            js = agrad.jacobian(f, argnums=tuple(range(len(ch))), mode=mode)(*[args[i] for i in ch])
            return _sum_dots(js, vs)
        if kind == "gradients_api" and not any(isinstance(args[i], agrad.Tensor) and not args[i].requires_grad
                                                for i in ch):
            # torch.autograd.grad style on explicit leaves made from the (possibly traced) args
            leaves = [agrad.identity(args[i]) if isinstance(args[i], agrad.Tensor)
                      else agrad.tensor(args[i], requires_grad=True) for i in ch]
            with agrad.enable_grad():
                out = S(*_replace(args, ch, leaves))
                gs = agrad.gradients([out], leaves, create_graph=True)
            return _sum_dots(gs, vs)
        if kind in ("gradients_api", "pullback_of_traced"):  # (gradients_api on a tangent-carrying arg)
            # The cotangent is a traced value equal to 1: its derivative must flow through the pullback.
            f = lambda *c: S(*_replace(args, ch, c))  # noqa: E731
            out, pb = agrad.vjp(f, *[args[i] for i in ch])
            one = agrad.exp(agrad.sum(_as_tensor(args[ch[0]]) * 0.0))
            gs = pb(one)
            return _sum_dots(gs, vs)
        if kind == "hessian":
            j = ch[0]
            H = agrad.hessian(lambda z: S(*_replace(args, (j,), (z,))))(args[j])
            n = len(level.v[j].shape)
            Hv = agrad.tensordot(H, _like(level.v[j], H), axes=n) if n else H * _like(level.v[j], H)
            return _dot(Hv, level.w)
        if kind == "hvp":
            j = ch[0]
            hv = agrad.hvp(lambda z: S(*_replace(args, (j,), (z,))), args[j], _like(level.v[j], args[j]))
            return _dot(hv, level.w)
        if kind in VMAP_KINDS:
            return _vmap_level(level.batch, S, args)
        if kind == "checkpoint":
            return agrad.checkpoint(S)(x, y)
        if kind == "custom_vjp":
            return _custom_vjp_of(S)(x, y)
        if kind == "custom_jvp":
            return _custom_jvp_of(S)(x, y)
        raise KeyError(kind)

    return S_next


def _vmap_level(p: Batch, S: Callable, args: list) -> Any:
    def g(xk: Any, yk: Any) -> Any:
        out = S(xk, yk)
        return agrad.stack([out, agrad.sin(out)]) if p.pair else out

    batched = []
    for a, ax, d in zip(args, p.in_axes, p.deltas):
        if ax is None:
            batched.append(a)
            continue
        a = _as_tensor(a)  # (the examples are made from the argument, so derivatives of it flow into them)
        at = ax % (a.ndim + 1)
        batched.append(agrad.expand_dims(a, axis=at) + _like(np.moveaxis(d, 0, at), a))
    if p.closure is None:
        out = agrad.vmap(g, in_axes=p.in_axes, out_axes=p.out_axis)(*batched)
    else:
        m = 1 - p.closure  # (the mapped argument)

        def g1(z: Any) -> Any:
            return g(*_replace(args, (m,), (z,)))

        out = agrad.vmap(g1, in_axes=p.in_axes[m], out_axes=p.out_axis)(batched[m])
    return agrad.sum(out * _like(p.weights, out))


def _vmap_reference(S: Callable, case: "Case", p: Batch, backend_name: str, device: Any) -> tuple[float, float]:
    """A vmap level by the loop over its examples (S on the host's perturbed arguments,
    one at a time), and the size of the terms it adds up."""
    total, scale = 0.0, 0.0
    for k in range(p.n):
        xs = [base if ax is None else base + d[k] for base, ax, d in zip((case.x, case.y), p.in_axes, p.deltas)]
        v = _eval(S, xs[0], xs[1], backend_name, device)
        h = np.array([v, math.sin(v)]) if p.pair else np.array(v)
        terms = np.take(p.weights, k, axis=p.out_axis) * h
        total += float(np.sum(terms))
        scale += float(np.sum(np.abs(terms)))
    return total, scale


def _random_batch(rng: np.random.Generator, shapes: tuple, kind: str, unmapped_ok: bool) -> Batch:
    n = int(rng.choice([2, 3]))
    axes: list = []
    for s in shapes:  # axis 0, another one, or one counted from the end
        r = rng.random()
        if r < 0.35 or (r < 0.7 and not s):
            axes.append(0)
        elif r < 0.7:
            axes.append(int(rng.integers(1, len(s) + 1)))
        else:
            axes.append(-int(rng.integers(1, len(s) + 2)))
    closure = None
    if kind == "vmap_closure":
        closure = int(rng.integers(2))
        axes[closure] = None
    elif unmapped_ok and rng.random() < 0.3:
        axes[int(rng.integers(2))] = None
    pair = bool(rng.random() < 0.5)
    r = int(pair)  # the rank of one example's output
    out_axis = int(rng.integers(-(r + 1), r + 1))
    out_shape = [2] * r
    out_shape.insert(out_axis % (r + 1), n)
    deltas = [rng.uniform(-0.3, 0.3, size=(n,) + s) if ax is not None else np.zeros((n,) + s)
              for s, ax in zip(shapes, axes)]
    return Batch(n, tuple(axes), out_axis, pair, deltas, rng.standard_normal(tuple(out_shape)), closure)


def _raw(a: Any) -> Any:
    return a.data if isinstance(a, agrad.Tensor) else a


def _as_tensor(a: Any) -> Any:
    return a if isinstance(a, agrad.Tensor) else agrad.asarray(a)


def _sum_dots(gs: Any, vs: list) -> Any:
    total = None
    for g, v in zip(gs, vs):
        term = _dot(g, v)
        total = term if total is None else total + term
    return total


def _custom_vjp_of(S: Callable) -> Callable:
    """S with a hand-written reverse rule: agrad.vjp of S itself."""

    @agrad.custom_vjp
    def f(x, y):
        return S(x, y)

    def fwd(x, y):
        return f(x, y), (x, y)

    def bwd(res, g):
        _, pb = agrad.vjp(S, *res)
        return pb(g)

    f.defvjp(fwd, bwd)
    return f


def _custom_jvp_of(S: Callable) -> Callable:
    """S with a hand-written forward rule: agrad.jvp of S itself."""

    @agrad.custom_jvp
    def f(x, y):
        return S(x, y)

    @f.defjvp
    def rule(primals, tangents):
        return agrad.jvp(S, list(primals), list(tangents))

    return f


# --------------------------------------------------------------------------- a case


@dataclass
class Case:
    seed: int
    program: Program
    levels: list
    x: Any
    y: Any
    aliased: bool

    def describe(self) -> str:
        tower = " -> ".join(lv.describe() for lv in self.levels) or "(no transform)"
        return (f"seed {self.seed}; inputs {'the SAME array twice' if self.aliased else 'x, y'}; "
                f"tower: {tower}\n{self.program.describe()}")


VMAP_RATE = 0.3  # the share of cases with vmap levels


def random_case(seed: int, max_levels: int = 3, vmap_rate: float = VMAP_RATE) -> Case:
    rng = np.random.default_rng(seed)
    # The vmap levels are drawn from a stream of their own, so that a seed's program and
    # other levels are what they were before vmap joined (but for in-place keys, see below).
    vrng = np.random.default_rng([seed, 19])
    with_vmap = bool(vrng.random() < vmap_rate)
    aliased = bool(rng.random() < 0.2)
    sx = SHAPES[int(rng.integers(len(SHAPES)))]
    sy = sx if aliased else SHAPES[int(rng.integers(len(SHAPES)))]
    prog = random_program(rng, (sx, sy), int(rng.integers(2, 9)), basic_keys=with_vmap)
    prog.weights = rng.standard_normal(prog.shapes[-1])
    x = rng.uniform(-1.2, 1.2, size=sx)
    y = x if aliased else rng.uniform(-1.2, 1.2, size=sy)
    levels = []
    n_levels = int(rng.integers(1, max_levels + 1))
    for _ in range(n_levels):
        r = rng.random()
        kinds = DERIVATIVE_KINDS if r < 0.7 else (SECOND_ORDER_KINDS if r < 0.82 else IDENTITY_KINDS)
        kind = str(rng.choice(kinds))
        if kind in ("grad_closure", "jvp_closure", "hessian", "hvp"):
            chosen: tuple = (int(rng.integers(2)),)
        elif kind == "grad_dict":
            chosen = (0, 1)
        else:
            chosen = [(0,), (1,), (0, 1), (1, 0)][int(rng.integers(4))]
        v = [rng.standard_normal(sx) if 0 in chosen else np.zeros(sx),
             rng.standard_normal(sy) if 1 in chosen else np.zeros(sy)]
        w = rng.standard_normal((sx, sy)[chosen[0]])
        levels.append(Level(kind, chosen, v, w))
    if with_vmap:
        # Inside vmap, writing a batched value into an unbatched array is an error by design; a program
        # with in-place statements gets both arguments mapped, so that all its values are batched.
        unmapped_ok = not any(name in IN_PLACE for name, _, _ in prog.steps)
        for _ in range(1 if vrng.random() < 0.75 else 2):
            kind = "vmap_closure" if unmapped_ok and vrng.random() < 0.3 else "vmap"
            batch = _random_batch(vrng, (sx, sy), kind, unmapped_ok)
            zeros = [np.zeros(sx), np.zeros(sy)]
            levels.insert(int(vrng.integers(len(levels) + 1)), Level(kind, (), zeros, batch=batch))
    return Case(seed, prog, levels, x, y, aliased)


def _scalar(t: Any) -> float:
    return float(B.to_numpy(_raw(t)))


def _eval(S: Callable, x_host: Any, y_host: Any, backend_name: str, device: Any, same: bool = False) -> float:
    x = B.from_numpy(x_host, backend=backend_name, device=device)
    y = x if same else B.from_numpy(y_host, backend=backend_name, device=device)
    return _scalar(S(x, y))


def _richardson(d: Callable[[float], float], h: float) -> tuple[float, float]:
    """Richardson extrapolation of a central difference ``d(h)`` (error O(h^2)) at two
    scales: the better estimate and the gap between the two, a measure of its own error
    (large where the function's higher derivatives are large)."""
    d1, d2, d4 = d(h), d(h / 2), d(h / 4)
    coarse, fine = (4 * d2 - d1) / 3, (4 * d4 - d2) / 3
    return fine, abs(fine - coarse)


def _directional(S: Callable, case: Case, lv: Level, backend_name: str, device: Any) -> tuple[float, float]:
    """sum over chosen args of <dS/d arg, v>, by central differences; and its error estimate."""

    def d(h):
        xp_, yp_ = case.x + h * lv.v[0], case.y + h * lv.v[1]
        xm_, ym_ = case.x - h * lv.v[0], case.y - h * lv.v[1]
        return (_eval(S, xp_, yp_, backend_name, device) - _eval(S, xm_, ym_, backend_name, device)) / (2 * h)

    return _richardson(d, 2e-3)


def _second(S: Callable, case: Case, lv: Level, backend_name: str, device: Any) -> tuple[float, float]:
    """<v, H w> for argument chosen[0], by central differences of central differences."""
    j = lv.chosen[0]

    def at(a, b):
        args = [case.x.copy(), case.y.copy()]
        args[j] = args[j] + a * lv.v[j] + b * lv.w
        return _eval(S, args[0], args[1], backend_name, device)

    def d(h):
        return (at(h, h) - at(h, -h) - at(-h, h) + at(-h, -h)) / (4 * h * h)

    return _richardson(d, 4e-3)


def check_case(case: Case, backend_name: str = "numpy", device: Any = None) -> str | None:
    """None if every level matches finite differences of the level below, else a report."""
    S = lambda x, y: run_program(case.program, x, y)  # noqa: E731
    towers = [S]
    for lv in case.levels:
        towers.append(make_level(lv, towers[-1]))
    with agrad.use_backend(backend_name):
        for k, lv in enumerate(case.levels, start=1):
            got = _eval(towers[k], case.x, case.y, backend_name, device, same=case.aliased)
            if lv.kind in VMAP_KINDS:
                want, scale = _vmap_reference(towers[k - 1], case, lv.batch, backend_name, device)
                if not abs(got - want) <= 1e-9 * (1.0 + scale):  # (the same sums, batched: rounding apart)
                    return (f"level {k} ({lv.describe()}) gives {got!r}, the loop over its examples gives {want!r}"
                            f"\n{case.describe()}")
                continue
            if lv.kind in IDENTITY_KINDS:
                want, fd_error = _eval(towers[k - 1], case.x, case.y, backend_name, device, same=case.aliased), 0.0
            elif lv.kind in SECOND_ORDER_KINDS:
                want, fd_error = _second(towers[k - 1], case, lv, backend_name, device)
            else:
                want, fd_error = _directional(towers[k - 1], case, lv, backend_name, device)
            # The finite differences' own error estimate widens the band where the function
            # bends sharply; it is zero for smooth, gentle functions, so no slack is given there.
            tol = 1e-6 * (1.0 + abs(want)) + 10 * fd_error
            if not (abs(got - want) <= tol):
                return (f"level {k} ({lv.describe()}) gives {got!r}, finite differences give {want!r} "
                        f"(their error estimate {fd_error:.2g})\n{case.describe()}")
        return _check_compiled(towers[-1], case, backend_name, device)
    return None


def _check_compiled(S: Callable, case: Case, backend_name: str, device: Any) -> str | None:
    """The whole tower under agrad.compile gives what it gives eagerly, when traced and when
    replayed at other points (bit for bit; to rounding on CuPy, whose CUDA graphs compute
    matrix products without cuBLAS)."""
    compiled = agrad.compile(S)
    one_array = [case.aliased] * 3 + [not case.aliased]  # then the other way: not a replay of the first
    for shift, aliased in zip((0.0, 0.05, -0.03, 0.02), one_array):
        if aliased and case.x.shape != case.y.shape:
            continue
        x = B.from_numpy(case.x + shift, backend=backend_name, device=device)
        y = x if aliased else B.from_numpy((case.x if case.aliased else case.y) - shift, backend=backend_name,
                                           device=device)
        want, got = B.to_numpy(_raw(S(x, y))), B.to_numpy(_raw(compiled(x, y)))
        same = want.tobytes() == got.tobytes() if backend_name != "cupy" else \
            np.allclose(want, got, rtol=1e-12, atol=1e-12, equal_nan=True)
        if not same or want.dtype != got.dtype or want.shape != got.shape:
            return f"compiled gives {got!r}, eager gives {want!r} (inputs shifted by {shift})\n{case.describe()}"
    return None


def run(cases: int, start: int = 0, backend_name: str = "numpy", device: Any = None,
        max_levels: int = 3, stop_after: int = 5, vmap_rate: float = VMAP_RATE) -> tuple[int, list[str]]:
    failures = []
    for seed in range(start, start + cases):
        case = random_case(seed, max_levels, vmap_rate)
        try:
            report = check_case(case, backend_name, device)
        except NotImplementedError as e:
            if "its rule would be lost" not in str(e):  # (a documented limitation of vmap, raised clearly)
                report = f"raised {type(e).__name__}: {e}\n{case.describe()}"
            else:
                report = None
        except Exception as e:  # an exception is a finding too, reported with its case
            report = f"raised {type(e).__name__}: {e}\n{case.describe()}"
        if report is not None:
            failures.append(report)
            if len(failures) >= stop_after:
                break
    return cases, failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--device", default=None)
    p.add_argument("--max-levels", type=int, default=3)
    p.add_argument("--stop-after", type=int, default=20)
    p.add_argument("--vmap-rate", type=float, default=VMAP_RATE, help="the share of cases with vmap levels")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    n, failures = run(args.cases, args.start, args.backend, args.device, args.max_levels, args.stop_after,
                      args.vmap_rate)
    for f in failures:
        print("MISMATCH:", f, "\n", file=sys.stderr)
    print(f"{n} cases from seed {args.start} on {args.backend}: {len(failures)} mismatches "
          f"in {time.perf_counter() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
