"""tileunet.preflight: the checks before the first job; the bad-input matrix of tests/test_checks.py uses them too."""

import ast

import pytest

from tileunet import preflight
from tileunet.model import UNet
from tileunet.predict import plan_tiling


# --- the tile rule is plan_tiling's --------------------------------------------------------------


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_predict_tile_check_agrees_with_plan_tiling(depth, padding):
    """The workflow's torch-free check accepts exactly the tiles the prediction's plan accepts."""
    net = UNet(depth=depth, base_channels=1, padding=padding)
    for tile in range(1, 300):
        try:
            plan_tiling(net, tile)
            planned = True
        except ValueError:
            planned = False
        assert (preflight.predict_tile_problem(tile, depth, padding) is None) == planned, tile
        problem = preflight.predict_tile_problem(tile, depth, padding)
        if problem and "one of" in problem[1]:  # every suggestion is itself accepted
            for near in ast.literal_eval(problem[1].split("one of ")[1]):
                plan_tiling(net, near)
