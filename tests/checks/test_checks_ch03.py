"""Exercise 3 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch03

SOLUTION = ROOT / "exercises" / "solutions" / "ex03_elbo.ipynb"


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    return exec_tagged(SOLUTION)


def test_vlb_term_cases_use_several_timesteps_and_shapes() -> None:
    shapes = set()
    for args, _ in ch03.SPECS["vlb_term"].cases():
        t = args[2]
        assert t.dtype == torch.long and int(t.min()) >= 2 and len(set(t.tolist())) > 1
        shapes.add(args[1].dim())
    assert shapes == {2, 4}


def test_solution_vlb_term_matches_package_bound_column(solution: dict[str, Any]) -> None:
    import minidiff as md

    gm = md.GaussianMixture.default_2d()
    sched = md.linear_schedule(30, 1e-3, 0.2)
    model = gm.eps_model(sched)
    x0 = gm.sample(4, torch.Generator().manual_seed(0)).double()
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.tensor([2, 9, 17, 30])
    got = solution["vlb_term"](model, x0, t, sched.betas, sched.alpha_bar, noise)
    x_t = md.q_sample(x0, t, sched, noise=noise)
    mq, vq = md.q_posterior_mean_var(x0, x_t, t, sched)
    mp, vp = md.p_mean_var(model, x_t, t, sched)
    torch.testing.assert_close(
        got, md.gaussian_kl(mq, vq.expand_as(x0), mp, vp.expand_as(x0)).sum(1)
    )
