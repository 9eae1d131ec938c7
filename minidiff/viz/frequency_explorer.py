"""The frequency explorer widget (chapter 10): image, schedule and t -> the noised image, its
radially averaged spectrum against the clean one and the noise floor, and the frequency at which
noise overtakes signal.

A thin ipywidgets layer over the pure :func:`frequency_view` and :meth:`FrequencyExplorer.update`;
it draws on a ``matplotlib.figure.Figure`` that is not registered with pyplot and shows it as a
PNG ``Image`` widget, so it works (and is tested) without a display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from matplotlib.ticker import NullFormatter

from .._validation import Check, Flag, FloatTensor, Int, Number, checked, describe
from ..data import load_digits, sample_photos
from ..diffusion import q_sample
from ..frequency import crossover_frequency, noised_psd, radial_frequencies, radial_psd
from ..schedules import NoiseSchedule, cosine_schedule, linear_schedule, shifted_schedule
from ._explorer import Explorer, starting_step, step_out_of_range

__all__ = [
    "FrequencyExplorer",
    "frequency_explorer",
    "frequency_view",
    "frequency_schedules",
    "default_images",
]


@checked(T=Int(), shift=Number())
def frequency_schedules(
    T: int = 1000, shift: float = 2 * math.log(64 / 32)
) -> dict[str, NoiseSchedule]:
    """The explorer's schedules: linear, cosine, and cosine with log-SNR shifted by ``shift``.

    The default shift ``2 log(64/32) ≈ 1.39`` is Hoogeboom et al.'s (2023) rule for 32x32 images
    relative to a 64x64 base: more signal left at every t.
    """
    cos = cosine_schedule(T)
    return {
        "linear": linear_schedule(T),
        "cosine": cos,
        f"shifted cosine ({shift:+.2f})": shifted_schedule(cos, shift),
    }


def default_images() -> dict[str, torch.Tensor]:
    """Three offline pictures ``(C, H, H)`` in ``[-1, 1]``: 64x64 crops of the two sample photos
    (at half resolution) and a 32x32 digit."""
    photos = sample_photos(2)  # (2, 3, 213, 320)
    digits, labels = load_digits(32)
    three = int(torch.nonzero(labels == 3)[0])
    return {
        "photo: china (64x64)": photos[0, :, 60:124, 120:184].clone(),
        "photo: flower (64x64)": photos[1, :, 80:144, 110:174].clone(),
        "digit 3 (32x32)": digits[three].clone(),
    }


def _check_image(img: object, where: str) -> torch.Tensor:
    """One picture: a float tensor ``(C, H, H)``, C = 1 or 3, H >= 4, finite, in ``[-1, 1]`` (the
    image contract, up to the round-off slack ``FloatTensor.WITHIN_TOL`` of every such check);
    returned detached (the explorer draws it, it never differentiates)."""
    if not isinstance(img, torch.Tensor) or not torch.is_floating_point(img):
        raise TypeError(
            f"{where} must be a floating-point torch.Tensor (C, H, H) in [-1, 1], got "
            f"{describe(img)}"
        )
    if (
        img.dim() != 3
        or img.shape[0] not in (1, 3)
        or img.shape[1] != img.shape[2]
        or img.shape[1] < 4
    ):
        raise ValueError(
            f"{where} must have shape (C, H, H) with C = 1 or 3 and H >= 4 (square, for a "
            f"radial spectrum), got {tuple(img.shape)}"
        )
    img = img.detach()
    tol = FloatTensor.WITHIN_TOL  # the slack of every within=(-1, 1) check: float32 round-off
    if (
        not bool(torch.isfinite(img).all())
        or float(img.min()) < -1 - tol
        or float(img.max()) > 1 + tol
    ):
        # repr: enough digits that a value just above 1 does not read as 1
        raise ValueError(
            f"{where} must hold finite values in [-1, 1] (the course's image range), got "
            f"values in [{float(img.min())!r}, {float(img.max())!r}]"
        )
    return img


def _check_images(images: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each picture must pass :func:`_check_image`; ``images`` must be a mapping (else a
    ``TypeError``) and not empty (else a ``ValueError``)."""
    if not isinstance(images, Mapping):
        raise TypeError(
            f"images must be a non-empty mapping {{name: tensor (C, H, H)}}, got {describe(images)}"
        )
    if not images:
        raise ValueError("images must be a non-empty mapping {name: tensor (C, H, H)}, got {}")
    return {str(name): _check_image(img, f"images[{name!r}]") for name, img in images.items()}


