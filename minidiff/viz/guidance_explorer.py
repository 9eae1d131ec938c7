"""The guidance explorer widget (chapter 9): weight, class, guidance form, sampler and steps ->
the guided samples and the guided score field.

A thin ipywidgets layer over the pure :func:`guided_eps_model`, :func:`guided_samples` and
:func:`guided_score_field`. By default the models are the exact oracles of a
:class:`~minidiff.data.LabelledGaussianMixture` (so every picture shows guidance itself, free of
model error); trained models can be passed instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._validation import (
    Flag,
    Function,
    Instance,
    Int,
    Number,
    OneOf,
    Rng,
    check_choice,
    check_with,
    checked,
)
from ..data.labelled import LabelledGaussianMixture
from ..diffusion import EpsModel, score_from_eps
from ..guidance import (
    W_CG,
    Classifier,
    ConditionalModel,
    W,
    classifier_free_guidance,
    classifier_guidance,
)
from ..samplers.ddim import ddim_timesteps, respace_eps_model, respace_schedule
from ..samplers.registry import get_sampler
from ..schedules import NoiseSchedule, linear_schedule
from ._explorer import Explorer

__all__ = [
    "FORMS",
    "SAMPLERS",
    "guided_eps_model",
    "guided_samples",
    "guided_score_field",
    "GuidanceExplorer",
    "guidance_explorer",
]

FORMS: tuple[str, ...] = ("classifier-free", "classifier")
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim")


def guided_eps_model(
    form: str,
    cond_model: ConditionalModel,
    classifier: Classifier,
    schedule: NoiseSchedule,
    y: int,
    w: float,
    num_classes: int,
) -> EpsModel:
    """The guided ``eps_model(x_t, t)`` of ``form``.

    ``"classifier-free"``: ``(1+w) eps_c - w eps_∅``; ``"classifier"``:
    ``eps_∅ - sqrt(1 - ab_t) w ∇ log f(y | x_t)``, where ``eps_∅ = cond_model(x, t, ∅)``.
    The same ``w`` is not the same strength in both: with exact models classifier guidance at
    ``w`` is classifier-free guidance at ``w - 1`` (its ``w = 0`` is the unconditional model, its
    ``w = 1`` the conditional one), the lectures' convention, kept here.
    """
    if form == "classifier-free":
        return classifier_free_guidance(cond_model, y, w, num_classes=num_classes)
    if form == "classifier":

        def uncond(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return cond_model(x, t, torch.full_like(t, num_classes))

        return classifier_guidance(uncond, classifier, y, w, schedule, num_classes=num_classes)
    raise ValueError(f"form must be one of {list(FORMS)}, got {form!r}")


@checked(
    eps_model=Function("(x_t, t) -> eps"),
    schedule=NoiseSchedule,
    n=Int(),
    sampler=OneOf(SAMPLERS),
    steps=Int(),
    generator=Rng,
)
def guided_samples(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    n: int,
    sampler: str = "ddim",
    steps: int = 50,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` samples ``(n, 2)`` from a guided ``eps_model`` with ``steps`` strided steps.

    ``"ddim"``: DDIM with ``eta = 0``; ``"ddpm"``: the registry's ancestral DDPM sampler on the
    respaced chain (``sigma² = beta_tilde``). Both take the guided model unchanged. ``n`` and
    ``steps`` are ints ``>= 1``, ``steps <= schedule.T``.
    """
    if steps > schedule.T:
        raise ValueError(f"steps must be an int in 1..{schedule.T} (the schedule's T), got {steps}")
    ts = ddim_timesteps(schedule, steps)
    if sampler == "ddim":
        out = get_sampler("ddim")(eps_model, schedule, (n, 2), timesteps=ts, generator=generator)
    else:
        out = get_sampler("ddpm")(
            respace_eps_model(eps_model, ts),
            respace_schedule(schedule, ts),
            (n, 2),
            variance="beta_tilde",
            generator=generator,
        )
    return out


