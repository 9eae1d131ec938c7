"""The one sampler loop: every registered sampler starts from ``shape`` or ``x_T``, returns one
tensor, reports its states to ``on_step`` (:func:`trajectory`), and names the step where NaN
appears; a sampler in a new module of the package registers itself.

A given ``x_T`` must give exactly what the sampler gives when it draws that same ``x_T`` itself,
and ``ddim_sample(x_T=ddim_invert(x0))`` is the inversion round trip with no hand-written loop.
"""

from __future__ import annotations

import functools

import pytest
import torch

import minidiff as md
from minidiff import get_sampler
from minidiff.samplers import (
    NonFiniteSampleError,
    SamplerState,
    available_samplers,
    register_sampler,
    run_sampler,
    trajectory,
)
from minidiff.samplers.ddim import ddim_invert, ddim_sample, ddim_step, ddim_timesteps
from minidiff.samplers.sde_solvers import (
    euler_maruyama_sample,
    pf_ode_sample,
    predictor_corrector_sample,
)
from minidiff.sde import VESDE, VPSDE, score_fn_from_mixture

SDE_SAMPLERS = ["euler_maruyama", "pf_ode_euler", "pf_ode_heun", "predictor_corrector"]


def toy_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tf = t.to(x.dtype)[:, None] / 100.0
    return torch.tanh(x * (1.0 + tf)) * 0.8 + 0.1 * torch.sin(3 * tf)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_given_x_T_equals_drawn_x_T(eta: float) -> None:
    sched = md.linear_schedule(100, beta_end=0.2)
    g0 = torch.Generator().manual_seed(3)
    a = ddim_sample(toy_eps, sched, (30, 2), steps=9, eta=eta, generator=g0)
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(30, 2, generator=g)
    b = ddim_sample(toy_eps, sched, steps=9, eta=eta, generator=g, x_T=x_T)  # g continues after x_T
    assert torch.equal(a, b)
    c = ddim_sample(
        toy_eps,
        sched,
        (30, 2),
        steps=9,
        eta=eta,
        x_T=x_T + 0.5,
        generator=torch.Generator().manual_seed(3),
    )
    assert not torch.allclose(a, c)  # the start really is used
    # x_T itself is not modified, and the trajectory starts at it
    x_T2 = x_T.clone()
    traj = trajectory(ddim_sample, toy_eps, sched, steps=9, eta=0.0, x_T=x_T2)
    assert torch.equal(x_T2, x_T) and torch.equal(traj[0], x_T) and len(traj) == 10


def test_ddim_x_T_keeps_its_dtype() -> None:
    sched = md.linear_schedule(100, beta_end=0.2)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert ddim_sample(toy_eps, sched, steps=4, x_T=x_T).dtype == torch.float64


def test_ddim_round_trip_with_x_T_matches_hand_loop() -> None:
    sched = md.linear_schedule(1000)
    gmm = md.GaussianMixture.default_2d()
    model = gmm.eps_model(sched)
    x0 = gmm.sample(30, torch.Generator().manual_seed(0)).double()
    latents = ddim_invert(model, sched, x0, steps=50)
    rec = ddim_sample(model, sched, steps=50, x_T=latents)
    assert isinstance(rec, torch.Tensor)
    x = latents
    ts = ddim_timesteps(sched, 50).tolist()
    for t, tp in zip(ts, ts[1:] + [0], strict=True):
        tt = torch.full((x.shape[0],), t)
        x = ddim_step(x, tt, tp, model(x, tt), sched)
    torch.testing.assert_close(rec, x, rtol=0, atol=1e-12)
    err = float((rec - x0).norm(dim=1).mean())
    assert err < 0.1


