"""Server-side SVG bar charts for the dashboard: geometry computed here, drawn by
templates/console/fleet/bar_chart.html. No JavaScript, nothing fetched from elsewhere."""
from dataclasses import dataclass

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 600, 180, 56, 22, 10


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class BarChart:
    title: str
    bars: list[Bar]
    width: int
    height: int
    left: int
    baseline: float
    top_label: str
    first_label: str
    last_label: str
    empty: bool
    center: float


def bar_chart(title: str, points, *, label=str) -> BarChart:
    """`points`: objects with `day` and `value`; `label` formats a value for axis and tooltips."""
    points = list(points)
    peak = max((point.value for point in points), default=0)
    plot_width, plot_height = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    slot = plot_width / max(len(points), 1)
    bars = []
    for index, point in enumerate(points):
        height = (point.value / peak * plot_height) if peak else 0
        bars.append(Bar(x=round(LEFT + index * slot + slot * 0.15, 1), y=round(TOP + plot_height - height, 1),
                        width=round(slot * 0.7, 1), height=round(height, 1),
                        title=f"{point.day:%b %-d}: {label(point.value)}"))
    return BarChart(title=title, bars=bars, width=WIDTH, height=HEIGHT, left=LEFT, baseline=TOP + plot_height,
                    top_label=label(peak), first_label=f"{points[0].day:%b %-d}" if points else "",
                    last_label=f"{points[-1].day:%b %-d}" if points else "", empty=peak == 0,
                    center=(LEFT + WIDTH) / 2)
