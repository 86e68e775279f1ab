"""Pictures for the Snakemake report, one module per stage (matplotlib, Agg backend)."""

import numpy as np


def grey(image, low=0.5, high=99.5):
    """An image scaled for display: its ``low``..``high`` percentiles -> 0..1, clipped; float32 (Y, X).

    Robust to the intensity normalisation chosen in the config, which need
    not put the image in [0, 1].
    """
    image = np.nan_to_num(np.asarray(image, dtype=np.float32))
    lo, hi = np.percentile(image, [low, high]) if image.size else (0.0, 1.0)
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
