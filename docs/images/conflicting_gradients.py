"""
Draws docs/images/conflicting_gradients.png, the picture of the introduction: two conflicting
gradients, their mean (which conflicts with one of them) and the UPGrad direction (which conflicts
with neither), over the dual cone of the gradients.

Run from the repository root: python docs/images/conflicting_gradients.py (needs matplotlib).
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Wedge

from torchjd.aggregation import Mean, UPGrad

OUTPUT = Path(__file__).resolve().parent / "conflicting_gradients.png"


def main() -> None:
    jacobian = torch.tensor([[4.0, 1.0], [-1.0, 0.6]])  # one gradient per row
    mean = Mean()(jacobian)
    upgrad = UPGrad()(jacobian)
    # The mean has a negative inner product with the second gradient: it would increase L2.
    assert (jacobian @ mean)[1] < 0 and (jacobian @ upgrad >= 0).all()

    figure, axes = plt.subplots(figsize=(6.0, 4.2), dpi=120)
    angles = [math.degrees(math.atan2(row[1], row[0])) for row in jacobian.tolist()]
    # The dual cone is where the half-planes {x : g_i · x >= 0} of both gradients intersect.
    cone = Wedge((0, 0), 6.0, max(angles) - 90, min(angles) + 90, color="tab:green", alpha=0.12)
    axes.add_patch(cone)
    axes.text(-1.9, 2.75, "dual cone:\nno conflict with\neither gradient", color="tab:green")

    arrows = [
        (jacobian[0], r"$g_1$ (gradient of $L_1$)", "tab:blue", "-"),
        (jacobian[1], r"$g_2$ (gradient of $L_2$)", "tab:orange", "-"),
        (mean, "mean: conflicts with $g_2$", "tab:red", "--"),
        (upgrad, "UPGrad: conflicts with neither", "tab:green", "-"),
    ]
    for vector, label, color, style in arrows:
        x, y = vector.tolist()
        axes.annotate(
            "",
            xy=(x, y),
            xytext=(0, 0),
            arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 2.2, "linestyle": style},
        )
        axes.plot([], [], color=color, linestyle=style, linewidth=2.2, label=label)

    axes.axhline(0, color="0.85", linewidth=0.8, zorder=0)
    axes.axvline(0, color="0.85", linewidth=0.8, zorder=0)
    axes.set_xlim(-2.0, 4.5)
    axes.set_ylim(-2.2, 4.0)
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(loc="lower right", fontsize=9, framealpha=0.95)
    axes.set_title("Two conflicting gradients and two ways to combine them")
    figure.tight_layout()
    figure.savefig(OUTPUT)
    print(f"Saved {OUTPUT}")


if __name__ == "__main__":
    main()