@checked(
    image=Check(_check_image),
    schedule=NoiseSchedule,
    t=Int(),
    noise=FloatTensor(like="image", finite=True),
)
def frequency_view(
    image: torch.Tensor, schedule: NoiseSchedule, t: int, noise: torch.Tensor
) -> dict[str, Any]:
    """Everything the explorer shows for one image ``(C, H, H)`` at step ``t`` with ``noise``.

    Returns float64 numpy arrays ``freqs`` (cycles/pixel), ``psd0`` (clean), ``psd_t`` (of this
    ``x_t``), ``expected`` (``ᾱ P_0 + (1 - ᾱ) N``), ``signal`` (``ᾱ P_0``), ``noise_floor``
    (``(1 - ᾱ) N``, a scalar), the tensor ``x_t`` and the floats ``alpha_bar``, ``snr`` and
    ``crossover`` (cycles/pixel, see :func:`minidiff.frequency.crossover_frequency`), taken over
    the rings the plot shows: every ring but the zero frequency (the image mean, which says
    nothing of detail and is near 0 for a zero-mean image); ``0`` when even the lowest non-zero
    frequency is drowned.

    ``image`` follows the image contract (float ``(C, H, H)``, C = 1 or 3, H >= 4, in
    ``[-1, 1]``), ``noise`` has its shape, ``t`` is an int in ``1..schedule.T``.
    """
    if t > schedule.T:
        raise ValueError(f"t must be an int in 1..{schedule.T} (the schedule's T), got {t}")
    x0 = image.double()[None]
    x_t = q_sample(x0, t, schedule, noise=noise.detach().double()[None])
    H = image.shape[-1]
    n = H * H
    ab = float(schedule.alpha_bar[t])
    freqs = radial_frequencies(H)
    psd0 = radial_psd(x0)[0]
    return {
        "x_t": x_t[0],
        "freqs": freqs.numpy(),
        "psd0": psd0.numpy(),
        "psd_t": radial_psd(x_t)[0].numpy(),
        "expected": noised_psd(psd0, ab, n).numpy(),
        "signal": (ab * psd0).numpy(),
        "noise_floor": (1 - ab) * n,
        "alpha_bar": ab,
        "snr": float(schedule.snr[t]),
        "crossover": float(crossover_frequency(psd0[1:], ab, n, freqs[1:])),
    }


