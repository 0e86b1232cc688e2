"""The throttles' file cache: entries rewritten in place, under a lock."""

import hashlib
import multiprocessing
import os
import time

import pytest

from queueworks.core.file_cache import InPlaceFileCache


@pytest.fixture
def cache(tmp_path):
    return InPlaceFileCache(str(tmp_path / "entries"), {"OPTIONS": {"MAX_ENTRIES": 50}})


def test_get_set_add_touch_delete(cache):
    assert cache.get("k", "none") == "none" and not cache.has_key("k")
    cache.set("k", [1.0, 2.0], timeout=60)
    assert cache.get("k") == [1.0, 2.0] and cache.has_key("k")
    cache.set("k", [3.0], timeout=60)  # shorter than before: the tail is cut off
    assert cache.get("k") == [3.0]
    assert cache.add("k", "other") is False and cache.get("k") == [3.0]
    assert cache.add("fresh", "first", timeout=60) is True and cache.get("fresh") == "first"
    assert cache.touch("k", timeout=120) is True and cache.get("k") == [3.0]
    assert cache.touch("missing") is False
    assert cache.delete("k") is True and cache.get("k") is None
    cache.clear()
    assert cache.get("fresh") is None


def test_expired_entries_are_missing_and_can_be_added_again(cache):
    cache.set("k", "old", timeout=0.05)
    time.sleep(0.1)
    assert cache.get("k") is None and not cache.has_key("k")
    assert cache.touch("k") is False
    assert cache.add("k", "new", timeout=60) is True and cache.get("k") == "new"


def test_an_entry_is_rewritten_in_place_not_replaced(cache):
    """A rename over the entry (or truncating it to zero) makes ext4 flush it to disk."""
    cache.set("k", "x" * 5000, timeout=60)
    path = cache._key_to_file("k")
    inode = os.stat(path).st_ino
    for length in (10, 9000, 1):
        cache.set("k", "y" * length, timeout=60)
        assert os.stat(path).st_ino == inode
    assert cache.get("k") == "y"


def test_the_directory_is_listed_only_when_an_entry_is_created(cache, monkeypatch):
    cache.set("k", 1)
    culls = []
    monkeypatch.setattr(cache, "_cull", lambda: culls.append(1))
    for _ in range(5):
        cache.set("k", 2)
    assert culls == []
    cache.set("new", 3)
    assert culls == [1]


def _add_once(location, barrier, results):
    cache = InPlaceFileCache(location, {})
    barrier.wait()
    results.put(cache.add("lock", os.getpid(), timeout=60))


def test_add_has_exactly_one_winner_across_processes(tmp_path):
    location = str(tmp_path / "entries")
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    processes = [context.Process(target=_add_once, args=(location, barrier, results))
                 for _ in range(6)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(30)
    assert sorted(outcomes) == [False] * 5 + [True]


def _write_and_read(location, rounds, errors):
    cache = InPlaceFileCache(location, {})
    for i in range(rounds):
        payload = os.urandom(1000 + (i * 7919) % 60000)  # incompressible, many pages
        cache.set("shared", (hashlib.sha256(payload).digest(), payload), timeout=60)
        try:
            digest, seen = cache.get("shared")
            consistent = hashlib.sha256(seen).digest() == digest
        except Exception as exc:  # noqa: BLE001 - a torn entry does not even decode
            consistent, seen = False, exc
        if not consistent:
            errors.put(repr(seen)[:80])


def test_readers_never_see_half_a_write(tmp_path):
    location = str(tmp_path / "entries")
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    processes = [context.Process(target=_write_and_read, args=(location, 300, errors))
                 for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert errors.empty()
    assert all(process.exitcode == 0 for process in processes)
