"""The everyday training API (issue 9): modules, initialisers, optimizers with groups and
state, schedulers, clipping, accumulation, pytrees, checkpoints and resuming."""

from __future__ import annotations

import math

import numpy as np
import pytest

import agrad
from agrad import backend as B
from agrad import nn, optim
from agrad.optim import lr_scheduler as sch

# --------------------------------------------------------------------------- modules


def test_sequential_wraps_callables_and_rejects_the_rest():
    seq = nn.Sequential(nn.Linear(3, 2), agrad.tanh, lambda x: x * 2.0)
    x = agrad.tensor(np.ones((1, 3)))
    np.testing.assert_allclose(seq(x).numpy(), 2 * np.tanh(seq[0](x).numpy()), rtol=1e-6)
    assert len(seq) == 3 and len(seq.parameters()) == 2
    with pytest.raises(TypeError, match="item 1"):
        nn.Sequential(nn.Linear(3, 2), 42)


def test_parameters_in_lists_and_dicts_of_modules_are_found():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Linear(2, 2), nn.Linear(2, 1)]
            self.heads = {"a": nn.Linear(1, 1), "b": nn.Linear(1, 1)}
            self.extra = [nn.Parameter(np.zeros(3))]

    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "heads.a.weight",
                     "heads.a.bias", "heads.b.weight", "heads.b.bias", "extra.0"]
    assert isinstance(net.layers, nn.ModuleList) and isinstance(net.heads, nn.ModuleDict)
    with pytest.raises(TypeError, match="ModuleList"):
        net.mixed = [nn.Linear(1, 1), "not a module"]


def test_train_eval_named_modules_apply_and_zero_grad():
    net = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5), nn.Linear(3, 1))
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    assert [n for n, _ in net.named_modules()] == ["", "0", "1", "2"]
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Dropout", "Linear", "Sequential"]
    agrad.sum(net(agrad.tensor(np.ones((4, 2), np.float32)))).backward()
    net.zero_grad(set_to_none=False)
    assert all(float(agrad.sum(agrad.abs(p.grad))) == 0.0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_dropout_in_training_and_evaluation(on_backend):
    drop = nn.Dropout(0.25, rng=agrad.random.generator(0))
    x = on_backend(np.ones((200, 50)), dtype="float32")
    y = drop(x).numpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    drop.eval()
    assert drop(x) is x


def test_initialisers_have_their_scales(on_backend):
    rng = agrad.random.generator(0)
    w = agrad.tensor(on_backend(np.zeros((400, 300)), dtype="float32"))
    assert nn.init.xavier_uniform_(w, rng=rng) is w
    assert abs(float(agrad.max(agrad.abs(w))) - math.sqrt(6 / 700)) < 1e-3
    nn.init.kaiming_normal_(w, rng=rng)
    assert abs(w.numpy().std() - math.sqrt(2 / 400)) < 2e-3
    nn.init.xavier_normal_(w, gain=nn.init.calculate_gain("tanh"), rng=rng)
    assert abs(w.numpy().std() - 5 / 3 * math.sqrt(2 / 700)) < 2e-3
    nn.init.zeros_(w)
    assert float(agrad.sum(agrad.abs(w))) == 0.0 and w.dtype == agrad.float32
    p = nn.Linear(3, 2).weight
    with agrad.enable_grad():
        nn.init.ones_(p)  # an initialiser is an update under no_grad, even while recording
    assert p.requires_grad and p.numpy().tolist() == [[1.0, 1.0]] * 3


# --------------------------------------------------------------------------- optimizers


def test_parameter_groups_have_their_own_hyperparameters():
    a = agrad.tensor(np.ones(2), requires_grad=True)
    b = agrad.tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    agrad.sum(a + b).backward()
    opt.step()
    np.testing.assert_allclose(a.numpy(), [0.9, 0.9])
    np.testing.assert_allclose(b.numpy(), [0.5, 0.5])
    with pytest.raises(KeyError, match="unknown hyperparameters"):
        optim.SGD([{"params": [a], "betas": (0.9, 0.9)}], lr=0.1)
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)


def test_lr_zero_is_allowed_and_negative_never():
    a = agrad.tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([a], lr=0.0)
    agrad.sum(a * a).backward()
    opt.step()
    np.testing.assert_array_equal(a.numpy(), [1.0, 1.0])
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -0.1
    with pytest.raises(ValueError, match="lr"):
        opt.param_groups[0]["lr"] = -0.1
    opt = optim.SGD([a], lr=1.0)
    sched = sch.LambdaLR(opt, lambda k: 1.0 - k)  # 1, 0, then negative
    sched.step()
    assert opt.lr == 0.0
    with pytest.raises(ValueError, match="lr"):
        sched.step()


def _train(make_opt, make_sched, steps, data, model=None, opt=None, sched=None):
    x, y = data
    for _ in range(steps):
        opt.zero_grad()
        nn.logistic_loss(model(x), y).backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("kind", ["sgd", "adam", "lbfgs"])
