"""Text labels beside plotted points, placed inside the axes so they cover neither one another nor points."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.transforms import Bbox


class PointLabels:
    """Text labels beside points, placed after the data and the figure's layout.

    Each label tries a few offsets around its point and takes the first whose measured box lies inside the
    axes and overlaps no label placed before and no other point; failing that, the first inside the axes.
    A variant on two curves (the final checkpoint is δ=0 and T=1) gets one label that names both, and
    variants drawn at the same spot (a task nobody solves puts every mix at one point) share one label.
    """

    OFFSETS = (
        (4, 3),
        (4, -10),
        (-4, 3),
        (-4, -10),
        (4, 11),
        (4, -18),
        (-4, 11),
        (-4, -18),
        (0, 14),
        (0, -22),
    )

    def __init__(self, fontsize: float = 7):
        self.fontsize = fontsize
        self.items: dict[str, list] = {}
        self.marks: list[tuple[float, float, float]] = []

    def avoid(self, x: float, y: float, half: float = 10.0) -> None:
        """Keep labels off a marker drawn at (x, y) that has no label (the ★), `half` pixels each way."""
        self.marks.append((x, y, half))

    def add(self, key: str, x: float, y: float, text: str, color) -> None:
        if key in self.items:
            if text not in self.items[key][2].split(" · "):
                self.items[key][2] += f" · {text}"
            return
        self.items[key] = [x, y, text, color]

    def place(self, ax: Axes) -> None:
        """Annotate `ax`; call it last, when the figure's titles, legends and limits are set."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.transforms import Bbox

        fig = ax.get_figure()
        if not isinstance(fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(fig)  # measure text with the renderer the PNG is drawn with
        fig.draw_without_rendering()  # run the layout, so the transforms below are the final ones
        renderer = fig.canvas.get_renderer()
        groups = self._groups(ax)
        points = [Bbox.from_bounds(px - 4, py - 4, 8, 8) for px, py, *_ in groups]
        placed = [
            _square(*ax.transData.transform((x, y)), h) for x, y, h in self.marks if np.isfinite([x, y]).all()
        ]
        placed += [
            t.get_window_extent(renderer) for t in ax.texts if t.get_visible() and t.get_text().strip()
        ]
        for j, (_px, _py, x, y, text, color) in enumerate(groups):
            obstacles = placed + points[:j] + points[j + 1 :]
            placed.append(self._annotate(ax, renderer, x, y, text, color, obstacles))

    def _groups(self, ax: Axes) -> list[tuple]:
        """(display x, display y, x, y, text, colour) per spot: labels of points at one pixel merged."""
        spots: dict[tuple[int, int], list] = {}
        for x, y, text, color in self.items.values():
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            px, py = ax.transData.transform((x, y))
            spot = spots.setdefault((round(px), round(py)), [px, py, x, y, "", color])
            spot[4] = f"{spot[4]} · {text}" if spot[4] else text
        return [tuple(s) for s in spots.values()]

    def _annotate(self, ax: Axes, renderer, x, y, text, color, obstacles: list[Bbox]) -> Bbox:
        """The first offset whose box is inside the axes and clear of `obstacles`, else the first inside,
        else the first; the other tries are removed. Returns the box taken."""
        tried = []
        for dx, dy in self.OFFSETS:
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=self.fontsize,
                              color=color, ha="left" if dx > 0 else "right" if dx < 0 else "center",
                              bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.75})  # fmt: skip
            ann.set_in_layout(False)  # placed against this layout: it must not move the axes again
            box = ann.get_window_extent(renderer)
            fits = _within(box, ax.bbox)
            tried.append((ann, box, fits))
            if fits and not any(box.overlaps(o) for o in obstacles):
                break
        else:
            keep = next((t for t in tried if t[2]), tried[0])
            tried.remove(keep)
            tried.append(keep)
        for ann, _box, _fits in tried[:-1]:
            ann.remove()
        return tried[-1][1]


def _square(px: float, py: float, half: float) -> Bbox:
    from matplotlib.transforms import Bbox

    return Bbox.from_extents(px - half, py - half, px + half, py + half)


def _within(box: Bbox, outer: Bbox) -> bool:
    return outer.x0 <= box.x0 and box.x1 <= outer.x1 and outer.y0 <= box.y0 and box.y1 <= outer.y1