@pytest.mark.parametrize("name", SDE_SAMPLERS)
@pytest.mark.parametrize("sde_cls", [VPSDE, VESDE])
def test_sde_samplers_given_x_T_equal_drawn_x_T(name: str, sde_cls: type) -> None:
    sde, gmm = sde_cls(), md.GaussianMixture.default_2d()
    s = score_fn_from_mixture(gmm, sde)
    sampler = get_sampler(name)
    a = sampler(s, sde, (24, 2), steps=6, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    x_T = sde.prior_sampling((24, 2), g)
    b = sampler(s, sde, steps=6, generator=g, x_T=x_T)
    assert torch.equal(a, b)
    c = sampler(s, sde, (24, 2), steps=6, generator=torch.Generator().manual_seed(5), x_T=x_T * 0.5)
    assert not torch.allclose(a, c)


def test_pf_ode_from_x_T_needs_no_generator_and_starts_there() -> None:
    sde, gmm = VPSDE(), md.GaussianMixture.default_2d()
    s = score_fn_from_mixture(gmm, sde)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    traj = trajectory(pf_ode_sample, s, sde, steps=5, x_T=x_T)
    b = pf_ode_sample(s, sde, steps=5, x_T=x_T)
    assert torch.equal(traj[-1], b) and torch.equal(traj[0], x_T)


# ------------------------------------------------------------------ every registered sampler

SCHED = md.linear_schedule(20, beta_end=0.2)
# inpainting draws a start shaped like its known pixels (no shape argument)
KNOWN, MASK = torch.zeros(6, 1, 2, 2), torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
# name -> (leading arguments, keyword arguments, steps it takes)
CALLS: dict[str, tuple[tuple[object, ...], dict[str, object], int]] = {
    "ddpm": ((toy_eps, SCHED), {}, 20),
    "ddim": ((toy_eps, SCHED), {"steps": 5, "eta": 0.5}, 5),
    "langevin": ((lambda x: -x,), {"steps": 4, "step_size": 0.1}, 4),
    "annealed_langevin": (
        (lambda x, s: -x, [1.0, 0.5]),
        {"steps_per_level": 2, "step_lr": 0.1, "denoise": True},
        5,
    ),
    "euler_maruyama": ((lambda x, t: -x, VPSDE()), {"steps": 4}, 4),
    "pf_ode_euler": ((lambda x, t: -x, VPSDE()), {"steps": 4}, 4),
    "pf_ode_heun": ((lambda x, t: -x, VPSDE()), {"steps": 4}, 4),
    "predictor_corrector": ((lambda x, t: -x, VPSDE()), {"steps": 4}, 4),
    "dpm_solver++": ((toy_eps, SCHED), {"steps": 4}, 4),
    "heun_log_snr": ((toy_eps, SCHED), {"steps": 4}, 4),
    "flow_ode": ((lambda x, t: -x, None), {"steps": 4}, 4),
    "consistency": ((lambda x, t: 0.5 * x, SCHED), {"timesteps": [20, 10, 5]}, 3),
    "inpaint": ((lambda x, t: 0.5 * x, SCHED, KNOWN, MASK), {}, 20),
    "repaint": (
        (lambda x, t: 0.5 * x, SCHED, KNOWN, MASK),
        {"jump_length": 5, "resamplings": 2},
        38,
    ),
    "dps": ((lambda x, t: 0.5 * x, SCHED, KNOWN, MASK), {"zeta": 0.5}, 20),
}
NO_SHAPE = ("inpaint", "repaint", "dps")


def _run(name: str, shape: tuple[int, ...] | None, **extra: object) -> torch.Tensor:
    """Call a registered sampler of the table (with ``shape`` unless it takes its start's shape
    from its data)."""
    lead, kw, _ = CALLS[name]
    args = lead if (shape is None or name in NO_SHAPE) else (*lead, shape)
    return get_sampler(name)(*args, **kw, **extra)


DETERMINISTIC = ("pf_ode_euler", "pf_ode_heun", "dpm_solver++", "heun_log_snr", "flow_ode")


def test_the_table_covers_the_registry() -> None:
    assert set(CALLS) <= set(available_samplers())
    assert set(available_samplers()) - set(CALLS) == set(), "add the new sampler to CALLS"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_one_return_type_and_on_step_sees_every_state(name: str) -> None:
    lead, kw, steps = CALLS[name]
    shape = tuple(KNOWN.shape) if name in NO_SHAPE else (6, 2)
    states: list[SamplerState] = []
    x = _run(name, shape, generator=torch.Generator().manual_seed(0), on_step=states.append)
    assert isinstance(x, torch.Tensor) and x.shape == shape
    assert [s.step for s in states] == list(range(steps + 1))
    assert all(s.steps == steps for s in states) and torch.equal(states[-1].x, x)
    args = lead if name in NO_SHAPE else (*lead, shape)
    traj = trajectory(name, *args, generator=torch.Generator().manual_seed(0), **kw)
    assert len(traj) == steps + 1 and torch.equal(traj[-1], x)
    # the same start given as x_T: the same run, without a draw
    x_T = states[0].x.clone()
    y = _run(name, None, x_T=x_T, generator=torch.Generator().manual_seed(0))
    if name in DETERMINISTIC:
        assert torch.equal(y, x)  # deterministic given the start
    else:
        assert not torch.equal(y, x)  # the generator now draws the noise from its first number
    assert torch.equal(states[0].x, x_T)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_the_nan_watch_names_the_step(name: str) -> None:
    lead, kw, steps = CALLS[name]
    calls = [0]
    model = lead[0]

    def poisoned(*a: torch.Tensor) -> torch.Tensor:  # NaN from the second model call on
        calls[0] += 1
        out = model(*a)  # type: ignore[operator]
        return out * float("nan") if calls[0] >= 2 else out

    args = lead[1:] if name in NO_SHAPE else (*lead[1:], (3, 2))
    with pytest.raises(NonFiniteSampleError, match=rf"step [12] of {steps} \("):
        get_sampler(name)(poisoned, *args, **kw)


@pytest.mark.parametrize("name", sorted(set(CALLS) - set(NO_SHAPE)))
def test_dtype_is_that_of_x_T_and_a_different_one_is_refused(name: str) -> None:
    """``dtype`` None (the default) means float32 for a drawn start and ``x_T``'s dtype for a
    given one; an explicit ``dtype`` that disagrees with ``x_T`` is refused like a ``shape`` or
    ``device`` that does, before the model runs."""
    seed = torch.Generator().manual_seed
    drawn = _run(name, (6, 2), generator=seed(0))
    assert drawn.dtype == torch.float32
    assert torch.equal(drawn, _run(name, (6, 2), generator=seed(0), dtype=torch.float32))
    assert torch.equal(drawn, _run(name, (6, 2), generator=seed(0), dtype=None))
    assert _run(name, (6, 2), dtype=torch.float64).dtype == torch.float64
    x_T = torch.randn(6, 2, generator=seed(1))
    assert _run(name, None, x_T=x_T.double()).dtype == torch.float64
    assert _run(name, None, x_T=x_T.double(), dtype=torch.float64).dtype == torch.float64
    lead, kw, _ = CALLS[name]
    calls = [0]
    model = lead[0]

    def counted(*a: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return model(*a)  # type: ignore[operator,no-any-return]

    with pytest.raises(ValueError, match=r"^dtype torch.float64 disagrees with x_T's dtype"):
        get_sampler(name)(counted, *lead[1:], x_T=x_T, dtype=torch.float64, **kw)
    assert calls == [0]


@pytest.mark.parametrize("name", NO_SHAPE)
def test_samplers_with_known_pixels_run_in_the_dtype_of_x_known(name: str) -> None:
    """The start is drawn like ``x_known``; a given ``x_T`` must have ``x_known``'s dtype (in
    another one, the known pixels changed the state's dtype for some samplers and not others)."""
    x_T = torch.randn(KNOWN.shape, generator=torch.Generator().manual_seed(0))
    assert _run(name, None).dtype == torch.float32
    assert _run(name, None, x_T=x_T).dtype == torch.float32
    with pytest.raises(TypeError, match=r"^x_T must have x_known's dtype torch.float32, got"):
        _run(name, None, x_T=x_T.double())


@pytest.mark.parametrize("name", sorted(CALLS))
def test_progress_must_be_true_or_false(name: str) -> None:
    """``progress="no"`` is refused, not read as true (a bar shown), before the model runs."""
    lead, kw, _ = CALLS[name]
    calls = [0]
    model = lead[0]

    def counted(*a: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return model(*a)  # type: ignore[operator,no-any-return]

    args = (counted, *lead[1:]) if name in NO_SHAPE else (counted, *lead[1:], (3, 2))
    for bad in ("no", None, 1):
        with pytest.raises(TypeError, match=r"^progress must be True or False, got"):
            get_sampler(name)(*args, progress=bad, **kw)
    assert calls == [0]


def test_run_sampler_and_trajectory_arguments() -> None:
    with pytest.raises(
        NonFiniteSampleError, match=r"my_loop produced .* step 2 of 3 \(t=1 -> 2\); hint"
    ):
        run_sampler(
            lambda x, t, tn: x / (1 - t), torch.ones(2, 1), [(0, 1), (1, 2), (2, 3)],
            name="my_loop", hint="hint",
        )  # fmt: skip
    with pytest.raises(TypeError, match="on_step"):
        run_sampler(lambda x, t, tn: x, torch.ones(2, 1), [(0, 1)], name="l", on_step=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_step"):
        trajectory("ddpm", toy_eps, SCHED, (2, 2), on_step=print)
    with pytest.raises(ValueError, match="name must be one of"):
        trajectory("no_such_sampler")
    # the steps run without autograd, whatever the caller's mode
    out = run_sampler(
        lambda x, t, tn: x * 2, torch.ones(2, 1, requires_grad=True), [(0, 1)], name="l"
    )
    assert not out.requires_grad


def test_a_sampler_in_a_new_module_registers_itself(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The package docstring's promise: adding a sampler touches one file."""
    import sys

    import minidiff.samplers as pkg
    from minidiff.samplers import registry

    (tmp_path / "tmp_test_sampler.py").write_text(
        "from .registry import register_sampler\n"
        "@register_sampler('tmp_test_sampler')\n"
        "def tmp_test_sampler_sample(x):\n"
        "    return x\n"
    )
    monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_SAMPLERS", dict(registry._SAMPLERS))
    try:
        pkg._discover()
        assert get_sampler("tmp_test_sampler")(3) == 3
        assert "tmp_test_sampler" in available_samplers()
    finally:
        sys.modules.pop("minidiff.samplers.tmp_test_sampler", None)
    with pytest.raises(ValueError, match="already registered"):
        register_sampler("ddpm")(lambda: None)


def test_re_running_a_cell_that_registers_a_sampler_replaces_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A notebook cell run twice defines the same function (same module and qualified name)
    again: the registry takes the new definition. Another function, or a built-in's name, is
    still refused."""
    from minidiff.samplers import registry

    monkeypatch.setattr(registry, "_SAMPLERS", dict(registry._SAMPLERS))
    cell = (
        "from minidiff.samplers import register_sampler\n"
        "@register_sampler({name!r})\n"
        "def my_ddpm(x):\n"
        "    return x + {k}\n"
    )
    notebook: dict[str, object] = {"__name__": "__main__"}
    exec(cell.format(name="my_ddpm", k=1), notebook)
    exec(cell.format(name="my_ddpm", k=2), notebook)  # the cell edited and run again
    assert get_sampler("my_ddpm") is notebook["my_ddpm"] and get_sampler("my_ddpm")(0) == 2
    with pytest.raises(ValueError, match=r"^name 'my_ddpm' is already registered .*__main__\.my"):
        register_sampler("my_ddpm")(lambda x: x)
    with pytest.raises(ValueError, match="already registered"):
        exec(cell.format(name="my_ddpm", k=3), {"__name__": "another_module"})
    with pytest.raises(ValueError, match=r"minidiff\.samplers\.ddpm\.ddpm_sample"):
        exec(cell.format(name="ddpm", k=1), notebook)
    assert get_sampler("ddpm") is md.ddpm_sample and get_sampler("my_ddpm")(0) == 2


def test_a_wraps_wrapper_never_replaces_a_built_in_sampler(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """functools.wraps copies the built-in's module and qualified name: the wrapper is still
    refused under the built-in's name, and under a name of its own a re-run cell replaces it."""
    import functools

    from minidiff.samplers import registry

    monkeypatch.setattr(registry, "_SAMPLERS", dict(registry._SAMPLERS))

    def timed(fn):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            return "WRAPPED"

        return wrapper

    with pytest.raises(ValueError, match=r"^name 'ddpm' is already registered .*ddpm_sample"):
        register_sampler("ddpm")(timed(md.ddpm_sample))
    assert get_sampler("ddpm") is md.ddpm_sample
    register_sampler("timed_ddpm")(timed(md.ddpm_sample))
    again = timed(md.ddpm_sample)  # the cell run again
    register_sampler("timed_ddpm")(again)
    assert get_sampler("timed_ddpm") is again


ALL_STARTS = [
    md.ddpm_sample,
    ddim_sample,
    md.langevin_sample,
    euler_maruyama_sample,
    pf_ode_sample,
    predictor_corrector_sample,
]


@pytest.mark.parametrize("fn", ALL_STARTS, ids=lambda f: f.__name__)
def test_bad_x_T(fn) -> None:  # type: ignore[no-untyped-def]
    first: tuple[object, ...]
    if fn in (ddim_sample, md.ddpm_sample):
        first = (toy_eps, md.linear_schedule(100))
    elif fn is md.langevin_sample:
        first = (lambda x: -x,)
    else:
        first = (lambda x, t: -x, VPSDE())
    kw = {"step_size": 0.1} if fn is md.langevin_sample else {}
    if fn is not md.ddpm_sample:
        kw["steps"] = 3
    fn = functools.partial(fn, **kw)
    with pytest.raises(TypeError, match="shape .* or a starting point x_T"):
        fn(*first)
    with pytest.raises(TypeError, match="x_T"):
        fn(*first, x_T=[[0.0, 1.0]])
    with pytest.raises(TypeError, match="x_T must be a floating"):
        fn(*first, x_T=torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="disagrees with x_T's shape"):
        fn(*first, (5, 2), x_T=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="x_T"):
        fn(*first, x_T=torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="x_T must have"):
        fn(*first, x_T=torch.zeros(()))
    with pytest.raises(ValueError, match="B >= 1"):
        fn(*first, x_T=torch.zeros(0, 2))
    with pytest.raises(ValueError, match="device"):
        fn(*first, x_T=torch.zeros(2, 2), device="meta")


def test_every_sampler_of_the_package_and_its_step_is_exported_by_minidiff_samplers() -> None:
    """The table of ``minidiff.samplers`` names each sampler's function: each of this package's
    samplers is importable from it (and listed in ``__all__``), as are the steps the docstrings
    name (``ddim_sigma`` in ``ddim_step``'s)."""
    import minidiff.samplers as samplers

    for name in md.available_samplers():
        fn = md.get_sampler(name)
        if fn.__module__.startswith("minidiff.samplers."):
            assert fn.__name__ in samplers.__all__, name
            assert getattr(samplers, fn.__name__) is fn, name
    for step in ("ddim_sigma", "dps_step", "reconstruction_gradient"):
        assert step in samplers.__all__ and callable(getattr(samplers, step)), step


def test_draw_start_is_the_standard_normal_of_the_generator() -> None:
    """The default start is tensors.standard_normal: the generator's stream, bitwise."""
    from minidiff.samplers.loop import draw_start
    from minidiff.tensors import standard_normal

    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    x = draw_start(None, (5, 3), generator=g1, dtype=torch.float64)
    assert torch.equal(x, standard_normal((5, 3), generator=g2, dtype=torch.float64))
    assert torch.equal(
        x, torch.randn(5, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    )
