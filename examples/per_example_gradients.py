"""Per-example gradients of the seed's MNIST network with agrad.vmap, and DP-SGD on top.

    python examples/per_example_gradients.py --data-dir ../shared/data/mnist
    python examples/per_example_gradients.py --epochs 1 --clip 1.0 --noise-multiplier 1.1

``agrad.vmap(agrad.grad(loss), in_axes=(None, 0, 0))`` gives the gradient of every
example of a batch at once (one pass over the batch, no Python loop). DP-SGD (Abadi et
al., 2016) then clips each example's gradient to norm ``--clip`` C, sums them, adds
Gaussian noise of standard deviation ``--noise-multiplier`` sigma times C, divides by the
batch size and takes an SGD step: no example can move the model by more than C, and the
noise hides what any one of them did. ``--noise-multiplier 0 --clip inf`` is plain SGD
computed from per-example gradients. (No privacy accountant here: the epsilon of a run
depends on sigma, the sampling rate batch/60000 and the number of steps.)

Shows a progress bar per epoch, prints the test accuracy and the time of each epoch, and
saves the seed's figures (as examples/mnist_mlp.py does) and results.json into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import agrad
from agrad import backend as B
from agrad import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mnist_mlp  # noqa: E402  (its data loading, evaluation, progress-bar and figure conventions)

tqdm = mnist_mlp.tqdm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=mnist_mlp._HelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=128, help="examples per step")
    p.add_argument("--lr", type=float, default=0.5, help="SGD learning rate (no momentum)")
    p.add_argument("--clip", type=float, default=1.0, help="C: each example's gradient is clipped to this norm")
    p.add_argument("--noise-multiplier", type=float, default=1.1, help="sigma: the noise's std is sigma * C")
    p.add_argument("--hidden", type=int, default=72, help="hidden units (the seed uses 72)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, batch order and noise")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="parameters' and data's dtype")
    p.add_argument("--train-size", type=int, default=None, help="use only the first N training images")
    p.add_argument("--data-dir", default=None,
                   help="folder with the four MNIST IDX files (default: ../shared/data/mnist "
                   "if present, else $AGRAD_DATA_DIR or ~/.cache/agrad, downloading the files when online)")
    p.add_argument("--out", default="runs/per_example_gradients", help="folder for the figures and results.json")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.hidden < 1 or (args.train_size is not None
                                                                        and args.train_size < 1):
        p.error("--epochs, --batch-size, --hidden and --train-size must be positive")
    if args.lr <= 0 or not args.clip > 0 or args.noise_multiplier < 0:
        p.error("--lr and --clip must be positive and --noise-multiplier non-negative")
    return args


def per_example_loss(model):
    """loss(params, x, y) of ONE example (x of shape (784,), y a 0-d label), for vmap: the
    model called on a batch of one with ``params`` in place of its parameters."""

    def loss(params, x, y):
        f = nn.utils.functional_call(model, params, x[None, ...])
        return nn.logistic_loss(f, y[None, ...], check_labels=False)  # (no label check: it reads values)

    return loss


def dp_sgd_update(grads, clip, sigma, rng, batch_size):
    """DP-SGD's update direction from per-example gradients (a dict of (B, ...) Tensors):
    each example's gradient clipped to norm ``clip``, summed, Gaussian noise of std
    ``sigma * clip`` added, divided by the batch size. Returns (update, the examples'
    gradient norms before clipping)."""
    squares = [agrad.sum(agrad.reshape(g * g, (g.shape[0], -1)), axis=1) for g in grads.values()]
    norms = agrad.sqrt(sum(squares[1:], squares[0]))  # (B,): each example's whole-gradient norm
    factor = agrad.minimum(1.0, clip / (norms + 1e-12)) if math.isfinite(clip) else agrad.ones_like(norms)
    update = {}
    for k, g in grads.items():
        summed = agrad.tensordot(factor, g, axes=1)  # sum_i factor_i g_i
        if sigma > 0:
            summed = summed + agrad.random.normal(summed.shape, std=sigma * clip, dtype=summed.dtype,
                                                  device=summed.device, rng=rng)
        update[k] = summed / batch_size
    return update, norms


def train(args, train_split, test_split):
    model = nn.MLP([784, args.hidden, 10], activation="tanh", rng=agrad.random.generator(args.seed),
                   dtype=args.dtype)
    params = nn.utils.parameters_dict(model)  # {name: Tensor} sharing the model's arrays
    loader = agrad.data.DataLoader(train_split.images, train_split.labels, args.batch_size, shuffle=True,
                                   seed=args.seed)
    loss = per_example_loss(model)
    per_example_grads = agrad.vmap(agrad.grad(loss), in_axes=(None, 0, 0))
    noise_rng = agrad.random.generator(args.seed + 1)
    test_x, test_y = B.from_numpy(test_split.images), B.from_numpy(test_split.labels)
    history = {"step_loss": [], "epoch": [], "eval_loss": [], "eval_accuracy": [], "epoch_seconds": [],
               "mean_gradient_norm": [], "clipped_fraction": []}
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        bar = loader
        if tqdm is not None and not args.quiet:
            bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", unit="batch", leave=True, dynamic_ncols=True,
                       mininterval=0.5, file=sys.stdout)
        norm_sum, clipped, seen, shown = 0.0, 0, 0, time.perf_counter()
        for step, (x, y) in enumerate(bar):
            grads = per_example_grads(params, x, y)  # {name: (B, ...)}: one gradient per example
            update, norms = dp_sgd_update(grads, args.clip, args.noise_multiplier, noise_rng, x.shape[0])
            with agrad.no_grad():
                for k, u in update.items():
                    params[k] -= args.lr * u  # (in place: the model's parameters share these arrays)
            if step % 10 == 0:
                n = norms.numpy()
                norm_sum, clipped, seen = norm_sum + float(n.sum()), clipped + int((n > args.clip).sum()), seen + n.size
                with agrad.no_grad():
                    history["step_loss"].append(float(nn.logistic_loss(model(x), y, check_labels=False)))
                if bar is not loader and time.perf_counter() - shown > 0.5:
                    bar.set_postfix(loss=f"{history['step_loss'][-1]:.3f}", grad_norm=f"{norm_sum / seen:.2f}",
                                    refresh=False)
                    shown = time.perf_counter()
        seconds = time.perf_counter() - t0
        ev_loss, ev_acc = mnist_mlp.evaluate(model, test_x, test_y)
        for key, value in (("epoch", epoch), ("eval_loss", ev_loss), ("eval_accuracy", ev_acc),
                           ("epoch_seconds", seconds), ("mean_gradient_norm", norm_sum / seen),
                           ("clipped_fraction", clipped / seen)):
            history[key].append(value)
        print(f"epoch {epoch:2d}: {seconds:6.2f} s ({1e3 * seconds / len(loader):.1f} ms per batch of "
              f"{args.batch_size}), test loss {ev_loss:.4f}, test accuracy {100 * ev_acc:.2f}%; per-example "
              f"gradient norm {norm_sum / seen:.2f} (mean), {100 * clipped / seen:.0f}% clipped", flush=True)
    return model, history


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        os.makedirs(args.out, exist_ok=True)
        data_dir = args.data_dir or mnist_mlp.default_data_dir()
        train_split, test_split = agrad.datasets.mnist(data_dir)
    except (OSError, agrad.data.DatasetError) as exc:
        sys.exit(f"{os.path.basename(sys.argv[0]) or 'per_example_gradients.py'}: error: {exc}")
    if args.train_size is not None:
        train_split = agrad.data.Split(train_split.images[:args.train_size], train_split.labels[:args.train_size])
    print(f"agrad {agrad.__version__} on {agrad.get_backend()}, {args.dtype}; MNIST from {data_dir}: "
          f"{len(train_split)} train, {len(test_split)} test; DP-SGD with C = {args.clip}, sigma = "
          f"{args.noise_multiplier}, batch {args.batch_size}, lr {args.lr}", flush=True)
    model, history = train(args, train_split, mnist_mlp.Named(test_split, "test"))
    results = {"args": vars(args), "history": history, "test_accuracy": history["eval_accuracy"][-1]}
    print(f"final test accuracy {100 * results['test_accuracy']:.2f}%", flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if not args.no_figures:
        import figures

        written = figures.write_all(model, test_split, history, args.out)
        print("figures: " + (", ".join(written) if written else "skipped (install matplotlib: pip install "
                                                                 "'agrad[train]')"))
    return results


if __name__ == "__main__":
    main()
