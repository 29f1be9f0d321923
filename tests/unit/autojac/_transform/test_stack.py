import torch

from torchjd.autojac._transform import Init, Select, Stack


def test_stack_puts_one_row_per_transform_with_zeros_where_missing():
    a = torch.zeros(2)
    b = torch.zeros([])
    first = Init([a], values={a: torch.tensor([1.0, 2.0])})
    second = Init([a, b], values={a: torch.tensor([3.0, 4.0]), b: torch.tensor(5.0)})
    third = Init([b], values={b: torch.tensor(6.0)})
    output = Stack([first, second, third])({})
    torch.testing.assert_close(output[a], torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]))
    torch.testing.assert_close(output[b], torch.tensor([0.0, 5.0, 6.0]))


def test_stack_check_keys_is_union():
    a, b = torch.zeros(2), torch.zeros(3)
    stack = Stack([Select([a]), Select([b])])
    assert stack.check_keys({a, b}) == {a, b}
    assert str(stack) == "Stack([Select, Select])"
