from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn


def _check_losses(losses: Tensor) -> None:
    if not isinstance(losses, Tensor):
        raise TypeError(f"Parameter `losses` should be a Tensor. Found `{type(losses).__name__}`.")
    if not losses.is_floating_point():
        raise TypeError(
            f"Parameter `losses` should have a floating point dtype. Found `{losses.dtype}`."
        )
    if losses.dim() != 1 or losses.shape[0] == 0:
        raise ValueError(
            "Parameter `losses` should be a non-empty vector (1 dimension) of loss values, e.g. "
            f"`torch.stack([loss_1, loss_2])`. Found shape {tuple(losses.shape)}."
        )


class Scalarizer(nn.Module, ABC):
    """
    Maps a vector ``[m]`` of loss values (one per objective) to a scalar to call ``.backward()`` on.

    A scalarizer only sees the values of the losses, never their gradients, so one training step
    costs one ordinary backward pass. Subclasses implement :meth:`scalarize`; calling the
    scalarizer validates the input first: it must be a non-empty 1-D floating point tensor (stack
    scalar losses with :func:`torch.stack`). The result has the dtype and device of the losses.
    """

    def forward(self, losses: Tensor) -> Tensor:
        _check_losses(losses)
        return self.scalarize(losses)

    @abstractmethod
    def scalarize(self, losses: Tensor) -> Tensor:
        """Returns the scalar (0-dimensional tensor) for a validated, non-empty vector ``[m]``."""

    def __str__(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class StatefulScalarizer(Scalarizer, ABC):
    """
    Scalarizer whose output depends on what it saw before (e.g. the losses of previous epochs).

    The state lives in registered buffers, so ``state_dict``, ``load_state_dict``, ``.to(...)`` and
    :func:`copy.deepcopy` carry it. Buffers whose size is only known from the first losses seen
    start empty; loading a ``state_dict`` resizes them, so a freshly constructed instance can load
    the state of a trained one.
    """

    _lazy_buffer_names: tuple[str, ...] = ()

    @abstractmethod
    def reset(self) -> None:
        """Forgets all the state, as if the scalarizer had just been constructed."""

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        for name in self._lazy_buffer_names:
            key = prefix + name
            current = self._buffers.get(name)
            incoming = state_dict.get(key)
            if isinstance(incoming, Tensor) and current is not None:
                if incoming.shape != current.shape:
                    # An unsized buffer has no dtype of its own yet: it takes the saved one.
                    dtype = incoming.dtype if current.numel() == 0 else current.dtype
                    self._buffers[name] = torch.empty(
                        incoming.shape, dtype=dtype, device=current.device
                    )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def _check_num_losses(losses: Tensor, expected: int, what: str) -> None:
    if losses.shape[0] != expected:
        raise ValueError(
            f"Parameter `losses` should have {expected} elements, one per {what}. Found "
            f"shape {tuple(losses.shape)}."
        )


def _check_positive_float(value: float, name: str) -> None:
    _check_float(value, name)
    if not value > 0.0:
        raise ValueError(f"Parameter `{name}` should be positive. Found `{value}`.")


def _check_non_negative_float(value: float, name: str) -> None:
    _check_float(value, name)
    if not value >= 0.0:
        raise ValueError(f"Parameter `{name}` should be non-negative. Found `{value}`.")


def _check_float(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Parameter `{name}` should be a float. Found `{type(value).__name__}`.")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"Parameter `{name}` should be finite. Found `{value}`.")


def _check_positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Parameter `{name}` should be an int. Found `{type(value).__name__}`.")
    if value < 1:
        raise ValueError(f"Parameter `{name}` should be at least 1. Found `{value}`.")


def _check_vector(value: Tensor, name: str, *, non_negative: bool = False) -> None:
    """Checks that ``value`` is a non-empty, finite, floating point vector (and ``>= 0``)."""

    if not isinstance(value, Tensor):
        raise TypeError(f"Parameter `{name}` should be a Tensor. Found `{type(value).__name__}`.")
    if not value.is_floating_point():
        raise TypeError(
            f"Parameter `{name}` should have a floating point dtype. Found `{value.dtype}`."
        )
    if value.dim() != 1 or value.shape[0] == 0:
        raise ValueError(
            f"Parameter `{name}` should be a non-empty vector (1 dimension). Found shape "
            f"{tuple(value.shape)}."
        )
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"Parameter `{name}` should only contain finite values. Found {value}.")
    if non_negative:
        if bool((value < 0).any()):
            raise ValueError(f"Parameter `{name}` should be non-negative. Found {value}.")
        if not bool((value > 0).any()):
            raise ValueError(f"Parameter `{name}` should have a positive element. Found {value}.")


def _check_matches_losses(value: Tensor, losses: Tensor, name: str) -> None:
    if value.shape != losses.shape:
        raise ValueError(
            f"Parameter `losses` should have the shape of `{name}`, {tuple(value.shape)}. Found "
            f"shape {tuple(losses.shape)}."
        )


def _format_tensor(value: Tensor | None) -> str:
    return "None" if value is None else repr(value.detach())


def _register_preference_and_ideal_point(
    module: nn.Module, preference: Tensor | None, ideal_point: Tensor | None
) -> None:
    """Checks and registers (as buffers) the ``preference`` and ``ideal_point`` of STCH and PBI."""

    if preference is not None:
        _check_vector(preference, "preference", non_negative=True)
        preference = preference.detach().clone()
    if ideal_point is not None:
        _check_vector(ideal_point, "ideal_point")
        ideal_point = ideal_point.detach().clone()
    if preference is not None and ideal_point is not None:
        if preference.shape != ideal_point.shape:
            raise ValueError(
                "Parameters `preference` and `ideal_point` should have the same shape. Found "
                f"{tuple(preference.shape)} and {tuple(ideal_point.shape)}."
            )
    module.register_buffer("preference", preference)
    module.register_buffer("ideal_point", ideal_point)


def _subtract_ideal_point(losses: Tensor, ideal_point: Tensor | None) -> Tensor:
    """Returns ``losses - ideal_point`` (``losses`` itself without an ideal point)."""

    if ideal_point is None:
        return losses
    _check_matches_losses(ideal_point, losses, "ideal_point")
    return losses - ideal_point.to(dtype=losses.dtype, device=losses.device)
