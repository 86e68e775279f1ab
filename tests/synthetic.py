"""Small synthetic microscopy data with known geometry, made in-process (never downloaded)."""

import numpy as np
from scipy import ndimage


def touching_cells(shape=(96, 128), n_cells=8, radius=9, seed=0):
    """Clusters of disc-shaped cells that touch along straight (Voronoi) borders.

    Returns
    -------
    image : uint16 (Y, X)
        Dark cells on a bright background with a dark line where two cells touch.
    labels : int32 (Y, X)
        Instance ids 1..n (0 = background).
    """
    rng = np.random.default_rng(seed)
    centres = [rng.uniform(radius, np.array(shape) - radius)]
    while len(centres) < n_cells:
        # half the cells bud off an earlier one, so neighbours touch
        if rng.random() < 0.6:
            base = centres[rng.integers(len(centres))]
            c = base + rng.normal(0, 1, 2) / np.sqrt(2) * 1.6 * radius
        else:
            c = rng.uniform(radius, np.array(shape) - radius)
        centres.append(np.clip(c, 0, np.array(shape) - 1))
    centres = np.array(centres)
    yy, xx = np.indices(shape)
    d = np.sqrt((yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2)
    nearest = d.argmin(0)
    labels = np.where(d.min(0) <= radius, nearest + 1, 0).astype(np.int32)
    labels = np.where(np.isin(labels, np.unique(labels[labels > 0])), labels, 0)
    border = (ndimage.grey_dilation(labels, size=3) != ndimage.grey_erosion(labels, size=3)) & (labels > 0)
    image = 1000.0 - 600.0 * (labels > 0) - 200.0 * border
    image = ndimage.gaussian_filter(image, 1.0) + rng.normal(0, 20, shape)
    return np.clip(image, 0, 65535).astype(np.uint16), labels


def training_plane(seed, shape=(96, 128)):
    """(normalised image float32, labels int32, weight map float32) of touching cells, as results/data holds."""
    from tileunet.normalize import normalize_plane
    from tileunet.weights import weight_map

    image, labels = touching_cells(shape=shape, n_cells=8, seed=seed)
    return normalize_plane(image).astype(np.float32), labels, weight_map(labels)


def tiny_unet(depth=3, base=4, seed=0, n_classes=2, in_channels=1):
    """A small untrained U-Net in eval mode with the default normalisation, as model.pt would give."""
    import torch

    from tileunet.model import UNet

    torch.manual_seed(seed)
    model = UNet(in_channels, n_classes, depth, base, dropout=0.0).eval()
    model.normalization = {"method": "percentile", "low": 1.0, "high": 99.8}
    return model


def blob_slide(shape, seed=0):
    """Smooth blobs plus noise, uint16: structure for the net, not a multiple of any tile."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), (0,) * (len(shape) - 2) + (3, 3))
    return (img * 40000 + rng.normal(0, 300, shape)).clip(0, 65535).astype(np.uint16)


#: The weights config of the augmentation tests (the paper's map).
WEIGHTS_CFG = {"w0": 10.0, "sigma": 5.0, "tol": 1e-4, "border_region": "background",
               "class_balance": "inverse_frequency", "class_weights": [1.0, 1.0], "frequency_scope": "image",
               "separate_touching": True, "spacing": [1.0, 1.0], "border_term": True}


def augment_cells(shape=(64, 80), seed=0, n_cells=6):
    """(image float32, carved labels) of touching cells, as an augmentation source."""
    from tileunet.labels import separate_touching

    image, labels = touching_cells(shape, n_cells=n_cells, radius=8, seed=seed)
    return (image / 1000.0).astype(np.float32), separate_touching(labels)


def write_cell_samples(folder, splits, shape=(90, 110), n_cells=7):
    """One TIFF image / label pair of :func:`touching_cells` per sample, and the sample table.

    ``splits`` maps sample name -> split; sample i is drawn with seed i.  Returns the table's
    rows as (name, image path, label path, split) and writes them to ``folder/samples.tsv``.
    """
    import tifffile

    rows = []
    for i, (name, split) in enumerate(splits.items()):
        image, labels = touching_cells(shape, n_cells=n_cells, seed=i)
        tifffile.imwrite(folder / f"{name}.tif", image)
        tifffile.imwrite(folder / f"{name}_labels.tif", labels)
        rows.append((name, folder / f"{name}.tif", folder / f"{name}_labels.tif", split))
    write_sample_table(folder / "samples.tsv", rows)
    return rows


def write_sample_table(path, rows):
    """A sample table at ``path`` from (sample, image, labels, split) rows."""
    path.write_text("sample\timage\tlabels\tsplit\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path
