"""matplotlib without a display: one place that makes a figure and turns it into PNG or SVG bytes.

How this works: figures are bare ``matplotlib.figure.Figure`` objects (no
pyplot, so no global state and no display needed, the Agg way). SVG output is
reproducible (fixed id salt per figure, no date) and keeps text as text, so the
same data draws the same file and the file can be searched. matplotlib is
imported only here and only when a figure is made.
"""

from __future__ import annotations

import io
from typing import Any

from netlab.errors import UsageError

IMAGE_FORMATS = ("png", "svg")
DPI = 110


def new_figure(salt: str, size: tuple[float, float] = (7.0, 4.2)) -> Any:
    """A new figure; ``salt`` makes its SVG ids distinct from other figures inlined in one page.

    Raises:
        UsageError: matplotlib is not installed.
    """
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("plots need matplotlib: pip install 'matplotlib>=3.7,<4'") from None
    matplotlib.rcParams["svg.hashsalt"] = f"netlab-{salt}"
    matplotlib.rcParams["svg.fonttype"] = "none"
    return Figure(figsize=size, layout="constrained")


def figure_bytes(figure: Any, image_format: str) -> bytes:
    """The figure as PNG or SVG bytes (no date or software stamp, so output is reproducible)."""
    if image_format not in IMAGE_FORMATS:
        raise UsageError(f"cannot write a .{image_format} image: use .png or .svg")
    buffer = io.BytesIO()
    metadata = {"Date": None} if image_format == "svg" else {"Software": None}
    figure.savefig(buffer, format=image_format, dpi=DPI, metadata=metadata)
    return buffer.getvalue()
