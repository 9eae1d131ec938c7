"""Chapter 9: labelled mixture oracles, guidance wrappers, conditional networks and their losses."""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import ddim_sample, ddpm_sample, linear_schedule, q_sample, toy_dataset
from minidiff.data import LabelledGaussianMixture, labelled_toy
from minidiff.guidance import (
    cfg_combine,
    classifier_free_guidance,
    classifier_guidance,
    classifier_guidance_score,
    classifier_log_prob_grad,
    guidance_scale,
)
from minidiff.losses import conditional_eps_loss, drop_labels, noisy_classifier_loss
from minidiff.nn import ConditionalTimeMLP, NoisyClassifier
from minidiff.samplers import euler_maruyama_sample, get_sampler
from minidiff.sde import VPSDE, score_fn_from_mixture

MIX = LabelledGaussianMixture.default_2d()
SCHED = linear_schedule(200, 5e-4, 0.1)  # the DDPM schedule rescaled to T = 200
C = MIX.num_classes


def _x(n: int = 64, seed: int = 0) -> torch.Tensor:
    return 1.5 * torch.randn(
        n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def _t(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, SCHED.T + 1, (n,), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ exact oracles


@pytest.mark.parametrize("t", [1, 20, 100, 200])
def test_bayes_rule_for_scores(t: int) -> None:
    """∇ log p_t(x|y) = ∇ log p_t(x) + ∇ log p_t(y|x), each side computed independently."""
    a, s = float(SCHED.sqrt_alpha_bar[t]), float(SCHED.sqrt_one_minus_alpha_bar[t])
    x = _x().requires_grad_(True)
    for y in range(C):
        log_post = MIX.log_posterior(x, a, s)[:, y].sum()
        (g_post,) = torch.autograd.grad(log_post, x)
        log_cond = MIX.class_log_probs(x, a, s)[:, y].sum()
        (g_cond,) = torch.autograd.grad(log_cond, x)
        marg = MIX.mixture.marginal_score(x.detach(), a, s)
        torch.testing.assert_close(
            MIX.cond_score(x.detach(), y, a, s), g_cond, rtol=1e-9, atol=1e-10
        )
        torch.testing.assert_close(g_cond, marg + g_post, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(
            MIX.classifier_score(x.detach(), y, a, s), g_post, rtol=1e-9, atol=1e-10
        )


def test_class_laws_recombine_into_the_mixture() -> None:
    x = _x(200)
    for a, s in [(1.0, 0.0), (0.6, 0.8)]:
        joint = MIX.class_log_probs(x, a, s) + MIX.class_prior.log()
        torch.testing.assert_close(
            torch.logsumexp(joint, 1), MIX.mixture.marginal_log_prob(x, a, s)
        )
        torch.testing.assert_close(
            MIX.log_posterior(x, a, s).exp().sum(1), torch.ones(200, dtype=torch.float64)
        )


def test_class_posterior_is_calibrated_on_noised_data() -> None:
    """Among noised points with p_t(y=0|x) in a bin, the fraction of class 0 matches the bin."""
    g = torch.Generator().manual_seed(3)
    x0, y = MIX.sample(20_000, g)
    t = 60
    x_t = q_sample(x0.double(), t, SCHED, generator=g)
    p0 = MIX.classifier(SCHED)(x_t, torch.full((20_000,), t)).exp()[:, 0]
    for lo, hi in [(0.1, 0.4), (0.4, 0.7), (0.7, 0.95)]:
        sel = (p0 >= lo) & (p0 < hi)
        n = int(sel.sum())
        assert n > 300
        frac = float((y[sel] == 0).double().mean())
        mean_p = float(p0[sel].mean())
        assert abs(frac - mean_p) < 4 * math.sqrt(mean_p * (1 - mean_p) / n) + 0.01, (
            lo,
            frac,
            mean_p,
        )


def test_sample_one_class_and_null_label_score() -> None:
    x, y = MIX.sample(500, torch.Generator().manual_seed(0), y=2)
    assert x.shape == (500, 2) and bool((y == 2).all())
    acc = (MIX.log_posterior(x.double()).argmax(1) == 2).double().mean()
    assert acc > 0.95
    xx = _x(10)
    torch.testing.assert_close(
        MIX.cond_score(xx, MIX.null_label, 0.8, 0.6), MIX.mixture.marginal_score(xx, 0.8, 0.6)
    )


def test_labelled_toys_match_the_unlabelled_ones() -> None:
    for name in ("moons", "circles", "two_spirals"):
        x, y = labelled_toy(name, 2000, torch.Generator().manual_seed(5))
        ref = toy_dataset(name, 2000, torch.Generator().manual_seed(5))
        assert torch.equal(x, ref) and y.dtype == torch.long
        assert 0.45 < float(y.double().mean()) < 0.55
    x, y = labelled_toy("moons", 2000, torch.Generator().manual_seed(5))
    assert x[y == 0, 1].mean() > x[y == 1, 1].mean() + 0.5  # class 0 is the upper moon
    x, y = labelled_toy("circles", 2000, torch.Generator().manual_seed(5))
    assert x[y == 0].norm(dim=1).max() < x[y == 1].norm(dim=1).min() + 0.2  # inner vs outer
    with pytest.raises(ValueError, match="name"):
        labelled_toy("swiss_roll", 10)
    with pytest.raises(TypeError, match="generator"):
        labelled_toy("moons", 10, generator=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        MIX.sample(10, 0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ guidance identities


def test_cfg_with_w0_is_the_conditional_model() -> None:
    cond = MIX.cond_eps_model(SCHED)
    x, t = _x().float(), _t(64)
    for y in range(C):
        yy = torch.full((64,), y)
        torch.testing.assert_close(
            classifier_free_guidance(cond, y, 0.0, num_classes=C)(x, t), cond(x, t, yy)
        )


def test_classifier_guidance_exact_w1_is_the_exact_conditional() -> None:
    cond, clf = MIX.cond_eps_model(SCHED), MIX.classifier(SCHED)
    x, t = _x(), _t(64)
    uncond = MIX.mixture.eps_model(SCHED)
    for y in range(C):
        guided = classifier_guidance(uncond, clf, y, 1.0, SCHED, num_classes=C)(x, t)
        torch.testing.assert_close(guided, cond(x, t, torch.full((64,), y)), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("w", [0.5, 2.0, 8.0])
def test_classifier_guidance_w_equals_cfg_w_minus_1_for_exact_models(w: float) -> None:
    cond, clf = MIX.cond_eps_model(SCHED), MIX.classifier(SCHED)
    x, t = _x(), _t(64)
    cg = classifier_guidance(MIX.mixture.eps_model(SCHED), clf, 1, w, SCHED, num_classes=C)(x, t)
    # CFG with weight w - 1 (negative when w < 1: written out, since the wrapper refuses w < 0)
    ec, eu = cond(x, t, torch.full((64,), 1)), cond(x, t, torch.full((64,), C))
    torch.testing.assert_close(cg, ec + (w - 1) * (ec - eu), rtol=1e-7, atol=1e-9)


def test_cfg_wrapper_equals_the_formula_and_scale_convention() -> None:
    cond = MIX.cond_eps_model(SCHED)
    x, t = _x().float(), _t(64)
    y = torch.arange(64) % C
    w = 3.0
    ec, eu = cond(x, t, y), cond(x, t, torch.full((64,), C))
    got = classifier_free_guidance(cond, y, w, num_classes=C)(x, t)
    torch.testing.assert_close(got, (1 + w) * ec - w * eu)
    torch.testing.assert_close(cfg_combine(ec, eu, w), got)
    gamma = guidance_scale(w)  # diffusers: eps_u + gamma (eps_c - eps_u)
    torch.testing.assert_close(eu + gamma * (ec - eu), got)


def test_guided_models_run_in_every_discrete_sampler_and_sde_solver() -> None:
    cond, clf = MIX.cond_eps_model(SCHED), MIX.classifier(SCHED)
    uncond = MIX.mixture.eps_model(SCHED)
    models = {
        "cfg": classifier_free_guidance(cond, 0, 2.0, num_classes=C),
        "cg": classifier_guidance(uncond, clf, 0, 2.0, SCHED, num_classes=C),
    }
    for eps in models.values():
        for x in (
            ddpm_sample(eps, SCHED, (300, 2), generator=torch.Generator().manual_seed(0)),
            ddim_sample(eps, SCHED, (300, 2), steps=20, generator=torch.Generator().manual_seed(0)),
            get_sampler("ddim")(
                eps, SCHED, (300, 2), steps=10, eta=1.0, generator=torch.Generator()
            ),
        ):
            assert isinstance(x, torch.Tensor) and x.shape == (300, 2)
            acc = (MIX.log_posterior(x.double()).argmax(1) == 0).double().mean()
            assert acc > 0.95
    # score form with a continuous-time SDE: exact marginal score + w ∇ log p_t(y | x)
    sde = VPSDE()

    def clf_cont(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = sde.marginal_coefficients(t)
        return MIX.log_posterior(x.double(), a.double(), s.double()).to(x.dtype)

    score = classifier_guidance_score(
        score_fn_from_mixture(MIX.mixture, sde), clf_cont, 2, 1.0, num_classes=C
    )
    x = euler_maruyama_sample(
        score, sde, (300, 2), steps=200, generator=torch.Generator().manual_seed(1)
    )
    assert (MIX.log_posterior(x.double()).argmax(1) == 2).double().mean() > 0.95


def test_exact_guidance_w0_samples_the_class_conditional_law() -> None:
    cond = MIX.cond_eps_model(SCHED)
    n = 4000
    for y in range(C):
        x = ddim_sample(
            classifier_free_guidance(cond, y, 0.0, num_classes=C),
            SCHED,
            (n, 2),
            steps=100,
            eta=1.0,
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(y),
        )
        ref = MIX.class_mixtures[y].sample(200_000, torch.Generator().manual_seed(9)).double()
        se = ref.std(0) / math.sqrt(n)
        assert bool(((x.mean(0) - ref.mean(0)).abs() < 5 * se + 0.02).all()), (
            y,
            x.mean(0),
            ref.mean(0),
        )
        assert bool(((x.std(0) - ref.std(0)).abs() < 0.05 * ref.std(0) + 0.02).all())


# ------------------------------------------------------------------------------ bad input


def test_bad_input_is_refused_before_any_work() -> None:
    cond, clf = MIX.cond_eps_model(SCHED), MIX.classifier(SCHED)
    uncond = MIX.mixture.eps_model(SCHED)
    with pytest.raises(ValueError, match="w must be a finite guidance weight >= 0"):
        classifier_free_guidance(cond, 0, -1.0, num_classes=C)
    with pytest.raises(ValueError, match="w must be a finite guidance weight"):
        classifier_guidance(uncond, clf, 0, float("nan"), SCHED, num_classes=C)
    # what w = 0 means differs between the forms, and the message says which
    with pytest.raises(ValueError, match=r"\(0 = the conditional model"):
        classifier_free_guidance(cond, 0, -1.0, num_classes=C)
    with pytest.raises(ValueError, match=r"\(0 = the unconditional model, no guidance; 1 = the"):
        classifier_guidance(uncond, clf, 0, -1.0, SCHED, num_classes=C)
    with pytest.raises(ValueError, match=r"\(0 = the unconditional model"):
        classifier_guidance_score(lambda x, t: -x, clf, 0, -1.0, num_classes=C)
    with pytest.raises(TypeError, match="w must be a real number"):
        classifier_free_guidance(cond, 0, "2", num_classes=C)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"y must be a class index in 0..2, got 7"):
        classifier_free_guidance(cond, 7, 1.0, num_classes=C)
    with pytest.raises(ValueError, match=r"y must be a class index in 0..2, got -1"):
        classifier_guidance(uncond, clf, torch.tensor([0, -1]), 1.0, SCHED, num_classes=C)
    with pytest.raises(ValueError, match="null label 3"):
        classifier_free_guidance(cond, C, 1.0, num_classes=C)
    with pytest.raises(ValueError, match="null label"):
        MIX.sample(5, y=C)
    with pytest.raises(TypeError, match=r"y must be an integer \(long\) tensor of class indices"):
        classifier_free_guidance(cond, torch.tensor([0.0, 1.0]), 1.0, num_classes=C)
    wrong = classifier_guidance(uncond, lambda x, t: clf(x, t)[:, :2], 0, 1.0, SCHED, num_classes=C)
    with pytest.raises(ValueError, match="classifier returned 2 classes but num_classes=3"):
        wrong(_x(4), _t(4))
    with pytest.raises(ValueError, match="num_classes must be >= 2, got 1"):
        classifier_free_guidance(cond, 0, 1.0, num_classes=1)
    # the wrong type of num_classes is a TypeError, as for ConditionalTimeMLP(num_classes=3.0)
    for bad in ("3", 3.0, [1, 2], True):
        with pytest.raises(TypeError, match="num_classes must be an int >= 2"):
            classifier_free_guidance(cond, 0, 1.0, num_classes=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="num_classes must be an int >= 2"):
            classifier_guidance(uncond, clf, 0, 1.0, SCHED, num_classes=bad)  # type: ignore[arg-type]
    net = ConditionalTimeMLP(num_classes=C, hidden=16, n_layers=1)
    with pytest.raises(
        ValueError, match=r"y must be a class index in 0..2 or the null label 3, got 4"
    ):
        net(torch.zeros(2, 2), torch.ones(2, dtype=torch.long), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="null label"):
        conditional_eps_loss(net, torch.zeros(2, 2), torch.tensor([0, C]), SCHED)
    with pytest.raises(ValueError, match="p_uncond"):
        drop_labels(torch.tensor([0, 1]), 1.5, C)


def test_classifier_gradient_inside_no_grad_and_sign() -> None:
    clf = MIX.classifier(SCHED)
    x, t = _x(32), _t(32)
    with torch.no_grad():
        g = classifier_log_prob_grad(clf, x, t, 1, num_classes=C)
    a = SCHED.sqrt_alpha_bar[t]
    s = SCHED.sqrt_one_minus_alpha_bar[t]
    torch.testing.assert_close(g, MIX.classifier_score(x, 1, a, s))
    # a small step along the gradient raises log p(y | x)
    before = MIX.log_posterior(x, a, s)[:, 1]
    after = MIX.log_posterior(x + 1e-3 * g, a, s)[:, 1]
    assert bool((after >= before - 1e-12).all())


# ------------------------------------------------------------------------------ networks and losses


def test_conditional_mlp_labels_null_and_batching() -> None:
    torch.manual_seed(0)
    net = ConditionalTimeMLP(num_classes=C, hidden=32, n_layers=2)
    torch.nn.init.normal_(net.output.weight, std=0.3)  # the zero init would hide the labels
    for p in net.film.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(12, 2)
    t = torch.tensor([5, 5, 5, 9, 9, 9, 5, 5, 5, 9, 9, 9])
    y = torch.tensor([0, 1, 3, 0, 1, 3, 2, 2, 2, 3, 0, 1])
    out = net(x, t, y)
    one_by_one = torch.cat([net(x[i : i + 1], t[i : i + 1], y[i : i + 1]) for i in range(12)])
    torch.testing.assert_close(out, one_by_one, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # sampling path: one conditioning vector per distinct (t, y)
        torch.testing.assert_close(net.eval()(x, t, y), out.detach(), rtol=1e-5, atol=1e-6)
    net.train()
    enc = ConditionalTimeMLP(num_classes=C, hidden=16, n_layers=1, x_frequencies=3)
    assert enc(x, t, y).shape == (12, 2)
    assert not torch.allclose(net(x, t, torch.zeros_like(y)), net(x, t, torch.ones_like(y)))
    torch.testing.assert_close(net(x, t), net(x, t, torch.full_like(y, net.null_label)))
    clf = NoisyClassifier(num_classes=4, hidden=16, n_layers=1)
    assert clf(x, t).shape == (12, 4)


def test_conditional_loss_matches_the_written_out_step() -> None:
    net = ConditionalTimeMLP(num_classes=C, hidden=16, n_layers=1)
    torch.nn.init.normal_(net.output.weight, std=0.3)
    x0, y = MIX.sample(64, torch.Generator().manual_seed(0))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    loss = conditional_eps_loss(net, x0, y, SCHED, p_uncond=0.3, generator=g1)
    t = torch.randint(1, SCHED.T + 1, (64,), generator=g2)
    noise = torch.randn(64, 2, generator=g2)
    drop = torch.rand(64, generator=g2) < 0.3
    y_in = torch.where(drop, torch.full_like(y, C), y)
    ab = SCHED.alpha_bar[t].float()[:, None]
    ref = ((noise - net(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t, y_in)) ** 2).mean()
    torch.testing.assert_close(loss, ref)


def test_drop_labels_rate() -> None:
    y = torch.zeros(20_000, dtype=torch.long)
    for p in (0.0, 0.1, 0.5, 1.0):
        frac = float((drop_labels(y, p, C, torch.Generator().manual_seed(1)) == C).double().mean())
        assert abs(frac - p) < 4 * math.sqrt(max(p * (1 - p), 1e-9) / 20_000) + 1e-12


def test_noisy_classifier_learns_towards_the_exact_one() -> None:
    torch.manual_seed(0)
    clf = NoisyClassifier(num_classes=C, hidden=32, n_layers=2)
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        x0, y = MIX.sample(256, g)
        loss = noisy_classifier_loss(clf, x0, y, SCHED, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x0, y = MIX.sample(4000, torch.Generator().manual_seed(1))
    t = torch.full((4000,), 30)
    x_t = q_sample(x0, t, SCHED, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ce_model = torch.nn.functional.cross_entropy(clf(x_t, t), y).item()
    ce_exact = torch.nn.functional.cross_entropy(MIX.classifier(SCHED)(x_t.double(), t), y).item()
    ce_prior = torch.nn.functional.cross_entropy(MIX.class_prior.log().expand(4000, C), y).item()
    assert ce_exact < ce_model < ce_exact + 0.25 * (ce_prior - ce_exact), (
        ce_model,
        ce_exact,
        ce_prior,
    )


# ---------------------------------------------------------------- num_classes, cfg_combine


def test_classifier_free_guidance_reads_the_number_of_classes_from_the_model() -> None:
    net = ConditionalTimeMLP(num_classes=3, hidden=16, n_layers=1).eval()
    x, t = _x(6).float(), _t(6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    got = classifier_free_guidance(net, y, 2.0)(x, t)  # C = net.num_classes = 3, ∅ = 3
    with torch.no_grad():
        want = 3 * net(x, t, y) - 2 * net(x, t, torch.full_like(y, 3))
    torch.testing.assert_close(got, want)
    assert torch.equal(classifier_free_guidance(net, y, 2.0, num_classes=3)(x, t), got)
    # the silent mistake of the past: num_classes=2 made label 2, a real class, the "null" label
    with pytest.raises(ValueError, match="num_classes=2 disagrees with the 3 classes of model"):
        classifier_free_guidance(net, 0, 2.0, num_classes=2)
    with pytest.raises(TypeError, match="num_classes is needed"):
        classifier_free_guidance(MIX.cond_eps_model(SCHED), 0, 2.0)
    clf = NoisyClassifier(num_classes=3, hidden=16, n_layers=1)
    uncond = MIX.mixture.eps_model(SCHED)
    classifier_guidance(uncond, clf, 2, 1.0, SCHED)(x.double(), t)  # C read from the classifier
    with pytest.raises(ValueError, match="disagrees with the 3 classes of classifier"):
        classifier_guidance(uncond, clf, 0, 1.0, SCHED, num_classes=4)
    with pytest.raises(ValueError, match="disagrees"):
        classifier_log_prob_grad(clf, x, t, 0, num_classes=2)


def test_an_unconditional_unet_is_called_unconditional_with_the_way_to_build_one() -> None:
    """A U-Net built without classes (num_classes == 0) is refused by guidance and the
    conditional loss with one message that says how to build a conditional one, whether or not
    num_classes is given, never advice that leads to another error."""
    from minidiff.nn.unet import UNet

    unet = UNet("tiny")
    assert unet.num_classes == 0
    advice = r"model is unconditional \(num_classes=0\): build it with UNetConfig\(num_classes=K\)"
    for num_classes in (None, 2):
        with pytest.raises(ValueError, match=advice):
            classifier_free_guidance(unet, 1, 1.0, num_classes=num_classes)
    x, y = torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=advice):
        conditional_eps_loss(unet, x, y, linear_schedule(50))


def test_cfg_combine_refuses_nonsense_naming_the_argument() -> None:
    cond, uncond = torch.ones(3, 2), torch.zeros(3, 2)
    import numpy as np

    torch.testing.assert_close(cfg_combine(cond, uncond, np.float32(2.0)), 3 * cond)
    torch.testing.assert_close(cfg_combine(cond, uncond, torch.tensor(0.5)), 1.5 * cond)
    bad = [
        ((cond, uncond, float("nan")), ValueError, "w"),
        ((cond, uncond, float("inf")), ValueError, "w"),
        ((cond, uncond, np.float64("nan")), ValueError, "w"),
        ((cond, uncond, -0.5), ValueError, "w"),
        ((cond, uncond, "2"), TypeError, "w"),
        ((cond, uncond, None), TypeError, "w"),
        ((cond * float("nan"), uncond, 1.0), ValueError, "cond"),
        ((cond, uncond * float("inf"), 1.0), ValueError, "uncond"),
        (([1.0, 2.0], uncond, 1.0), TypeError, "cond"),
        ((cond, uncond.long(), 1.0), TypeError, "uncond"),
        ((cond, torch.zeros(3, 1), 1.0), ValueError, "uncond"),
    ]
    for args, exc, name in bad:
        with pytest.raises(exc, match=name):
            cfg_combine(*args)  # type: ignore[arg-type]
    for fn in (lambda w: guidance_scale(w), lambda w: classifier_free_guidance(
        MIX.cond_eps_model(SCHED), 0, w, num_classes=C)):  # fmt: skip
        with pytest.raises(ValueError, match="w"):
            fn(float("nan"))
    assert len(bad) == 11  # the number of bad inputs tried above


def test_guided_sampling_reads_nothing_back_per_step() -> None:
    """The wrappers check y once; cfg_combine's finiteness check is skipped inside the loop."""
    from minidiff._validation import count_host_reads

    def model(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.1 * x + 0.01 * y[:, None].to(x.dtype)  # a model that reads nothing itself

    sched = linear_schedule(40)
    counts = []
    for steps in (10, 20):
        with count_host_reads() as reads:
            guided = classifier_free_guidance(model, torch.arange(8) % 3, 2.0, num_classes=3)
            ddim_sample(guided, sched, (8, 2), steps=steps)
        counts.append(reads[0])
    assert counts[1] - counts[0] == 10  # one NaN watch per step, nothing else