def test_resume_is_bit_identical(kind, on_backend, tmp_path):
    rng = np.random.default_rng(0)
    x = on_backend(rng.standard_normal((32, 5)), dtype="float32")
    y = on_backend(rng.integers(0, 3, 32), dtype=None)

    def fresh():
        agrad.manual_seed(7)
        model = nn.MLP([5, 8, 3], device=on_backend.device)
        if kind == "sgd":
            opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
        elif kind == "adam":
            opt = optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
        else:
            opt = optim.LBFGS(model.parameters(), max_iter=3)
        sched = sch.CosineAnnealingLR(opt, T_max=10) if kind != "lbfgs" else sch.StepLR(opt, 2, 0.5)
        return model, opt, sched

    def run(model, opt, sched, steps):
        for _ in range(steps):
            def closure():
                opt.zero_grad()
                loss = nn.logistic_loss(model(x), y)
                loss.backward()
                return loss
            if kind == "lbfgs":
                opt.step(closure)
            else:
                closure()
                opt.step()
            sched.step()

    model, opt, sched = fresh()
    run(model, opt, sched, 6)
    straight = [p.numpy() for p in model.parameters()]

    model, opt, sched = fresh()
    run(model, opt, sched, 3)
    agrad.save({"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict(), "epoch": 3},
               tmp_path / "ckpt.safetensors")
    model, opt, sched = fresh()
    with agrad.use_backend(on_backend.backend):
        state = agrad.load(tmp_path / "ckpt.safetensors", device=on_backend.device)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optim"])
    sched.load_state_dict(state["sched"])
    assert state["epoch"] == 3
    run(model, opt, sched, 3)
    for a, b in zip(straight, [p.numpy() for p in model.parameters()]):
        np.testing.assert_array_equal(a, b)


def test_gradient_accumulation_equals_one_big_batch(on_backend):
    rng = np.random.default_rng(1)
    x = on_backend(rng.standard_normal((8, 4)))
    y = on_backend(rng.integers(0, 2, 8), dtype=None)
    agrad.manual_seed(3)
    model = nn.MLP([4, 5, 2], dtype="float64", device=on_backend.device)
    nn.logistic_loss(model(x), y).backward()
    whole = [p.grad.numpy() for p in model.parameters()]
    model.zero_grad()
    for k in range(4):  # four micro-batches of two, each loss scaled by its share
        (nn.logistic_loss(model(x[2 * k:2 * k + 2]), y[2 * k:2 * k + 2]) * 0.25).backward()
    for a, b in zip(whole, [p.grad.numpy() for p in model.parameters()]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_gradient_clipping(on_backend):
    a = agrad.tensor(on_backend(np.zeros(2)), requires_grad=True)
    b = agrad.tensor(on_backend(np.zeros(1)), requires_grad=True)
    (agrad.sum(a * on_backend(np.array([3.0, 0.0]))) + agrad.sum(b * 4.0)).backward()
    norm = nn.utils.clip_grad_norm_([a, b], max_norm=1.0)
    assert float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(a.grad.numpy(), [0.6, 0.0], rtol=1e-5)
    np.testing.assert_allclose(b.grad.numpy(), [0.8], rtol=1e-5)
    nn.utils.clip_grad_value_([a, b], 0.7)
    np.testing.assert_allclose(b.grad.numpy(), [0.7])


# --------------------------------------------------------------------------- schedulers


def _rates(make, steps, lr=1.0):
    p = agrad.tensor(np.ones(1), requires_grad=True)
    opt = optim.SGD([p], lr=lr)
    s = make(opt)
    out = [opt.lr]
    for _ in range(steps):
        s.step()
        out.append(opt.lr)
    return out


def test_schedulers_follow_their_formulas():
    assert _rates(lambda o: sch.StepLR(o, 2, 0.5), 5) == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert _rates(lambda o: sch.MultiStepLR(o, [1, 3], 0.1), 4) == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])
    assert _rates(lambda o: sch.ExponentialLR(o, 0.9), 3) == pytest.approx([1, 0.9, 0.81, 0.729])
    cos = _rates(lambda o: sch.CosineAnnealingLR(o, 4, eta_min=0.1), 4)
    assert cos == pytest.approx([0.1 + 0.9 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(5)])
    warm = _rates(lambda o: sch.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2), 7)
    t_cur = [0, 1, 0, 1, 2, 3, 0, 1]
    t_i = [2, 2, 4, 4, 4, 4, 8, 8]
    assert warm == pytest.approx([(1 + math.cos(math.pi * c / i)) / 2 for c, i in zip(t_cur, t_i)])
    assert _rates(lambda o: sch.LinearLR(o, 0.25, 1.0, 3), 4) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert _rates(lambda o: sch.LambdaLR(o, lambda k: 1 / (k + 1)), 2) == pytest.approx([1, 0.5, 1 / 3])
    one = _rates(lambda o: sch.OneCycleLR(o, max_lr=1.0, total_steps=10, pct_start=0.3), 9)
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0) and one.index(max(one)) == 2
    assert one[-1] == pytest.approx(1 / 25 / 1e4)
    seq = _rates(lambda o: sch.SequentialLR(o, [sch.LinearLR(o, 0.5, 1.0, 2), sch.ExponentialLR(o, 0.5)], [2]), 4)
    assert seq == pytest.approx([0.5, 0.75, 1.0, 0.5, 0.25])


