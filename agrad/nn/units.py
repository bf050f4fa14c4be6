"""The seed's general network of units (section 3) and its Backpropagation (section 5).

Units i >= n compute v_i = sigma_i(w_i . v_Pa(i)) for an arbitrary DAG of parents.
``UnitNetwork`` evaluates it on a batch with the tape engine; ``backpropagation``
is the seed's explicit algorithm, a reference to test the tape against.
"""

from __future__ import annotations

from typing import Any, Sequence

from .. import backend, ops
from .. import random as arandom
from .losses import logistic_loss
from .module import Module, Parameter

# sigma and its derivative written in terms of the pre-activation a and value v.
SIGMAS = {
    "identity": (lambda xp, a: a, lambda xp, a, v: xp.ones_like(a)),
    "tanh": (lambda xp, a: xp.tanh(a), lambda xp, a, v: 1.0 - v * v),
    "sigmoid": (lambda xp, a: 1.0 / (1.0 + xp.exp(-a)), lambda xp, a, v: v * (1.0 - v)),
}
_TAPE_SIGMAS = {"identity": lambda a: a, "tanh": ops.tanh, "sigmoid": ops.sigmoid}


class UnitNetwork(Module):
    """A network of units on a DAG: units 0..n-1 are the inputs; unit i >= n has
    parents ``parents[i - n]`` (all < i) and activation ``activations[i - n]``.
    The last ``n_outputs`` units are the outputs f.

    Example: hidden units that each see part of the image, or inputs wired straight
    to the outputs, are just different parent lists.
    """

    def __init__(self, n_inputs: int, parents: Sequence[Sequence[int]], activations: Sequence[str],
                 n_outputs: int, rng: Any = None, dtype: Any = "float64", device: Any = None) -> None:
        super().__init__()
        if len(parents) != len(activations):
            raise ValueError(f"UnitNetwork: {len(parents)} parent lists but {len(activations)} activations")
        if not 1 <= n_outputs <= len(parents):
            raise ValueError(f"UnitNetwork: n_outputs must be in [1, {len(parents)}], got {n_outputs}")
        for k, (pa, act) in enumerate(zip(parents, activations)):
            i = n_inputs + k
            if not pa or any(not 0 <= j < i for j in pa) or len(set(pa)) != len(pa):
                raise ValueError(f"UnitNetwork: unit {i} has parents {list(pa)}; they must be distinct units < {i}")
            if act not in SIGMAS:
                raise ValueError(f"UnitNetwork: unit {i} has unknown activation {act!r}; choose from {sorted(SIGMAS)}")
        self.n_inputs, self.n_outputs = n_inputs, n_outputs
        self.parents = [list(p) for p in parents]
        self.activations = list(activations)
        for k, pa in enumerate(self.parents):
            bound = 1.0 / len(pa) ** 0.5
            setattr(self, f"w{n_inputs + k}", Parameter(arandom.uniform(-bound, bound, (len(pa),), dtype, device, rng)))

    def weights(self) -> list[Parameter]:
        return [getattr(self, f"w{self.n_inputs + k}") for k in range(len(self.parents))]

    def forward(self, x):
        """x: (batch, n_inputs) -> f: (batch, n_outputs)."""
        if x.shape[1] != self.n_inputs:
            raise ValueError(f"UnitNetwork: expected {self.n_inputs} inputs per example, got shape {tuple(x.shape)}")
        v = [x[:, j] for j in range(self.n_inputs)]
        for pa, act, w in zip(self.parents, self.activations, self.weights()):
            vpa = ops.stack([v[j] for j in pa], axis=1)  # (batch, |Pa(i)|)
            v.append(_TAPE_SIGMAS[act](vpa @ w))
        return ops.stack(v[-self.n_outputs:], axis=1)


def backpropagation(net: UnitNetwork, x: Any, labels: Any) -> tuple[float, list[Any]]:
    """The seed's Backpropagation algorithm, literally, on raw arrays of any backend.

    Returns the mean logistic loss and dL/dw_i for every unit. Forward: v_i and
    v'_i = sigma'_i(w_i . v_Pa(i)). Backward, for i = N..n+1:
    dL/dw_i = dL/dv_i v'_i v_Pa(i) and dL/dv_Pa(i) += dL/dv_i v'_i w_i.
    """
    x = x.data if hasattr(x, "requires_grad") else x
    labels = labels.data if hasattr(labels, "requires_grad") else labels
    xp = backend.namespace_of((x,), "backpropagation")
    ws = [w.data for w in net.weights()]
    n = net.n_inputs
    v = [x[:, j] for j in range(n)]
    dv = []  # v'_i
    for pa, act, w in zip(net.parents, net.activations, ws):
        a = xp.stack([v[j] for j in pa], axis=1) @ w
        sigma, dsigma = SIGMAS[act]
        vi = sigma(xp, a)
        v.append(vi)
        dv.append(dsigma(xp, a, vi))
    f = xp.stack(v[-net.n_outputs:], axis=1)
    loss = float(logistic_loss(f, labels).data)
    # dL/df for the mean logistic loss
    e = xp.exp(f - xp.max(f, axis=1, keepdims=True))
    p = e / xp.sum(e, axis=1, keepdims=True)
    onehot = xp.astype(xp.expand_dims(labels, axis=1) == xp.arange(f.shape[1], device=f.device), f.dtype)
    dl_df = (p - onehot) / f.shape[0]
    dl_dv = [xp.zeros_like(v[0]) for _ in v]
    for m in range(net.n_outputs):
        dl_dv[len(v) - net.n_outputs + m] = dl_df[:, m]
    grads: list[Any] = [None] * len(ws)
    for i in range(len(v) - 1, n - 1, -1):
        k = i - n
        pa = net.parents[k]
        delta = dl_dv[i] * dv[k]  # dL/dv_i v'_i, per example
        vpa = xp.stack([v[j] for j in pa], axis=1)
        grads[k] = xp.sum(xp.expand_dims(delta, axis=1) * vpa, axis=0)
        for q, j in enumerate(pa):
            dl_dv[j] = dl_dv[j] + delta * ws[k][q]
    return loss, grads
