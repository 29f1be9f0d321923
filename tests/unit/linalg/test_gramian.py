import torch

from torchjd.linalg import compute_gramian


def test_gramian_matches_pairwise_dot_products():
    matrix = torch.randn(4, 7, dtype=torch.float64)
    expected = torch.tensor([[a @ b for b in matrix] for a in matrix], dtype=torch.float64)
    torch.testing.assert_close(compute_gramian(matrix), expected)
