"""Consistency models (Song et al. 2023): skip-scaling, the distillation loss, the sampler."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import minidiff as md
from minidiff.consistency import (
    ConsistencyDistillation,
    ConsistencyModel,
    consistency_grid,
    consistency_sample,
    consistency_scalings,
)
from minidiff.nn import TimeMLP
from minidiff.samplers import get_sampler
from minidiff.samplers.ddim import ddim_step
from minidiff.samplers.dpm_solver import (
    data_prediction,
    dpm_solver_sample,
    dpm_solver_step,
    heun_log_snr_step,
    log_snr_timesteps,
)
from minidiff.sde import VPSDE

SCHED = VPSDE().to_schedule(100)
GMM = md.GaussianMixture.default_2d()
ORACLE = GMM.eps_model(SCHED)


def _x(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def test_scalings_meet_the_boundary_and_the_high_noise_limit() -> None:
    sb = torch.tensor([0.002, 0.01, 1.0, 80.0], dtype=torch.float64)
    c_skip, c_out = consistency_scalings(sb, sigma_min=0.002, sigma_data=0.5)
    assert float(c_skip[0]) == 1.0 and float(c_out[0]) == 0.0  # f(x, t_min) = x
    assert float(c_skip[-1]) < 1e-4 and abs(float(c_out[-1]) - 0.5) < 1e-3  # F alone, scale sigma_d
    assert bool((c_skip[1:] < c_skip[:-1]).all())
    # EDM's c_skip (no shift) misses the boundary when sigma_min > 0
    edm = 0.25 / (sb[0] ** 2 + 0.25)
    assert float(edm) < 1.0


@pytest.mark.parametrize("prediction", ["x0", "v", "eps"])
def test_model_is_the_identity_at_t_zero_whatever_the_network(prediction: str) -> None:
    torch.manual_seed(0)
    net = TimeMLP(2, hidden=16, n_layers=1)
    torch.nn.init.normal_(net.output.weight, std=1.0)
    f = ConsistencyModel(net, SCHED, prediction=prediction)
    x = _x()
    assert torch.equal(f(x, torch.zeros(16, dtype=torch.long)), x)
    out = f(x, torch.full((16,), 60))
    assert out.shape == x.shape and not torch.allclose(out, x)


def test_a_float64_model_computes_with_float64_coefficients() -> None:
    """c_skip x_t / alpha_t with the schedule's float64 values (they were rounded to float32 and
    a .double() model was off by ~1e-7); a float32 model reads the same tables in float32."""

    class Zero(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x)

    sched = md.cosine_schedule(20)
    t = torch.arange(21)
    ab = sched.alpha_bar.double()[t]
    sb = ((1 - ab) / ab).sqrt()
    c_skip, _ = consistency_scalings(sb, 0.0, 0.7)
    exact = (c_skip * ab.rsqrt())[:, None] * torch.ones(21, 2, dtype=torch.float64)
    f64 = ConsistencyModel(Zero(), sched, sigma_data=0.7).double()
    torch.testing.assert_close(
        f64(torch.ones(21, 2, dtype=torch.float64), t), exact, rtol=1e-15, atol=0
    )
    c32, _ = consistency_scalings(sb.float(), 0.0, 0.7)
    f32 = ConsistencyModel(Zero(), sched, sigma_data=0.7)
    by_hand = (c32 * ab.rsqrt().float())[:, None] * torch.ones(21, 2)
    assert torch.equal(f32(torch.ones(21, 2), t), by_hand)


def test_model_with_the_denoiser_inside_is_the_denoiser_at_high_noise() -> None:
    """f = c_skip x/alpha + c_out x̂0: with sigma_d = 1 it tends to x̂0 as the noise grows."""
    ab = SCHED.alpha_bar

    class Denoiser(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return md.predict_x0_from_eps(x, t.clamp(min=1), ORACLE(x, t.clamp(min=1)), SCHED)

    f = ConsistencyModel(Denoiser(), SCHED, prediction="x0")
    x = _x(8, 1).double()
    t = torch.full((8,), SCHED.T)
    sb = float(((1 - ab[-1]) / ab[-1]).sqrt())
    c_skip, c_out = consistency_scalings(torch.tensor(sb, dtype=torch.float64))
    expected = c_skip * x / ab[-1].sqrt() + c_out * Denoiser()(x, t)
    torch.testing.assert_close(f(x.float(), t).double(), expected, rtol=1e-5, atol=1e-5)


def test_grid_is_increasing_from_zero_to_T() -> None:
    for n in (1, 2, 10, 40):
        g = consistency_grid(SCHED, n)
        assert g.shape == (n + 1,) and int(g[0]) == 0 and int(g[-1]) == SCHED.T
        assert bool((g[1:] > g[:-1]).all())
    g = consistency_grid(SCHED, 10)
    sb = ((1 - SCHED.alpha_bar) / SCHED.alpha_bar).sqrt()[g[1:]]
    assert bool((sb[1:] / sb[:-1] > 1).all())  # Karras spacing: ever larger steps in sigma


def test_teacher_step_is_ddim_or_heun_and_the_target_is_the_ema() -> None:
    torch.manual_seed(0)
    f = ConsistencyModel(TimeMLP(2, hidden=16, n_layers=1), SCHED)
    grid = consistency_grid(SCHED, 6)
    cd = ConsistencyDistillation(f, ORACLE, SCHED, grid, mu=0.9, solver="ddim")
    x = _x(8, 2)
    t, s = torch.full((8,), 80), torch.full((8,), 30)
    torch.testing.assert_close(cd.teacher_step(x, t, s), ddim_step(x, t, s, ORACLE(x, t), SCHED))
    heun = ConsistencyDistillation(f, ORACLE, SCHED, grid, solver="heun")
    d = data_prediction(x, t, ORACLE(x, t), SCHED)
    pred = dpm_solver_step(x, t, s, d, SCHED)
    d_s = data_prediction(pred, s, ORACLE(pred, s), SCHED)
    torch.testing.assert_close(
        heun.teacher_step(x, t, s), heun_log_snr_step(x, t, s, d, d_s, SCHED)
    )
    # the target network moves by (1 - mu) towards the student at every call
    before = [p.clone() for p in cd.target.model.parameters()]
    with torch.no_grad():
        for p in f.parameters():
            p.add_(1.0)
    x0 = GMM.sample(8, torch.Generator().manual_seed(3))
    loss = cd(f, x0, torch.Generator().manual_seed(4))
    for b, p_t, p in zip(before, cd.target.model.parameters(), f.parameters(), strict=True):
        torch.testing.assert_close(p_t, 0.9 * b + 0.1 * p.detach())
    assert loss.requires_grad and float(loss.detach()) >= 0
    # ... and the loss compares f_theta with the target network f_theta-, not with f_theta itself
    g = torch.Generator().manual_seed(4)
    n = torch.randint(0, grid.numel() - 1, (8,), generator=g)
    t_hi, t_lo = grid[n + 1], grid[n]
    x_hi = md.q_sample(x0, t_hi, SCHED, generator=g)
    with torch.no_grad():
        x_lo = cd.teacher_step(x_hi, t_hi, t_lo)
        with_target, with_self = cd.target.model(x_lo, t_lo), f(x_lo, t_lo)
    pred = f(x_hi, t_hi)
    torch.testing.assert_close(loss, ((pred - with_target) ** 2).mean())
    assert not torch.allclose(loss, ((pred - with_self) ** 2).mean(), rtol=1e-3)


def test_sampler_with_the_exact_consistency_function() -> None:
    """With the exact consistency function (the ODE solved to 0), one step is the flow map and a
    second step re-noises to ``tau`` and maps again; its distillation loss is only the teacher's
    one-step error."""

    def exact_f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        for tau in t.unique().tolist():  # rows may sit at different times
            rows = t == tau
            if tau > 0:
                ts = [tau] + [k for k in log_snr_timesteps(SCHED, 60).tolist() if k < tau]
                xs = x[rows].double()
                out[rows] = dpm_solver_sample(ORACLE, SCHED, x_T=xs, timesteps=ts).to(x.dtype)
        return out

    x_T = _x(64, 5)
    one = consistency_sample(exact_f, SCHED, x_T=x_T)
    torch.testing.assert_close(one, exact_f(x_T, torch.full((64,), SCHED.T)))
    two = consistency_sample(
        exact_f, SCHED, x_T=x_T, timesteps=[SCHED.T, 30], generator=torch.Generator().manual_seed(0)
    )
    assert two.shape == x_T.shape and not torch.allclose(one, two)  # re-noised in between
    assert get_sampler("consistency") is consistency_sample

    class Exact(ConsistencyModel):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return exact_f(x, t)

    f = Exact(TimeMLP(2, hidden=4, n_layers=1), SCHED)
    losses = {}
    for solver in ("ddim", "heun"):
        grid = consistency_grid(SCHED, 8)
        cd = ConsistencyDistillation(f, ORACLE, SCHED, grid, mu=0.0, solver=solver)
        x0 = GMM.sample(64, torch.Generator().manual_seed(6))
        losses[solver] = float(cd(f, x0, torch.Generator().manual_seed(7)))
    # only the teacher's one-step error is left (the grid's 8 jumps are long), and Heun makes
    # less of it than DDIM
    assert losses["ddim"] < 0.01 and losses["heun"] < 0.7 * losses["ddim"], losses


def test_bad_inputs_name_the_argument() -> None:
    f = ConsistencyModel(TimeMLP(2, hidden=8, n_layers=1), SCHED)
    grid = consistency_grid(SCHED, 4)
    with pytest.raises(TypeError, match="net"):
        ConsistencyModel(lambda x, t: x, SCHED)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prediction"):
        ConsistencyModel(TimeMLP(2, hidden=8, n_layers=1), SCHED, prediction="score")
    with pytest.raises(TypeError, match="t must"):
        f(_x(), torch.full((16,), 3.0))
    with pytest.raises(ValueError, match="sigma_bar"):
        consistency_scalings(torch.tensor([0.001]), sigma_min=0.002)
    with pytest.raises(ValueError, match="mu"):
        ConsistencyDistillation(f, ORACLE, SCHED, grid, mu=1.5)
    with pytest.raises(ValueError, match="solver"):
        ConsistencyDistillation(f, ORACLE, SCHED, grid, solver="rk4")
    with pytest.raises(ValueError, match="grid"):
        ConsistencyDistillation(f, ORACLE, SCHED, torch.tensor([1, 5, 100]))
    with pytest.raises(TypeError, match="model"):
        ConsistencyDistillation(TimeMLP(2), ORACLE, SCHED, grid)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timesteps"):
        consistency_sample(f, SCHED, (4, 2), timesteps=[50, 10])
    with pytest.raises(ValueError, match="n must"):
        consistency_grid(SCHED, 0)
    # t outside 0..T: an error naming t, not an IndexError (T + 1) or a silent wrap (-1 -> T)
    for bad in (-1, SCHED.T + 1):
        with pytest.raises(ValueError, match=r"t must lie in 0\.\.T=100"):
            f(_x(), torch.full((16,), bad))
    with pytest.raises(TypeError, match="timesteps must be integers"):
        consistency_sample(f, SCHED, (4, 2), timesteps=[100.0, 10.5])


def test_an_int_timestep_and_bad_kinds_of_arguments_get_the_dialect() -> None:
    """``f(x_t, t)`` takes an int ``t`` like every ``(x_t, t)`` function; a float ``n`` is a
    TypeError; a string of timesteps is refused by name, not by torch."""
    sched = md.linear_schedule(50)
    model = ConsistencyModel(TimeMLP(2, 16, 1, 8), sched)
    z = torch.randn(4, 2)
    torch.testing.assert_close(model(z, 5), model(z, torch.full((4,), 5)))
    with pytest.raises(TypeError, match="n must be an int"):
        consistency_grid(sched, 5.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timesteps must be a sequence of ints"):
        consistency_sample(model, sched, (4, 2), timesteps="50")  # type: ignore[arg-type]


_OPTIONS = {"batch_size": 32, "lr": 1e-2, "seed": 1, "progress": False}


def _distil(path: object, steps: int, resume: bool, **kw: Any) -> tuple[ConsistencyModel, object]:
    torch.manual_seed(0)
    cm = ConsistencyModel(TimeMLP(2, hidden=16, n_layers=2, time_dim=8), SCHED, prediction="v")
    options = {"mu": 0.9, "grid": consistency_grid(SCHED, 5), **kw}
    cd = ConsistencyDistillation(cm, ORACLE, SCHED, **options)
    run = md.train(cm, cd, GMM.sample, steps=steps, checkpoint_path=path, resume=resume, **_OPTIONS)
    return cm, run


def test_distillation_resumes_bitwise_with_its_target_network(tmp_path: object) -> None:
    straight, _ = _distil(None, 6, False)
    path = tmp_path / "cd.pt"  # type: ignore[operator]
    _distil(path, 3, False)
    resumed, run = _distil(path, 6, True)
    assert run.steps_done == 6  # type: ignore[attr-defined]
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert "loss_state" in md.load_checkpoint(path)
    # a checkpoint written with a stateless loss has no target network: refused, naming it
    other = tmp_path / "stateless.pt"  # type: ignore[operator]
    torch.manual_seed(0)
    net = ConsistencyModel(TimeMLP(2, hidden=16, n_layers=2, time_dim=8), SCHED, prediction="v")
    md.train(net, lambda m, x, g: m(x, torch.ones(len(x), dtype=torch.long)).pow(2).mean(),
             GMM.sample, steps=2, checkpoint_path=other, **_OPTIONS)  # fmt: skip
    with pytest.raises(ValueError, match="holds no state of loss_fn .ConsistencyDistillation"):
        _distil(other, 6, True)


def test_distillation_resumes_only_with_its_mu_solver_and_grid(tmp_path: object) -> None:
    """Another mu would silently be replaced by the checkpoint's (the target's EMA decay):
    refused, naming the field, and the student is left as it was."""
    path = tmp_path / "cd.pt"  # type: ignore[operator]
    _distil(path, 3, False)
    for kw, words in [
        ({"mu": 0.5}, "mu=0.9 in checkpoint vs 0.5"),
        ({"solver": "ddim"}, "solver='heun' in checkpoint vs 'ddim'"),
        ({"grid": consistency_grid(SCHED, 4)}, "grid=.* in checkpoint vs"),
    ]:
        with pytest.raises(ValueError, match=f"ConsistencyDistillation: {words}"):
            _distil(path, 6, True, **kw)
    saved = md.load_checkpoint(path)
    assert saved["loss_state"]["mu"] == 0.9 and saved["loss_state"]["solver"] == "heun"
    # a state saved without the fields (an older version) still checks mu, from the target
    cm = ConsistencyModel(TimeMLP(2, hidden=16, n_layers=2, time_dim=8), SCHED, prediction="v")
    cd = ConsistencyDistillation(cm, ORACLE, SCHED, consistency_grid(SCHED, 5), mu=0.5)
    with pytest.raises(ValueError, match="mu=0.9 in checkpoint vs 0.5"):
        cd.load_state_dict({"target": saved["loss_state"]["target"]})
    before = [p.clone() for p in cm.parameters()]
    with pytest.raises(ValueError, match="mu=0.9 in checkpoint vs 0.5"):  # the student untouched
        md.train(cm, cd, GMM.sample, steps=6, checkpoint_path=path, **_OPTIONS)
    assert all(torch.equal(a, b) for a, b in zip(before, cm.parameters(), strict=True))
