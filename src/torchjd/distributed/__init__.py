"""Jacobian descent across processes, e.g. with ``torch.nn.parallel.DistributedDataParallel``."""

from ._sync import mark_synchronized, sync_jacobians

__all__ = ["mark_synchronized", "sync_jacobians"]
