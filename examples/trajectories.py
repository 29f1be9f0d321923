"""
Runs Jacobian descent with several aggregators on a two-objective toy problem, from the same
starting points, and draws their trajectories in objective space next to the Pareto front.

The two objectives are convex quadratics of ``x ∈ R²`` with different curvatures and scales,
``L_i(x) = ½ (x - c_i)ᵀ A_i (x - c_i)``, so their gradients often conflict and the mean of the
gradients is dominated by the steeper objective. Every step computes the Jacobian ``[2, 2]`` of
``(L_1, L_2)`` with :func:`torchjd.autojac.jac` and moves ``x`` against the aggregation.

Run: python examples/trajectories.py [--steps 150] [--output docs/images/trajectories.png]
(needs matplotlib: pip install "torchjd[plot]").
"""

import argparse
from pathlib import Path

import torch
from torch import Tensor

from torchjd.aggregation import (
    CAGrad,
    MGDA,
    IMTLG,
    Aggregator,
    AlignedMTL,
    DualProj,
    Mean,
    NashMTL,
    PCGrad,
    UPGrad,
)
from torchjd.autojac import jac

CENTERS = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # c_1, c_2: the minimizers of L_1 and L_2
HESSIANS = torch.stack(
    [
        torch.tensor([[1.0, 0.0], [0.0, 0.1]]),  # A_1: flat along the second coordinate
        torch.tensor([[2.0, 1.5], [1.5, 2.0]]) * 2.0,  # A_2: steep, correlated coordinates
    ]
)
STARTING_POINTS = torch.tensor([[-1.5, -1.8], [0.2, 2.2], [2.0, 0.0]])
LEARNING_RATE = 0.05


def objectives(x: Tensor) -> Tensor:
    """Returns ``[L_1(x), L_2(x)]`` for a point ``x`` ``[2]``."""

    differences = x - CENTERS  # [2, 2]: x - c_i on row i
    return 0.5 * torch.einsum("ij,ijk,ik->i", differences, HESSIANS, differences)


def pareto_front(points: int = 200) -> Tensor:
    """
    Returns ``[points, 2]`` objective values along the Pareto front. For convex quadratics, the
    Pareto set is the set of minimizers of ``w L_1 + (1 - w) L_2`` for ``w ∈ [0, 1]``, each
    given by the linear system ``(w A_1 + (1 - w) A_2) x = w A_1 c_1 + (1 - w) A_2 c_2``.
    """

    values = []
    for w in torch.linspace(0.0, 1.0, points):
        matrix = w * HESSIANS[0] + (1 - w) * HESSIANS[1]
        target = w * HESSIANS[0] @ CENTERS[0] + (1 - w) * HESSIANS[1] @ CENTERS[1]
        values.append(objectives(torch.linalg.solve(matrix, target)))
    return torch.stack(values)


def trajectory(aggregator: Aggregator, start: Tensor, steps: int) -> Tensor:
    """Returns the objective values ``[steps + 1, 2]`` visited by Jacobian descent from ``start``."""

    x = start.clone().requires_grad_()
    visited = []
    for _ in range(steps):
        losses = objectives(x)
        visited.append(losses.detach())
        (jacobian,) = jac(losses, [x])  # [2, 2]: one gradient per objective
        with torch.no_grad():
            x -= LEARNING_RATE * aggregator(jacobian)
    visited.append(objectives(x).detach())
    return torch.stack(visited)


def aggregators() -> dict[str, Aggregator]:
    return {
        "Mean": Mean(),
        "MGDA": MGDA(),
        "UPGrad": UPGrad(),
        "DualProj": DualProj(),
        "PCGrad": PCGrad(),
        "CAGrad": CAGrad(c=0.5),
        "IMTL-G": IMTLG(),
        "Aligned-MTL": AlignedMTL(),
        "Nash-MTL": NashMTL(n_tasks=2, max_norm=0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="steps of each trajectory")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "docs" / "images" / "trajectories.png",
        help="where to save the PNG",
    )
    arguments = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(0)
    front = pareto_front()
    methods = aggregators()
    columns = 3
    rows = -(-len(methods) // columns)
    figure, axes_grid = plt.subplots(
        rows, columns, figsize=(3.3 * columns, 3.1 * rows), sharex=True, sharey=True, dpi=110
    )
    colors = ["tab:blue", "tab:orange", "tab:purple"]
    for axes, (name, aggregator) in zip(axes_grid.flat, methods.items()):
        axes.plot(front[:, 0], front[:, 1], color="black", linewidth=2, label="Pareto front")
        for start, color in zip(STARTING_POINTS, colors):
            values = trajectory(aggregator, start, arguments.steps)
            axes.plot(values[:, 0], values[:, 1], color=color, linewidth=1.2)
            axes.plot(values[0, 0], values[0, 1], "o", color=color, markersize=4)
            axes.plot(values[-1, 0], values[-1, 1], "*", color=color, markersize=9)
        axes.set_title(name)
        axes.set_xscale("symlog", linthresh=0.1)
        axes.set_yscale("symlog", linthresh=0.1)
    for axes in axes_grid[-1]:
        axes.set_xlabel("$L_1$")
    for axes in axes_grid[:, 0]:
        axes.set_ylabel("$L_2$")
    axes_grid.flat[0].legend(loc="upper right", fontsize=8)
    figure.suptitle("Trajectories in objective space (dots: starts, stars: ends)")
    figure.tight_layout()
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(arguments.output)
    print(f"Saved {arguments.output}")


if __name__ == "__main__":
    main()
