"""Peak memory of a block of work, on a GPU or a CPU: one meter for the finetunes, the
searches and bench/ (the peers' side of a benchmark imports this file alone: torch only)."""

from __future__ import annotations

import os
import resource
import threading

import torch


class PeakMemory:
    """Peak memory growth over a block: CUDA's allocator peak on a GPU; on the CPU the process's
    resident set sampled every 5 ms, and where the block set a new lifetime peak (ru_maxrss
    grew) that peak too, so a spike between two samples is not missed. Earlier work in the
    process does not count. `peak_bytes`, `peak_mb` after the block."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.peak_bytes = 0

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = _rss_bytes()
            self._maxrss_before = _maxrss_bytes()
            self._peak = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _rss_bytes())
            if _maxrss_bytes() > self._maxrss_before:  # a new lifetime peak was set inside the block
                peak = max(peak, _maxrss_bytes())
            peak -= self._base
        self.peak_bytes = max(0, int(peak))
        return False


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return _maxrss_bytes()


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
