"""Jacobians by backpropagation: jac, backward, mtl_backward and jac_to_grad."""

__all__: list[str] = []
