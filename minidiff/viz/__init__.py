"""Plotting helpers and interactive widgets, one module per widget.

- :mod:`minidiff.viz.plots`: pure plotting helpers that draw on a matplotlib ``Axes`` and return it.
- :mod:`minidiff.viz.schedule_explorer`: the schedule explorer (chapter 1).
- :mod:`minidiff.viz.grid`: image grids (show or save a batch of images as one picture).
- :mod:`minidiff.viz.guidance_explorer`: the guidance explorer (chapter 9).
- :mod:`minidiff.viz.frequency_explorer`: the frequency explorer (chapter 10).

Every widget is a thin ipywidgets layer over pure functions that the tests call directly.
"""

from . import grid, plots
from .frequency_explorer import FrequencyExplorer, frequency_explorer, frequency_view
from .grid import *  # noqa: F403 - every name in grid.__all__, re-exported below
from .guidance_explorer import (
    GuidanceExplorer,
    guidance_explorer,
    guided_samples,
    guided_score_field,
)
from .plots import *  # noqa: F403 - every name in plots.__all__, re-exported below
from .schedule_explorer import FAMILIES, ScheduleExplorer, schedule_curves, schedule_explorer

__all__ = [
    *plots.__all__,
    "schedule_curves",
    "ScheduleExplorer",
    "schedule_explorer",
    "FAMILIES",
    *grid.__all__,
    "GuidanceExplorer",
    "guidance_explorer",
    "guided_samples",
    "guided_score_field",
    "FrequencyExplorer",
    "frequency_explorer",
    "frequency_view",
]
