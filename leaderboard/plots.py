"""Rendered sample-efficiency plots, cached by what they show.

Drawing a plot costs far more than computing its numbers, and the same plot is
asked for again and again (every visitor opens the same default task). The
cache key is a hash of the plot's content (its curves, title and format), so a
refreshed snapshot with the same numbers reuses the picture and one with new
numbers never shows a stale one; the cache holds at most ``maxsize`` pictures
and drops the least recently used. Values are bytes, which threads can share;
each render draws its own :class:`~matplotlib.figure.Figure` (see
:func:`genseg_bench.curves.curve_figure`), so no lock is held while drawing.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import asdict

from genseg_bench.curves import Curve, curve_figure, render_figure


def plot_key(curves: list[Curve], title: str, fmt: str) -> str:
    """A digest of everything the picture depends on."""
    payload = json.dumps([title, fmt, [asdict(c) for c in curves]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class PlotCache:
    """A bounded least-recently-used cache of rendered plots, keyed on content."""

    def __init__(self, maxsize: int = 64) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.renders = 0
        """How many plots were drawn (cache misses), for tests and logs."""

    def __len__(self) -> int:
        return len(self._items)

    def get(self, curves: list[Curve], title: str, fmt: str = "png") -> bytes:
        key = plot_key(curves, title, fmt)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = render_figure(curve_figure(curves, title), fmt, salt=key[:12])
        with self._lock:
            self.renders += 1
            self._items[key] = data
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return data
