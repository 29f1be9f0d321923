"""
Computes the Jacobian of a small model's per-sample losses with respect to its parameters, and the
Gramian of that Jacobian, which tells how the samples' gradients agree or conflict.

Run: python examples/basic_jacobian.py
"""

import torch
from torch import nn

from torchjd.autojac import jac


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    inputs, targets = torch.randn(4, 3), torch.randn(4, 1)

    losses = (model(inputs) - targets).square().squeeze(1)  # One loss per sample: shape [4]
    jacobians = jac(losses, list(model.parameters()))  # One [4] + param.shape Jacobian per param
    jacobian_matrix = torch.cat([j.flatten(1) for j in jacobians], dim=1)  # [4, n_params]
    gramian = jacobian_matrix @ jacobian_matrix.T  # [4, 4]: dot products of the gradients

    torch.set_printoptions(precision=4, sci_mode=False)
    print(f"Jacobian of the 4 per-sample losses, shape {list(jacobian_matrix.shape)}:")
    print(jacobian_matrix)
    print("\nGramian (diagonal: squared gradient norms; negative entries: conflicting samples):")
    print(gramian)


if __name__ == "__main__":
    main()
