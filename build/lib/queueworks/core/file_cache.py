"""A file cache that rewrites each entry in place under a lock.

Django's ``FileBasedCache`` writes every ``set`` to a temporary file and
renames it over the entry.  On ext4 (``auto_da_alloc``, the default) a rename
over an existing file, like a truncation to zero followed by a write, makes
the kernel flush the data before the rename completes: about 2 ms of disk
wait per write, more when the disk is busy.  The throttles write one entry per
API request, so that wait would be part of every request.

Here an entry is one file rewritten from offset 0 and then truncated to its
new (non-zero) length, which ext4 does not flush; readers take a shared
``flock`` and writers an exclusive one, so nobody reads half a write.  Expired
entries are left for the next write to replace (deleting them while another
process holds the file open would drop that process's write).  The directory
is listed for culling only when an entry is created, not on every write.
"""

from __future__ import annotations

import fcntl
import io
import os
import pickle
import time
import zlib

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache


class InPlaceFileCache(FileBasedCache):
    def _encode(self, value, timeout) -> bytes:
        expiry = self.get_backend_timeout(timeout)
        return (pickle.dumps(expiry, self.pickle_protocol)
                + zlib.compress(pickle.dumps(value, self.pickle_protocol)))

    def _read(self, fname: str) -> bytes | None:
        try:
            with open(fname, "rb") as file:
                fcntl.flock(file, fcntl.LOCK_SH)
                return file.read()
        except FileNotFoundError:
            return None

    def _live_value(self, data: bytes | None):
        """(found, value) of an entry's bytes; empty (just created) or expired: not found."""
        if not data:
            return False, None
        stream = io.BytesIO(data)
        expiry = pickle.load(stream)
        if expiry is not None and expiry < time.time():
            return False, None
        return True, pickle.loads(zlib.decompress(stream.read()))

    def get(self, key, default=None, version=None):
        found, value = self._live_value(self._read(self._key_to_file(key, version)))
        return value if found else default

    def has_key(self, key, version=None):
        data = self._read(self._key_to_file(key, version))
        if not data:
            return False
        expiry = pickle.load(io.BytesIO(data))
        return expiry is None or expiry >= time.time()

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        content = self._encode(value, timeout)
        fname = self._key_to_file(key, version)
        try:
            fd = os.open(fname, os.O_RDWR)
        except FileNotFoundError:
            self._createdir()  # the directory can be deleted at any time
            self._cull()  # only a new entry makes the cache grow
            fd = os.open(fname, os.O_RDWR | os.O_CREAT, 0o600)
        with open(fd, "r+b") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            file.write(content)
            file.truncate()  # to the new length, never to zero first (see above)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        """Set only if absent or expired; decided under the entry's lock, so
        of several processes adding at once exactly one wins."""
        fname = self._key_to_file(key, version)
        self._createdir()
        if not os.path.exists(fname):
            self._cull()
        with open(os.open(fname, os.O_RDWR | os.O_CREAT, 0o600), "r+b") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            found, _ = self._live_value(file.read())
            if found:
                return False
            file.seek(0)
            file.write(self._encode(value, timeout))
            file.truncate()
            return True

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            with open(self._key_to_file(key, version), "r+b") as file:
                fcntl.flock(file, fcntl.LOCK_EX)
                found, value = self._live_value(file.read())
                if not found:
                    return False
                file.seek(0)
                file.write(self._encode(value, timeout))
                file.truncate()
                return True
        except FileNotFoundError:
            return False
