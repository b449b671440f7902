"""The notebooks' pictures: what they draw, counted from the figure."""

import matplotlib

from bertl11.plan import make_plan
from bertl11.plots import grid_picture

matplotlib.use("Agg")


def test_grid_picture_labels_every_used_core():
    plan = make_plan("e150", 12)
    figure = grid_picture(plan)
    ax = figure.axes[0]
    assert len(ax.patches) == 12 * 9
    assert sum(text.get_text().startswith("s") for text in ax.texts) == plan.batch * plan.groups
