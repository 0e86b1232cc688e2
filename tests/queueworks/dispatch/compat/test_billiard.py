"""Contract test: billiard's ExceptionInfo, as the lean path builds it."""

from __future__ import annotations

from queueworks.dispatch.compat.billiard import ExceptionInfo


def test_exception_info_captures_the_exception_being_handled():
    try:
        raise KeyError("limit")
    except KeyError:
        info = ExceptionInfo()
    assert info.type is KeyError
    assert "KeyError" in info.traceback
