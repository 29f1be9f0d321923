"""The hyper-parameters shared by UPGrad and DualProj, and their checks."""

import torch
from torch import Tensor

from torchjd.linalg import ActiveSetDualConeProjector, DualConeProjector

from ._aggregator_bases import GramianWeightedAggregator
from ._weighting_bases import GramianWeighting


def check_pref_vector(pref_vector: object) -> None:
    if pref_vector is None:
        return
    if not isinstance(pref_vector, Tensor):
        raise TypeError(
            f"Parameter `pref_vector` should be a Tensor or None. Found `{type(pref_vector).__name__}`."
        )
    if pref_vector.dim() != 1 or pref_vector.shape[0] == 0:
        raise ValueError(
            "Parameter `pref_vector` should be a non-empty vector (1 dimension). Found shape "
            f"{tuple(pref_vector.shape)}."
        )
    if not (pref_vector.is_floating_point() and bool(torch.isfinite(pref_vector).all())):
        raise ValueError(
            f"Parameter `pref_vector` should hold finite floating-point values. Found {pref_vector}."
        )


def check_projector(projector: object) -> DualConeProjector:
    if projector is None:
        return ActiveSetDualConeProjector()
    if not isinstance(projector, DualConeProjector):
        raise TypeError(
            "Parameter `projector` should be a `torchjd.linalg.DualConeProjector` or None. Found "
            f"`{type(projector).__name__}`."
        )
    return projector


class DualConeWeighting(GramianWeighting):
    """
    Base of :class:`UPGradWeighting` and :class:`DualProjWeighting`: their hyper-parameters, with
    the same checks and defaults.
    """

    _pref_vector: Tensor | None

    def __init__(
        self, pref_vector: Tensor | None = None, projector: DualConeProjector | None = None
    ):
        super().__init__()
        self.register_buffer("_pref_vector", None)
        self.pref_vector = pref_vector
        self.projector = projector  # type: ignore[assignment]

    @property
    def pref_vector(self) -> Tensor | None:
        """The preference weights ``p`` ``[m]``, or ``None`` for ``1/m`` each. Settable."""
        return self._pref_vector

    @pref_vector.setter
    def pref_vector(self, value: Tensor | None) -> None:
        check_pref_vector(value)
        self._pref_vector = None if value is None else value.detach().clone()

    @property
    def projector(self) -> DualConeProjector:
        """The solver of the projections (``None`` sets the default, exact one). Settable."""
        return self._projector

    @projector.setter
    def projector(self, value: DualConeProjector | None) -> None:
        self._projector = check_projector(value)

    def extra_repr(self) -> str:
        return f"pref_vector={self.pref_vector!r}, projector={self.projector!r}"


class DualConeAggregator(GramianWeightedAggregator):
    """Base of :class:`UPGrad` and :class:`DualProj`: exposes their weighting's hyper-parameters."""

    @property
    def pref_vector(self) -> Tensor | None:
        """The preference weights ``p`` ``[m]``, or ``None`` for ``1/m`` each. Settable."""
        return self._dual_cone_weighting.pref_vector

    @pref_vector.setter
    def pref_vector(self, value: Tensor | None) -> None:
        self._dual_cone_weighting.pref_vector = value

    @property
    def projector(self) -> DualConeProjector:
        """The solver of the projections (``None`` sets the default, exact one). Settable."""
        return self._dual_cone_weighting.projector

    @projector.setter
    def projector(self, value: DualConeProjector | None) -> None:
        self._dual_cone_weighting.projector = value

    @property
    def _dual_cone_weighting(self) -> DualConeWeighting:
        weighting = self.gramian_weighting
        assert isinstance(weighting, DualConeWeighting)
        return weighting

    def extra_repr(self) -> str:
        return self.gramian_weighting.extra_repr()
