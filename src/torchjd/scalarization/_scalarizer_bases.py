from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _check_values(values: Tensor) -> None:
    if not isinstance(values, Tensor):
        raise TypeError(f"Parameter `values` should be a Tensor. Found `{type(values).__name__}`.")
    if not values.is_floating_point():
        raise TypeError(
            f"Parameter `values` should have a floating point dtype. Found `{values.dtype}`."
        )
    if values.numel() == 0:
        raise ValueError(
            "Parameter `values` should have at least one element (one loss value per objective). "
            f"Found shape {tuple(values.shape)}."
        )


class Scalarizer(nn.Module, ABC):
    """
    Maps a tensor of loss values (one per objective, any shape) to a scalar to call ``.backward()``
    on.

    A scalarizer only sees the values of the losses, never their gradients, so one training step
    costs one ordinary backward pass. Subclasses implement :meth:`forward`; calling the scalarizer
    first checks that ``values`` is a floating point tensor with at least one element (e.g.
    ``torch.stack([loss_1, loss_2])``, or per-sample losses ``[batch, tasks]``). The result is a
    0-dimensional tensor with the dtype and device of ``values``. A NaN or infinite value gives a
    non-finite result (so that ``torch.amp.GradScaler`` skips the step), never finite garbage.

    >>> import torch
    >>> from torchjd.scalarization import Scalarizer
    >>> class SumOfSquares(Scalarizer):
    ...     def forward(self, values, /):
    ...         return (values**2).sum()
    >>> SumOfSquares()(torch.tensor([1.0, 2.0]))
    tensor(5.)
    """

    def __call__(self, values: Tensor, /) -> Tensor:
        _check_values(values)
        return super().__call__(values)

    @abstractmethod
    def forward(self, values: Tensor, /) -> Tensor:
        """Returns the scalar (0-dimensional tensor) for validated, non-empty ``values``."""

    def __str__(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _check_shape_argument(shape: int | Sequence[int]) -> tuple[int, ...]:
    """Returns ``shape`` as a tuple, checking that it is an int or a sequence of positive ints."""

    dims = (shape,) if isinstance(shape, int) and not isinstance(shape, bool) else shape
    if not isinstance(dims, Sequence) or isinstance(dims, str):
        raise TypeError(
            f"Parameter `shape` should be an int or a sequence of ints. Found `{type(shape).__name__}`."
        )
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"Parameter `shape` should only contain ints. Found {shape!r}.")
        if dim < 1:
            raise ValueError(f"Parameter `shape` should only contain positive sizes. Found {shape!r}.")
    return tuple(dims)


def _check_same_shape(tensor: Tensor, values: Tensor, name: str) -> None:
    if tensor.shape != values.shape:
        raise ValueError(
            f"Parameter `values` should have the shape of `{name}`, {tuple(tensor.shape)}. Found "
            f"shape {tuple(values.shape)}."
        )


def _check_positive_float(value: float, name: str) -> float:
    value = _check_float(value, name)
    if not value > 0.0:
        raise ValueError(f"Parameter `{name}` should be positive. Found `{value}`.")
    return value


def _check_non_negative_float(value: float, name: str) -> float:
    value = _check_float(value, name)
    if not value >= 0.0:
        raise ValueError(f"Parameter `{name}` should be non-negative. Found `{value}`.")
    return value


def _check_float(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Parameter `{name}` should be a float. Found `{type(value).__name__}`.")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"Parameter `{name}` should be finite. Found `{value}`.")
    return float(value)


def _check_tensor(value: Tensor, name: str, *, non_negative: bool = False) -> Tensor:
    """
    Checks that ``value`` is a non-empty, finite, floating point tensor (``>= 0`` with a positive
    element if ``non_negative``) and returns a detached copy of it.
    """

    if not isinstance(value, Tensor):
        raise TypeError(f"Parameter `{name}` should be a Tensor. Found `{type(value).__name__}`.")
    if not value.is_floating_point():
        raise TypeError(
            f"Parameter `{name}` should have a floating point dtype. Found `{value.dtype}`."
        )
    if value.numel() == 0:
        raise ValueError(f"Parameter `{name}` should not be empty. Found shape {tuple(value.shape)}.")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"Parameter `{name}` should only contain finite values. Found {value}.")
    if non_negative:
        if bool((value < 0).any()):
            raise ValueError(f"Parameter `{name}` should be non-negative. Found {value}.")
        if not bool((value > 0).any()):
            raise ValueError(f"Parameter `{name}` should have a positive element. Found {value}.")
    return value.detach().clone()


def _format_tensor(value: Tensor | None) -> str:
    return "None" if value is None else repr(value.detach())


def _like(tensor: Tensor, values: Tensor) -> Tensor:
    """``tensor`` in the dtype and on the device of ``values``."""

    return tensor.to(dtype=values.dtype, device=values.device)


def _minus_reference(values: Tensor, reference: Tensor | None) -> Tensor:
    """``values - reference`` (checked to have the shape of ``values``), or ``values`` if ``None``."""

    if reference is None:
        return values
    _check_same_shape(reference, values, "reference")
    return values - _like(reference, values)


def _norm(x: Tensor) -> Tensor:
    """
    The Euclidean norm of ``x``, without overflow or underflow at any scale (1e-30 to 1e30 in
    float32), and with the gradient ``0`` at ``x = 0``.

    The entries are divided by their largest magnitude first (a detached constant, so value and
    gradient are unchanged); NaN and infinite entries still give a non-finite norm.
    """

    scale = x.detach().abs().max()
    positive = scale != 0  # True for a NaN scale, which must propagate
    safe_scale = torch.where(positive, scale, torch.ones_like(scale))
    return torch.where(positive, safe_scale * torch.linalg.vector_norm(x / safe_scale), 0.0)


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    """
    ``cos(a, b) = a·b / (|a| |b|)`` of two flat vectors at any scale, ``0`` if either is zero.

    Each vector is divided by its largest magnitude first: the cosine does not depend on the
    scales, and the products then neither overflow nor underflow.
    """

    a_scale, b_scale = a.detach().abs().max(), b.detach().abs().max()
    positive = (a_scale != 0) & (b_scale != 0)  # True for a NaN scale, which must propagate
    a = a / torch.where(a_scale != 0, a_scale, torch.ones_like(a_scale))
    b = b / torch.where(b_scale != 0, b_scale, torch.ones_like(b_scale))
    denominator = torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)
    safe_denominator = torch.where(positive, denominator, torch.ones_like(denominator))
    return torch.where(positive, (a @ b) / safe_denominator, 0.0)


def non_negative_float(name: str, value: object) -> float:
    """:class:`~torchjd._hyperparameter.Hyperparameter` check of a finite float ``>= 0``."""
    return _check_non_negative_float(value, name)  # type: ignore[arg-type]


def positive_float(name: str, value: object) -> float:
    """:class:`~torchjd._hyperparameter.Hyperparameter` check of a finite float ``> 0``."""
    return _check_positive_float(value, name)  # type: ignore[arg-type]


def optional_tensor(name: str, value: object) -> Tensor | None:
    """:class:`~torchjd._hyperparameter.Hyperparameter` check of ``None`` or a finite tensor."""
    return None if value is None else _check_tensor(value, name)  # type: ignore[arg-type]


def optional_weights(name: str, value: object) -> Tensor | None:
    """:class:`~torchjd._hyperparameter.Hyperparameter` check of ``None`` or non-negative weights."""
    if value is None:
        return None
    return _check_tensor(value, name, non_negative=True)  # type: ignore[arg-type]

