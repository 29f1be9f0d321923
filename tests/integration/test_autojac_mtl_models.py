"""
End-to-end tests of :func:`torchjd.autojac.mtl_backward` on small multi-task models: a shared trunk
(MLP, CNN or LSTM) and 2-3 task heads, one of whose parameters is shared by two heads.

The reference is a plain ``torch.autograd.grad`` loop with one call per task: the gradient of each
task tensor w.r.t. the shared parameters (a row of their ``.jac``) and w.r.t. its own parameters
(added to their ``.grad``). It is computed first, with ``retain_graph=True``, on the same graph.
"""

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor, nn
from torch.testing import assert_close

from torchjd.autojac import mtl_backward

# The models here are all vmap-compatible on CPU: a fallback would mean that the vectorized path
# through the trunk did not run.
pytestmark = pytest.mark.filterwarnings("error::torchjd.autojac.VmapFallbackWarning")

# With 3 tasks, a chunk size of 3 is one full vectorized pass; with 2 tasks it is larger than m.
chunk_sizes = pytest.mark.parametrize("parallel_chunk_size", [None, 1, 3])


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def autograd_mtl(
    tensors: Sequence[Tensor],
    tasks_params: Sequence[Sequence[Tensor]],
    shared_params: Sequence[Tensor],
    grad_tensors: Sequence[Tensor] | None = None,
) -> tuple[list[Tensor], dict[Tensor, Tensor]]:
    """
    The reference: the expected ``.jac`` of each shared parameter (one row per task) and the
    expected ``.grad`` of each task parameter (summed over the tasks that list it), from one
    ``torch.autograd.grad`` call per task and per parameter group. The graph is retained.
    """

    if grad_tensors is None:
        grad_tensors = [torch.ones_like(t) for t in tensors]
    rows = []
    grads: dict[Tensor, Tensor] = {}
    for tensor, grad_tensor, params in zip(tensors, grad_tensors, tasks_params):
        row = torch.autograd.grad(
            tensor, shared_params, grad_tensor, retain_graph=True, allow_unused=True
        )
        rows.append([torch.zeros_like(p) if g is None else g for g, p in zip(row, shared_params)])
        if not params:
            continue  # torch.autograd.grad refuses empty inputs.
        task_grads = torch.autograd.grad(
            tensor, params, grad_tensor, retain_graph=True, allow_unused=True
        )
        for param, grad in zip(params, task_grads):
            grad = torch.zeros_like(param) if grad is None else grad
            grads[param] = grads[param] + grad if param in grads else grad
    jacs = [torch.stack([row[i] for row in rows]) for i in range(len(shared_params))]
    return jacs, grads


def assert_fields_match(
    shared_params: Sequence[Tensor],
    expected_jacs: Sequence[Tensor],
    expected_grads: dict[Tensor, Tensor],
) -> None:
    # assert_close's default tolerances follow the dtype (float32: rtol 1.3e-6, atol 1e-5; float64:
    # rtol 1e-7, atol 1e-7).
    for param, expected in zip(shared_params, expected_jacs):
        assert_close(param.jac, expected)
        assert param.grad is None
    for param, expected in expected_grads.items():
        assert_close(param.grad, expected)
        assert getattr(param, "jac", None) is None


