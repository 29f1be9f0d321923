"""
Nash-MTL: the bargaining solution of the objectives, ``G α = 1/α`` with ``α > 0``.

From `Multi-Task Learning as a Bargaining Game <https://arxiv.org/abs/2202.01017>`_ (Navon et al.,
ICML 2022). The weights ``α`` solve ``(G α)_i = 1 / α_i`` for every ``i``, ``G = J J^T``: the
aggregation ``d = J^T α`` then satisfies ``g_i · d = 1 / α_i``, the Nash bargaining solution in the
ball. These equations are the stationarity conditions of the strictly convex problem

``min_{α > 0} ½ α^T G α - Σ_i log α_i``,

which is solved here by damped Newton iterations (the function is self-concordant, so the damped
step ``α ← α + Δ / (1 + λ)``, ``λ`` the Newton decrement, never leaves ``α > 0``) instead of the
paper's sequence of convex programs; ``optim_niter`` counts those Newton iterations. Writing
``α_i = β_i / ||g_i||`` turns the equations into ``C β = 1 / β`` for the matrix ``C`` of cosines
between rows, which is what is solved: the result does not depend on the rows' scales. A zero row
gets the weight ``0``. When some non-negative combination of the rows is zero, the problem has no
minimizer; a ridge of ``eps(dtype) I`` added to ``C`` keeps one (those weights are then large,
without changing the direction ``J^T α``) and otherwise moves the solution by about ``eps``.

As in the authors' code and torchjd 0.18, ``α`` solves the equations for ``G / ||G||_F`` (so the
unclipped aggregation is scale-covariant: ``A(s J) = s A(J)`` for ``s > 0``), the weights are
recomputed only every ``update_weights_every`` calls (the last ones are reused in between), and
the update is rescaled so that its norm is at most ``max_norm`` (their gradient clipping), unless
``max_norm = 0``. Unlike 0.18, whose convex-programming solver (cvxpy/ECOS) can fail and then keeps
the previous weights, the Newton iterations always return the solution (to rounding after a few
iterations; ``optim_niter`` of them are run).
"""

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._aggregator_bases import WeightedAggregator
from ._checks import Delegated, Hyperparameter, int_at_least, real_in
from ._weighting_bases import MatrixWeighting


def _solve_nash_equations(gramian: Tensor, n_iterations: int) -> Tensor:
    """Returns ``α`` ``[m]`` with ``G α ≈ 1 / α`` (``α_i > 0``, or ``0`` for a zero row)."""
    m = gramian.shape[0]
    norms = torch.sqrt(torch.diagonal(gramian).clamp(min=0.0))
    is_nonzero = norms > 0
    safe_norms = torch.where(is_nonzero, norms, torch.ones_like(norms))
    identity = torch.eye(m, dtype=gramian.dtype, device=gramian.device)
    # With α = β / ||g||, the equations become C β = 1 / β for the cosine matrix C (unit diagonal):
    # the same problem, free of the rows' scales. Zero rows are decoupled (their β is 1, α is 0).
    pair_is_nonzero = is_nonzero.unsqueeze(0) & is_nonzero.unsqueeze(1)
    cosines = torch.where(pair_is_nonzero, gramian / torch.outer(safe_norms, safe_norms), identity)
    # The tiny ridge keeps a minimizer when some non-negative combination of the rows vanishes.
    cosines = cosines + torch.finfo(gramian.dtype).eps * identity
    # Start at the best multiple t 1 of the ones vector: t = sqrt(m / 1^T C 1).
    total = cosines.sum().clamp(min=1.0)
    scaled = torch.full((m,), 1.0, dtype=gramian.dtype, device=gramian.device) * torch.sqrt(
        m / total
    )
    for _ in range(n_iterations):
        inverse = 1.0 / scaled
        gradient = cosines @ scaled - inverse
        hessian = cosines + identity * inverse.square()
        newton_step = -torch.linalg.solve(hessian, gradient)
        decrement = torch.sqrt((-(gradient @ newton_step)).clamp(min=0.0))
        # Damped steps far from the solution, full (quadratically convergent) steps close to it.
        step_size = torch.where(
            decrement < 0.25, torch.ones_like(decrement), 1.0 / (1.0 + decrement)
        )
        scaled = scaled + step_size * newton_step
    return torch.where(is_nonzero, scaled / safe_norms, torch.zeros_like(scaled))


