"""API tokens for ``Authorization: Token <key>``: stored as a hash
(django-rest-knox), each with a name and an expiry, several per user,
revocable; DRF's clear-text authtoken keys are converted (docs/task-api.md)."""
