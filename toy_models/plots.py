"""The chapters' figure conventions, in one place.

A heatmap's colour limits come from the data it shows (symmetric around 0 for signed
values, so that white means 0), its colourbar says what the colour measures, and axes
that count layers, heads or positions carry integer ticks only.
"""

from matplotlib.axes import Axes
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator
from torch import Tensor


def symmetric_limits(values: Tensor, centre: float = 0.0) -> tuple[float, float]:
    """(centre - m, centre + m), with m the largest distance of `values` from `centre`: the
    colour limits of a signed map, white at `centre`."""
    largest = (values - centre).abs().max().item()
    return centre - largest, centre + largest


def signed_heatmap(ax: Axes, values: Tensor, *, label: str, centre: float = 0.0) -> AxesImage:
    """Draw a matrix in red (below `centre`) and blue (above), white at `centre`, with a
    colourbar labelled `label`."""
    vmin, vmax = symmetric_limits(values, centre)
    image = ax.imshow(values.detach().numpy(), cmap="RdBu", vmin=vmin, vmax=vmax)
    ax.figure.colorbar(image, ax=ax, label=label)
    return image


def integer_ticks(ax: Axes) -> None:
    """Ticks on whole numbers only, for axes that count layers, heads or positions."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
