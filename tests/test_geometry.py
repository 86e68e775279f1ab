"""tileunet.geometry: which tile edges a U-Net takes, and what it returns for them (paper section 2)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tileunet.geometry import check_input_size, input_size, margin, output_size, valid_sizes_near


def test_the_papers_tile_sizes():
    # figure 1: a 572x572 input tile gives a 388x388 output map, 92 px of context per side
    assert output_size(572) == 388 and input_size(388) == 572 and margin() == 92
    assert output_size(571) is None and input_size(389) is None


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 700), depth=st.integers(1, 5), padding=st.sampled_from(["valid", "same"]))
def test_size_helpers_are_inverse_and_refuse_odd_poolings(size, depth, padding):
    out = output_size(size, depth, padding)
    if out is None:
        with pytest.raises(ValueError, match="nearest valid sizes"):
            check_input_size(size, depth, padding)
        return
    assert size - out == 2 * margin(depth, padding)
    assert input_size(out, depth, padding) == size
    # every pooling sees an even size: the contracting path halves without remainder
    s = size
    for _ in range(depth - 1):
        s -= 4 if padding == "valid" else 0
        assert s % 2 == 0
        s //= 2



def test_invalid_tile_names_nearest_valid_sizes():
    assert valid_sizes_near(573) == [556, 572, 588, 604]
    with pytest.raises(ValueError, match=r"573.*\[556, 572, 588, 604\]"):
        check_input_size(573)
    assert check_input_size(572) == 388
