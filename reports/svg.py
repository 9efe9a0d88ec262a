"""Small hand-written inline SVG line charts (no plotting library; deterministic text)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 420, 200
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 44


def _num(value: float) -> str:
    """Coordinates with one decimal, without a trailing ``.0``."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _label(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:g}{suffix}"
    return f"{value:g}"


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """0 and ``count`` evenly spaced round values covering ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if step * mult >= raw:
            step *= mult
            break
    n = math.ceil(top / step - 1e-9)
    return [step * i for i in range(n + 1)]


def line_chart(title: str, points: Sequence[tuple[str, float | None]], *, unit: str = "",
               css_class: str = "chart") -> str:
    """A line chart of ``(label, value)`` points in order; ``None`` values leave a gap."""
    values = [v for _, v in points if v is not None]
    ticks = nice_ticks(max(values) if values else 0.0)
    top = ticks[-1] or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = len(points)

    def x(i: int) -> float:
        return LEFT + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    out = [f'<svg class="{escape(css_class)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
           f'height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
           f'<text class="title" x="{LEFT}" y="18">{escape(title)}{escape(" (" + unit + ")" if unit else "")}'
           "</text>"]
    for t in ticks:
        ty = _num(y(t))
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty}" y2="{ty}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{_num(y(t) + 4)}" text-anchor="end">'
                   f"{_label(t)}</text>")
    bottom = TOP + plot_h
    out.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}"/>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    every = max(1, math.ceil(n / 8))  # at most ~8 date labels
    for i, (label, _) in enumerate(points):
        if i % every == 0 or i == n - 1:
            anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
            out.append(f'<text class="tick" x="{_num(x(i))}" y="{HEIGHT - BOTTOM + 16}" '
                       f'text-anchor="{anchor}">{escape(label)}</text>')
    segments: list[list[tuple[float, float]]] = [[]]
    for i, (_, v) in enumerate(points):
        if v is None:
            segments.append([])
        else:
            segments[-1].append((x(i), y(v)))
    for seg in segments:
        if len(seg) > 1:
            coords = " ".join(f"{_num(px)},{_num(py)}" for px, py in seg)
            out.append(f'<polyline class="line" points="{coords}"/>')
    for i, (label, v) in enumerate(points):
        if v is not None:
            out.append(f'<circle class="dot" cx="{_num(x(i))}" cy="{_num(y(v))}" r="3">'
                       f"<title>{escape(label)}: {v:g}</title></circle>")
    if not values:
        out.append(f'<text class="tick" x="{LEFT + plot_w / 2:g}" y="{TOP + plot_h / 2:g}" '
                   'text-anchor="middle">no data</text>')
    out.append("</svg>")
    return "\n".join(out)