def _to_rgb(x: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [-1, 1] (values outside are clipped) -> ``(H, W, 3)`` in [0, 1]."""
    img = ((x.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


class FrequencyExplorer(Explorer):
    """Widget: the clean image, ``x_t``, and their spectra with the noise floor.

    ``schedule`` is one of :func:`frequency_schedules`' names, or ``"shifted cosine"`` for the
    shifted one; ``t`` an int in ``1..T`` (one outside is shown as the message, not moved into
    range; ``None`` (the default) starts at 200, or at ``T`` when ``T`` is smaller).

    One noise draw per image is fixed at construction, so moving ``t`` changes ``x_t``
    continuously. :meth:`update` is the whole callback and works without a display::

        ex = FrequencyExplorer()
        state = ex.update(schedule="linear", t=300)   # state["view"]["crossover"]: cycles/pixel
        ex.widget                                      # the ipywidgets container
    """

    PARAMS = ("image", "schedule", "t")

    @checked(T=Int(), seed=Int(minimum=0), render=Flag)  # type: ignore[misc]  # (a decorated __init__)
    def __init__(
        self,
        images: Mapping[str, torch.Tensor] | None = None,
        *,
        image: str | None = None,
        schedule: str = "cosine",
        t: int | None = None,
        T: int = 1000,
        seed: int = 0,
        render: bool = True,
    ) -> None:
        self.images = _check_images(images) if images is not None else default_images()
        g = torch.Generator().manual_seed(seed)
        self.noise = {
            k: torch.randn(v.shape, generator=g, dtype=torch.float64)
            for k, v in self.images.items()
        }
        self.schedules = frequency_schedules(T)
        self._start(
            {
                "image": image if image is not None else next(iter(self.images)),
                "schedule": schedule,
                "t": starting_step(t, T, 200),
            },
            figsize=(12, 3.6),
            render=render,
        )

    # -- pure part -------------------------------------------------------------------------------
    def compute(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """State for ``params``: ``view`` (see :func:`frequency_view`), ``readout``, ``message``."""
        name, sched = params["image"], params["schedule"]
        if not isinstance(name, str) or name not in self.images:
            return self._error(params, f"unknown image {name!r}; choose one of {list(self.images)}")
        if sched == "shifted cosine":  # the short name for the one shifted choice
            sched = next(k for k in self.schedules if k.startswith("shifted"))
        if not isinstance(sched, str) or sched not in self.schedules:
            return self._error(
                params, f"unknown schedule {sched!r}; choose one of {list(self.schedules)}"
            )
        schedule = self.schedules[sched]
        t_in = params["t"]
        if step_out_of_range(t_in, schedule.T):  # as ScheduleExplorer: never moved into range
            return self._error(params, f"t must be an int in 1..T={schedule.T}, got {t_in!r}")
        t = int(t_in)
        # image and noise were checked at construction: no value checks per slider move
        view = frequency_view.unchecked(self.images[name], schedule, t, self.noise[name])
        size = self.images[name].shape[-1]
        fc = view["crossover"]
        if fc >= float(view["freqs"][-1]):
            where = "no frequency is drowned yet (signal above noise up to Nyquist, 0.5)"
        elif fc <= 0.0:
            where = (
                "every frequency is drowned "
                "(noise above the signal even at the lowest non-zero frequency)"
            )
        else:
            where = (
                f"noise overtakes signal above f* = {fc:.3f} cycles/pixel "
                f"(details finer than {1 / fc:.1f} px are drowned)"
            )
        readout = (
            f"t = {t}: ᾱ_t = {view['alpha_bar']:.4f}, SNR(t) = {view['snr']:.3g}, "
            f"noise floor (1−ᾱ_t)·N = {view['noise_floor']:.3g} with N = {size}×{size}; {where}."
        )
        return {
            "params": {**params, "schedule": sched, "t": t},
            "view": view,
            "readout": readout,
            "message": None,
        }

    @staticmethod
    def _error(params: Mapping[str, Any], message: str) -> dict[str, Any]:
        return {"params": dict(params), "view": None, "readout": "", "message": message}

    # -- drawing -----------------------------------------------------------------------------------
    def _draw(self) -> None:
        fig = self.figure
        fig.clear()
        axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.9]})
        fig.subplots_adjust(left=0.03, right=0.98, bottom=0.16, top=0.82, wspace=0.3)
        if self._draw_message(axes):
            return
        v, p = self.state["view"], self.state["params"]
        name = p["image"]
        axes[0].imshow(_to_rgb(self.images[name].double()), interpolation="nearest")
        axes[0].set_title(f"clean $x_0$: {name}", fontsize=9)
        axes[1].imshow(_to_rgb(v["x_t"]), interpolation="nearest")
        axes[1].set_title(rf"$x_t$, t={p['t']}, $\bar\alpha_t$={v['alpha_bar']:.3f}", fontsize=9)
        for ax in axes[:2]:
            ax.set_xticks([])
            ax.set_yticks([])
        ax = axes[2]
        f = v["freqs"][1:]  # the zero frequency has no place on a log axis
        ax.loglog(f, v["psd0"][1:], color="0.5", lw=1.5, label=r"clean $P_0(f)$")
        ax.loglog(f, v["signal"][1:], "--", color="tab:blue", label=r"signal $\bar\alpha_t P_0$")
        ax.axhline(
            v["noise_floor"], color="tab:red", lw=1.2, label=r"noise floor $(1-\bar\alpha_t)N$"
        )
        ax.loglog(f, v["psd_t"][1:], color="k", lw=1, label=r"$x_t$ (this draw)")
        ax.loglog(f, v["expected"][1:], ":", color="tab:green", lw=1.5, label=r"$E\,|F x_t|^2$")
        fc = v["crossover"]
        if f[0] <= fc < float(v["freqs"][-1]):
            ax.axvline(fc, color="tab:purple", lw=1, label=f"crossover f*={fc:.3f}")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([0.02, 0.05, 0.1, 0.2, 0.5], ["0.02", "0.05", "0.1", "0.2", "0.5"])
        ax.set_xlabel("spatial frequency f (cycles/pixel)")
        ax.set_ylabel(r"radially averaged power $|F x|^2$")
        ax.set_title(f"spectrum under the {p['schedule']} schedule", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower left")

    # -- widgets -----------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        import ipywidgets as w

        # The controls start on valid values; _sync_widgets then shows params.
        style = {"description_width": "70px"}
        T = next(iter(self.schedules.values())).T
        controls = {
            "image": w.Dropdown(
                options=list(self.images),
                value=next(iter(self.images)),
                description="image",
                style=style,
            ),
            "schedule": w.Dropdown(
                options=list(self.schedules),
                value="cosine",
                description="schedule",
                style=style,
            ),
            "t": w.IntSlider(
                value=min(200, T),
                min=1,
                max=T,
                description="t",
                continuous_update=False,
                style=style,
            ),
        }
        self._attach(controls, rows=[["image", "schedule", "t"]])


def frequency_explorer(**params: Any) -> Any:
    """The frequency explorer as an ipywidgets container (see :class:`FrequencyExplorer`)."""
    return FrequencyExplorer(**params).widget
