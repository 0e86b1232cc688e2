"""Tiny server-side SVG charts: no JavaScript library, no CDN."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString


def activity_svg(*, total: list[int], failed: list[int], width: int = 300, height: int = 56,
                 label: str = "") -> SafeString:
    """One bar per minute (oldest left): all finished tasks grey, failures red."""
    buckets = max(len(total), 1)
    peak = max([*total, *failed, 1])
    bar = width / buckets
    scale = (height - 12) / peak

    def bars(values, css):
        return format_html_join(
            "", '<rect class="{}" x="{}" y="{}" width="{}" height="{}"></rect>',
            ((css, f"{i * bar:.1f}", f"{height - v * scale:.1f}", f"{max(bar - 1, 1):.1f}",
              f"{v * scale:.1f}")
             for i, v in enumerate(values) if v),
        )

    return format_html(
        '<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="{label}"><title>{label}</title>'
        '<line class="axis" x1="0" y1="{h}" x2="{w}" y2="{h}"></line>{t}{f}'
        '<text class="peak" x="2" y="10">max {peak}/min</text></svg>',
        w=width, h=height, label=label, t=bars(total, "ok"), f=bars(failed, "fail"), peak=peak,
    )
