"""Calls a student reusing the samplers makes, each answered as the rest of the package answers
it: the argument that is wrong named, TypeError for a wrong kind, ValueError for a wrong value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minidiff as md
from minidiff.nn import NoisyClassifier
from minidiff.paths import RectifiedFlowPath, mixture_predictor
from minidiff.samplers import annealed_langevin_sample, flow_sample, inpaint_sample
from minidiff.samplers.dps import dps_sample

S = md.linear_schedule(50)
GMM = md.GaussianMixture.default_2d()


def test_several_numbers_where_one_belongs_are_a_type_error_naming_the_argument() -> None:
    with pytest.raises(TypeError, match="step_size must be a real number"):
        md.langevin_sample(lambda x: -x, (3, 2), steps=2, step_size=torch.tensor([0.1] * 3))
    with pytest.raises(TypeError, match="eta must be a real number"):
        md.ddim_sample(GMM.eps_model(S), S, (3, 2), steps=2, eta=np.array([0.0, 1.0]))
    # one number in a tensor or a 0-d array is still a number
    md.ddim_sample(GMM.eps_model(S), S, (3, 2), steps=2, eta=np.array(0.5))


def test_the_exact_mixture_oracles_name_a_wrong_data_dimension() -> None:
    x3 = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, 2\) for this mixture"):
        md.ddim_sample(GMM.eps_model(S), S, (4, 3), steps=2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        md.score_fn_from_mixture(GMM, md.VPSDE())(x3, torch.rand(4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        mixture_predictor(GMM, RectifiedFlowPath())(x3, torch.rand(4))


def _known() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(2, 1, 4, 4) * 2 - 1
    mask = torch.zeros_like(x)
    mask[..., :2] = 1.0
    return x, mask


def test_restoration_samplers_name_the_model_and_x_known() -> None:
    x, mask = _known()
    short = lambda x_t, t: x_t[:, :, :2]  # noqa: E731
    for sample in (dps_sample, inpaint_sample):
        with pytest.raises(ValueError, match="eps_model must return a tensor of shape"):
            sample(short, S, x, mask)
        with pytest.raises(ValueError, match=r"x_T must have x_known's shape \(2, 1, 4, 4\)"):
            sample(lambda x_t, t: 0 * x_t, S, x, mask, x_T=torch.randn(2, 1, 4, 5))


def test_flow_sample_names_velocity_fn() -> None:
    with pytest.raises(ValueError, match="velocity_fn must return a tensor of shape"):
        flow_sample(lambda x, t: x[:, :1], RectifiedFlowPath(), (3, 2), steps=3)


def test_annealed_langevin_labels_each_iterate_with_its_own_level() -> None:
    seen: list = []
    annealed_langevin_sample(
        lambda x, s: -x, [3.0, 2.0, 1.0], (3, 2), steps_per_level=2, step_lr=0.01,
        denoise=True, on_step=seen.append,
    )  # fmt: skip
    assert [s.t for s in seen] == [3.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0, 0.0]


def test_classifier_guidance_on_another_schedule_is_named() -> None:
    guided = md.classifier_guidance(
        GMM.eps_model(S), NoisyClassifier(3), 0, 1.0, md.linear_schedule(20)
    )
    with pytest.raises(
        ValueError, match="beyond T=20 of the schedule given to classifier_guidance"
    ):
        md.ddpm_sample(guided, S, (4, 2))
