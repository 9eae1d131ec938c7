"""Exercise 2 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch02

SOLUTION = ROOT / "exercises" / "solutions" / "ex02_posterior.ipynb"
NAMES = sorted(ch02.SPECS)


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    return exec_tagged(SOLUTION)


def test_cases_have_batch_distinct_timesteps_and_t_equal_1() -> None:
    for name in NAMES:
        for args, _ in ch02.SPECS[name].cases():
            t = args[2] if name == "posterior_mean_var" else args[1]
            assert args[0].shape[0] > 1 and t.dtype == torch.long
            assert len(set(t.tolist())) > 2, (
                "all samples share one t: broadcasting bugs would go unseen"
            )
            assert 1 in t.tolist(), "t = 1 (beta_tilde_1 = 0) must be exercised"


def test_posterior_variance_zero_at_t1(solution: dict[str, Any]) -> None:
    (x0, x_t, t, betas, ab), _ = ch02.SPECS["posterior_mean_var"].cases()[0]
    mean, var = solution["posterior_mean_var"](x0, x_t, t, betas, ab)
    i = int((t == 1).nonzero()[0])
    assert float(var[i].abs().max()) == 0.0
    torch.testing.assert_close(mean[i], x0[i])


def test_a_detached_mu_tilde_from_eps_is_told_its_gradient_is_cut() -> None:
    # The reverse mean is built from the network's ε: a result cut off from autograd must fail.
    def detached(x_t, t, eps, betas, alpha_bar):  # type: ignore[no-untyped-def]
        shape = (-1,) + (1,) * (x_t.dim() - 1)
        b = betas[t].reshape(shape).to(x_t.dtype)
        ab = alpha_bar[t].reshape(shape).to(x_t.dtype)
        with torch.no_grad():
            return (x_t - b / (1 - ab).sqrt() * eps) / (1 - b).sqrt()

    res = ch02.check_mu_tilde_from_eps(detached, display=False)
    assert not res.passed and "gradient" in res.message
