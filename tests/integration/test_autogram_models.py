"""
The Gramian computed by `autogram.Engine` on real models equals the dense `J @ J.T`, with `J`
computed independently by one `torch.autograd.grad` call per output element.
"""

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from torchjd.autogram import Engine

BATCH = 5

# float64 recurrent layers have no working batching rule on CPU: the fallback is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore:autogram could not vectorize")


def dense_gramian(output: Tensor, params: list[Tensor]) -> Tensor:
    rows = []
    for value in output.flatten():
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([torch.zeros_like(p).flatten() if g is None else g.flatten() for g, p in zip(grads, params)]))
    jacobian = torch.stack(rows)
    return jacobian @ jacobian.T


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, stride=2, groups=2),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3, padding=2, dilation=2)
        self.head = nn.Linear(4 * 7, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        sequence, (hidden, _) = self.lstm(x)
        return self.head(sequence.mean(1) + hidden[-1])


class TransformerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer(x).mean(1))


class CalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.shared = nn.Linear(4, 4)
        self.last = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.last(self.shared(torch.tanh(self.shared(self.first(x)))))


class Frozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(4, 5)
        self.trained = nn.Linear(5, 3)
        self.partly = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)
        self.partly.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.partly(self.trained(torch.relu(self.frozen(x))))


class EmbeddingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(7, 4, padding_idx=0)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(self.embedding(x)).sum(1))


def _inputs(kind: str) -> Tensor:
    shapes = {"mlp": (BATCH, 6), "cnn": (BATCH, 2, 8, 8), "conv1d": (BATCH, 3, 7), "seq": (BATCH, 4, 3), "tokens": (BATCH, 3, 8)}
    if kind == "ids":
        return torch.randint(0, 7, (BATCH, 6))
    if kind == "small":
        return torch.randn(BATCH, 4)
    return torch.randn(*shapes[kind])


MODELS: list[tuple[str, Callable[[], nn.Module], str]] = [
    ("mlp", MLP, "mlp"),
    ("cnn", CNN, "cnn"),
    ("conv1d", Conv1dNet, "conv1d"),
    ("lstm", LSTMNet, "seq"),
    ("transformer", TransformerNet, "tokens"),
    ("called_twice", CalledTwice, "small"),
    ("frozen", Frozen, "small"),
    ("embedding", EmbeddingNet, "ids"),
]

# How the model's [B, 3] output becomes the objectives, and the shape they have.
OUTPUTS: dict[str, Callable[[Tensor], Tensor]] = {
    "[B]": lambda y: (y**2).sum(1),
    "[B,k]": lambda y: y**2,
    "scalar": lambda y: (y**2).mean(),
}


@pytest.mark.parametrize("batch_dim", [0, None])
@pytest.mark.parametrize("output_kind", list(OUTPUTS))
@pytest.mark.parametrize("name, make_model, input_kind", MODELS, ids=[m[0] for m in MODELS])
def test_gramian_matches_dense_jacobian(
    name: str, make_model: Callable[[], nn.Module], input_kind: str, output_kind: str, batch_dim: int | None
) -> None:
    torch.manual_seed(0)
    model = make_model().double()
    x = _inputs(input_kind)
    x = x if x.dtype == torch.long else x.double()
    engine = Engine(model, batch_dim=batch_dim)

    output = OUTPUTS[output_kind](model(x))
    gramian = engine.compute_gramian(output)

    params = [p for p in model.parameters() if p.requires_grad]
    expected = dense_gramian(output, params)
    assert gramian.shape == (output.numel(), output.numel())
    torch.testing.assert_close(gramian, expected, rtol=1e-10, atol=1e-10)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("batch_dim", [0, None])
def test_partial_engine_matches_jacobian_of_its_parameters_only(batch_dim: int | None) -> None:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    head = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    model = nn.Sequential(trunk, head).double()
    engine = Engine(head, batch_dim=batch_dim)

    losses = model(torch.randn(BATCH, 6, dtype=torch.float64)).squeeze(1) ** 2
    gramian = engine.compute_gramian(losses)

    torch.testing.assert_close(gramian, dense_gramian(losses, list(head.parameters())), rtol=1e-10, atol=1e-10)


