"""A very small SVG chart writer for the conformance report (no plotting library).

One :class:`Chart` is one panel: x and y axes with "nice" ticks, a legend row
on top (the title is the SVG ``<title>``; the page shows it as a caption), polylines
(optionally stepwise), filled bands, scatter points with hover titles, and
vertical / horizontal markers. :meth:`Chart.to_svg` returns a standalone
``<svg>`` element (with its namespace) that can be inlined in HTML or saved as
a ``.svg`` file. Data coordinates map to pixels through :meth:`Chart.px` and
:meth:`Chart.py`, which the tests use to check placement.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

SVG_NS = "http://www.w3.org/2000/svg"

PASS_COLOUR = "#1a9641"
FAIL_COLOUR = "#d7191c"
_CLIP_IDS = itertools.count(1)
PALETTE = ("#2b83ba", "#fdae61", "#7b3294", "#636363", "#a6611a")

Point = tuple[float, float]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^n steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def span(values: Iterable[float], pad_frac: float = 0.05,
         min_width: float = 1e-6) -> tuple[float, float]:
    """(lo, hi) covering ``values`` with a margin; a sensible default for no data."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi - lo < min_width:
        lo, hi = lo - min_width / 2, hi + min_width / 2
    pad = (hi - lo) * pad_frac
    return lo - pad, hi + pad


def _fmt(v: float) -> str:
    return f"{v:.1f}"


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-9 else "0"


