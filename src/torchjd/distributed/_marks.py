"""
The mark that :func:`torchjd.distributed.sync_jacobians` leaves on the Jacobians it synchronized,
and the check that :func:`torchjd.autojac.jac_to_grad` runs with it.

The mark is an attribute of the ``.jac`` tensor itself, not of the parameter: any later
accumulation into ``.jac`` (another ``backward``) creates a new, unmarked tensor, so a Jacobian
that received local contributions after the synchronization is caught as well.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

SYNCHRONIZED_ATTRIBUTE = "_torchjd_synchronized"


def mark(jacobian: Tensor) -> None:
    setattr(jacobian, SYNCHRONIZED_ATTRIBUTE, True)


def is_marked(jacobian: Tensor) -> bool:
    return getattr(jacobian, SYNCHRONIZED_ATTRIBUTE, False) is True


def check_synchronized(tensors: Sequence[Tensor]) -> None:
    """
    Raises if several processes train together (an initialized default process group with more than
    one rank, as under ``DistributedDataParallel``) and some parameter's ``.jac`` field was not
    synchronized across them.

    DDP averages gradients in hooks run by ``.backward()``; ``backward`` and ``mtl_backward`` never
    call it, so without :func:`torchjd.distributed.sync_jacobians` each rank would aggregate its own
    local Jacobian and the replicas would silently drift apart. Only ``nn.Parameter``s are checked:
    they are what DDP replicates, whereas Jacobians with respect to activations are per-rank by
    nature.
    """

    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return
    world_size = torch.distributed.get_world_size()
    if world_size <= 1:
        return
    for index, tensor in enumerate(tensors):
        jacobian = getattr(tensor, "jac", None)
        if isinstance(tensor, nn.Parameter) and jacobian is not None and not is_marked(jacobian):
            raise ValueError(
                f"Parameter `tensors` contains a parameter (element {index}, shape "
                f"{list(tensor.shape)}) whose `.jac` field was not synchronized across the "
                f"{world_size} processes of the default process group. DistributedDataParallel only "
                "averages gradients during `.backward()`, which `backward` and `mtl_backward` do not "
                "call, so each rank would aggregate its own Jacobian and the replicas would drift "
                "apart. Call `torchjd.distributed.sync_jacobians(model.parameters())` before "
                "`jac_to_grad`, or, if per-rank Jacobians are intended (or you synchronized them "
                "yourself), `torchjd.distributed.mark_synchronized(params)`."
            )
