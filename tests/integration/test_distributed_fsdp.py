"""
End-to-end Jacobian descent on models sharded with FSDP2 (``fully_shard``, each trunk layer its
own group, the root holding the heads) on 2 and 3 gloo processes (CPU), each training on its share
of every batch, against single-process Jacobian descent on whole batches.

The trunk's width (7) makes uneven shards, and the one-row head leaves some ranks with empty
shards. The 2-rank launch is shared with ``test_distributed_training.py``.
"""

import functools
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.testing import assert_close

from integration._distributed_scenarios import (
    FSDP_WIDTH,
    assert_identical_on_ranks,
    assert_same_trajectory,
    fsdp_aggregators,
    iwrm_weightings,
    launched,
    mtl_batches,
    new_mtl_model,
    snapshot,
    train_backward,
    train_iwrm_block_diagonal,
    train_mtl,
)
from torchjd.aggregation import UPGradWeighting


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}ranks")
def results(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return [result["fsdp"] for result in launched(request.param)]


@functools.cache
def single_process_mtl(aggregator: str) -> list[list[Tensor]]:
    return train_mtl(fsdp_aggregators()[aggregator], rank=None, world_size=1, width=FSDP_WIDTH)


@pytest.mark.parametrize("reshard_after_forward", [True, False])
@pytest.mark.parametrize("aggregator", list(fsdp_aggregators()))
def test_fsdp_mtl_parameters_identical_on_ranks(
    results: list[dict[str, Any]], aggregator: str, reshard_after_forward: bool
) -> None:
    assert_identical_on_ranks([result["mtl"][(aggregator, reshard_after_forward)] for result in results])


@pytest.mark.parametrize("reshard_after_forward", [True, False])
@pytest.mark.parametrize("aggregator", list(fsdp_aggregators()))
def test_fsdp_mtl_matches_single_process_global_batch(
    results: list[dict[str, Any]], aggregator: str, reshard_after_forward: bool
) -> None:
    expected = single_process_mtl(aggregator)
    assert not torch.equal(expected[-1][0], snapshot(new_mtl_model(FSDP_WIDTH))[0])  # It moved.
    assert_same_trajectory(results[0]["mtl"][(aggregator, reshard_after_forward)], expected)


def test_fsdp_backward_matches_single_process_global_batch(results: list[dict[str, Any]]) -> None:
    assert_identical_on_ranks([result["backward"] for result in results])
    assert_same_trajectory(results[0]["backward"], train_backward())


@pytest.mark.parametrize("weighting", list(iwrm_weightings()))
def test_fsdp_iwrm_is_block_diagonal_iwrm(results: list[dict[str, Any]], weighting: str) -> None:
    assert_identical_on_ranks([result["iwrm"][weighting] for result in results])
    expected = train_iwrm_block_diagonal(iwrm_weightings()[weighting], len(results))
    assert_same_trajectory(results[0]["iwrm"][weighting], expected)


def global_trunk_jacobians() -> list[Tensor]:
    """The Jacobian of the 2 losses of the first whole batch w.r.t. each trunk parameter."""

    model = new_mtl_model(FSDP_WIDTH)
    x, y1, y2 = mtl_batches()[0]
    _, (out1, out2) = model(x)
    losses = [(out1 - y1).square().mean(), (out2 - y2).square().mean()]
    params = list(model.trunk.parameters())
    rows = [torch.autograd.grad(loss, params, retain_graph=True) for loss in losses]
    return [torch.stack(per_task) for per_task in zip(*rows)]  # Each [2] + param.shape


def test_fsdp_jac_holds_the_local_shard_rows_and_accumulates(results: list[dict[str, Any]]) -> None:
    world_size = len(results)
    for index, jacobian in enumerate(global_trunk_jacobians()):
        rows = jacobian.shape[1]
        chunk = -(-rows // world_size)  # FSDP's split along dim 0: ceil(rows / world_size) each.
        for rank, result in enumerate(results):
            expected = jacobian[:, rank * chunk : (rank + 1) * chunk]
            assert list(expected.shape) == [2, *result["first_step"]["local_shapes"][index]]
            assert_close(result["first_step"]["jacs"][index], expected, rtol=1e-10, atol=1e-12)
            accumulated = result["first_step"]["accumulated_jacs"][index]
            assert_close(accumulated, 2 * expected, rtol=1e-10, atol=1e-12)


def test_fsdp_weights_come_from_the_global_gramian(results: list[dict[str, Any]]) -> None:
    matrix = torch.cat([jacobian.reshape(2, -1) for jacobian in global_trunk_jacobians()], dim=1)
    matrix = 2 * matrix  # jac_to_grad ran after two accumulated calls.
    expected = UPGradWeighting()(matrix @ matrix.T)
    for result in results:
        assert torch.equal(result["first_step"]["weights"], results[0]["first_step"]["weights"])
    assert_close(results[0]["first_step"]["weights"], expected, rtol=1e-8, atol=1e-10)


def test_fsdp_gradients_are_dtensors_and_jacs_are_freed(results: list[dict[str, Any]]) -> None:
    for result in results:
        assert result["first_step"]["grads_are_dtensors"]
        assert result["first_step"]["jacs_freed"]
        assert result["first_step"]["heads_grad_types"] == ["DTensor"] * 4


def test_fsdp_matrix_based_aggregator_raises(results: list[dict[str, Any]]) -> None:
    for result in results:
        message = result["first_step"]["matrix_based_error"]
        assert message is not None
        assert "ConFIG" in message and "UPGrad" in message and "GramianWeightedAggregator" in message
        assert result["first_step"]["jacs_kept_after_error"]


def test_sync_jacobians_refuses_sharded_parameters(results: list[dict[str, Any]]) -> None:
    for result in results:
        message = result["first_step"]["sync_error"]
        assert message is not None and "fully_shard" in message


def test_fsdp_backward_validates_sharded_inputs_before_any_work(results: list[dict[str, Any]]) -> None:
    for result in results:
        errors = result["first_step"]["input_errors"]
        assert errors["foreign_dtensor"] is not None and "fully_shard" in errors["foreign_dtensor"]
        assert errors["wrong_jac_shape"] is not None and "local shard" in errors["wrong_jac_shape"]
        assert not errors["wrote_something"]
