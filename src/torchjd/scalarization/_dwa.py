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

from typing import Any

import torch
from torch import Tensor

from torchjd._stateful import Stateful

from ._scalarizer_bases import Scalarizer, _check_positive_float, _check_values


class DWA(Scalarizer, Stateful):
    """
    Returns ``sum_k λ_k L_k`` with the dynamic weight average ``λ`` of the last two epochs.

    In training mode, every call also records the (detached) values to average them over the
    epoch; in evaluation mode (``dwa.eval()``) calls only weight the values, so validation losses
    do not leak into the weights (torchjd 0.18 records them too). Call :meth:`step` at the end of
    every epoch: it closes the epoch's average and moves to the next weights. The values may have
    any shape (one task per element), fixed until :meth:`reset`. The state (the last two epochs'
    average values, the running sum of the current epoch and the counters) lives in buffers,
    sized by the first recorded values.

    :param temperature: The temperature ``T > 0`` of the softmax; the paper uses ``2``. Larger
        values give more uniform weights. A settable attribute.

    >>> import torch
    >>> from torchjd.scalarization import DWA
    >>> dwa = DWA(temperature=2.0)
    >>> for epoch_losses in ([4.0, 2.0], [2.0, 1.5], [1.0, 1.2]):
    ...     value = dwa(torch.tensor(epoch_losses))  # one call per step; one step per epoch here
    ...     dwa.step()
    >>> dwa.weights(torch.tensor([1.0, 1.0]))  # ratios 0.5 and 0.8
    tensor([0.9251, 1.0749])
    """

    loss_history: Tensor
    epoch_loss_sum: Tensor
    epoch_num_steps: Tensor
    num_epochs: Tensor

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        self.temperature = temperature
        # [2, *shape] once sized: row 0 is the average of epoch t-2, row 1 that of epoch t-1.
        self.register_buffer("loss_history", torch.zeros(0))
        # [*shape] once sized: the sum of the values recorded since the last call to step.
        self.register_buffer("epoch_loss_sum", torch.zeros(0))
        self.register_buffer("epoch_num_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_epochs", torch.zeros((), dtype=torch.long))
        self._sized = False

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = _check_positive_float(value, "temperature")

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def reset(self) -> None:
        device = self.loss_history.device
        self.loss_history = torch.zeros(0, dtype=self.loss_history.dtype, device=device)
        self.epoch_loss_sum = torch.zeros(0, dtype=self.epoch_loss_sum.dtype, device=device)
        self.epoch_num_steps.zero_()
        self.num_epochs.zero_()
        self._sized = False

    def weights(self, values: Tensor) -> Tensor:
        """
        Returns the weights ``λ(t)`` of the current epoch, of the shape and dtype of ``values``.

        Records nothing; ``values`` only gives the shape, dtype and device.
        """

        _check_values(values)
        self._check_shape(values, "values")
        ones = torch.ones_like(values)
        if not self._sized:
            return ones
        history = self.loss_history.to(dtype=values.dtype, device=values.device)
        ratios = (history[1] / history[0]).flatten()
        dynamic = values.numel() * torch.softmax(ratios / self.temperature, dim=0)
        # torch.where instead of a Python branch on num_epochs: no device synchronization.
        has_two_epochs = self.num_epochs.to(values.device) >= 2
        return torch.where(has_two_epochs, dynamic.reshape(values.shape), ones)

    def forward(self, values: Tensor, /) -> Tensor:
        weights = self.weights(values)
        if self.training:
            self._record(values.detach())
        return (weights * values).sum()

    @torch.no_grad()
    def step(self, epoch_values: Tensor | None = None) -> None:
        """
        Closes the current epoch: its average values become ``L(t-1)`` and the weights change.

        Without ``epoch_values``, and if no call in training mode happened since the last step,
        it does nothing (as in torchjd 0.18).

        :param epoch_values: The epoch's average values, to use instead of the average of the
            values recorded by the calls of this epoch (e.g. losses measured on the whole training
            set). ``None`` (default) uses the recorded average.
        """

        if epoch_values is None:
            if int(self.epoch_num_steps) == 0:
                return
            average = self.epoch_loss_sum / self.epoch_num_steps
        else:
            _check_values(epoch_values)
            self._check_shape(epoch_values, "epoch_values")
            if not self._sized:
                self._allocate(epoch_values.detach())
            average = epoch_values.detach().to(self.loss_history)
        self.loss_history = torch.stack([self.loss_history[1], average])
        self.epoch_loss_sum.zero_()
        self.epoch_num_steps.zero_()
        self.num_epochs += 1

    def _record(self, values: Tensor) -> None:
        if not self._sized:
            self._allocate(values)
        self.epoch_loss_sum += values.to(self.epoch_loss_sum.dtype)
        self.epoch_num_steps += 1

    def _allocate(self, values: Tensor) -> None:
        self.loss_history = torch.zeros(2, *values.shape, dtype=values.dtype, device=values.device)
        self.epoch_loss_sum = torch.zeros(values.shape, dtype=values.dtype, device=values.device)
        self._sized = True

    def _check_shape(self, values: Tensor, name: str) -> None:
        if self._sized and self.epoch_loss_sum.shape != values.shape:
            raise ValueError(
                f"Parameter `{name}` should have shape {tuple(self.epoch_loss_sum.shape)}, the shape "
                f"of the values seen so far (call `reset()` to change it). Found "
                f"{tuple(values.shape)}."
            )

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The buffers sized by the values start empty: a fresh instance takes the saved sizes.
        for name in ("loss_history", "epoch_loss_sum"):
            incoming = state_dict.get(prefix + name)
            current = self._buffers[name]
            if isinstance(incoming, Tensor) and current is not None and incoming.shape != current.shape:
                dtype = incoming.dtype if current.numel() == 0 else current.dtype
                self._buffers[name] = torch.empty(incoming.shape, dtype=dtype, device=current.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        history = self._buffers["loss_history"]
        self._sized = history is not None and history.dim() > 0 and history.shape[0] == 2
