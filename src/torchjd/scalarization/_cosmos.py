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

from torch import Tensor, linalg

from ._scalarizer_bases import (
    Scalarizer,
    _check_matches_losses,
    _check_non_negative_float,
    _check_vector,
    _format_tensor,
)


class COSMOS(Scalarizer):
    """
    Returns ``r @ L - lambda_ * (r @ L) / (||r|| ||L||)`` for the losses ``L`` ``[m]``.

    The cosine is undefined when all the losses are zero (the result is then ``nan``).

    :param lambda_: The weight ``λ >= 0`` of the cosine-similarity penalty (``lambda`` is a Python
        keyword). ``0`` gives the plain linear scalarization. The paper tunes it per dataset
        (values from ``0.01`` to ``8``), so it has no default.
    :param preference: The preference ray ``r`` ``[m]``, non-negative. ``None`` (default) means
        the uniform preference ``1/m``. The attribute ``preference`` can be reassigned between
        calls, e.g. to a fresh ``torch.distributions.Dirichlet(torch.ones(m)).sample()`` at every
        step as in the paper.

    >>> import torch
    >>> from torchjd.scalarization import COSMOS
    >>> cosmos = COSMOS(lambda_=1.0, preference=torch.tensor([1.0, 0.0]))
    >>> cosmos(torch.tensor([3.0, 4.0]))  # 3 - 1 * 3 / 5
    tensor(2.4000)
    >>> _ = torch.manual_seed(0)
    >>> cosmos.preference = torch.distributions.Dirichlet(torch.ones(2)).sample()
    >>> value = cosmos(torch.tensor([2.0, 1.0]))
    """

    preference: Tensor | None

    def __init__(self, lambda_: float, preference: Tensor | None = None):
        super().__init__()
        _check_non_negative_float(lambda_, "lambda_")
        if preference is not None:
            _check_vector(preference, "preference", non_negative=True)
            preference = preference.detach().clone()
        self.lambda_ = lambda_
        self.register_buffer("preference", preference)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, preference={_format_tensor(self.preference)}"

    def scalarize(self, losses: Tensor) -> Tensor:
        if self.preference is None:
            preference = losses.new_full(losses.shape, 1.0 / losses.shape[0])
        else:
            _check_matches_losses(self.preference, losses, "preference")
            preference = self.preference.to(dtype=losses.dtype, device=losses.device)
        linear = preference @ losses
        cosine = linear / (linalg.vector_norm(preference) * linalg.vector_norm(losses))
        return linear - self.lambda_ * cosine