class ThreeTaskModel(nn.Module):
    """
    An MLP trunk and three heads. ``shared_head_weight`` is used by the heads of tasks 0 and 1, so
    it is a task parameter of both (not a shared parameter: it is not used by the trunk).
    """

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh())
        self.head0 = nn.Linear(6, 1)
        self.head1 = nn.Linear(6, 2)
        self.head2 = nn.Linear(6, 1)
        self.shared_head_weight = nn.Parameter(torch.randn(6))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Returns the features ``[batch, 6]`` and the per-sample values of each task."""

        features = self.trunk(x)
        projection = features @ self.shared_head_weight  # [batch]
        task0 = (self.head0(features).squeeze(-1) + projection).square()
        task1 = torch.tanh(self.head1(features) * projection.unsqueeze(-1)).sum(dim=-1)
        task2 = self.head2(features).squeeze(-1).abs()
        return features, [task0, task1, task2]

    def tasks_params(self) -> list[list[Tensor]]:
        return [
            [*self.head0.parameters(), self.shared_head_weight],
            [*self.head1.parameters(), self.shared_head_weight],
            list(self.head2.parameters()),
        ]


@chunk_sizes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mtl_backward_with_default_params_matches_autograd_loop(
    parallel_chunk_size: int | None, dtype: torch.dtype
):
    model = ThreeTaskModel().to(dtype)
    features, per_sample = model(torch.randn(8, 5, dtype=dtype))
    losses = [values.mean() for values in per_sample]
    shared_params = list(model.trunk.parameters())

    expected_jacs, expected_grads = autograd_mtl(losses, model.tasks_params(), shared_params)
    mtl_backward(losses, features, parallel_chunk_size=parallel_chunk_size)

    assert [p.jac.shape for p in shared_params] == [(3,) + p.shape for p in shared_params]
    assert_fields_match(shared_params, expected_jacs, expected_grads)


@chunk_sizes
def test_mtl_backward_sums_the_gradients_of_a_parameter_shared_by_two_heads(
    parallel_chunk_size: int | None,
):
    model = ThreeTaskModel()
    features, per_sample = model(torch.randn(8, 5))
    losses = [values.mean() for values in per_sample]
    weight = model.shared_head_weight

    gradient_0 = torch.autograd.grad(losses[0], weight, retain_graph=True)[0]
    gradient_1 = torch.autograd.grad(losses[1], weight, retain_graph=True)[0]
    mtl_backward(losses, features, parallel_chunk_size=parallel_chunk_size)

    assert_close(weight.grad, gradient_0 + gradient_1)


@chunk_sizes
def test_mtl_backward_with_explicit_params_equal_to_defaults_matches_autograd_loop(
    parallel_chunk_size: int | None,
):
    model = ThreeTaskModel()
    features, per_sample = model(torch.randn(8, 5))
    losses = [values.mean() for values in per_sample]
    shared_params = list(model.trunk.parameters())
    tasks_params = model.tasks_params()

    expected_jacs, expected_grads = autograd_mtl(losses, tasks_params, shared_params)
    mtl_backward(
        losses,
        features,
        tasks_params=tasks_params,
        shared_params=shared_params,
        parallel_chunk_size=parallel_chunk_size,
    )

    assert_fields_match(shared_params, expected_jacs, expected_grads)


@chunk_sizes
def test_mtl_backward_with_explicit_subsets_writes_only_to_them(parallel_chunk_size: int | None):
    model = ThreeTaskModel()
    features, per_sample = model(torch.randn(8, 5))
    losses = [values.mean() for values in per_sample]
    shared_params = [model.trunk[0].weight, model.trunk[2].bias]
    tasks_params = [[model.head0.weight], [model.head1.bias, model.shared_head_weight], []]

    expected_jacs, expected_grads = autograd_mtl(losses, tasks_params, shared_params)
    mtl_backward(
        losses,
        features,
        tasks_params=tasks_params,
        shared_params=shared_params,
        parallel_chunk_size=parallel_chunk_size,
    )

    assert_fields_match(shared_params, expected_jacs, expected_grads)
    chosen = set(shared_params) | set(expected_grads)
    for param in model.parameters():
        if param not in chosen:
            assert param.grad is None
            assert getattr(param, "jac", None) is None


@chunk_sizes
def test_mtl_backward_with_grad_tensors_contracts_non_scalar_tasks(
    parallel_chunk_size: int | None,
):
    model = ThreeTaskModel()
    features, per_sample = model(torch.randn(8, 5))  # Three tensors of shape [8].
    grad_tensors = [torch.randn(8) for _ in per_sample]
    shared_params = list(model.trunk.parameters())

    expected_jacs, expected_grads = autograd_mtl(
        per_sample, model.tasks_params(), shared_params, grad_tensors
    )
    mtl_backward(
        per_sample, features, grad_tensors=grad_tensors, parallel_chunk_size=parallel_chunk_size
    )

    assert [p.jac.shape[0] for p in shared_params] == [3] * len(shared_params)
    assert_fields_match(shared_params, expected_jacs, expected_grads)


@chunk_sizes
def test_mtl_backward_twice_with_retain_graph_accumulates_twice(parallel_chunk_size: int | None):
    model = ThreeTaskModel()
    features, per_sample = model(torch.randn(8, 5))
    losses = [values.mean() for values in per_sample]
    shared_params = list(model.trunk.parameters())

    expected_jacs, expected_grads = autograd_mtl(losses, model.tasks_params(), shared_params)
    mtl_backward(losses, features, retain_graph=True, parallel_chunk_size=parallel_chunk_size)
    mtl_backward(losses, features, parallel_chunk_size=parallel_chunk_size)

    assert_fields_match(
        shared_params,
        [2 * j for j in expected_jacs],
        {param: 2 * grad for param, grad in expected_grads.items()},
    )


class CNNTrunkTwoFeatures(nn.Module):
    """A convolutional trunk with two outputs (pooled maps and a skip branch) and two heads."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(  # [b, 1, 6, 6] -> [b, 2, 2, 2]; 20 + 38 params
            nn.Conv2d(1, 2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2, 2, kernel_size=3, padding=1),
            nn.AvgPool2d(2, ceil_mode=True),
        )
        self.skip = nn.Linear(36, 3)
        self.head0 = nn.Linear(8 + 3, 1)
        self.head1 = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        maps = self.conv(x).flatten(1)  # [b, 8]
        skip = torch.tanh(self.skip(x.flatten(1)))  # [b, 3]
        loss0 = self.head0(torch.cat([maps, skip], dim=1)).square().mean()
        loss1 = self.head1(maps).logsumexp(dim=1).mean()
        return [maps, skip], [loss0, loss1]


