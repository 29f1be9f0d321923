"""
DWA: dynamic weight average, weights from how fast each loss went down over the last epochs.

From `End-to-End Multi-Task Learning with Attention <https://arxiv.org/abs/1803.10704>`_ (Liu,
Johns and Davison, CVPR 2019). With ``L_k(t)`` the average loss of task ``k`` over epoch ``t``,
the weights used during epoch ``t`` are

``λ_k(t) = K exp(w_k(t-1) / T) / sum_i exp(w_i(t-1) / T)``, ``w_k(t-1) = L_k(t-1) / L_k(t-2)``,

where ``K`` is the number of tasks and ``T`` a temperature, and the scalar is
``sum_k λ_k(t) L_k``. A task whose loss went down slowly (ratio close to or above one) gets a
larger weight. The weights sum to ``K``; during the first two epochs, when the ratio is not
defined yet, they are all ``1``. They are constants: they are not differentiated through.
"""

import torch
from torch import Tensor

from ._scalarizer_bases import (
    StatefulScalarizer,
    _check_losses,
    _check_positive_float,
)


class DWA(StatefulScalarizer):
    """
    Returns ``sum_k λ_k L_k`` with the dynamic weight average ``λ`` of the last two epochs.

    In training mode, every call also records the (detached) losses to average them over the
    epoch; in evaluation mode (``dwa.eval()``) calls only weight the losses, so validation losses
    do not leak into the weights. Call :meth:`end_epoch` at the end of every epoch: it closes the
    epoch's average and moves to the next weights. The state (the last two epochs' average losses,
    the running sum of the current epoch and the counters) lives in buffers; those whose size is
    the number of tasks are sized by the first recorded losses.

    :param T: The temperature ``T > 0`` of the softmax; the paper uses ``2``. Larger values give
        more uniform weights.

    >>> import torch
    >>> from torchjd.scalarization import DWA
    >>> dwa = DWA(T=2.0)
    >>> for epoch_losses in ([4.0, 2.0], [2.0, 1.5], [1.0, 1.2]):
    ...     value = dwa(torch.tensor(epoch_losses))  # one call per step; one step per epoch here
    ...     dwa.end_epoch()
    >>> dwa.weights(torch.tensor([1.0, 1.0]))  # ratios 0.5 and 0.8
    tensor([0.9251, 1.0749])
    """

    _lazy_buffer_names = ("loss_history", "epoch_loss_sum")

    loss_history: Tensor
    epoch_loss_sum: Tensor
    epoch_num_steps: Tensor
    num_epochs: Tensor

    def __init__(self, T: float = 2.0):
        super().__init__()
        _check_positive_float(T, "T")
        self.T = T
        # [2, m] once sized: row 0 is the average loss of epoch t-2, row 1 that of epoch t-1.
        self.register_buffer("loss_history", torch.zeros(0))
        # [m] once sized: the sum of the losses recorded since the last call to end_epoch.
        self.register_buffer("epoch_loss_sum", torch.zeros(0))
        self.register_buffer("epoch_num_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_epochs", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"T={self.T}"

    def reset(self) -> None:
        device = self.loss_history.device
        self.loss_history = torch.zeros(0, dtype=self.loss_history.dtype, device=device)
        self.epoch_loss_sum = torch.zeros(0, dtype=self.epoch_loss_sum.dtype, device=device)
        self.epoch_num_steps.zero_()
        self.num_epochs.zero_()

    def weights(self, losses: Tensor) -> Tensor:
        """
        Returns the weights ``λ(t)`` ``[m]`` of the current epoch, in the dtype of ``losses``.

        Records nothing; ``losses`` only gives the number of tasks, dtype and device.
        """

        _check_losses(losses)
        self._check_num_tasks(losses.shape[0], "losses")
        num_tasks = losses.shape[0]
        ones = torch.ones_like(losses)
        if self.loss_history.numel() == 0:
            return ones
        history = self.loss_history.to(dtype=losses.dtype, device=losses.device)
        ratios = history[1] / history[0]
        dynamic = num_tasks * torch.softmax(ratios / self.T, dim=0)
        # torch.where instead of a Python branch on num_epochs: no device synchronization.
        has_two_epochs = self.num_epochs.to(losses.device) >= 2
        return torch.where(has_two_epochs, dynamic, ones)

    def scalarize(self, losses: Tensor) -> Tensor:
        weights = self.weights(losses)
        if self.training:
            self._record(losses.detach())
        return weights @ losses

    @torch.no_grad()
    def end_epoch(self, epoch_losses: Tensor | None = None) -> None:
        """
        Closes the current epoch: its average loss becomes ``L(t-1)`` and the weights change.

        :param epoch_losses: The epoch's average losses ``[m]``, to use instead of the average of
            the losses recorded by the calls of this epoch (e.g. losses measured on the whole
            training set). ``None`` (default) uses the recorded average; then at least one call in
            training mode must have happened since the last epoch boundary.
        """

        if epoch_losses is None:
            if self.epoch_loss_sum.numel() == 0 or int(self.epoch_num_steps) == 0:
                raise RuntimeError(
                    "`end_epoch` found no losses recorded during this epoch: call the DWA on the "
                    "losses in training mode first, or pass `epoch_losses`."
                )
            average = self.epoch_loss_sum / self.epoch_num_steps
        else:
            _check_losses(epoch_losses)
            self._check_num_tasks(epoch_losses.shape[0], "epoch_losses")
            average = epoch_losses.detach()
            if self.loss_history.numel() == 0:
                self._allocate(average)
            average = average.to(dtype=self.loss_history.dtype, device=self.loss_history.device)
        self.loss_history = torch.stack([self.loss_history[1], average])
        self.epoch_loss_sum.zero_()
        self.epoch_num_steps.zero_()
        self.num_epochs += 1

    def _record(self, losses: Tensor) -> None:
        if self.epoch_loss_sum.numel() == 0:
            self._allocate(losses)
        self.epoch_loss_sum += losses.to(self.epoch_loss_sum.dtype)
        self.epoch_num_steps += 1

    def _allocate(self, losses: Tensor) -> None:
        num_tasks = losses.shape[0]
        self.loss_history = torch.zeros(2, num_tasks, dtype=losses.dtype, device=losses.device)
        self.epoch_loss_sum = torch.zeros(num_tasks, dtype=losses.dtype, device=losses.device)

    def _check_num_tasks(self, num_tasks: int, name: str) -> None:
        if self.loss_history.numel() != 0 and self.loss_history.shape[1] != num_tasks:
            raise ValueError(
                f"Parameter `{name}` should have {self.loss_history.shape[1]} elements, the number "
                f"of tasks seen so far. Found {num_tasks}."
            )
