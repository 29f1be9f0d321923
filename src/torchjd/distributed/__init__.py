"""
Jacobian descent across processes: with ``torch.nn.parallel.DistributedDataParallel``, through
:func:`sync_jacobians`; with FSDP2 (``torch.distributed.fsdp.fully_shard``), ``backward``,
``mtl_backward`` and ``jac_to_grad`` handle the sharded parameters by themselves.
"""

from ._sync import mark_synchronized, sync_jacobians

__all__ = ["mark_synchronized", "sync_jacobians"]
