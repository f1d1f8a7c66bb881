"""A figure (``figures.py``) → SVG bytes, drawn with matplotlib.

The same figure always gives the same bytes, because the report is committed only
when it changes:

- no clock: the SVG's ``Date`` (and the version-bearing ``Creator``) metadata are
  left out;
- no randomness: ``svg.hashsalt`` fixes the ids matplotlib otherwise draws from
  ``uuid4`` (clip paths, markers);
- no system fonts: text stays text (``svg.fonttype: none``) and is measured with
  DejaVu Sans, which ships inside matplotlib, so layout does not depend on the
  machine's fonts;
- matplotlib's ``Figure`` is used directly, with no pyplot and no GUI backend, and
  every setting is scoped to one ``rc_context``.

A hash of the figure's data is written into the file, so an unchanged figure is
never drawn again (``unchanged``): polls stay cheap, and a matplotlib upgrade does
not rewrite plots whose data did not change.

matplotlib is imported inside ``render_svg`` only: importing the CLI stays fast.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ci_runner.report.figures import Figure

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# Bump when the drawing code changes, so existing plots are drawn again.
PLOT_VERSION = 1
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
GREY = "#555555"
MARKERS_UP_TO = 30  # points per line; fewer get a dot at each point
PANEL_SIZE = (4.8, 3.2)  # inches
MAX_COLUMNS = 3
RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "ci-runner",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.color": "#e5e5e5",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "path.simplify": False,
}
METADATA = {"Date": None, "Creator": None}


def fingerprint(figure: Figure) -> str:
    """Identifies what a figure shows (and how it is drawn): same data, same fingerprint."""
    data = json.dumps([PLOT_VERSION, asdict(figure)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _marker(figure: Figure) -> str:
    return f"<!-- ci-runner figure {fingerprint(figure)} -->"


def unchanged(figure: Figure, existing: str | None) -> bool:
    """Whether ``existing`` (an SVG file's text) already draws ``figure``."""
    return existing is not None and _marker(figure) in existing.split("\n", 3)[:3]


def render_svg(figure: Figure) -> str:
    """The figure as SVG text; its second line carries the data's fingerprint."""
    import matplotlib
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    columns = min(MAX_COLUMNS, len(figure.panels))
    rows = -(-len(figure.panels) // columns)
    with matplotlib.rc_context(RC):
        fig = MplFigure(
            figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), layout="constrained"
        )
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for ax, panel in zip(axes, figure.panels, strict=False):
            for line in panel.lines:
                steps, values = zip(*line.points, strict=True)
                ax.plot(
                    steps,
                    values,
                    color=PALETTE[line.color % len(PALETTE)],
                    linestyle="--" if line.dashed else "-",
                    linewidth=1.6,
                    marker="o" if len(line.points) <= MARKERS_UP_TO else None,
                    markersize=3.5,
                )
            ax.set_title(panel.title)
            ax.set_xlabel("step")
            if panel.ylabel:
                ax.set_ylabel(panel.ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes[len(figure.panels) :]:
            ax.set_visible(False)
        if figure.legend:
            handles = [
                Line2D(
                    [],
                    [],
                    color=GREY if e.color is None else PALETTE[e.color % len(PALETTE)],
                    linestyle="--" if e.dashed else "-",
                    linewidth=1.6,
                )
                for e in figure.legend
            ]
            fig.legend(
                handles,
                [e.label for e in figure.legend],
                loc="outside right upper",
                frameon=False,
            )
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata=METADATA)
    head, _, rest = out.getvalue().partition("\n")
    return f"{head}\n{_marker(figure)}\n{rest}"
