"""Pictures of runs: training curves, confusion matrices, prediction grids, the HTML report.

Every module draws with matplotlib's Agg backend (no display needed: servers, CI) and returns
figures or PIL images; writing them is left to the caller (``finegrain.viz.png``).
"""
