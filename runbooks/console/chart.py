"""Line charts drawn on the server as SVG geometry: no script, no inline style (the CSP allows
neither); templates/_chart.html draws a :class:`Chart` with presentation attributes and the
stylesheet's classes.

A chart spans a fixed window (ending at the next minute), so a quiet hour is a flat line and an
hour the sampler did not run is a gap: a line breaks where two samples are more than
:data:`GAP` apart or a value is unknown, never bridging what nobody saw. A window with more
samples than :data:`MOST` (a day at one a minute) is drawn from the highest value of each equal
slice of it, so a spike stays.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 720, 170
STEP = 60  # seconds between samples (celery_app.ops.queue_samples.STEP)
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 10, 24  # margins for the axes' labels
GAP = 150.0  # seconds: samples further apart than this are not joined (one is taken a minute)
MOST = 360  # points a line is drawn with at most (the plot is ~640 px wide); more are thinned
COUNT_STEPS = [m * 10**e for e in range(0, 9) for m in (1, 2, 5)]
AGE_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600]
AGE_STEPS += [12 * 3600, 86_400, 2 * 86_400, 7 * 86_400]
HOUR_STEPS = [600, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600]  # x ticks: at most ~8 a chart

Point = tuple[float, float | None]  # (epoch seconds, value or None for unknown)


@dataclass(frozen=True)
class Tick:
    at: float  # pixels along the axis
    label: str


@dataclass(frozen=True)
class Line:
    """One series: its name, its CSS class, the polylines it is drawn as ("x,y x,y ..."), the
    lone points (a segment of one sample, drawn as a dot) and its last value as people read it."""

    name: str
    css: str
    polylines: list[str]
    dots: list[tuple[float, float]]
    last: str


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    lines: list[Line]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def duration(seconds: float) -> str:
    """An age or interval as people read it: 45 s, 12 min, 1.5 h, 2 d."""
    unit, size = next(
        ((u, z) for u, z in (("d", 86_400), ("h", 3_600), ("min", 60)) if seconds >= z), ("s", 1)
    )
    value = seconds / size
    whole = unit == "s" or value >= 10 or value == int(value)
    return f"{value:.0f} {unit}" if whole else f"{value:.1f} {unit}"


def count(value: float) -> str:
    return f"{value:.0f}" if value < 10_000 else f"{value / 1000:.0f}k"


def step_for(top: float, steps: Sequence[float], most: int = 4) -> float:
    """The smallest step from `steps` that covers `top` in at most `most` intervals."""
    for step in steps:
        if step * most >= top:
            return step
    return steps[-1] * math.ceil(top / (steps[-1] * most))


def thinned(points: Sequence[Point], start: float, size: float) -> list[Point]:
    """One point per `size`-second slice from `start` (`points` oldest first): the slice's
    first time, its highest known value (None when it has none)."""
    found: list[Point] = []
    slice_of = -1
    for at, value in points:
        key = int((at - start) // size)
        if key != slice_of:
            slice_of = key
            found.append((at, value))
        elif value is not None:
            high = found[-1][1]
            if high is None or value > high:
                found[-1] = (found[-1][0], value)
    return found


def segments(points: Sequence[Point], gap: float = GAP) -> list[list[tuple[float, float]]]:
    """The runs of known values whose samples are at most `gap` seconds apart."""
    runs: list[list[tuple[float, float]]] = []
    previous: float | None = None
    for at, value in points:
        if value is None:
            previous = None
            continue
        if previous is None or at - previous > gap:
            runs.append([])
        runs[-1].append((at, value))
        previous = at
    return runs


def chart(
    id: str,
    title: str,
    series: Sequence[tuple[str, Sequence[Point]]],
    start: float,
    end: float,
    label: Callable[[float], str],
    steps: Sequence[float],
) -> Chart:
    """`series` (name, points) drawn over [start, end] (epoch seconds), the y axis from 0 to a
    round value above the highest point, labelled by `label`; one CSS class per series
    (`s0`, `s1`, ...) in the order given."""
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    size = STEP * max(1, math.ceil((end - start) / STEP / MOST))  # seconds a point stands for
    drawn: list[tuple[str, list[Point], float | None]] = []  # name, points to draw, last value
    for name, points in series:
        shown = [(at, v) for at, v in points if start <= at <= end]
        last = next((v for _, v in reversed(shown) if v is not None), None)
        drawn.append((name, thinned(shown, start, size) if size > STEP else shown, last))
    highest = max((v for _, pts, _ in drawn for _, v in pts if v is not None), default=0.0)
    step = step_for(max(highest, 1.0), steps)
    y_max = step * max(1, math.ceil(highest / step))
    x_scale, y_scale = (right - left) / (end - start), (bottom - top) / y_max

    def x(at: float) -> float:
        return round(left + (at - start) * x_scale, 1)

    def y(value: float) -> float:
        return round(bottom - value * y_scale, 1)

    lines = []
    for i, (name, shown, last) in enumerate(drawn):
        runs = segments(shown, GAP + size - STEP)
        lines.append(
            Line(
                name=name,
                css=f"s{i}",
                polylines=[
                    " ".join(
                        f"{left + (at - start) * x_scale:.1f},{bottom - v * y_scale:.1f}"
                        for at, v in run
                    )
                    for run in runs
                    if len(run) > 1
                ],
                dots=[(x(run[0][0]), y(run[0][1])) for run in runs if len(run) == 1],
                last="-" if last is None else label(last),
            )
        )
    y_ticks = [Tick(y(step * k), label(step * k)) for k in range(int(y_max / step) + 1)]
    every = step_for(end - start, HOUR_STEPS, most=8)
    first = math.ceil(start / every) * every
    x_ticks = [
        Tick(x(at), dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M"))
        for at in range(int(first), int(end) + 1, int(every))
    ]
    return Chart(id, title, lines, x_ticks, y_ticks)
