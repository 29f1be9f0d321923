"""Private helpers of the stateful aggregators: lazily sized buffers, simplex projection, checks."""

from numbers import Real

import torch
from torch import Tensor, nn

from torchjd._stateful import Stateful

from ._checks import Hyperparameter, check_int
from ._weighting_bases import GramianWeighting, Weighting


class LazyStateMixin(nn.Module):
    """
    Base of the modules whose buffers are only sized at their first call (``numel() == 0`` before).

    Loading a state dict gives each buffer the shape and dtype of the loaded tensor (on the buffer's
    device), so that the state of an instance that already ran loads into a fresh one.
    """

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        for name, buffer in self._buffers.items():
            key = prefix + name
            if buffer is None or key not in state_dict:
                continue
            loaded = state_dict[key]
            if loaded.shape != buffer.shape or loaded.dtype != buffer.dtype:
                self._buffers[name] = torch.empty_like(loaded, device=buffer.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _empty_buffers(self, *names: str) -> None:
        """Gives the named buffers back their initial, empty value (on their current device)."""
        for name in names:
            buffer = self._buffers[name]
            device = buffer.device if buffer is not None else None
            self._buffers[name] = torch.zeros(0, device=device)


def check_state_size(state: Tensor, m: int, what: str) -> None:
    """Raises if a non-empty ``state`` was built for another number of rows than ``m``."""
    if state.numel() != 0 and state.shape[0] != m:
        raise ValueError(
            f"The state of this {what} was built for {state.shape[0]} objectives, but the input has "
            f"{m}. Call `reset()` before changing the number of objectives."
        )


def stored_or_uniform(weights: Tensor, m: int, like: Tensor) -> Tensor:
    """Returns the stored ``weights`` (on the device and dtype of ``like``), or ``1/m`` each if empty."""
    if weights.numel() == 0:
        return torch.full((m,), 1.0 / m, dtype=like.dtype, device=like.device)
    return weights.to(dtype=like.dtype, device=like.device)


def project_onto_simplex(vectors: Tensor) -> Tensor:
    """
    Returns the Euclidean projection of each ``[..., m]`` vector onto the probability simplex.

    Sort-based exact algorithm: the projection is ``max(v - θ, 0)`` where ``θ`` is chosen so that
    the result sums to one.
    """

    m = vectors.shape[-1]
    sorted_desc = torch.sort(vectors, dim=-1, descending=True).values
    cumulative = sorted_desc.cumsum(dim=-1) - 1.0
    ranks = torch.arange(1, m + 1, dtype=vectors.dtype, device=vectors.device)
    is_support = sorted_desc - cumulative / ranks > 0
    # The support is a prefix of the sorted vector: its size is the number of True entries.
    support_size = is_support.sum(dim=-1, keepdim=True).clamp(min=1)
    theta = cumulative.gather(-1, support_size - 1) / support_size.to(vectors.dtype)
    return (vectors - theta).clamp(min=0.0)


def check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Checks that ``value`` is a real number in the given interval and returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"Parameter `{name}` should be a real number. Found `{type(value).__name__}`.")
    value = float(value)
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high or value != value:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        low_str = "-inf" if low is None else f"{low}"
        high_str = "inf" if high is None else f"{high}"
        raise ValueError(
            f"Parameter `{name}` should be in {left}{low_str}, {high_str}{right}. Found `{value}`."
        )
    return value


def check_positive_int(name: str, value: object) -> int:
    """Checks that ``value`` is an integer ``>= 1`` and returns it."""
    check_int(value, name, 1)  # type: ignore[arg-type]
    return value  # type: ignore[return-value]


def check_num_estimates(name: str, value: object) -> int:
    """Checks the number of independent Jacobian estimates stacked in the input (1, 2 or 3)."""
    check_int(value, name, 1)  # type: ignore[arg-type]
    if value > 3:  # type: ignore[operator]
        raise ValueError(f"Parameter `{name}` should be 1, 2 or 3. Found `{value}`.")
    return value  # type: ignore[return-value]


def check_square(matrix: Tensor, what: str) -> None:
    """Raises unless ``matrix`` is the square cross matrix ``J_1 J_2ᵀ`` ``[m, m]``."""
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"{what} takes the square matrix A = J_1 @ J_2.T [m, m] of two independent Jacobian "
            f"estimates. Found shape {tuple(matrix.shape)}."
        )


class StackedEstimatesWeighting(GramianWeighting, Stateful):
    """
    The Gramian weighting of an aggregator that takes ``k = num_estimates`` independent Jacobian
    estimates stacked along the rows, ``[J_1; ...; J_k]`` ``[k·m, n]``: it gives the cross matrix
    ``J_1 J_2ᵀ`` (``J Jᵀ`` when ``k = 1``), read from the Gramian ``[k·m, k·m]`` of the stack, to
    ``weighting`` and spreads its weights ``[m]`` over the stacked rows: on the only estimate
    (``k = 1``), half on each (``k = 2``) or all on the third, independent one (``k = 3``).
    """

    num_estimates = Hyperparameter(check_num_estimates)

    def __init__(self, weighting: Weighting, num_estimates: int):
        super().__init__()
        self.weighting = weighting
        self.num_estimates = num_estimates

    def reset(self) -> None:
        self.weighting.reset()  # type: ignore[operator]

    def forward(self, gramian: Tensor, /) -> Tensor:
        k = self.num_estimates
        rows = gramian.shape[0]
        if rows % k != 0:
            raise ValueError(
                f"Parameter `num_estimates` is {k}: the matrix should stack {k} Jacobian estimates "
                f"with the same number of rows, so a number of rows divisible by {k}. Found {rows}."
            )
        m = rows // k
        cross = gramian if k == 1 else gramian[:m, m : 2 * m]
        weights = self.weighting(cross)
        if k == 1:
            return weights
        if k == 2:
            return torch.cat([weights / 2, weights / 2])
        zeros = torch.zeros_like(weights)
        return torch.cat([zeros, zeros, weights])

    def extra_repr(self) -> str:
        return f"{self.weighting.extra_repr()}, num_estimates={self.num_estimates!r}"
