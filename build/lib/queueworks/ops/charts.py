"""Small server-side SVG charts: no JavaScript library, no CDN.

A chart is as wide as its container (``width: 100%``): the SVG's user
coordinates are stretched horizontally (``preserveAspectRatio="none"``) and
every line keeps its width (``vector-effect: non-scaling-stroke``).  Text
stays in HTML around the SVG, where stretching cannot distort it.
"""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

# User units per bucket and the plot's height in user units.
SLOT = 10
PLOT_HEIGHT = 100


def activity_svg(*, total: list[int], failed: list[int] | None = None, label: str = "",
                 height_px: int = 72, span_text: str = "last hour", unit: str = "/min") -> SafeString:
    """Finished tasks per bucket as a filled step area (oldest left), failures as red bars.

    A step area reads as a time series even when only one bucket is busy;
    the peak and the time span are printed under the plot.
    """
    failed = failed or [0] * len(total)
    buckets = max(len(total), 1)
    width = buckets * SLOT
    peak = max([*total, *failed, 1])
    scale = (PLOT_HEIGHT - 4) / peak

    def y(value: float) -> str:
        return f"{PLOT_HEIGHT - value * scale:.1f}"

    points = [f"0,{PLOT_HEIGHT}"]
    for index, value in enumerate(total):
        points += [f"{index * SLOT},{y(value)}", f"{(index + 1) * SLOT},{y(value)}"]
    points.append(f"{width},{PLOT_HEIGHT}")
    area = " ".join(points)
    line = " ".join(points[1:-1])
    fail_bars = format_html_join(
        "", '<rect class="fail" x="{}" y="{}" width="{}" height="{}"></rect>',
        ((index * SLOT + 1, y(value), SLOT - 2, f"{value * scale:.1f}")
         for index, value in enumerate(failed) if value),
    )
    return format_html(
        '<figure class="chart" style="--chart-height:{hpx}px">'
        '<svg viewBox="0 0 {w} {h}" preserveAspectRatio="none" role="img" aria-label="{label}">'
        '<title>{label}</title>'
        '<line class="grid" x1="0" y1="{mid}" x2="{w}" y2="{mid}"></line>{ticks}'
        '<polygon class="area" points="{area}"></polygon>'
        '<polyline class="line" points="{line}"></polyline>{fails}'
        '<line class="axis" x1="0" y1="{h}" x2="{w}" y2="{h}"></line></svg>'
        '<figcaption><span>{span}</span><span>peak {peak}{unit}</span><span>now</span></figcaption>'
        '</figure>',
        ticks=format_html_join("", '<line class="grid" x1="{0}" y1="0" x2="{0}" y2="{1}"></line>',
                               ((width * quarter // 4, PLOT_HEIGHT) for quarter in (1, 2, 3))),
        hpx=height_px, w=width, h=PLOT_HEIGHT, mid=PLOT_HEIGHT / 2, label=label, area=area,
        line=line, fails=fail_bars, span=span_text, peak=peak, unit=unit,
    )
