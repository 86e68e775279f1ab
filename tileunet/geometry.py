"""Size arithmetic of the U-Net (paper section 2), without torch.

A valid-convolution U-Net loses a fixed margin of context per side and needs
every 2x2 max-pooling to see an even size; these functions say which tile
edges work.  :mod:`tileunet.model` re-exports them, and the workflow uses them
to refuse a bad ``train.tile_size`` or ``predict.tile`` before any job runs
(:mod:`tileunet.checks`), without importing torch.
"""


def _conv_loss(padding):
    return 4 if padding == "valid" else 0  # two 3x3 valid convolutions lose 2 px per side


def output_size(size, depth=5, padding="valid"):
    """Output edge (px) for an input edge, or None if the size is invalid.

    Valid when every 2x2 pooling sees an even size and no feature map vanishes
    (paper section 2: "select the input tile size such that all 2x2
    max-pooling operations are applied to a layer with an even x- and y-size").
    """
    loss = _conv_loss(padding)
    s = size
    for _ in range(depth - 1):
        s -= loss
        if s <= 0 or s % 2:
            return None
        s //= 2
    s -= loss
    if s <= 0:
        return None
    for _ in range(depth - 1):
        s = 2 * s - loss
        if s <= 0:
            return None
    return s


def input_size(out, depth=5, padding="valid"):
    """Input edge that gives exactly output edge ``out``, or None if none does."""
    m = margin(depth, padding)
    return out + 2 * m if output_size(out + 2 * m, depth, padding) == out else None


def margin(depth=5, padding="valid"):
    """Pixels of context lost per side by the whole network (92 at depth 5, valid)."""
    loss = _conv_loss(padding)
    # each level's double conv loses `loss` px at scale 2**level, on the way down and up
    total = loss * 2 ** (depth - 1) + sum(2 * loss * 2**lvl for lvl in range(depth - 1))
    return total // 2


def valid_sizes_near(size, depth=5, padding="valid", n=2):
    """The ``n`` valid input edges nearest to ``size`` below and above."""
    below = [s for s in range(size, max(size - 2**depth * 4 * n, 0), -1) if output_size(s, depth, padding)][:n]
    above = [s for s in range(size + 1, size + 2**depth * 4 * n) if output_size(s, depth, padding)][:n]
    return sorted(below + above)


def check_input_size(size, depth=5, padding="valid"):
    """Raise ValueError naming the nearest valid sizes if ``size`` is not a valid input edge."""
    if output_size(size, depth, padding) is None:
        raise ValueError(f"tile size {size} is not valid for a depth-{depth} {padding} U-Net "
                         f"(every 2x2 pooling needs an even size); nearest valid sizes: "
                         f"{valid_sizes_near(size, depth, padding)}")
    return output_size(size, depth, padding)
