"""Charts drawn on the server as inline SVG: no JavaScript library, nothing to load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT = 1000, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 14, 34


@dataclass(frozen=True)
class DayValue:
    day: date
    share: float | None  # modified share that day (None: nothing reviewed)
    reviewed: int


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str
    css: str


def modified_share_chart(
    points: Sequence[DayValue], thresholds: Sequence[Threshold], *, title: str
) -> Markup:
    """Reviews per day as bars (right scale) and the day's modified share as a line with dots (left
    scale, 0-100 %), with the decision thresholds as dashed lines."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(points), 1)
    step = plot_w / n
    most = max((p.reviewed for p in points), default=0) or 1

    def y_share(share: float) -> float:
        return TOP + plot_h * (1 - share)

    parts = [
        (
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        )
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_share(tick)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.0%}</text>'
        )
    for i, p in enumerate(points):
        if p.reviewed:
            h = plot_h * 0.45 * p.reviewed / most
            parts.append(
                f'<rect class="bar" x="{LEFT + i * step + step * 0.15:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{step * 0.7:.1f}" height="{h:.1f}"><title>{p.day}: {p.reviewed} reviewed'
                f"</title></rect>"
            )
    for t in thresholds:
        y = y_share(t.value)
        parts.append(
            f'<line class="threshold {t.css}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="threshold-label {t.css}" x="{WIDTH - RIGHT - 4}" y="{y - 4:.1f}" '
            f'text-anchor="end">{escape(t.label)} {t.value:.0%}</text>'
        )
    line = [
        (LEFT + (i + 0.5) * step, y_share(p.share))
        for i, p in enumerate(points)
        if p.share is not None
    ]
    if len(line) > 1:
        parts.append(
            '<polyline class="share" points="'
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in line)
            + '"/>'
        )
    for (x, y), p in zip(line, [p for p in points if p.share is not None], strict=True):
        parts.append(
            f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3.5"><title>{p.day}: '
            f"{p.share:.0%} modified of {p.reviewed}</title></circle>"
        )
    label_every = max(1, n // 6)
    for i, p in enumerate(points):
        if i % label_every == 0 or i == n - 1:
            parts.append(
                f'<text class="axis" x="{LEFT + (i + 0.5) * step:.1f}" y="{HEIGHT - 12}" '
                f'text-anchor="middle">{p.day.strftime("%b %d")}</text>'
            )
    if not line:
        parts.append(
            f'<text class="empty" x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">'
            "No reviews in this period</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def loss_chart(losses: Sequence[float], *, title: str) -> Markup:
    """Training loss per reported step as a line, on a scale from 0 to the highest loss seen."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        (
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        )
    ]
    top = max(losses, default=0.0) or 1.0
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = TOP + plot_h * (1 - tick)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{top * tick:.2f}</text>"
        )
    n = len(losses)
    if n == 0:
        parts.append(
            f'<text class="empty" x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">'
            "No steps reported yet</text></svg>"
        )
        return Markup("".join(parts))
    step = plot_w / max(n - 1, 1)
    points = [(LEFT + i * step, TOP + plot_h * (1 - loss / top)) for i, loss in enumerate(losses)]
    if n > 1:
        parts.append(
            '<polyline class="share" points="'
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            + '"/>'
        )
    for i, ((x, y), loss) in enumerate(zip(points, losses, strict=True)):
        parts.append(
            f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="2.5"><title>report {i + 1}: '
            f"loss {loss:.4f}</title></circle>"
        )
    for i in sorted({0, n // 2, n - 1}):
        parts.append(
            f'<text class="axis" x="{LEFT + i * step:.1f}" y="{HEIGHT - 12}" '
            f'text-anchor="middle">{i + 1}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
