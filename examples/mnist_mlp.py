"""Train the seed's MNIST network: 784 -> 72 tanh -> 10 identity, multiclass logistic loss.

    python examples/mnist_mlp.py --data-dir ../shared/data/mnist
    python examples/mnist_mlp.py --backend cupy            # the same run on a GPU

Shows a progress bar per epoch (loss and speed), prints the test accuracy after each
epoch, then saves a checkpoint and the seed's figures (hidden-unit weights as 28x28
images, the 10x72 output weights, features and scores of a few test images, and the
training curve). ``--restarts N`` trains from N initialisations and keeps the one with
the lowest loss on a validation split held out from the training set (section 6).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import agrad
from agrad import backend as B
from agrad import nn

try:
    from tqdm import tqdm
except ImportError:  # tqdm is part of the 'train' extra; fall back to plain lines
    tqdm = None


def default_data_dir() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.path.normpath(os.path.join(here, "..", "..", "shared", "data", "mnist"))
    if not os.environ.get("AGRAD_DATA_DIR") and os.path.isdir(shared):
        return shared
    return agrad.data.default_data_dir()


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default (options whose default
    depends on something else say so in their help instead)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action, argparse._StoreTrueAction):
            return action.help
        return super()._get_help_string(action)


class UserError(Exception):
    """A problem with the command line or the machine, reported as one line (no traceback)."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--backend", default=None,
                   help="numpy, cupy or array_api_strict (default: $AGRAD_BACKEND, else numpy)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N, or array_api_strict's device1 (default: the backend's default device)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=128, help="examples per step")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 0.2 for sgd, 1e-3 for adam, 1 for lbfgs)")
    p.add_argument("--optimizer", choices=["sgd", "adam", "lbfgs"], default="sgd",
                   help="SGD (Nesterov momentum), Adam, or full-batch L-BFGS")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (Nesterov)")
    p.add_argument("--schedule", choices=["cosine", "constant", "onecycle"], default="cosine",
                   help="learning-rate schedule, stepped per batch (agrad.optim.lr_scheduler)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="L2 penalty strength")
    p.add_argument("--hidden", type=int, default=72, help="hidden units (the seed uses 72)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the batch order")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="parameters' and data's dtype")
    p.add_argument("--data-dir", default=None,
                   help="folder with the four MNIST IDX files (default: ../shared/data/mnist "
                   "if present, else $AGRAD_DATA_DIR or ~/.cache/agrad, downloading the files when online)")
    p.add_argument("--out", default="runs/mnist_mlp", help="folder for the checkpoint, figures and log")
    p.add_argument("--restarts", type=int, default=1, help="train from N initialisations, keep the best on validation")
    p.add_argument("--val-size", type=int, default=5000, help="validation examples held out when --restarts > 1")
    p.add_argument("--compile", action="store_true",
                   help="trace the training step once with agrad.compile and replay it (sgd and adam)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.lr is None:
        args.lr = {"sgd": 0.2, "adam": 1e-3, "lbfgs": 1.0}[args.optimizer]
    if args.epochs < 1 or args.batch_size < 1 or args.restarts < 1 or args.hidden < 1:
        p.error("--epochs, --batch-size, --restarts and --hidden must be positive")
    if args.lr <= 0:
        p.error(f"--lr must be positive, got {args.lr}")
    if args.compile and args.optimizer == "lbfgs":
        p.error("--compile works with --optimizer sgd or adam (L-BFGS decides on loss values in Python)")
    return args


def check_setup(args) -> None:
    """Everything the command line can get wrong, checked before any training, so that a
    mistake costs a second and one clear line, not a traceback after ten minutes."""
    if args.backend:
        ok, why = agrad.backend.backend_status(args.backend) if args.backend in ("numpy", "cupy", "array_api_strict") \
            else (False, "choose numpy, cupy or array_api_strict")
        if not ok:
            raise UserError(f"--backend {args.backend}: {why}")
        agrad.set_backend(args.backend)
    if args.device:
        try:
            agrad.zeros(1, device=args.device)
        except (agrad.BackendError, ValueError) as exc:
            hint = " (for a GPU, add --backend cupy)" if "cupy" not in str(exc).lower() and \
                str(args.device).startswith(("cuda", "gpu")) else ""
            raise UserError(f"--device {args.device}: {exc}{hint}") from None
    try:
        os.makedirs(args.out, exist_ok=True)
        probe = os.path.join(args.out, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot write there ({exc.strerror or exc})") from None


def evaluate(model, images, labels, batch_size=2000):
    """(mean loss, accuracy) over a whole split, in batches, without recording."""
    xp = B.namespace_of((images,), "evaluate")
    n = images.shape[0]
    total_loss, correct = 0.0, 0
    with agrad.no_grad():
        for lo in range(0, n, batch_size):
            x, y = images[lo:lo + batch_size, ...], labels[lo:lo + batch_size, ...]
            f = model(agrad.Tensor(x))
            total_loss += float(nn.logistic_loss(f, y, check_labels=False)) * x.shape[0]
            correct += int(xp.sum(xp.astype(xp.argmax(f.data, axis=1) == y, xp.int64)))
    return total_loss / n, correct / n


def make_schedule(args, opt, steps_per_epoch):
    total = args.epochs * steps_per_epoch
    if args.schedule == "cosine":
        return agrad.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if args.schedule == "onecycle":
        return agrad.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total)
    return None


def make_optimizer(args, params):
    if args.optimizer == "sgd":
        return agrad.optim.SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.momentum > 0,
                               weight_decay=args.weight_decay)
    if args.optimizer == "adam":
        return agrad.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    return agrad.optim.LBFGS(params, lr=args.lr, max_iter=20, weight_decay=args.weight_decay)