# --------------------------------------------------------------------------- pytrees and functional calls


def test_tree_helpers():
    t = {"b": [1, 2], "a": (3, {"c": 4})}
    leaves, d = agrad.tree.tree_flatten(t)
    assert leaves == [3, 4, 1, 2]
    assert agrad.tree.tree_unflatten(d, [x * 10 for x in leaves]) == {"b": [10, 20], "a": (30, {"c": 40})}
    assert agrad.tree.tree_map(lambda x, y: x + y, t, t) == {"b": [2, 4], "a": (6, {"c": 8})}
    assert agrad.tree.tree_leaves(t) == leaves
    with pytest.raises(ValueError, match="structure"):
        agrad.tree.tree_map(lambda x, y: x, t, {"b": [1, 2]})


def test_module_parameters_as_a_pytree_with_functional_call(on_backend):
    agrad.manual_seed(0)
    model = nn.MLP([3, 4, 2], dtype="float64", device=on_backend.device)
    x = on_backend(np.ones((5, 3)))
    y = on_backend(np.array([0, 1, 1, 0, 1]), dtype=None)
    params = nn.utils.parameters_dict(model)
    grads = agrad.grad(lambda ps: nn.logistic_loss(nn.utils.functional_call(model, ps, x), y))(params)
    nn.logistic_loss(model(x), y).backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(grads[name].numpy(), p.grad.numpy(), rtol=1e-12)
    new = agrad.tree.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    nn.utils.load_parameters_dict(model, new)
    np.testing.assert_allclose(model[0].weight.numpy(), new["0.weight"].numpy())
    assert all(p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- checkpoints


def test_load_returns_the_metadata_and_the_saved_structure(tmp_path):
    path = tmp_path / "m.safetensors"
    agrad.save({"w": np.arange(3.0)}, path, metadata={"note": "hello"})
    state, meta = agrad.load_with_metadata(path)
    assert meta == {"note": "hello"} and list(state) == ["w"]
    agrad.save({"a": [np.ones(2), {"b": 3, "c": None}], "d": (1.5, "x")}, path)
    got = agrad.load(path)
    assert got["a"][1] == {"b": 3, "c": None} and got["d"] == (1.5, "x")
    np.testing.assert_array_equal(got["a"][0].numpy(), [1.0, 1.0])


def test_load_state_dict_refuses_dtype_changes_and_names_every_key():
    m = nn.Linear(2, 2)
    state = {k: np.asarray(v.numpy(), np.float64) for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match=r"bias: checkpoint dtype float64 != parameter dtype float32.*weight: "):
        m.load_state_dict(state)
    m.load_state_dict(state, cast_dtype=True)
    assert m.weight.dtype == agrad.float32
    with pytest.raises(ValueError, match=r"bias: checkpoint shape \(3,\)"):
        m.load_state_dict({"weight": state["weight"], "bias": np.zeros(3)}, cast_dtype=True)


def test_torch_layout_helpers_transpose_exactly_the_linear_weights():
    torch = pytest.importorskip("torch")
    agrad.manual_seed(0)
    model = nn.MLP([3, 3, 2])
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    sd = agrad.to_torch_state_dict(model)
    assert sd["0.weight"].shape == (3, 3)
    tmodel.load_state_dict({k.replace("2.", "2."): torch.from_numpy(v) for k, v in sd.items()})
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(tmodel(torch.from_numpy(x)).detach().numpy(), model(agrad.tensor(x)).numpy(),
                               rtol=1e-5, atol=1e-6)
    back = nn.MLP([3, 3, 2])
    back.load_state_dict(agrad.from_torch_state_dict(back, tmodel.state_dict()))
    for a, b in zip(model.parameters(), back.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_backend_round_trip_of_optimizer_state(tmp_path, on_backend):
    p = agrad.tensor(on_backend(np.ones(3), dtype="float32"), requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    agrad.sum(p * p).backward()
    opt.step()
    agrad.save(opt.state_dict(), tmp_path / "o.safetensors")
    loaded = agrad.load(tmp_path / "o.safetensors")  # onto NumPy: load_state_dict moves it back
    opt2 = optim.Adam([p], lr=0.5)
    opt2.load_state_dict(loaded)
    assert opt2.lr == 0.1 and opt2.steps == 1
    st = opt2.state[id(p)]
    assert B.namespace_of((st["m"],)).name == on_backend.backend and st["t"] == 1
