"""Text labels beside plotted points, placed so they do not sit on one another."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes


class PointLabels:
    """Text labels beside points, placed after the data so they do not sit on one another.

    Each label tries a few offsets around its point and takes the first whose box (estimated from the
    font size and text length, in points) overlaps no label placed before; a variant on two curves (the
    final checkpoint is δ=0 and T=1) gets one label that names both.
    """

    OFFSETS = ((4, 3), (4, -10), (-4, 3), (-4, -10), (4, 11), (4, -18))

    def __init__(self, fontsize: float = 7):
        self.fontsize = fontsize
        self.items: dict[str, list] = {}

    def add(self, key: str, x: float, y: float, text: str, color) -> None:
        if key in self.items:
            if text not in self.items[key][2].split(" · "):
                self.items[key][2] += f" · {text}"
            return
        self.items[key] = [x, y, text, color]

    def place(self, ax: Axes) -> None:
        ax.autoscale_view()  # the limits the labels will be drawn against
        fig = ax.get_figure()
        to_points = 72.0 / fig.dpi
        placed: list[tuple[float, float, float, float]] = []
        h = self.fontsize * 1.2
        for x, y, text, color in self.items.values():
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            px, py = ax.transData.transform((x, y)) * to_points
            w = 0.6 * self.fontsize * len(text)
            for dx, dy in self.OFFSETS:
                x0 = px + dx if dx > 0 else px + dx - w
                box = (x0, py + dy, x0 + w, py + dy + h)
                if not any(_overlap(box, other) for other in placed):
                    break
            placed.append(box)
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=self.fontsize,
                        color=color, ha="left" if dx > 0 else "right",
                        bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.75})  # fmt: skip


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