def test_gramian_matches_autojac_jac() -> None:
    jac = pytest.importorskip("torchjd.autojac").jac
    torch.manual_seed(0)
    model = CNN().double()
    engine = Engine(model)

    losses = (model(torch.randn(BATCH, 2, 8, 8, dtype=torch.float64)) ** 2).sum(1)
    gramian = engine.compute_gramian(losses)

    jacobians = jac(losses, list(model.parameters()), retain_graph=True)
    matrix = torch.cat([j.reshape(BATCH, -1) for j in jacobians], 1)
    torch.testing.assert_close(gramian, matrix @ matrix.T, rtol=1e-10, atol=1e-10)


def test_iwrm_step_with_upgrad_decreases_every_sample_loss() -> None:
    aggregation = pytest.importorskip("torchjd.aggregation")
    torch.manual_seed(0)
    model = MLP().double()
    engine = Engine(model)
    weighting = aggregation.UPGradWeighting()
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)

    losses = ((model(x) - y) ** 2).mean(1)
    losses.backward(weighting(engine.compute_gramian(losses)))
    with torch.no_grad():
        for param in model.parameters():
            param -= 1e-4 * param.grad
        new_losses = ((model(x) - y) ** 2).mean(1)
    # UPGrad's direction conflicts with no objective, so a small step decreases all of them.
    assert (new_losses < losses.detach()).all()


def test_iwrm_with_mean_weighting_is_plain_mean_training() -> None:
    aggregation = pytest.importorskip("torchjd.aggregation")
    torch.manual_seed(0)
    model = MLP().double()
    reference = MLP().double()
    reference.load_state_dict(model.state_dict())
    engine = Engine(model)
    x = torch.randn(8, 6, dtype=torch.float64)

    losses = (model(x) ** 2).sum(1)
    losses.backward(aggregation.MeanWeighting()(engine.compute_gramian(losses)))
    (reference(x) ** 2).sum(1).mean().backward()
    for param, expected in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(param.grad, expected.grad)


class ScaledBlock(nn.Module):
    """A module with a parameter of its own and a submodule, called with keyword arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.randn(3))
        self.inner = nn.Linear(3, 3)

    def forward(self, x: Tensor, factor: float = 2.0, shift: Tensor | None = None) -> Tensor:
        return self.inner(x * self.scale * factor) + (0 if shift is None else shift)


class CustomNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = ScaledBlock()
        self.bilinear = nn.Bilinear(3, 3, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.bilinear(self.block(x, factor=3.0, shift=torch.ones(3, dtype=x.dtype)), x)


@pytest.mark.parametrize("batch_dim", [0, None])
def test_custom_modules_with_keyword_arguments_and_two_inputs(batch_dim: int | None) -> None:
    torch.manual_seed(0)
    model = CustomNet().double()
    engine = Engine(model, batch_dim=batch_dim)
    output = model(torch.randn(BATCH, 3, dtype=torch.float64)) ** 2
    expected = dense_gramian(output, list(model.parameters()))
    torch.testing.assert_close(engine.compute_gramian(output), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("batch_dim", [0, None])
def test_transformer_with_causal_and_padding_masks(batch_dim: int | None) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True).double()
    engine = Engine(layer, batch_dim=batch_dim)
    padding = torch.zeros(BATCH, 4, dtype=torch.bool)
    padding[:, 3] = True
    padding[0, 2] = True
    causal = nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64).isinf()

    x = torch.randn(BATCH, 4, 8, dtype=torch.float64)
    output = layer(x, src_mask=causal, src_key_padding_mask=padding).sum((1, 2))
    expected = dense_gramian(output, list(layer.parameters()))
    torch.testing.assert_close(engine.compute_gramian(output), expected, rtol=1e-10, atol=1e-10)


def test_sequence_first_transformer_needs_batch_dim_none() -> None:
    # The engine's modules are batched on their first dimension: a sequence-first layer is refused
    # with batch_dim set (naming the module) and exact with batch_dim=None.
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0).double()
    x = torch.randn(6, BATCH, 8, dtype=torch.float64)  # [T, B, E]
    with pytest.raises(ValueError, match="first dimension"):
        Engine(layer, batch_dim=0).compute_gramian((layer(x) ** 2).sum((0, 2)))

    engine = Engine(layer, batch_dim=None)
    losses = (layer(x) ** 2).sum((0, 2))  # [B]
    expected = dense_gramian(losses, list(layer.parameters()))
    torch.testing.assert_close(engine.compute_gramian(losses), expected, rtol=1e-10, atol=1e-10)
