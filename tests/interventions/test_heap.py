"""release_free_heap returns the holes that freed buffers leave between kept ones to the OS
(the prepare forward's pattern: transients freed, the KV prefix kept). In a fresh process, so
that no earlier test's heap is measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from interventions import heap
from interventions.heap import _malloc_trim

HOLES = """
import importlib.util, json, os, sys
# heap.py alone (the package would import torch): a subprocess that starts in a fraction of a second
spec = importlib.util.spec_from_file_location("heap", sys.argv[1])
heap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(heap)

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

start = rss_mb()
# 4,000 buffers of 64 KiB from malloc (under glibc's mmap threshold: they come from the heap),
# every 16th kept: 250 MB touched, 16 MB still in use, the rest free holes between the kept ones.
buffers = [bytearray(b"x" * 65536) for _ in range(4000)]
kept = buffers[::16]
del buffers
before = rss_mb()
released = heap.release_free_heap()
after = rss_mb()
assert all(b.count(b"x") == 65536 for b in kept)  # the kept buffers are intact
print(json.dumps({"start": start, "before": before, "after": after, "released": released}))
"""


@pytest.mark.skipif(_malloc_trim() is None, reason="the C library has no malloc_trim (not glibc)")
def test_the_holes_between_kept_tensors_go_back_to_the_os():
    out = subprocess.run([sys.executable, "-c", HOLES, heap.__file__], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads(out.stdout.strip().splitlines()[-1])
    held, in_use = m["before"] - m["start"], 4000 / 16 * 64 / 1024
    assert held > 150, m  # the holes are held by the process before
    assert m["released"] and m["after"] - m["start"] < in_use + 40, m  # and given back after