@dataclass
class Chart:
    """One plot panel; add elements, then :meth:`to_svg`."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    title: str = ""
    x_label: str = ""
    y_label: str = ""
    width: int = 640
    height: int = 240
    margin: tuple[int, int, int, int] = (44, 16, 40, 64)  # top, right, bottom, left
    _body: list[str] = field(default_factory=list)
    _legend: list[tuple[str, str]] = field(default_factory=list)
    _n_markers: int = 0
    _overlay: list[str] = field(default_factory=list)

    # -- coordinates
    @property
    def plot_box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the plotting area in pixels."""
        top, right, bottom, left = self.margin
        return left, top, self.width - right, self.height - bottom

    def px(self, x: float) -> float:
        """Pixel x of data x."""
        x0, x1 = self.x_range
        left, _, right, _ = self.plot_box
        return left + (x - x0) / (x1 - x0) * (right - left) if x1 != x0 else left

    def py(self, y: float) -> float:
        """Pixel y of data y (SVG y grows downwards)."""
        y0, y1 = self.y_range
        _, top, _, bottom = self.plot_box
        return bottom - (y - y0) / (y1 - y0) * (bottom - top) if y1 != y0 else bottom

    def _xy(self, pts: Iterable[Point]) -> str:
        return " ".join(f"{_fmt(self.px(x))},{_fmt(self.py(y))}" for x, y in pts
                        if x is not None and y is not None)

    # -- elements
    def line(self, pts: Sequence[Point], colour: str = PALETTE[0], width: float = 1.5,
             dash: str | None = None, label: str | None = None, steps: bool = False) -> None:
        """A polyline through ``pts``; ``steps`` holds each value until the next x."""
        if steps and len(pts) > 1:
            stepped: list[Point] = [pts[0]]
            for (_, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
                stepped += [(x1, y0), (x1, y1)]
            pts = stepped
        if not pts:
            return
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self._body.append(f'<polyline class="series" fill="none" stroke="{colour}" '
                          f'stroke-width="{width}"{extra} points="{self._xy(pts)}"/>')
        if label:
            self._legend.append((label, colour))

    def band(self, upper: Sequence[Point], lower: Sequence[Point], colour: str = PALETTE[0],
             opacity: float = 0.18, label: str | None = None) -> None:
        """A filled area between two curves given at their own x points."""
        if not upper or not lower:
            return
        ring = list(upper) + list(reversed(lower))
        self._body.append(f'<polygon class="band" fill="{colour}" fill-opacity="{opacity}" '
                          f'stroke="none" points="{self._xy(ring)}"/>')
        if label:
            self._legend.append((label, colour))

    def points(self, pts: Sequence[Point], colours: Sequence[str] | str = PALETTE[0],
               radius: float = 3.5, titles: Sequence[str] | None = None,
               label: str | None = None) -> None:
        """Scatter points; ``colours`` one per point or one for all; hover ``titles``."""
        for i, (x, y) in enumerate(pts):
            c = colours if isinstance(colours, str) else colours[i]
            title = f"<title>{escape(titles[i])}</title>" if titles else ""
            self._body.append(f'<circle class="point" cx="{_fmt(self.px(x))}" '
                              f'cy="{_fmt(self.py(y))}" r="{radius}" fill="{c}" '
                              f'stroke="#222" stroke-width="0.5">{title}</circle>')
        if label:
            self._legend.append((label, colours if isinstance(colours, str) else PALETTE[0]))

    def legend(self, label: str, colour: str) -> None:
        """An extra legend entry (for elements drawn without a label)."""
        self._legend.append((label, colour))

    def vline(self, x: float, colour: str = "#444", label: str = "",
              dash: str = "4 3") -> None:
        """A vertical marker at data x (e.g. a clearing time), labelled at the top."""
        if not min(self.x_range) <= x <= max(self.x_range):
            return
        _, top, _, bottom = self.plot_box
        xp = _fmt(self.px(x))
        self._overlay.append(f'<line class="marker" x1="{xp}" y1="{_fmt(top)}" x2="{xp}" '
                             f'y2="{_fmt(bottom)}" stroke="{colour}" stroke-dasharray="{dash}"/>')
        if label:
            # Alternate two label rows so neighbouring markers stay readable.
            y = top - 3 - 11 * (self._n_markers % 2)
            self._n_markers += 1
            self._overlay.append(f'<text x="{xp}" y="{_fmt(y)}" font-size="10" '
                                 f'text-anchor="middle" fill="{colour}">{escape(label)}</text>')

    def hline(self, y: float, colour: str = "#888", dash: str = "2 3") -> None:
        left, _, right, _ = self.plot_box
        yp = _fmt(self.py(y))
        self._body.append(f'<line class="marker" x1="{_fmt(left)}" y1="{yp}" '
                          f'x2="{_fmt(right)}" y2="{yp}" stroke="{colour}" '
                          f'stroke-dasharray="{dash}"/>')

    # -- output
    def _axes(self) -> list[str]:
        left, top, right, bottom = self.plot_box
        out = [f'<rect x="{_fmt(left)}" y="{_fmt(top)}" width="{_fmt(right - left)}" '
               f'height="{_fmt(bottom - top)}" fill="#fff" stroke="#999"/>']
        for x in nice_ticks(*self.x_range, count=8):
            xp = _fmt(self.px(x))
            out.append(f'<line x1="{xp}" y1="{_fmt(top)}" x2="{xp}" y2="{_fmt(bottom)}" '
                       f'stroke="#eee"/>')
            out.append(f'<text x="{xp}" y="{_fmt(bottom + 14)}" font-size="10" '
                       f'text-anchor="middle">{_label(x)}</text>')
        for y in nice_ticks(*self.y_range, count=5):
            yp = _fmt(self.py(y))
            out.append(f'<line x1="{_fmt(left)}" y1="{yp}" x2="{_fmt(right)}" y2="{yp}" '
                       f'stroke="#eee"/>')
            out.append(f'<text x="{_fmt(left - 4)}" y="{_fmt(self.py(y) + 3)}" font-size="10" '
                       f'text-anchor="end">{_label(y)}</text>')
        out.append(f'<text x="{_fmt((left + right) / 2)}" y="{self.height - 6}" '
                   f'font-size="11" text-anchor="middle">{escape(self.x_label)}</text>')
        cy = _fmt((top + bottom) / 2)
        out.append(f'<text x="12" y="{cy}" font-size="11" text-anchor="middle" '
                   f'transform="rotate(-90 12 {cy})">{escape(self.y_label)}</text>')
        return out

    def _legend_svg(self) -> list[str]:
        """Legend entries in one row in the top margin, right-aligned."""
        out = []
        x = self.plot_box[2]
        for label, colour in reversed(self._legend):
            x -= 6.0 * len(label) + 22
            out.append(f'<rect class="legend" x="{_fmt(x)}" y="6" width="10" height="8" '
                       f'fill="{colour}"/>')
            out.append(f'<text x="{_fmt(x + 14)}" y="14" font-size="10">{escape(label)}</text>')
        return out

    def to_svg(self) -> str:
        """The chart as one ``<svg>`` element; data clipped to the plot area."""
        left, top, right, bottom = self.plot_box
        clip = f"clip{next(_CLIP_IDS)}"
        parts = [f'<svg xmlns="{SVG_NS}" width="{self.width}" height="{self.height}" '
                 f'viewBox="0 0 {self.width} {self.height}" font-family="sans-serif" '
                 f'role="img" aria-label={quoteattr(self.title or "chart")}>',
                 f"<title>{escape(self.title or 'chart')}</title>",
                 f'<defs><clipPath id="{clip}"><rect x="{_fmt(left)}" y="{_fmt(top)}" '
                 f'width="{_fmt(right - left)}" height="{_fmt(bottom - top)}"/>'
                 f'</clipPath></defs>',
                 *self._axes(), f'<g clip-path="url(#{clip})">', *self._body, "</g>",
                 *self._overlay, *self._legend_svg(), "</svg>"]
        return "\n".join(parts)
