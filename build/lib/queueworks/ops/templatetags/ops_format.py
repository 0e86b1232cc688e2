"""Formatting for /ops/'s templates."""

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def break_at_dots(dotted_name: str):
    """A dotted name that a narrow column wraps after a dot, never inside a word."""
    return mark_safe(escape(dotted_name).replace(".", ".<wbr>"))
