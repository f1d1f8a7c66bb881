"""Loss curves → a small hand-written SVG line chart.

Written by hand rather than with matplotlib so the bytes are a pure function of
the input (the report is committed only when it changes) and so importing the
runner stays cheap. Every coordinate is printed with fixed precision.
"""

from __future__ import annotations

import math

Curve = list[tuple[int, float]]

WIDTH, HEIGHT = 720, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 520, 40, 300  # plot area; the legend sits right of it
COLOURS = (
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
_FONT = 'font-family="sans-serif" font-size="12" fill="#333"'


def render_loss_svg(runs: list[tuple[str, Curve]]) -> str:
    """One polyline per run (name, [(step, loss)]); 'no data yet' when nothing is finite."""
    series = [(name, _finite(points)) for name, points in runs]
    points = [p for _, pts in series for p in pts]
    parts = [_open(), _frame()]
    if points:
        xs = _domain([p[0] for p in points], min_step=1.0)
        ys = _domain([p[1] for p in points])
        parts += _axes(xs, ys)
        parts += [_series(i, pts, xs, ys) for i, (_, pts) in enumerate(series) if pts]
        parts += [_legend(i, name, bool(pts)) for i, (name, pts) in enumerate(series)]
    else:
        mid_x, mid_y = _num((LEFT + RIGHT) / 2), _num((TOP + BOTTOM) / 2)
        parts.append(
            f'<text x="{mid_x}" y="{mid_y}" text-anchor="middle" {_FONT}>no data yet</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _finite(points: Curve) -> Curve:
    """Drop NaN/inf losses (a diverged step) so one bad value cannot break the scale."""
    return sorted((int(s), float(v)) for s, v in points if math.isfinite(s) and math.isfinite(v))


def _num(v: float) -> str:
    """Fixed one-decimal coordinates, never '-0.0', so output is byte-stable."""
    text = f"{v:.1f}"
    return "0.0" if text == "-0.0" else text


def _esc(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _open() -> str:
    """Root element, white background (GitHub dark mode) and the title texts."""
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Training loss">',
            "<title>Training loss</title>",
            f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
            f'<text x="{_num((LEFT + RIGHT) / 2)}" y="24" text-anchor="middle" '
            f'font-family="sans-serif" font-size="15" font-weight="bold" fill="#222">'
            "Training loss</text>",
        ]
    )


def _frame() -> str:
    """Axis lines and labels, drawn even when there is no data so the chart keeps its shape."""
    cx, cy = _num((LEFT + RIGHT) / 2), _num((TOP + BOTTOM) / 2)
    return "\n".join(
        [
            f'<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#333"/>',
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#333"/>',
            f'<text x="{cx}" y="{BOTTOM + 40}" text-anchor="middle" {_FONT}>step</text>',
            f'<text x="16" y="{cy}" text-anchor="middle" transform="rotate(-90 16 {cy})" '
            f"{_FONT}>loss</text>",
        ]
    )


def _nice_step(span: float) -> float:
    """A 1/2/5×10^k tick spacing giving about five intervals: easy-to-read labels."""
    raw = span / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _domain(values: list[float], min_step: float = 0.0) -> tuple[float, float, float]:
    """(low, high, tick step) snapped outward to ticks; a flat series gets some room.

    Steps and losses are never negative, so padding a flat series stops at zero.
    """
    low, high = min(values), max(values)
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = (max(0.0, low - pad) if low >= 0 else low - pad), high + pad
    step = max(_nice_step(high - low), min_step)
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def _ticks(domain: tuple[float, float, float]) -> list[float]:
    low, high, step = domain
    count = int(round((high - low) / step))
    return [low + i * step for i in range(count + 1)]


def _label(v: float, step: float) -> str:
    """Tick text with just enough decimals for the spacing (0.25 vs 250)."""
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    text = f"{v:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _px(v: float, domain: tuple[float, float, float], a: float, b: float) -> float:
    low, high, _ = domain
    return a + (v - low) / (high - low) * (b - a)


def _axes(xs: tuple[float, float, float], ys: tuple[float, float, float]) -> list[str]:
    """Grid lines and tick labels on both axes."""
    out = []
    for t in _ticks(xs):
        x = _num(_px(t, xs, LEFT, RIGHT))
        out.append(f'<line x1="{x}" y1="{BOTTOM}" x2="{x}" y2="{BOTTOM + 5}" stroke="#333"/>')
        out.append(
            f'<text x="{x}" y="{BOTTOM + 19}" text-anchor="middle" {_FONT}>'
            f"{_label(t, xs[2])}</text>"
        )
    for t in _ticks(ys):
        y = _num(_px(t, ys, BOTTOM, TOP))
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{RIGHT}" y2="{y}" stroke="#e5e5e5"/>')
        out.append(
            f'<text x="{LEFT - 8}" y="{y}" text-anchor="end" dominant-baseline="middle" '
            f"{_FONT}>{_label(t, ys[2])}</text>"
        )
    return out


def _series(index: int, points: Curve, xs: tuple, ys: tuple) -> str:
    """The run's polyline; a lone point also gets a dot, since a 1-point line is invisible."""
    colour = COLOURS[index % len(COLOURS)]
    coords = [(_num(_px(s, xs, LEFT, RIGHT)), _num(_px(v, ys, BOTTOM, TOP))) for s, v in points]
    line = (
        f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
        f'points="{" ".join(f"{x},{y}" for x, y in coords)}"/>'
    )
    if len(coords) == 1:
        line += f'\n<circle cx="{coords[0][0]}" cy="{coords[0][1]}" r="3" fill="{colour}"/>'
    return line


def _legend(index: int, name: str, has_data: bool) -> str:
    """Legend entry right of the plot; long run titles are shortened to fit."""
    colour = COLOURS[index % len(COLOURS)]
    y = TOP + 8 + index * 20
    label = name if len(name) <= 22 else name[:21] + "…"
    if not has_data:
        label += " (no data)"
    return (
        f'<line x1="{RIGHT + 16}" y1="{y}" x2="{RIGHT + 36}" y2="{y}" stroke="{colour}" '
        f'stroke-width="3"/>\n'
        f'<text x="{RIGHT + 42}" y="{y}" dominant-baseline="middle" {_FONT}>{_esc(label)}</text>'
    )