@checked(
    eps_model=Function("(x_t, t) -> eps"),
    schedule=NoiseSchedule,
    t=Int(),
    lim=Number(low=0),
    grid=Int(minimum=2),
)
def guided_score_field(
    eps_model: EpsModel, schedule: NoiseSchedule, t: int, lim: float = 3.0, grid: int = 15
) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided score ``-eps(x, t) / sqrt(1 - ab_t)`` on a ``grid x grid`` lattice of
    ``[-lim, lim]²``: returns ``(points (grid², 2), score (grid², 2))``.

    ``t`` an int in ``1..schedule.T``, ``lim > 0``, ``grid >= 2``. Evaluated under
    ``torch.no_grad()`` like a sampler's steps, so a trained model gives plain tensors to draw
    (classifier guidance still takes its gradient inside).
    """
    if t > schedule.T:
        raise ValueError(f"t must be an int in 1..{schedule.T} (the schedule's T), got {t}")
    g = torch.linspace(-lim, lim, grid)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    tt = torch.full((pts.shape[0],), t, dtype=torch.long)
    with torch.no_grad():
        return pts, score_from_eps(eps_model(pts, tt), tt, schedule)


class GuidanceExplorer(Explorer):
    """Widget: guided samples (left) and the guided score field at one noise level (right).

    :meth:`update` is the whole callback and works without a display::

        ex = GuidanceExplorer(render=False)
        state = ex.update(w=4.0, y=0, form="classifier-free")   # state["samples"]: (n, 2)
        ex.widget                                               # the ipywidgets container

    The readout gives the accuracy of the exact classifier ``p_0(y | x)`` on the samples
    (fidelity) and, for each component of class ``y``, its share of *all* the samples: the
    fraction that it explains best (diversity; see
    :meth:`~minidiff.data.LabelledGaussianMixture.component_shares`). Samples that a component of
    another class explains best count for none, so the shares sum to at most 1.
    """

    PARAMS = ("w", "y", "form", "sampler", "steps")

    @checked(  # type: ignore[misc]  # (a decorated __init__)
        mixture=Instance(LabelledGaussianMixture, optional=True),
        schedule=Instance(NoiseSchedule, optional=True),
        cond_model=Function("(x_t, t, y) -> eps", optional=True),
        classifier=Function("(x_t, t) -> logits", optional=True),
        n=Int(),
        seed=Int(minimum=0),
        field_t=Int(optional=True),
        render=Flag,
    )
    def __init__(
        self,
        mixture: LabelledGaussianMixture | None = None,
        schedule: NoiseSchedule | None = None,
        *,
        cond_model: ConditionalModel | None = None,
        classifier: Classifier | None = None,
        n: int = 600,
        seed: int = 0,
        field_t: int | None = None,
        w: float = 0.0,
        y: int = 0,
        form: str = "classifier-free",
        sampler: str = "ddim",
        steps: int = 50,
        render: bool = True,
    ) -> None:
        self.mixture = mixture if mixture is not None else LabelledGaussianMixture.default_2d()
        self.schedule = schedule if schedule is not None else linear_schedule(1000)
        self.cond_model = (
            cond_model if cond_model is not None else self.mixture.cond_eps_model(self.schedule)
        )
        self.classifier = (
            classifier if classifier is not None else self.mixture.classifier(self.schedule)
        )
        for name, model in (("cond_model", self.cond_model), ("classifier", self.classifier)):
            own = getattr(model, "num_classes", None)
            if own is not None and own != self.mixture.num_classes:
                raise ValueError(
                    f"{name} has {own} classes ({name}.num_classes) but the mixture has "
                    f"{self.mixture.num_classes}: pass the mixture the model was trained on"
                )
        if field_t is not None and field_t > self.schedule.T:
            raise ValueError(
                f"field_t must be an int in 1..{self.schedule.T} (the schedule's T), got {field_t}"
            )
        self.n, self.seed = n, seed
        self.field_t = field_t if field_t is not None else max(1, self.schedule.T // 5)
        self._start(
            {
                "w": w,
                "y": y,
                "form": form,
                "sampler": sampler,
                "steps": steps,
            },
            figsize=(10, 4.4),
            render=render,
        )

    # -- pure part -------------------------------------------------------------------------------
    def compute(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """State for ``params``: ``samples``, ``field``, ``accuracy``, ``shares``, ``message``."""
        m = self.mixture
        try:
            form = check_choice(params["form"], "form", FORMS)
            w = check_with(W_CG if form == "classifier" else W, params["w"], "w")
            y = params["y"]
            if isinstance(y, bool) or not isinstance(y, (int, np.integer)):
                raise TypeError(f"y must be a class index (an int), got {y!r}")
            y = int(y)
            eps = guided_eps_model(
                form, self.cond_model, self.classifier, self.schedule, y, w, m.num_classes
            )
            gen = torch.Generator().manual_seed(self.seed)
            x = guided_samples(eps, self.schedule, self.n, params["sampler"], params["steps"], gen)
            field = guided_score_field(eps, self.schedule, self.field_t)
        except (ValueError, TypeError) as err:
            return {"params": dict(params), "samples": None, "message": f"Invalid setting: {err}"}
        x64 = x.double()
        accuracy = float((m.log_posterior(x64).argmax(1) == y).double().mean())
        shares = m.component_shares(x64, y)
        return {
            "params": dict(params),
            "samples": x,
            "field": field,
            "accuracy": accuracy,
            "shares": shares,
            "message": None,
        }

    def readout(self) -> str:
        """The text under the picture (empty when the settings are invalid)."""
        st = self.state
        if st.get("message") is not None:
            return ""
        p = st["params"]
        shares = ", ".join(f"{s:.0%}" for s in st["shares"])
        name = self.mixture.names[int(p["y"])]
        w = float(p["w"])
        offset = (
            f" (with exact models classifier-free guidance at w − 1 = {w - 1:g}: "
            "here w = 0 is the unconditional model, w = 1 the conditional one)"
            if p["form"] == "classifier"
            else ""
        )
        return (
            f"{p['form']} guidance, w = {w:g}{offset}, class {name}: "
            f"accuracy of the exact classifier on the samples {st['accuracy']:.1%}; "
            f"share of all samples per component of the class: {shares}"
        )

    # -- drawing -----------------------------------------------------------------------------------
    def _draw(self) -> None:
        fig = self.figure
        fig.clear()
        axes = fig.subplots(1, 2)
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.84, wspace=0.25)
        if self._draw_message(axes):
            return
        st = self.state
        p, m = st["params"], self.mixture
        lim = 3.0
        g = torch.linspace(-lim, lim, 120, dtype=torch.float64)
        xx, yy = torch.meshgrid(g, g, indexing="xy")
        pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
        dens = m.class_mixtures[int(p["y"])].log_prob(pts).exp().reshape(120, 120)
        for ax in axes:
            ax.contour(xx.numpy(), yy.numpy(), dens.numpy(), levels=6, colors="0.6", linewidths=0.7)
            ax.set(
                xlim=(-lim, lim), ylim=(-lim, lim), xlabel="$x_1$", ylabel="$x_2$", aspect="equal"
            )
        x = st["samples"]
        axes[0].scatter(x[:, 0], x[:, 1], s=3, alpha=0.5, color="tab:blue")
        axes[0].set_title(f"{self.n} samples, {p['sampler']}, {p['steps']} steps")
        pts_f, score = st["field"]
        norm = score.norm(dim=1, keepdim=True).clamp(min=1e-12)
        axes[1].quiver(
            pts_f[:, 0],
            pts_f[:, 1],
            (score / norm)[:, 0],
            (score / norm)[:, 1],
            norm[:, 0],
            cmap="viridis",
            scale=25,
        )
        axes[1].set_title(f"guided score direction at t = {self.field_t} (colour: length)")
        fig.suptitle(
            f"{p['form']} guidance, w = {float(p['w']):g}, class {m.names[int(p['y'])]} "
            "(grey: contours of $p_0(x\\mid y)$)",
            fontsize=10,
        )

    # -- widgets -----------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        import ipywidgets as wd

        # The controls start on valid values; _sync_widgets then shows params (stretching a
        # slider's range to a valid value outside it).
        style = {"description_width": "70px"}
        controls = {
            "w": wd.FloatSlider(
                value=0.0,
                min=0.0,
                max=8.0,
                step=0.5,
                description="weight w",
                continuous_update=False,
                style=style,
            ),
            "y": wd.Dropdown(
                options=[(nm, i) for i, nm in enumerate(self.mixture.names)],
                value=0,
                description="class",
                style=style,
            ),
            "form": wd.Dropdown(
                options=list(FORMS), value=FORMS[0], description="guidance", style=style
            ),
            "sampler": wd.Dropdown(
                options=list(SAMPLERS), value="ddim", description="sampler", style=style
            ),
            "steps": wd.IntSlider(
                value=50,
                min=5,
                max=200,
                step=5,
                description="steps",
                continuous_update=False,
                style=style,
            ),
        }
        self._attach(controls, rows=[["w", "y", "form"], ["sampler", "steps"]])


def guidance_explorer(**kwargs: Any) -> Any:
    """The guidance explorer as an ipywidgets container (see :class:`GuidanceExplorer`)."""
    return GuidanceExplorer(**kwargs).widget
