"""What each rank runs in ``test_sync_jacobians.py`` (spawned processes import it by name)."""

from typing import Any

import torch
from torch import nn

from torchjd.aggregation import MGDA
from torchjd.autojac import backward, jac_to_grad
from torchjd.distributed import mark_synchronized, sync_jacobians
from torchjd.distributed._marks import is_marked


def rank_values(rank: int) -> dict[str, torch.Tensor]:
    """The fields that rank ``rank`` fills before synchronizing: distinct on every rank."""

    scale = float(rank + 1)
    return {
        "shared_jac": scale * torch.arange(12, dtype=torch.float64).view(2, 3, 2),
        "head_grad": scale * torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64),
        "head32_grad": scale * torch.tensor([[0.5], [3.0]], dtype=torch.float32),
    }


def sync_scenario(rank: int, world_size: int) -> dict[str, Any]:
    values = rank_values(rank)
    shared = nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
    head = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    head32 = nn.Parameter(torch.zeros(2, 1))
    unused = nn.Parameter(torch.zeros(4, dtype=torch.float64))
    shared.jac = values["shared_jac"].clone()
    head.grad = values["head_grad"].clone()
    head32.grad = values["head32_grad"].clone()

    calls: list[int] = []
    all_reduce = torch.distributed.all_reduce

    def counting_all_reduce(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(tensor.numel())
        return all_reduce(tensor, *args, **kwargs)

    torch.distributed.all_reduce = counting_all_reduce
    try:
        sync_jacobians([shared, head, head32, unused])
    finally:
        torch.distributed.all_reduce = all_reduce

    return {
        "shared_jac": shared.jac.clone(),
        "head_grad": head.grad.clone(),
        "head32_grad": head32.grad.clone(),
        "unused_has_grad": unused.grad is not None,
        "unused_has_jac": hasattr(unused, "jac"),
        "shared_jac_marked": is_marked(shared.jac),
        "same_buffer": shared.jac.untyped_storage().data_ptr() == head.grad.untyped_storage().data_ptr(),
        "all_reduce_numels": calls,
        "errors": error_scenario(rank),
    }


def error_scenario(rank: int) -> dict[str, str | None]:
    """Which ``jac_to_grad`` calls the synchronization check refuses, with their messages."""

    def attempt(tensors: list[torch.Tensor]) -> str | None:
        try:
            jac_to_grad(tensors, MGDA())
        except ValueError as error:
            return str(error)
        return None

    def fill_jac(param: torch.Tensor) -> None:
        x = torch.tensor([1.0, float(rank + 2)])
        backward([(x * param).sum(), (param**2).sum()], inputs=[param])

    param = nn.Parameter(torch.tensor([1.0, -1.0]))
    errors: dict[str, str | None] = {}
    fill_jac(param)
    errors["unsynchronized"] = attempt([param])

    mark_synchronized([param])
    errors["marked"] = attempt([param])

    fill_jac(param)
    sync_jacobians([param])
    errors["synchronized"] = attempt([param])

    fill_jac(param)
    sync_jacobians([param])
    fill_jac(param)  # A local contribution after the synchronization.
    errors["accumulated_after_sync"] = attempt([param])
    del param.jac

    activation = torch.tensor([1.0, 2.0], requires_grad=True)
    backward([activation.sum(), activation.prod()], inputs=[activation])
    errors["not_a_parameter"] = attempt([activation])
    return errors