def train_one(args, train, evalset, seed, label):
    """Train one initialisation; returns (model, history)."""
    model = nn.MLP([784, args.hidden, 10], activation="tanh", rng=agrad.random.generator(seed), dtype=args.dtype,
                   device=args.device)
    opt = make_optimizer(args, model.parameters())
    loader = agrad.data.DataLoader(train.images, train.labels, args.batch_size, shuffle=True, seed=seed,
                                   device=args.device)
    ev_x = B.from_numpy(evalset.images, device=args.device)
    ev_y = B.from_numpy(evalset.labels, device=args.device)
    history = {"step_loss": [], "epoch": [], "eval_loss": [], "eval_accuracy": [], "epoch_seconds": []}
    steps_per_epoch = len(loader)
    schedule = make_schedule(args, opt, steps_per_epoch) if args.optimizer != "lbfgs" else None

    def train_step(x, y):
        loss = nn.logistic_loss(model(x), y, check_labels=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    if args.compile:
        # Traced on the first batch (and once more for a smaller last batch), replayed after;
        # the scheduler runs outside and its learning rate reaches every replay. The loss
        # lives in a buffer the next step overwrites (static_outputs): it is read at once.
        train_step = agrad.compile(train_step, static_outputs=True)
    # The untrained network's held-out loss (about log 10 = 2.30): a check of the set-up before
    # any training, and the backend's one-time start-up (CuPy loads its kernels and cuBLAS on
    # their first use) happens here, timed apart from the training.
    t0 = time.perf_counter()
    history["initial_eval_loss"], history["initial_eval_accuracy"] = evaluate(model, ev_x, ev_y)
    print(f"{label}epoch  0: untrained, {evalset.name} loss {history['initial_eval_loss']:.4f}, {evalset.name} "
          f"accuracy {100 * history['initial_eval_accuracy']:.2f}% ({time.perf_counter() - t0:.2f} s, with the "
          f"backend's start-up)", flush=True)
    step, running = 0, None
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        if args.optimizer == "lbfgs":
            x_all, y_all = agrad.Tensor(loader.images), agrad.Tensor(loader.labels)

            def closure():
                opt.zero_grad()
                loss = nn.logistic_loss(model(x_all), y_all)
                loss.backward()
                return loss

            history["step_loss"].append(opt.step(closure))
        else:
            bar = loader
            if tqdm is not None and not args.quiet:
                bar = tqdm(loader, desc=f"{label}epoch {epoch}/{args.epochs}", unit="batch", leave=True,
                           dynamic_ncols=True, mininterval=0.5, file=sys.stdout)
            # Every 10th step's loss is copied on the device and read to the host at most twice
            # a second and at the epoch's end: reading each one at once (float) would make the
            # host wait for the GPU at every reading.
            pending, shown = [], time.perf_counter()
            for x, y in bar:
                loss = train_step(x, y)
                if schedule is not None:
                    schedule.step()
                step += 1
                if step % 10 == 0 or step == 1:
                    pending.append(agrad.asarray(loss.detach(), copy=True))
                    if bar is not loader and time.perf_counter() - shown > 0.5:
                        running = record_losses(pending, history["step_loss"], running)
                        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
                        shown = time.perf_counter()
            running = record_losses(pending, history["step_loss"], running)
        seconds = time.perf_counter() - t0
        ev_loss, ev_acc = evaluate(model, ev_x, ev_y)
        history["epoch"].append(epoch)
        history["eval_loss"].append(ev_loss)
        history["eval_accuracy"].append(ev_acc)
        history["epoch_seconds"].append(seconds)
        print(f"{label}epoch {epoch:2d}: {seconds:6.2f} s, {evalset.name} loss {ev_loss:.4f}, "
              f"{evalset.name} accuracy {100 * ev_acc:.2f}%", flush=True)
    return model, history


def record_losses(pending: list, recorded: list, running: float | None) -> float | None:
    """Move the losses in ``pending`` (device scalars) to ``recorded`` as floats; returns
    their running average (0.9 of the previous one, 0.1 of each new value)."""
    for value in map(float, pending):
        recorded.append(value)
        running = value if running is None else 0.9 * running + 0.1 * value
    pending.clear()
    return running


class Named:
    def __init__(self, split, name):
        self.images, self.labels, self.name = split.images, split.labels, name


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        check_setup(args)
        data_dir = args.data_dir or default_data_dir()
        train, test = agrad.datasets.mnist(data_dir)
    except (UserError, agrad.data.DatasetError) as exc:
        sys.exit(f"{os.path.basename(sys.argv[0]) or 'mnist_mlp.py'}: error: {exc}")
    return run(args, data_dir, train, test)


def run(args, data_dir, train, test) -> dict:
    print(f"agrad {agrad.__version__} on {agrad.get_backend()} (device {args.device or 'default'}), "
          f"{args.dtype}; MNIST from {data_dir}: {len(train)} train, {len(test)} test", flush=True)
    results = {"args": vars(args), "restarts": []}
    test_set = Named(test, "test")
    if args.restarts == 1:
        model, history = train_one(args, Named(train, "train"), test_set, args.seed, "")
        results["restarts"].append({"seed": args.seed, "history": history})
    else:
        rng = agrad.random.generator(args.seed)
        order = rng.permutation(len(train))
        val_idx, tr_idx = order[:args.val_size], order[args.val_size:]
        sub = agrad.data.Split(train.images[tr_idx], train.labels[tr_idx])
        val = Named(agrad.data.Split(train.images[val_idx], train.labels[val_idx]), "validation")
        best = None
        for r in range(args.restarts):
            seed = args.seed + 1 + r
            model_r, history = train_one(args, Named(sub, "train"), val, seed, f"[restart {r + 1}/{args.restarts}] ")
            val_loss = history["eval_loss"][-1]
            results["restarts"].append({"seed": seed, "validation_loss": val_loss, "history": history})
            if best is None or val_loss < best[0]:
                best = (val_loss, seed, model_r, history)
        print("restarts (validation loss, accuracy):")
        for r in results["restarts"]:
            mark = " <- best" if r["seed"] == best[1] else ""
            print(f"  seed {r['seed']}: loss {r['validation_loss']:.4f}, "
                  f"accuracy {100 * r['history']['eval_accuracy'][-1]:.2f}%{mark}")
        _, _, model, history = best
    test_x, test_y = B.from_numpy(test.images, device=args.device), B.from_numpy(test.labels, device=args.device)
    test_loss, test_acc = evaluate(model, test_x, test_y)
    results.update(test_loss=test_loss, test_accuracy=test_acc)
    print(f"final test accuracy {100 * test_acc:.2f}% (loss {test_loss:.4f})", flush=True)
    ckpt = os.path.join(args.out, "mnist_mlp.safetensors")
    agrad.save(model.state_dict(), ckpt, metadata={"sizes": json.dumps(model.sizes), "test_accuracy": f"{test_acc}"})
    print(f"checkpoint: {ckpt}")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if not args.no_figures:
        try:
            import figures
        except ImportError:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import figures
        written = figures.write_all(model, test, history, args.out)
        print("figures: " + (", ".join(written) if written else "skipped (install matplotlib: pip install "
                                                                 "'agrad[train]')"))
    return results


if __name__ == "__main__":
    main()
