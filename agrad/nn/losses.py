"""Losses: the seed's multiclass logistic loss (fused) and mean squared error."""

from __future__ import annotations

from typing import Any, Iterable

from .. import backend, ops
from ..batching import batched, rules
from ..compile import hooks
from ..tape import primitive
from ..tensor import Tensor


def _one_hot(xp, labels, n_classes, like):
    # A constant, so it is built from the raw arrays, beside them, whatever backend is
    # selected ("cpu" alone would not say whether NumPy or array-api-strict is meant).
    raw_labels = labels.data if isinstance(labels, Tensor) else labels
    raw_like = like.data if isinstance(like, Tensor) else like
    rxp = backend.namespace_of((raw_labels, raw_like), "logistic_loss")
    classes = rxp.arange(n_classes, device=raw_like.device)
    onehot = rxp.astype(rxp.equal(rxp.expand_dims(raw_labels, axis=1), classes), raw_like.dtype)
    return Tensor(onehot) if xp is not rxp else onehot


def _logistic_forward(xp, logits, labels):
    m = xp.max(logits, axis=1, keepdims=True)
    e = xp.exp(logits - m)
    s = xp.sum(e, axis=1, keepdims=True)
    onehot = _one_hot(xp, labels, logits.shape[1], logits)
    loss = xp.mean(xp.log(s[:, 0]) + m[:, 0] - xp.sum(logits * onehot, axis=1))
    # Keep softmax - onehot for the VJP: the forward pass has computed every piece of it.
    return loss, e / s - onehot


def _logistic_vjp(xp, g, ans, logits, labels, aux=None):
    # dL/df = (softmax(f) - onehot(y)) / N: one fused expression instead of a chain of ops.
    if aux is None or isinstance(logits, Tensor):  # create_graph: recompute, differentiably
        e = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
        aux = e / xp.sum(e, axis=1, keepdims=True) - _one_hot(xp, labels, logits.shape[1], logits)
    return aux * (g / logits.shape[0])


def _logistic_jvp(xp, t, ans, logits, labels):
    e = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
    p = e / xp.sum(e, axis=1, keepdims=True) - _one_hot(xp, labels, logits.shape[1], logits)
    return xp.sum(t * p) / logits.shape[0]


def _logistic_batch(xp, dims, logits, labels):
    """Batching of the loss: each example's mean over its rows, from the same pieces
    (log-sum-exp minus the logit of the label), the examples in front."""
    dl, dy = dims
    logits = rules.to_front(xp, logits, dl) if dl is not None else xp.expand_dims(logits, axis=0)
    labels = rules.to_front(xp, labels, dy) if dy is not None else xp.expand_dims(labels, axis=0)
    under = batched.bottom(logits._data if isinstance(logits, Tensor) else logits)
    ns = backend.namespace_of((under,), "logistic_loss")
    classes = ns.arange(logits.shape[-1], device=under.device)
    onehot = xp.astype(xp.equal(xp.expand_dims(labels, axis=-1), classes), logits.dtype)
    picked = xp.sum(logits * onehot, axis=-1)
    return xp.mean(xp.logsumexp(logits, axis=-1) - picked, axis=-1), 0


logistic_loss_p = primitive("logistic_loss", _logistic_forward, vjp=[_logistic_vjp, None], jvp=[_logistic_jvp, None],
                            has_aux=True, batch=_logistic_batch)


def logistic_loss(logits: Any, labels: Any, check_labels: bool = True) -> Tensor:
    """The seed's multiclass logistic loss, mean over the batch:

        L(f, y) = log sum_y' exp f_y' - f_y

    ``logits`` has shape (N, C); ``labels`` holds N integer classes in [0, C).
    Computed stably (finite for logits of +-1e4) with a fused VJP softmax(f) - onehot(y).
    ``check_labels`` verifies the label range (one small reduction; on a GPU it syncs).
    """
    shape = tuple(logits.shape)
    lab = labels.data if isinstance(labels, Tensor) else labels
    if len(shape) != 2:
        raise ValueError(f"agrad.nn.logistic_loss: logits must be 2-D (batch, classes), got shape {shape}")
    lshape = tuple(getattr(lab, "shape", ()))
    if lshape != (shape[0],):
        raise ValueError(f"agrad.nn.logistic_loss: labels must have shape ({shape[0]},) to match logits "
                         f"{shape}, got {lshape}")
    xp = backend.namespace_of((lab,), "logistic_loss")
    if xp is None or not xp.isdtype(lab.dtype, "integral"):
        raise TypeError(f"agrad.nn.logistic_loss: labels must be an integer array, got {backend.describe(lab)}")
    if check_labels and shape[0]:
        hooks.check_values(lab, _label_range_check(shape[1]), "logistic_loss's label check (check_labels=True; "
                           "pass check_labels=False for labels computed inside the function)", bounds=(0, shape[1]))
    return logistic_loss_p(logits, lab)


def _label_range_check(n_classes: int):
    def check(labels: Any) -> None:
        xp = backend.namespace_of((labels,), "logistic_loss")
        lo, hi = int(xp.min(labels)), int(xp.max(labels))
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"agrad.nn.logistic_loss: labels must lie in [0, {n_classes}), got values in "
                             f"[{lo}, {hi}]")
    return check


cross_entropy = logistic_loss


def mse_loss(pred: Any, target: Any) -> Tensor:
    """Mean squared error: mean((pred - target)^2)."""
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"agrad.nn.mse_loss: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    d = pred - target
    return ops.mean(d * d)


def l2_penalty(parameters: Iterable[Tensor], strength: float) -> Tensor:
    """strength / 2 * sum of squared parameters (the seed's regularisation penalty)."""
    total = None
    for p in parameters:
        term = ops.sum(p * p)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("agrad.nn.l2_penalty: no parameters given")
    return total * (0.5 * strength)
