"""
COSMOS: linear scalarization with a cosine-similarity penalty towards a preference.

From `Scalable Pareto Front Approximation for Deep Multi-Objective Learning
<https://arxiv.org/abs/2103.13392>`_ (Ruchte and Grabocka, ICDM 2021). For a preference ray ``r``
(non-negative, usually on the simplex) the objective is the paper's equation 5,

``r^T L - λ cos(r, L)``, with ``cos(r, L) = r^T L / (||r|| ||L||)``.

The linear term alone can only reach the convex parts of a Pareto front and tends to collapse
onto the extremes; subtracting ``λ`` times the cosine similarity pulls the vector of losses
towards the direction ``r``, so that different preferences give evenly spread trade-offs. In the
paper the preference is re-drawn from a Dirichlet distribution at every step and also given to the
network as an input, so that one model learns the whole front; that conditioning is a modelling
choice left to the user: this class only implements the objective.
"""

from torch import Tensor

from torchjd._hyperparameter import Hyperparameter

from ._scalarizer_bases import (
    Scalarizer,
    _check_same_shape,
    _cosine,
    _format_tensor,
    _like,
    non_negative_float,
    optional_weights,
)


class COSMOS(Scalarizer):
    """
    Returns ``r·L - lambda_ * cos(r, L)`` for the values ``L`` and preference ``r`` (flattened).

    The cosine is computed without overflow or underflow at any scale of the values. At ``L = 0``
    it is undefined; it is taken as ``0`` there (the result is ``0`` and its gradient is ``r``,
    that of the linear term) instead of ``0 / 0``.

    :param lambda_: The weight ``λ >= 0`` of the cosine-similarity penalty (``lambda`` is a Python
        keyword). ``0`` gives the plain linear scalarization. The paper tunes it per dataset
        (values from ``0.01`` to ``8``), so it has no default.
    :param weights: The preference ray ``r``, non-negative, of the shape of the values. ``None``
        (default here, required in torchjd 0.18) means the uniform preference ``1/m``.

    ``lambda_`` and ``weights`` are settable attributes, validated on assignment: ``weights`` can
    be reassigned at every step, e.g. to ``torch.distributions.Dirichlet(torch.ones(m)).sample()``
    as in the paper.

    >>> import torch
    >>> from torchjd.scalarization import COSMOS
    >>> cosmos = COSMOS(lambda_=1.0, weights=torch.tensor([1.0, 0.0]))
    >>> cosmos(torch.tensor([3.0, 4.0]))  # 3 - 1 * 3 / 5
    tensor(2.4000)
    >>> _ = torch.manual_seed(0)
    >>> cosmos.weights = torch.distributions.Dirichlet(torch.ones(2)).sample()
    >>> value = cosmos(torch.tensor([2.0, 1.0]))
    """

    lambda_ = Hyperparameter(non_negative_float)
    weights = Hyperparameter(optional_weights)

    def __init__(self, lambda_: float, weights: Tensor | None = None) -> None:
        super().__init__()
        self.lambda_ = lambda_
        self.weights = weights

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, weights={_format_tensor(self.weights)}"

    def forward(self, values: Tensor, /) -> Tensor:
        if self.weights is None:
            weights = values.new_full(values.shape, 1.0 / values.numel())
        else:
            _check_same_shape(self.weights, values, "weights")
            weights = _like(self.weights, values)
        flat_values, flat_weights = values.flatten(), weights.flatten()
        return flat_weights @ flat_values - self.lambda_ * _cosine(flat_weights, flat_values)
