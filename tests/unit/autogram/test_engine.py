import gc
import weakref

import pytest
import torch
from torch import Tensor, nn

from torchjd.autogram import Engine


def dense_gramian(output: Tensor, params: list[Tensor]) -> Tensor:
    rows = []
    for value in output.flatten():
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([torch.zeros_like(p).flatten() if g is None else g.flatten() for g, p in zip(grads, params)]))
    jacobian = torch.stack(rows)
    return jacobian @ jacobian.T


def make_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()


def test_compute_gramian_writes_no_grad_and_keeps_graph_for_weighted_backward() -> None:
    model = make_mlp()
    engine = Engine(model)
    x = torch.randn(6, 3, dtype=torch.float64)
    losses = (model(x) ** 2).sum(1)

    gramian = engine.compute_gramian(losses)
    assert all(p.grad is None for p in model.parameters())

    weights = torch.linspace(0.1, 1.0, 6, dtype=torch.float64)
    losses.backward(weights)
    expected = torch.autograd.grad((model(x) ** 2).sum(1) @ weights, list(model.parameters()))
    for param, grad in zip(model.parameters(), expected):
        torch.testing.assert_close(param.grad, grad)
    assert gramian.shape == (6, 6)


def test_gramian_is_symmetric_positive_semidefinite() -> None:
    model = make_mlp()
    engine = Engine(model)
    gramian = engine.compute_gramian((model(torch.randn(7, 3, dtype=torch.float64)) ** 2).sum(1))
    torch.testing.assert_close(gramian, gramian.T)
    assert torch.linalg.eigvalsh(gramian).min() > -1e-10


@pytest.mark.parametrize("batch_dim", [1, 2, -1])
def test_batch_dim_is_the_batch_dimension_of_the_output_only(batch_dim: int) -> None:
    # As in torchjd 0.18: the modules are batched on their first dimension, the output anywhere.
    torch.manual_seed(0)
    linear = nn.Linear(3, 4).double()
    engine = Engine(linear, batch_dim=batch_dim)
    y = linear(torch.randn(5, 3, dtype=torch.float64)) ** 2  # [5 samples, 4]
    output = y.view(5, 2, 2).movedim(0, batch_dim)  # the samples in dimension batch_dim

    gramian = engine.compute_gramian(output)

    torch.testing.assert_close(gramian, dense_gramian(output, list(linear.parameters())))


def test_losses_of_tasks_by_samples_with_batch_dim_1() -> None:
    model = make_mlp()
    engine = Engine(model, batch_dim=1)
    losses = (model(torch.randn(6, 3, dtype=torch.float64)) ** 2).T  # [2 tasks, 6 samples]
    torch.testing.assert_close(engine.compute_gramian(losses), dense_gramian(losses, list(model.parameters())))


def test_two_outputs_of_one_graph_and_two_forwards() -> None:
    model = make_mlp()
    engine = Engine(model)
    first = (model(torch.randn(4, 3, dtype=torch.float64)) ** 2).sum(1)
    second = model(torch.randn(3, 3, dtype=torch.float64)).sum(1)
    params = list(model.parameters())

    # Each output only sees the records of its own graph.
    torch.testing.assert_close(engine.compute_gramian(second), dense_gramian(second, params))
    torch.testing.assert_close(engine.compute_gramian(first), dense_gramian(first, params))
    torch.testing.assert_close(engine.compute_gramian(first), dense_gramian(first, params))


def test_output_independent_of_the_modules_gives_zeros() -> None:
    model = make_mlp()
    engine = Engine(model[2])
    hidden = model[0](torch.randn(4, 3, dtype=torch.float64)).sum(1)
    torch.testing.assert_close(engine.compute_gramian(hidden), torch.zeros(4, 4, dtype=torch.float64))