@chunk_sizes
def test_mtl_backward_on_cnn_trunk_with_several_features_matches_autograd_loop(
    parallel_chunk_size: int | None,
):
    model = CNNTrunkTwoFeatures()
    features, losses = model(torch.randn(4, 1, 6, 6))
    shared_params = [*model.conv.parameters(), *model.skip.parameters()]
    tasks_params = [list(model.head0.parameters()), list(model.head1.parameters())]

    expected_jacs, expected_grads = autograd_mtl(losses, tasks_params, shared_params)
    mtl_backward(losses, features, parallel_chunk_size=parallel_chunk_size)

    assert_fields_match(shared_params, expected_jacs, expected_grads)


@chunk_sizes
def test_mtl_backward_gives_zero_rows_for_a_feature_that_a_task_does_not_use(
    parallel_chunk_size: int | None,
):
    # Task 1 never reads the skip branch: its row of the skip parameters' Jacobian is zero.
    model = CNNTrunkTwoFeatures()
    features, losses = model(torch.randn(4, 1, 6, 6))

    mtl_backward(losses, features, parallel_chunk_size=parallel_chunk_size)

    for param in model.skip.parameters():
        assert_close(param.jac[1], torch.zeros_like(param))
        assert param.jac[0].abs().sum() > 0


class LSTMTrunkTwoTasks(nn.Module):
    """An LSTM trunk whose last hidden state feeds a regression head and a classification head."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=3, hidden_size=4, batch_first=True)  # 144 params
        self.regression = nn.Linear(4, 1)
        self.classification = nn.Linear(4, 3)

    def forward(self, x: Tensor, labels: Tensor) -> tuple[Tensor, list[Tensor]]:
        sequence, _ = self.lstm(x)
        features = sequence[:, -1]  # [b, 4]
        loss0 = self.regression(features).square().mean()
        loss1 = nn.functional.cross_entropy(self.classification(features), labels)
        return features, [loss0, loss1]


@chunk_sizes
def test_mtl_backward_on_lstm_trunk_matches_autograd_loop(parallel_chunk_size: int | None):
    model = LSTMTrunkTwoTasks()
    features, losses = model(torch.randn(3, 5, 3), torch.tensor([0, 2, 1]))
    shared_params = list(model.lstm.parameters())
    tasks_params = [list(model.regression.parameters()), list(model.classification.parameters())]

    expected_jacs, expected_grads = autograd_mtl(losses, tasks_params, shared_params)
    mtl_backward(losses, features, parallel_chunk_size=parallel_chunk_size)

    assert_fields_match(shared_params, expected_jacs, expected_grads)


class TaskWithSummedParameter(nn.Module):
    """
    Two tasks on a linear trunk, where task 0 adds ``offset.sum()`` to its loss. The gradient that
    torch.autograd.grad returns for ``offset`` is then a stride-0 expansion of one scalar.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(3, 2)
        self.head = nn.Linear(2, 1)
        self.offset = nn.Parameter(torch.ones(4))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = self.trunk(x)
        return features, [self.head(features).mean() + self.offset.sum(), features.square().mean()]




def test_mtl_backward_task_grads_can_be_clipped_in_place():
    model = TaskWithSummedParameter()
    features, losses = model(torch.randn(5, 3))

    mtl_backward(losses, features)
    torch.nn.utils.clip_grad_norm_([model.offset], max_norm=1.0)  # Scales ones(4) by 1/2 in place.

    assert_close(model.offset.grad, torch.full((4,), 0.5))


def test_mtl_backward_task_grads_accumulate_with_a_later_plain_backward():
    model = TaskWithSummedParameter()
    features, losses = model(torch.randn(5, 3))

    mtl_backward(losses, features)
    (3 * model.offset).sum().backward()  # torch adds 3 to each element of `.grad`, in place.

    assert_close(model.offset.grad, torch.full((4,), 4.0))


@chunk_sizes
def test_mtl_backward_accepts_parameter_generators(parallel_chunk_size: int | None):
    model = CNNTrunkTwoFeatures()
    features, losses = model(torch.randn(4, 1, 6, 6))
    shared_params = list(model.conv.parameters())
    tasks_params = [list(model.head0.parameters()), list(model.head1.parameters())]

    expected_jacs, expected_grads = autograd_mtl(losses, tasks_params, shared_params)
    mtl_backward(
        losses,
        features,
        tasks_params=[model.head0.parameters(), model.head1.parameters()],
        shared_params=model.conv.parameters(),
        parallel_chunk_size=parallel_chunk_size,
    )

    assert_fields_match(shared_params, expected_jacs, expected_grads)
    assert all(getattr(p, "jac", None) is None for p in model.skip.parameters())


def test_mtl_backward_with_a_head_tied_to_the_trunk_raises_before_writing_anything():
    # The decoder reuses the encoder's weight: by default it is both shared and task-specific.
    encoder, other_head = nn.Linear(4, 3), nn.Linear(3, 1)
    features = torch.tanh(encoder(torch.randn(6, 4)))
    reconstruction = features @ encoder.weight  # [6, 4]
    losses = [reconstruction.square().mean(), other_head(features).mean()]

    with pytest.raises(ValueError, match="overlap"):
        mtl_backward(losses, features)

    for param in [*encoder.parameters(), *other_head.parameters()]:
        assert param.grad is None
        assert getattr(param, "jac", None) is None
