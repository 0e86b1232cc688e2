"""A package with a tasks module that no INSTALLED_APPS entry names (test_checks)."""
