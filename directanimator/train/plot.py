"""`directanimator plot-losses`: loss curves of one or more runs (the paper's Figure 1, right)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError


def read_log(run: str | Path) -> list[dict]:
    path = Path(run) / "log.jsonl"
    if not path.is_file():
        raise InputError(f"no training log: {path} is missing")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_losses(runs: list[str | Path], out: str | Path, labels: list[str] | None = None, smooth_window: int = 1,
                title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if labels and len(labels) != len(runs):
        raise InputError(f"{len(labels)} labels for {len(runs)} runs")
    logs = [read_log(r) for r in runs]
    has_s2x = any(any(e.get("loss_s2x") is not None for e in log) for log in logs)
    fig, axes = plt.subplots(1, 2 if has_s2x else 1, figsize=(11 if has_s2x else 6, 4), squeeze=False)
    for i, (run, log) in enumerate(zip(runs, logs)):
        label = labels[i] if labels else Path(run).name
        steps = np.array([e["step"] for e in log])
        axes[0, 0].plot(steps, smooth(np.array([e["loss_denoise"] for e in log]), smooth_window), label=label)
        if has_s2x:
            pts = [(e["step"], e["loss_s2x"]) for e in log if e.get("loss_s2x") is not None]
            if pts:
                s, v = zip(*pts)
                axes[0, 1].plot(s, smooth(np.array(v), smooth_window), label=label)
    axes[0, 0].set(xlabel="step", ylabel="denoising loss (v-MSE)", yscale="log")
    axes[0, 0].legend()
    if has_s2x:
        axes[0, 1].set(xlabel="step", ylabel="S2X loss (-cos)")
        axes[0, 1].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from ..storage import atomic_write

    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)
    return out
