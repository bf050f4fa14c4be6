"""The seed's figures for a trained 784-72-10 network, as PNG files (needs matplotlib)."""

from __future__ import annotations

import os

import agrad


def write_all(model, test, history, out: str) -> list[str]:
    """Write the figures into ``out``; returns the paths, or [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    first, second = model.linear_layers()[0], model.linear_layers()[-1]
    M = first.weight.numpy()  # (784, hidden): column j is hidden unit j's weights
    W = second.weight.numpy()  # (hidden, 10)
    hidden = M.shape[1]
    cols = 12 if hidden % 12 == 0 else 10
    rows = -(-hidden // cols)
    paths = []

    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1))
    for j, ax in enumerate(axes.flat):
        ax.axis("off")
        if j < hidden:
            w = M[:, j].reshape(28, 28)
            lim = abs(w).max()
            ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(str(j), fontsize=6, pad=1)
    fig.suptitle(f"input weights of the {hidden} hidden tanh units, as 28x28 images\n"
                 f"(red: positive, blue: negative; each unit scaled to its own largest weight)")
    paths.append(_save(fig, out, "hidden_weights.png", plt))

    fig, ax = plt.subplots(figsize=(10, 2.6))
    lim = abs(W).max()
    im = ax.imshow(W.T, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xlabel("hidden unit")
    ax.set_ylabel("output (digit)")
    ax.set_yticks(range(10))
    fig.colorbar(im, ax=ax, label="weight")
    ax.set_title(f"output weights (10 x {hidden}): how much each hidden unit votes for each digit")
    paths.append(_save(fig, out, "output_weights.png", plt))

    n = 6
    x = test.images[:n]
    with agrad.no_grad():
        xt = agrad.tensor(x, device=first.weight.device)  # beside the model, whatever backend and device
        h = agrad.tanh(first(xt))
        f = second(h)
    h, f = h.numpy(), f.numpy()
    fig, axes = plt.subplots(n, 3, figsize=(8, 1.6 * n), gridspec_kw={"width_ratios": [1, 1.4, 2]})
    for i in range(n):
        axes[i, 0].imshow(x[i].reshape(28, 28), cmap="gray_r")
        axes[i, 0].set_title(f"label {int(test.labels[i])}", fontsize=8)
        axes[i, 1].imshow(h[i].reshape(rows, cols) if rows * cols == hidden else h[i][None, :], cmap="RdBu_r",
                          vmin=-1, vmax=1)
        axes[i, 1].set_title("hidden features", fontsize=8)
        bars = axes[i, 2].bar(range(10), f[i], color=["C3" if d == f[i].argmax() else "C0" for d in range(10)])
        axes[i, 2].set_xticks(range(10))
        axes[i, 2].set_title("output scores f (logits)", fontsize=8)
        axes[i, 2].set_ylabel("score", fontsize=7)
        if i == 0:
            predicted = bars[int(f[i].argmax())]
            other = bars[0] if f[i].argmax() != 0 else bars[1]
            axes[i, 2].legend([predicted, other], ["predicted digit", "other digits"], fontsize=6, loc="best")
        for ax in axes[i, :2]:
            ax.axis("off")
    axes[-1, 2].set_xlabel("digit")
    fig.suptitle("test images, their hidden features (tanh, -1 blue to +1 red) and output scores")
    fig.tight_layout()
    paths.append(_save(fig, out, "features_and_scores.png", plt))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.plot(history["step_loss"], lw=0.8, label="batch loss")
    a1.set_yscale("log")
    a1.set_xlabel("logged step (every 10 batches)")
    a1.set_ylabel("training loss (log scale)")
    a1.set_title("training loss")
    a1.legend()
    a2.plot(history["epoch"], [100 * a for a in history["eval_accuracy"]], marker="o", label="held-out accuracy")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy (%)")
    a2.set_title("accuracy after each epoch")
    a2.legend()
    fig.tight_layout()
    paths.append(_save(fig, out, "training_curve.png", plt))
    return paths


def _save(fig, out, name, plt) -> str:
    path = os.path.join(out, name)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
