"""Modules, layers, losses and the seed's unit network."""

from __future__ import annotations

import numpy as np
import pytest

import agrad
from agrad import nn


def test_parameter_traversal_and_names():
    net = nn.MLP([5, 4, 3], rng=agrad.random.generator(0))
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [p.shape for p in net.parameters()] == [(5, 4), (4,), (4, 3), (3,)]
    assert all(p.requires_grad for p in net.parameters())


def test_shared_parameters_are_listed_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3, rng=agrad.random.generator(0))
            self.b = self.a

    assert len(Tied().parameters()) == 2


def test_state_dict_round_trip_and_errors():
    a = nn.MLP([4, 3, 2], rng=agrad.random.generator(0))
    b = nn.MLP([4, 3, 2], rng=agrad.random.generator(1))
    b.load_state_dict(a.state_dict())
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    # loading copies: training one model afterwards leaves the other as it was
    before = [q.numpy().copy() for q in b.parameters()]
    opt = agrad.optim.SGD(a.parameters(), lr=0.5)
    agrad.sum(a(agrad.ones((2, 4)))).backward()
    opt.step()
    for q, q0 in zip(b.parameters(), before):
        np.testing.assert_array_equal(q.numpy(), q0)
    sd = a.state_dict()
    del sd["0.bias"]
    sd["extra"] = agrad.zeros(2)
    with pytest.raises(ValueError, match=r"missing keys: \['0.bias'\].*unexpected keys: \['extra'\]"):
        b.load_state_dict(sd)
    bad = a.state_dict()
    bad["0.weight"] = agrad.zeros((3, 4))
    with pytest.raises(ValueError, match=r"0.weight: checkpoint shape \(3, 4\) != parameter shape \(4, 3\)"):
        b.load_state_dict(bad)


def test_same_seed_same_parameters_on_every_backend(on_backend):
    ref = nn.MLP([6, 5, 2], rng=agrad.random.generator(7), dtype="float64")
    with agrad.use_backend("numpy"):
        host = [p.numpy() for p in ref.parameters()]
    net = nn.MLP([6, 5, 2], rng=agrad.random.generator(7), dtype="float64", device=on_backend.device)
    for p, h in zip(net.parameters(), host):
        np.testing.assert_array_equal(p.numpy(), h)


def test_linear_init_bounds():
    layer = nn.Linear(100, 7, rng=agrad.random.generator(0))
    w = layer.weight.numpy()
    assert np.abs(w).max() <= 0.1 and np.abs(w).max() > 0.09


def test_module_to_device_moves_parameters():
    with agrad.use_backend("array_api_strict"):
        net = nn.MLP([3, 2], rng=agrad.random.generator(0), dtype="float64")
        net.to("device1")
        assert all("device1" in str(p.device) for p in net.parameters())
        x = agrad.tensor(np.ones((2, 3)), device="device1")
        assert "device1" in str(net(x).device)


def test_logistic_loss_matches_definition_and_is_stable(on_backend):
    f = np.array([[1.0, 2.0, 0.5], [1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    y = np.array([1, 0, 2])
    loss = nn.logistic_loss(on_backend(f), on_backend(y, dtype=None))
    m = f.max(axis=1, keepdims=True)
    expected = np.mean(np.log(np.exp(f - m).sum(1)) + m[:, 0] - f[np.arange(3), y])
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-12)
    logits = on_backend(f)
    logits.requires_grad_()
    nn.logistic_loss(logits, on_backend(y, dtype=None)).backward()
    g = logits.grad.numpy()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-12)


def test_logistic_loss_errors():
    f = agrad.tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        nn.logistic_loss(f, agrad.tensor(np.array([0, 3])))
    with pytest.raises(TypeError, match="integer"):
        nn.logistic_loss(f, agrad.tensor(np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        nn.logistic_loss(f, agrad.tensor(np.array([0, 1, 2])))


def test_mse_and_l2():
    p = agrad.tensor(np.array([1.0, 2.0]), requires_grad=True)
    loss = nn.mse_loss(p, agrad.tensor(np.array([0.0, 0.0]))) + nn.l2_penalty([p], 0.1)
    loss.backward()
    np.testing.assert_allclose(float(loss), 2.5 + 0.25)
    np.testing.assert_allclose(p.grad.numpy(), [1.0 + 0.1, 2.0 + 0.2])


def _random_dag(rng, n_inputs, n_units, n_outputs):
    parents, acts = [], []
    for k in range(n_units):
        i = n_inputs + k
        size = int(rng.integers(1, min(i, 4) + 1))
        parents.append(sorted(rng.choice(i, size=size, replace=False).tolist()))
        acts.append(str(rng.choice(["tanh", "sigmoid", "identity"])))
    return parents, acts


@pytest.mark.parametrize("seed", range(5))
def test_unit_network_backpropagation_matches_the_tape(seed, on_backend):
    rng = np.random.default_rng(seed)
    n_in, n_units, n_out = 5, 9, 3
    parents, acts = _random_dag(rng, n_in, n_units, n_out)
    net = nn.UnitNetwork(n_in, parents, acts, n_out, rng=agrad.random.generator(seed), dtype="float64",
                         device=on_backend.device)
    x = on_backend(rng.standard_normal((7, n_in)))
    y = on_backend(rng.integers(0, n_out, 7), dtype=None)
    loss = nn.logistic_loss(net(x), y)
    loss.backward()
    ref_loss, ref_grads = nn.backpropagation(net, x, y)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-12)
    for w, g in zip(net.weights(), ref_grads):
        # a unit that no output depends on gets no gradient from the tape, zeros from backprop
        tape_grad = w.grad.numpy() if w.grad is not None else np.zeros(w.shape)
        np.testing.assert_allclose(tape_grad, agrad.Tensor(g).numpy(), rtol=1e-10, atol=1e-14)


def test_unit_network_with_inputs_wired_to_outputs():
    # two inputs; a hidden unit sees only input 0; the output sees the hidden unit and input 1 directly
    net = nn.UnitNetwork(2, [[0], [2, 1]], ["tanh", "identity"], 1, rng=agrad.random.generator(0), dtype="float64")
    agrad.check_grad(lambda w1, w2: _unit_forward(net, w1, w2), net.w2.data, net.w3.data)


def _unit_forward(net, w1, w2):
    x = agrad.tensor(np.array([[0.5, -1.0], [1.0, 2.0]]))
    h = agrad.tanh(x[:, 0:1] @ w1)
    return agrad.stack([h, x[:, 1]], axis=1) @ w2


def test_unit_network_rejects_cycles_and_bad_parents():
    with pytest.raises(ValueError, match="parents"):
        nn.UnitNetwork(2, [[2]], ["tanh"], 1)
    with pytest.raises(ValueError, match="unknown activation"):
        nn.UnitNetwork(2, [[0]], ["softplus"], 1)
