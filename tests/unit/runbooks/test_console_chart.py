"""The Queues chart's geometry (runbooks/console/chart.py): pure, no services."""

from __future__ import annotations

from runbooks.console import chart

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC, a minute boundary


def test_a_gap_in_the_samples_breaks_the_line_and_unknown_values_too() -> None:
    points: list[chart.Point] = [(T0 + 60 * m, 1.0) for m in range(5)]
    points += [(T0 + 60 * m, 2.0) for m in range(10, 13)]  # five minutes nobody sampled
    points += [(T0 + 60 * 13, None), (T0 + 60 * 14, 3.0)]  # an unknown value, then one alone
    drawn = chart.chart("c", "t", [("q", points)], T0, T0 + 900, chart.count, chart.COUNT_STEPS)
    [line] = drawn.lines
    assert [len(p.split()) for p in line.polylines] == [5, 3]
    assert len(line.dots) == 1 and line.last == "3"


def test_a_day_is_thinned_keeping_each_slices_highest_value() -> None:
    points: list[chart.Point] = [(T0 + 60 * m, 0.0) for m in range(1440)]
    points[700] = (points[700][0], 97.0)  # one spike in a quiet day
    drawn = chart.chart("c", "t", [("q", points)], T0, T0 + 86_400, chart.count, chart.COUNT_STEPS)
    [line] = drawn.lines
    [polyline] = line.polylines  # thinned slices are joined: no false gap
    coords = [tuple(map(float, p.split(","))) for p in polyline.split()]
    assert len(coords) <= chart.MOST
    assert [t.label for t in drawn.y_ticks] == ["0", "50", "100"]  # round, above the spike
    spike = drawn.bottom - 97 / 100 * (drawn.bottom - drawn.top)
    assert min(y for _, y in coords) == round(spike, 1)  # the spike survives the thinning
    assert drawn.y_ticks[-1].at == drawn.top and drawn.y_ticks[0].at == drawn.bottom


def test_axes_read_as_people_read_them() -> None:
    ages: list[chart.Point] = [(T0 + 60 * m, 90.0 * m) for m in range(60)]
    drawn = chart.chart("c", "t", [("q", ages)], T0, T0 + 3600, chart.duration, chart.AGE_STEPS)
    labels = [t.label for t in drawn.y_ticks]
    assert labels[0] == "0 s" and labels[-1].endswith(" h")  # 88.5 min: the axis ends at 1.5 h
    assert [t.label for t in drawn.x_ticks] == [
        "08:00",
        "08:10",
        "08:20",
        "08:30",
        "08:40",
        "08:50",
        "09:00",
    ]
    assert chart.duration(45) == "45 s" and chart.duration(720) == "12 min"
    assert chart.duration(5400) == "1.5 h" and chart.duration(2 * 86_400) == "2 d"
    empty = chart.chart("c", "t", [("q", [])], T0, T0 + 3600, chart.count, chart.COUNT_STEPS)
    assert empty.lines[0].polylines == [] and empty.lines[0].last == "-"
