"""Loss curves of all phases in one PNG (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

from lab_tools.atomic import atomic_open


def plot_losses(rows: list[dict], path: str | Path) -> Path:
    """Plot loss per optimizer step, phases one after another on the x axis, one colour per phase.
    ``rows``: metric rows with ``phase``, ``step``, ``loss``. Written atomically; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 4))
    offset = 0
    for phase in dict.fromkeys(r["phase"] for r in rows):
        pts = [r for r in rows if r["phase"] == phase]
        ax.plot([offset + r["step"] for r in pts], [r["loss"] for r in pts], marker=".", label=phase)
        offset += max(r["step"] for r in pts)
    ax.set_xlabel("optimizer step (phases in order)")
    ax.set_ylabel("loss (mean per assistant token)")
    ax.set_title("Phased training loss (LAB 3.3)")
    if rows:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
