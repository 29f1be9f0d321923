"""
End-to-end Jacobian descent under ``DistributedDataParallel`` on 2 gloo processes (CPU), each
training on half of every batch, against single-process training on whole batches.

- MTL: ``mtl_backward`` + :func:`torchjd.distributed.sync_jacobians` + ``jac_to_grad`` must keep
  the replicas identical and equal to single-process Jacobian descent on the global batch.
- IWRM: each rank weights its own samples from its own Gramian (``autogram.Engine``), then DDP
  averages; this must equal single-process IWRM with the block-diagonal Gramian (the cross-rank
  sample pairs ignored), computed here from a dense per-sample Jacobian.

One launch (shared with the FSDP2 tests of ``test_distributed_fsdp.py``) runs every scenario on
both ranks.
"""

from typing import Any

import pytest
import torch
from torch import Tensor
from torch.testing import assert_close

import torchjd.aggregation
from integration._distributed_scenarios import (
    LR,
    aggregators,
    assert_identical_on_ranks,
    assert_same_trajectory,
    iwrm_batches,
    iwrm_weightings,
    new_iwrm_model,
    new_mtl_model,
    launched,
    rank_slice,
    snapshot,
    train_iwrm_block_diagonal,
    train_mtl,
)
from torchjd.aggregation import Weighting

WORLD_SIZE = 2


@pytest.fixture(scope="module")
def results() -> list[dict[str, Any]]:
    return launched(WORLD_SIZE)


@pytest.mark.parametrize("aggregator", list(aggregators()))
def test_ddp_mtl_parameters_identical_on_ranks(results: list[dict[str, Any]], aggregator: str) -> None:
    assert_identical_on_ranks([result["mtl"][aggregator] for result in results])


@pytest.mark.parametrize("aggregator", list(aggregators()))
def test_ddp_mtl_matches_single_process_global_batch(
    results: list[dict[str, Any]], aggregator: str
) -> None:
    expected = train_mtl(aggregators()[aggregator], rank=None, world_size=1)
    assert not torch.equal(expected[-1][0], snapshot(new_mtl_model())[0])  # Training moved it.
    assert_same_trajectory(results[0]["mtl"][aggregator], expected)


def test_ddp_mtl_without_sync_raises(results: list[dict[str, Any]]) -> None:
    for result in results:
        message = result["unsynchronized_error"]
        assert message is not None
        assert "torchjd.distributed.sync_jacobians" in message


@pytest.mark.parametrize("weighting", list(iwrm_weightings()))
def test_ddp_iwrm_parameters_identical_on_ranks(results: list[dict[str, Any]], weighting: str) -> None:
    assert_identical_on_ranks([result["iwrm"][weighting] for result in results])


@pytest.mark.parametrize("weighting", list(iwrm_weightings()))
def test_ddp_iwrm_is_block_diagonal_iwrm(results: list[dict[str, Any]], weighting: str) -> None:
    expected = train_iwrm_block_diagonal(iwrm_weightings()[weighting], WORLD_SIZE)
    assert_same_trajectory(results[0]["iwrm"][weighting], expected)


def test_ddp_iwrm_with_mean_weights_is_global_mean_training(results: list[dict[str, Any]]) -> None:
    model = new_iwrm_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    expected = []
    for x, y in iwrm_batches():
        optimizer.zero_grad()
        ((model(x).squeeze(1) - y) ** 2).mean().backward()
        optimizer.step()
        expected.append(snapshot(model))
    assert_same_trajectory(results[0]["iwrm"]["mean"], expected)


@pytest.mark.skipif(
    not hasattr(torchjd.aggregation, "UPGradWeighting"), reason="UPGradWeighting not available yet"
)
def test_per_block_upgrad_is_upgrad_of_block_diagonal_gramian() -> None:
    # The documented claim: for UPGrad, per-rank weighting followed by DDP's mean is exactly UPGrad
    # on the block-diagonal Gramian, because its dual-cone problems decouple block by block. Exact
    # with the default (unregularized) projector only.
    weighting = torchjd.aggregation.UPGradWeighting()
    torch.manual_seed(0)
    blocks = [torch.randn(4, 10, dtype=torch.float64) for _ in range(WORLD_SIZE)]
    block_diagonal = torch.block_diag(*[block @ block.T for block in blocks])
    expected = weighting(block_diagonal)
    actual = torch.cat([weighting(block @ block.T) for block in blocks]) / WORLD_SIZE
    assert_close(actual, expected, rtol=1e-6, atol=1e-8)