class _NashMTLWeighting(MatrixWeighting, Stateful):
    """Nash-MTL weights of the matrix ``[m, n]``, with the update schedule in buffers."""

    step: Tensor
    previous_weights: Tensor
    n_tasks = Hyperparameter(int_at_least(1))
    max_norm = Hyperparameter(real_in(0.0))
    update_weights_every = Hyperparameter(int_at_least(1))
    optim_niter = Hyperparameter(int_at_least(1))

    def __init__(
        self, n_tasks: int, max_norm: float, update_weights_every: int, optim_niter: int
    ):
        super().__init__()
        self.n_tasks = n_tasks
        self.max_norm = max_norm
        self.update_weights_every = update_weights_every
        self.optim_niter = optim_niter
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("previous_weights", torch.zeros(0))

    def extra_repr(self) -> str:
        return (
            f"n_tasks={self.n_tasks}, max_norm={self.max_norm}, "
            f"update_weights_every={self.update_weights_every}, optim_niter={self.optim_niter}"
        )

    def reset(self) -> None:
        self.step.zero_()
        self.previous_weights = torch.zeros(0, device=self.previous_weights.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # The stored weights have as many entries as the last matrix had rows: adopt their shape.
        key = prefix + "previous_weights"
        if key in state_dict:
            self.previous_weights = torch.empty_like(
                state_dict[key], device=self.previous_weights.device
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def forward(self, matrix: Tensor, /) -> Tensor:
        m = matrix.shape[0]
        if m != self.n_tasks:
            raise ValueError(
                f"Parameter `n_tasks` is {self.n_tasks} but the matrix has {m} rows (one per task)."
            )
        gramian = matrix @ matrix.T
        if not bool(torch.isfinite(gramian).all()):
            # A finite matrix whose Gramian overflows: a skipped step, which changes no state.
            return torch.full((m,), float("nan"), dtype=matrix.dtype, device=matrix.device)
        is_stale = self.previous_weights.shape != (m,)
        if is_stale or int(self.step) % self.update_weights_every == 0:
            frobenius = torch.linalg.matrix_norm(gramian)
            safe_frobenius = torch.where(frobenius > 0, frobenius, torch.ones_like(frobenius))
            self.previous_weights = _solve_nash_equations(gramian / safe_frobenius, self.optim_niter)
        self.step += 1
        weights = self.previous_weights.to(dtype=matrix.dtype, device=matrix.device)
        if self.max_norm > 0.0:
            norm = torch.sqrt((weights @ gramian @ weights).clamp(min=0.0))
            safe_norm = torch.where(norm > self.max_norm, norm, torch.ones_like(norm))
            weights = torch.where(
                norm > self.max_norm, weights * (self.max_norm / safe_norm), weights
            )
        return weights


class NashMTL(WeightedAggregator, Stateful):
    """
    Aggregates the rows with Nash-MTL: ``J^T α`` with ``(Ĝ α)_i = 1 / α_i``, ``α > 0``, for
    ``Ĝ = G / ||G||_F``, clipped to norm ``max_norm``.

    Stateful: it counts its calls and keeps the last weights in buffers (``step``,
    ``previous_weights``), so they follow ``.to(...)`` and ``state_dict``; :meth:`reset` forgets
    them. The weights are computed under ``torch.no_grad()``.

    :param n_tasks: The number of tasks: the number of rows of the matrices to aggregate.
    :param max_norm: Largest norm of the aggregation (the authors' gradient clipping); ``0``
        disables the clipping.
    :param update_weights_every: Recompute the weights on one call out of this many, reusing the
        last weights on the others (the paper's speed-up).
    :param optim_niter: Number of Newton iterations of the solver.

    >>> import torch
    >>> from torchjd.aggregation import NashMTL
    >>> A = NashMTL(n_tasks=2, max_norm=0.0)
    >>> A
    NashMTL(n_tasks=2, max_norm=0.0, update_weights_every=1, optim_niter=20)
    >>> # Orthogonal rows: Ĝ α = 1 / α gives d a component of norm ||G||_F^(1/2) along each row.
    >>> A(torch.tensor([[2., 0.], [0., 4.]])).round(decimals=4)
    tensor([4.0611, 4.0611])
    """

    n_tasks = Delegated("weighting")
    max_norm = Delegated("weighting")
    update_weights_every = Delegated("weighting")
    optim_niter = Delegated("weighting")

    def __init__(
        self,
        n_tasks: int,
        max_norm: float = 1.0,
        update_weights_every: int = 1,
        optim_niter: int = 20,
    ):
        super().__init__(
            _NashMTLWeighting(
                n_tasks=n_tasks,
                max_norm=max_norm,
                update_weights_every=update_weights_every,
                optim_niter=optim_niter,
            )
        )

    def extra_repr(self) -> str:
        return self.weighting.extra_repr()

    def reset(self) -> None:
        """Forgets the call counter and the last weights."""
        self.weighting.reset()