def test_frozen_after_construction_is_excluded() -> None:
    model = make_mlp()
    engine = Engine(model)
    model[0].requires_grad_(False)
    losses = (model(torch.randn(5, 3, dtype=torch.float64)) ** 2).sum(1)
    expected = dense_gramian(losses, list(model[2].parameters()))
    torch.testing.assert_close(engine.compute_gramian(losses), expected)


@pytest.mark.parametrize("select", [lambda m: (m[0], m[2], m[0]), lambda m: (m, m[0]), lambda m: (m[2], m)])
def test_several_modules_duplicates_and_nested_modules_count_once(select) -> None:  # type: ignore[no-untyped-def]
    model = make_mlp()
    engine = Engine(*select(model))
    losses = (model(torch.randn(5, 3, dtype=torch.float64)) ** 2).sum(1)
    torch.testing.assert_close(engine.compute_gramian(losses), dense_gramian(losses, list(model.parameters())))


def test_no_record_without_grad_and_records_die_with_their_graph() -> None:
    model = make_mlp()
    engine = Engine(model)
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        model(x)
    output = model(x).sum(1)
    node = output.grad_fn.next_functions[0][0]
    key = engine._key
    records = [v for n in _nodes(output) for v in n.metadata.get(key, [])]
    assert len(records) == 2
    call = weakref.ref(records[0][1])
    del records, node, output
    gc.collect()
    assert call() is None


def _nodes(output: Tensor) -> list:
    seen, stack = [], [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or any(node is s for s in seen):
            continue
        seen.append(node)
        stack.extend(n for n, _ in node.next_functions)
    return seen


def test_remove_hooks_stops_recording() -> None:
    model = make_mlp()
    engine = Engine(model)
    engine.remove_hooks()
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    with pytest.raises(RuntimeError, match="hooks were removed"):
        engine.compute_gramian(model(torch.randn(2, 3, dtype=torch.float64)).sum(1))


def test_ordinary_training_still_works_with_hooks() -> None:
    model = make_mlp()
    reference = make_mlp()
    Engine(model)
    x = torch.randn(5, 3, dtype=torch.float64)
    model(x).sum().backward()
    reference(x).sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


@pytest.mark.parametrize(
    "modules, batch_dim, error, match",
    [
        ((), 0, ValueError, "`modules`"),
        ((nn.Linear(2, 2), "layer"), 0, TypeError, "`modules`"),
        ((nn.ReLU(),), 0, ValueError, "`modules`"),
        ((nn.Linear(2, 2),), 0.5, TypeError, "`batch_dim`"),
        ((nn.Linear(2, 2),), True, TypeError, "`batch_dim`"),
        ((nn.Linear(2, 2),), "0", TypeError, "`batch_dim`"),
    ],
)
def test_invalid_arguments_raise(modules: tuple, batch_dim: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Engine(*modules, batch_dim=batch_dim)  # type: ignore[arg-type]


def test_batch_norm_in_training_mode_is_refused_with_batch_dim() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="BatchNorm1d.*batch_dim=None"):
        Engine(model)
    Engine(model, batch_dim=None)
    model.eval()
    engine = Engine(model)
    model.train()
    with pytest.raises(ValueError, match="BatchNorm1d"):
        engine.compute_gramian(model(torch.randn(4, 3)).squeeze(1))


@pytest.mark.parametrize("batch_dim", [0, None])
def test_batch_norm_in_eval_mode_and_training_mode_without_batch_dim(batch_dim: int | None) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).double()
    model(torch.randn(8, 3, dtype=torch.float64))  # running statistics
    if batch_dim is not None:
        model.eval()
    engine = Engine(model, batch_dim=batch_dim)
    losses = model(torch.randn(6, 3, dtype=torch.float64)).squeeze(1) ** 2
    running_mean = model[1].running_mean.clone()
    gramian = engine.compute_gramian(losses)
    torch.testing.assert_close(gramian, dense_gramian(losses, list(model.parameters())))
    torch.testing.assert_close(model[1].running_mean, running_mean)  # replay left the state alone


