from collections.abc import Set

import torch
from torch import Tensor

from ._base import Transform, TensorDict


def _check_accumulable(input: TensorDict, field: str, leading_dims: int) -> None:
    for key, value in input.items():
        expected = tuple(value.shape[:leading_dims]) + tuple(key.shape)
        if tuple(value.shape) != expected:
            raise ValueError(
                f"Cannot accumulate a value of shape {tuple(value.shape)} into the `.{field}` of a "
                f"tensor of shape {tuple(key.shape)}."
            )
        existing = getattr(key, field, None)
        if existing is not None and existing.shape != value.shape:
            raise ValueError(
                f"Cannot accumulate a value of shape {tuple(value.shape)} into an existing "
                f"`.{field}` of shape {tuple(existing.shape)}."
            )


class AccumulateJac(Transform):
    """
    Adds Jacobians (value shape ``[m] + key.shape``) to the ``.jac`` field of their keys, creating
    it where absent, and produces an empty dict. Every shape is checked before anything is written.
    """

    def __call__(self, input: TensorDict) -> TensorDict:
        _check_accumulable(input, "jac", leading_dims=1)
        for key, jacobian in input.items():
            existing = getattr(key, "jac", None)
            if existing is None:
                key.jac = jacobian.contiguous()  # type: ignore[attr-defined]
            else:
                key.jac = existing + jacobian  # type: ignore[attr-defined]
        return {}

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        return set()


class AccumulateGrad(Transform):
    """
    Adds gradients (value shape = key shape) to the ``.grad`` field of their keys, creating it where
    absent, and produces an empty dict. Every shape is checked before anything is written.
    """

    def __call__(self, input: TensorDict) -> TensorDict:
        _check_accumulable(input, "grad", leading_dims=0)
        for key, gradient in input.items():
            if key.grad is None:
                # Autograd can return expanded views (stride 0) or tensors it also holds elsewhere;
                # like torch's own accumulation, .grad gets memory of its own, safe to modify in
                # place (e.g. by clip_grad_norm_ or a later loss.backward()).
                key.grad = gradient.clone(memory_format=torch.contiguous_format)
            else:
                key.grad = key.grad + gradient
        return {}

    def check_keys(self, input_keys: Set[Tensor]) -> set[Tensor]:
        return set()
