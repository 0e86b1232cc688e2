"""Input of the failed-task search (``/ops/failures/``): every field optional,
each one checked, so bad input is named instead of ignored."""

from __future__ import annotations

from django import forms

from queueworks.conf import TOPOLOGY

MAX_TEXT = 200
MAX_LIMIT = 500


class FailureSearchForm(forms.Form):
    task = forms.CharField(required=False, max_length=MAX_TEXT, strip=True,
                           help_text="part of the task's dotted name")
    queue = forms.ChoiceField(required=False, choices=())
    error = forms.CharField(required=False, max_length=MAX_TEXT, strip=True,
                            help_text="part of the error or its traceback")
    since = forms.DateTimeField(required=False, help_text="failed at or after (YYYY-MM-DD HH:MM)")
    until = forms.DateTimeField(required=False, help_text="failed before (YYYY-MM-DD HH:MM)")
    limit = forms.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["queue"].choices = [("", "any queue")] + [
            (name, name) for name in TOPOLOGY.queue_names()]

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since >= until:
            self.add_error("until", "must be later than since")
        return cleaned

    def error_fields(self) -> dict[str, str]:
        """Field -> its first error, as the JSON answer names them."""
        return {field: errors[0] for field, errors in self.errors.items()}