def test_shared_parameter_is_refused() -> None:
    first, second = nn.Linear(3, 3), nn.Linear(3, 3)
    second.weight = first.weight
    with pytest.raises(ValueError, match="shared"):
        Engine(nn.Sequential(first, second))


class NoisyLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.dropout(x * self.weight, 0.5, training=True)


@pytest.mark.parametrize("batch_dim", [0, None])
def test_non_deterministic_generic_module_raises(batch_dim: int | None) -> None:
    torch.manual_seed(0)
    layer = NoisyLayer()
    engine = Engine(layer, batch_dim=batch_dim)
    with pytest.raises(ValueError, match="NoisyLayer"):
        engine.compute_gramian(layer(torch.randn(16, 3)).sum(1))


def test_input_modified_in_place_raises() -> None:
    linear = nn.Linear(3, 3)
    engine = Engine(linear)
    x = torch.randn(4, 3)
    output = linear(x).sum(1)
    x.mul_(2)
    with pytest.raises(RuntimeError, match="modified in place"):
        engine.compute_gramian(output)


def test_in_place_activation_after_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 1)).double()
    engine = Engine(model)
    losses = model(torch.randn(6, 3, dtype=torch.float64)).squeeze(1) ** 2
    torch.testing.assert_close(engine.compute_gramian(losses), dense_gramian(losses, list(model.parameters())))


@pytest.mark.parametrize(
    "output, error, match",
    [
        ("not a tensor", TypeError, "`output`"),
        (torch.zeros(0, requires_grad=True) * 2, ValueError, "`output`"),
        (torch.ones(3), ValueError, "grad_fn"),
    ],
)
def test_invalid_output_raises(output: object, error: type, match: str) -> None:
    engine = Engine(nn.Linear(2, 2))
    with pytest.raises(error, match=match):
        engine.compute_gramian(output)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch_dim", [1, -2])
def test_output_without_batch_dim_raises(batch_dim: int) -> None:
    linear = nn.Linear(2, 2)
    engine = Engine(linear, batch_dim=batch_dim)
    with pytest.raises(ValueError, match="`batch_dim`"):
        engine.compute_gramian(linear(torch.randn(3, 2)).sum(1))


def test_layer_whose_batch_is_elsewhere_raises() -> None:
    linear = nn.Linear(2, 2)
    engine = Engine(linear, batch_dim=0)
    output = linear(torch.randn(3, 2)).T.reshape(-1)[:2]  # 2 objectives, but the layer's batch is 3
    with pytest.raises(ValueError, match="batch size"):
        engine.compute_gramian(output)


def test_compute_gramian_under_no_grad() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.PReLU(), nn.Linear(4, 1)).double()
    engine = Engine(model)
    losses = model(torch.randn(5, 3, dtype=torch.float64)).squeeze(1) ** 2
    expected = dense_gramian(losses, list(model.parameters()))
    with torch.no_grad():
        gramian = engine.compute_gramian(losses)
    torch.testing.assert_close(gramian, expected)
    assert not gramian.requires_grad


def test_freeing_backward_releases_recorded_inputs_while_the_output_is_alive() -> None:
    model = make_mlp()
    engine = Engine(model)
    losses = (model(torch.randn(5, 3, dtype=torch.float64)) ** 2).sum(1)
    calls = [entry[1] for node in _nodes(losses) for entry in node.metadata.get(engine._key, [])]
    recorded = [weakref.ref(call.inputs[0]) for call in calls]

    engine.compute_gramian(losses)
    losses.backward(torch.ones(5, dtype=torch.float64), retain_graph=True)
    assert all(ref() is not None for ref in recorded)  # retained graph: records still usable
    engine.compute_gramian(losses)

    losses.backward(torch.ones(5, dtype=torch.float64))
    del calls
    gc.collect()
    assert all(ref() is None for ref in recorded)
    with pytest.raises(RuntimeError, match="already freed"):
        engine.compute_gramian(losses)
