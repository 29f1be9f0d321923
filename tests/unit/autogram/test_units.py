import pytest
import torch
from torch import nn

from torchjd.autogram import Engine, _units
from torchjd.autogram._units import _outer_product_gramian

# float64 recurrent layers have no working batching rule on CPU: the fallback is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore:autogram could not vectorize")


def brute_force(a: torch.Tensor, d: torch.Tensor, with_ones: bool) -> torch.Tensor:
    if with_ones:
        a = torch.cat([a, torch.ones(*a.shape[:2], 1, dtype=a.dtype)], 2)
    rows = torch.einsum("bkso,bsi->bkoi", d, a).reshape(d.shape[0] * d.shape[1], -1)
    return rows @ rows.T


@pytest.mark.parametrize("with_ones", [False, True])
@pytest.mark.parametrize(
    "b, k, s, i, o",
    [(5, 1, 1, 3, 4), (5, 3, 1, 3, 4), (4, 2, 6, 2, 3), (1, 7, 9, 2, 3), (3, 2, 4, 20, 30)],
)
def test_outer_product_gramian_matches_materialized_rows(b: int, k: int, s: int, i: int, o: int, with_ones: bool) -> None:
    torch.manual_seed(0)
    a = torch.randn(b, s, i, dtype=torch.float64)
    d = torch.randn(b, k, s, o, dtype=torch.float64)
    torch.testing.assert_close(_outer_product_gramian(a, d, with_ones), brute_force(a, d, with_ones))


def test_outer_product_gramian_kernel_path_respects_memory_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    a = torch.randn(3, 5, 40, dtype=torch.float64)
    d = torch.randn(3, 2, 5, 40, dtype=torch.float64)
    expected = brute_force(a, d, True)
    monkeypatch.setattr(_units, "_MAX_KERNEL_ELEMENTS", 0)
    torch.testing.assert_close(_outer_product_gramian(a, d, True), expected)


@pytest.mark.parametrize(
    "module, expected",
    [
        (nn.Linear(2, 2), _units.LinearUnit),
        (nn.Conv2d(2, 2, 3), _units.ConvUnit),
        (nn.Conv1d(2, 2, 3, padding="same"), _units.GenericUnit),
        (nn.Conv2d(2, 2, 3, padding_mode="reflect"), _units.GenericUnit),
        (nn.Conv3d(2, 2, 3), _units.GenericUnit),
        (nn.Embedding(4, 2), _units.EmbeddingUnit),
        (nn.LayerNorm(3), _units.LayerNormUnit),
        (nn.GRU(2, 2), _units.RNNUnit),
        (nn.MultiheadAttention(4, 2), _units.MultiheadAttentionUnit),
        (nn.PReLU(), _units.GenericUnit),
    ],
)
def test_make_unit_uses_known_structure_when_it_applies(module: nn.Module, expected: type) -> None:
    assert type(_units.make_unit(module, "m")) is expected


class SubclassedLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


def test_subclass_with_own_forward_goes_through_generic_path() -> None:
    assert type(_units.make_unit(SubclassedLinear(2, 2), "m")) is _units.GenericUnit


def dense(output: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    rows = []
    for value in output.flatten():
        grads = torch.autograd.grad(value, params, retain_graph=True)
        rows.append(torch.cat([g.flatten() for g in grads]))
    jacobian = torch.stack(rows)
    return jacobian @ jacobian.T


@pytest.mark.parametrize("batch_dim", [0, None])
@pytest.mark.parametrize(
    "module, x",
    [
        (nn.Conv1d(2, 3, 3, padding="same"), torch.randn(4, 2, 6)),
        (nn.Conv2d(2, 3, 3, padding_mode="circular", padding=1), torch.randn(4, 2, 5, 5)),
        (nn.Conv3d(2, 2, 2), torch.randn(3, 2, 3, 3, 3)),
        (nn.Conv2d(4, 4, 3, groups=4, bias=False), torch.randn(3, 4, 5, 5)),
        (nn.GRU(3, 4, num_layers=2, batch_first=False), torch.randn(5, 3, 3)),
        (nn.PReLU(), torch.randn(4, 3)),
        (SubclassedLinear(3, 2), torch.randn(4, 5, 3)),
        (nn.LayerNorm([2, 3]), torch.randn(4, 5, 2, 3)),
        (nn.Embedding(6, 3, padding_idx=2), torch.randint(0, 6, (4, 5))),
    ],
)
def test_single_module_gramians(module: nn.Module, x: torch.Tensor, batch_dim: int | None) -> None:
    torch.manual_seed(0)
    module = module.double()
    x = x if x.dtype == torch.long else x.double()
    engine = Engine(module, batch_dim=batch_dim)
    output = module(x)
    if isinstance(output, tuple):  # GRU: (sequence, hidden); the batch is dimension 1 of both
        output = output[0].sum((0, 2)) + output[1].sum((0, 2))
    else:
        output = (output**2).flatten(1).sum(1)
    torch.testing.assert_close(engine.compute_gramian(output), dense(output, list(module.parameters())))


@pytest.mark.parametrize("batch_dim", [0, None])
def test_generic_module_with_several_objectives_per_sample(batch_dim: int | None) -> None:
    # prelu's batching rule mishandles a nested vmap over a shared 1-element weight; the engine
    # must notice and still be exact.
    torch.manual_seed(0)
    module = nn.PReLU().double()
    engine = Engine(module, batch_dim=batch_dim)
    output = module(torch.randn(4, 3, dtype=torch.float64)) ** 2
    torch.testing.assert_close(engine.compute_gramian(output), dense(output, list(module.parameters())))


@pytest.mark.parametrize("batch_dim", [0, None])
def test_generic_path_is_exact_where_vmap_cannot_run(batch_dim: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_vmap(*args: object, **kwargs: object) -> object:
        def run(*a: object, **k: object) -> object:
            raise RuntimeError("no batching rule")

        return run

    monkeypatch.setattr(_units, "vmap", failing_vmap)
    torch.manual_seed(0)
    module = nn.GRU(3, 4, batch_first=True).double()
    engine = Engine(module, batch_dim=batch_dim)
    output = module(torch.randn(4, 5, 3, dtype=torch.float64))[0][:, -1] ** 2  # [4, 4]: k = 4
    torch.testing.assert_close(engine.compute_gramian(output), dense(output, list(module.parameters())))
