"""GuidedTimeMLP's guidance weight ``w`` and ``w_frequencies`` in the package's check dialect.

An integer tensor ``w`` of the right shape was refused with a ``ValueError`` that quoted the
right shape (``got (2,)``), a string reached torch (``TypeError: new(): invalid data type 'str'``)
and a Python int weight was refused; ``w_frequencies="6"`` was a ``ValueError``.
"""

import pytest
import torch

from minidiff.nn.guided import GuidedTimeMLP


def _net() -> GuidedTimeMLP:
    torch.manual_seed(0)
    net = GuidedTimeMLP(3, hidden=16, n_layers=1)
    for w in (net.output.weight, net.film.weight):  # both start at zero
        torch.nn.init.normal_(w, std=1.0)
    return net


X, T, Y = torch.randn(2, 2), torch.tensor([1, 5]), torch.tensor([0, 3])


def test_a_python_int_weight_is_the_float_weight() -> None:
    net = _net()
    torch.testing.assert_close(net(X, T, Y, 2), net(X, T, Y, torch.full((2,), 2.0)))


@pytest.mark.parametrize("w", [torch.tensor([1, 2]), "2.0", True, [1.0, 2.0]])
def test_a_weight_of_the_wrong_kind_is_a_type_error_naming_w(w: object) -> None:
    with pytest.raises(TypeError, match="^w must be a number or a floating tensor"):
        _net()(X, T, Y, w)


@pytest.mark.parametrize("w", [torch.zeros(3), torch.zeros(2, 1)])
def test_a_weight_of_the_wrong_shape_is_a_value_error_naming_w(w: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"^w must be .* \(2,\), got shape"):
        _net()(X, T, Y, w)


def test_w_frequencies_of_the_wrong_kind_or_value() -> None:
    with pytest.raises(TypeError, match="^w_frequencies must be an int"):
        GuidedTimeMLP(3, w_frequencies="6")
    with pytest.raises(ValueError, match="^w_frequencies must be >= 1"):
        GuidedTimeMLP(3, w_frequencies=0)
