"""
Tests of :func:`torchjd.distributed.sync_jacobians`, :func:`torchjd.distributed.mark_synchronized`
and the check that :func:`torchjd.autojac.jac_to_grad` makes with them, on 2 gloo processes.

All the multi-process checks share one launch (a module-scoped fixture): starting processes costs
seconds, the checks themselves milliseconds.
"""

from typing import Any

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from torchjd.distributed import mark_synchronized, sync_jacobians
from torchjd.distributed._marks import is_marked
from unit.distributed._launch import run_on_ranks
from unit.distributed._sync_scenarios import rank_values, sync_scenario

WORLD_SIZE = 2


@pytest.fixture(scope="module")
def results() -> list[dict[str, Any]]:
    return run_on_ranks(sync_scenario, WORLD_SIZE)


@pytest.mark.parametrize("field", ["shared_jac", "head_grad", "head32_grad"])
def test_sync_averages_fields_over_ranks(results: list[dict[str, Any]], field: str) -> None:
    expected = sum(rank_values(rank)[field] for rank in range(WORLD_SIZE)) / WORLD_SIZE
    for result in results:
        assert result[field].dtype == expected.dtype
        assert_close(result[field], expected, rtol=0, atol=0)


def test_sync_uses_one_all_reduce_per_dtype(results: list[dict[str, Any]]) -> None:
    # float64: the [2, 3, 2] Jacobian and the [3] gradient; float32: the [2, 1] gradient.
    for result in results:
        assert result["all_reduce_numels"] == [12 + 3, 2]


def test_sync_leaves_views_of_one_buffer(results: list[dict[str, Any]]) -> None:
    for result in results:
        assert result["same_buffer"]


def test_sync_skips_tensors_without_fields(results: list[dict[str, Any]]) -> None:
    for result in results:
        assert not result["unused_has_grad"]
        assert not result["unused_has_jac"]


def test_sync_marks_jacobians(results: list[dict[str, Any]]) -> None:
    for result in results:
        assert result["shared_jac_marked"]


def test_jac_to_grad_refuses_unsynchronized_parameters(results: list[dict[str, Any]]) -> None:
    for result in results:
        message = result["errors"]["unsynchronized"]
        assert message is not None
        assert "sync_jacobians" in message and "DistributedDataParallel" in message


def test_jac_to_grad_refuses_local_accumulation_after_sync(results: list[dict[str, Any]]) -> None:
    for result in results:
        assert result["errors"]["accumulated_after_sync"] is not None


@pytest.mark.parametrize("case", ["marked", "synchronized", "not_a_parameter"])
def test_jac_to_grad_accepts(results: list[dict[str, Any]], case: str) -> None:
    for result in results:
        assert result["errors"][case] is None


def test_sync_needs_a_process_group() -> None:
    param = nn.Parameter(torch.zeros(2))
    param.jac = torch.zeros(1, 2)
    with pytest.raises(RuntimeError, match="init_process_group"):
        sync_jacobians([param])


def test_sync_rejects_non_tensors() -> None:
    with pytest.raises(TypeError, match="Element 1"):
        sync_jacobians([torch.zeros(1), 3.0])  # type: ignore[list-item]


def test_mark_synchronized_marks_only_jacobians() -> None:
    with_jac, without = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    with_jac.jac = torch.zeros(3, 2)
    mark_synchronized([with_jac, without])
    assert is_marked(with_jac.jac)
    assert not hasattr(without, "jac")
