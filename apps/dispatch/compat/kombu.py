"""kombu behaviour the bulk lane's chunked frame reader relies on.

No private name is imported; the reader (apps/dispatch/framereader.py)
relies on how kombu's event loop reads a py-amqp connection
(``kombu.transport.base.Transport._make_reader``): with
``drain_events(timeout=0)``, again and again through ``call_soon`` until a
read would block.  Only then may the reader keep read-ahead bytes in user
space.  On another kombu version the reader is not installed.
"""

from __future__ import annotations

import kombu as _kombu

from apps.dispatch.compat import version_supported

TESTED_VERSION = "5.7.0"
SUPPORTED = version_supported(
    "kombu", _kombu.__version__, TESTED_VERSION,
    "the bulk lane's chunked frame reader (py-amqp reads each frame itself)")
