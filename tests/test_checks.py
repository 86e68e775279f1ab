"""Bad input is refused before any work with the file, the problem and the fix; suspicious input is warned about.

The matrix calls the validation functions directly, as the workflow does before the first job
(rules/common.smk) and as the ingest and predict jobs do; tests/test_workflow.py shows a few of
these cases stopping `snakemake -n`.
"""

import logging
import os

import numpy as np
import pytest
import tifffile
import zarr

from synthetic import touching_cells
from tileunet import checks, preflight
from tileunet.config import config_layers, layered, merge
from tileunet.errors import InputError
from tileunet.ingest import ingest_sample, load_pair
from tileunet.io import open_array
from tileunet.samples import read_sample_table

CI = config_layers([os.path.join(os.path.dirname(__file__), "..", "config", "ci.yaml")])
HEADER = "sample\timage\tlabels\tsplit\n"


def tif(folder, name, data, **kw):
    tifffile.imwrite(folder / name, data, **kw)
    return folder / name


def good(folder):
    image, labels = touching_cells((64, 80), n_cells=5, seed=1)
    return tif(folder, "img.tif", image), tif(folder, "lab.tif", labels), image, labels


# --- how each case is run ---------------------------------------------------------------------


def ingest(image, labels, **kw):
    """The ingest job on one pair, writing out.zarr beside the inputs."""
    return lambda: ingest_sample(image, labels, image.parent / "out.zarr", "train", **kw)


def table(folder, rows, name="samples.tsv", channels=None):
    """The sample table and its files, as the workflow checks them before any job."""
    path = folder / name
    path.write_text(HEADER + "".join("\t".join(map(str, r)) + "\n" for r in rows))

    def run():
        preflight.check_sample_files(read_sample_table(path), path, channels=channels)
    return run


def config(*overrides):
    """The ci configuration with one file of overrides, checked and validated as common.smk does."""
    def run():
        layers = CI + [("override.yaml", o) for o in overrides]
        cfg = {}
        for _, values in layers:  # what Snakemake hands to common.smk: the layers, no defaults yet
            cfg = merge(cfg, values)
        preflight.check_config(cfg, layers)
        preflight.check_tile_sizes(layered(layers), layers)
    return run


# --- the cases: (id, build(folder) -> callable, file, problem, fix) ------------------------------


def _labels_shape(f):
    ip, _, _, labels = good(f)
    return ingest(ip, tif(f, "short_labels.tif", labels[:-1]))


def _float_labels(f):
    ip, _, _, labels = good(f)
    return ingest(ip, tif(f, "float_labels.tif", labels.astype(np.float32) + 0.5))


def _negative_labels(f):
    ip, _, _, labels = good(f)
    return ingest(ip, tif(f, "neg_labels.tif", labels.astype(np.int32) - 1))


def _nan_image(f):
    _, lp, image, labels = good(f)
    return ingest(tif(f, "nan.tif", np.where(labels > 0, np.nan, image.astype(np.float32))), lp)


def _inf_image(f):
    _, lp, image, _ = good(f)
    bad = image.astype(np.float32)
    bad[3, 4] = -np.inf
    return ingest(tif(f, "inf.tif", bad), lp)


def _truncated(f):
    ip, lp, _, _ = good(f)
    (f / "truncated.tif").write_bytes(ip.read_bytes()[:-3000])
    return ingest(f / "truncated.tif", lp)


def _header_only(f):
    ip, lp, _, _ = good(f)
    (f / "header.tif").write_bytes(ip.read_bytes()[:6])
    return ingest(f / "header.tif", lp)


def _four_d(f):
    _, _, image, labels = good(f)
    return ingest(tif(f, "four_d.tif", np.stack([np.stack([image] * 2)] * 2)),
                  tif(f, "four_d_labels.tif", np.stack([np.stack([labels] * 2)] * 2)))


def _channel_out_of_range(f):
    _, lp, image, _ = good(f)
    return ingest(tif(f, "rgb_image.tif", np.stack([image.astype(np.uint8)] * 3, axis=-1)), lp, channels=[0, 3])


def _rgb_labels(f):
    ip, _, _, labels = good(f)
    colours = np.stack([(labels * 37) % 256, (labels * 91) % 256, (labels * 13) % 256], axis=-1).astype(np.uint8)
    return ingest(ip, tif(f, "coloured_labels.tif", colours))


def _unknown_channel_name(f):
    _, lp, image, _ = good(f)
    stack = tif(f, "two_channels.ome.tif", np.stack([image, image]), ome=True,
                metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP"]}})
    return ingest(stack, lp, channels=["RFP"])


def two_cells_mask(shape=(64, 80)):
    """A 0/255 binary mask of two separate cells, as a thresholding tool exports it."""
    mask = np.zeros(shape, np.uint8)
    mask[5:20, 5:30], mask[30:50, 40:70] = 255, 255
    return mask


def _binary_refused(f):
    ip, _, _, _ = good(f)
    return ingest(ip, tif(f, "mask.tif", two_cells_mask()), binary_labels="error")


def _png(f):
    ip, _, _, _ = good(f)
    (f / "labels.png").write_bytes(b"\x89PNG\r\n")
    return ingest(ip, f / "labels.png")


def _complex(f):
    _, lp, image, _ = good(f)
    return ingest(tif(f, "complex.tif", image.astype(np.complex64)), lp)


def _zarr_group(f):
    _, lp, image, _ = good(f)
    zarr.open_group(f / "group.zarr", mode="w").create_array("image", data=image)
    return ingest(f / "group.zarr", lp)


def _not_zarr(f):
    _, lp, _, _ = good(f)
    (f / "folder.zarr").mkdir()
    return ingest(f / "folder.zarr", lp)


def _empty_array(f):
    _, lp, _, _ = good(f)
    zarr.create_array(f / "empty.zarr", shape=(0, 80), dtype="uint16")
    return ingest(f / "empty.zarr", lp)


def _missing_image(f):
    ip, lp, _, _ = good(f)
    return table(f, [("a", f / "gone.tif", lp, "train")])


def _missing_labels(f):
    ip, _, _, _ = good(f)
    return table(f, [("a", ip, f / "gone_labels.tif", "train")])


def _missing_slide(f):
    ip, lp, _, _ = good(f)
    return table(f, [("a", ip, lp, "train"), ("slide", "no/such/slide.tif", "", "predict")])


def _mixed_channels(f):
    ip, lp, _, _ = good(f)
    slide = tif(f, "slide_rgb.tif", np.zeros((600, 500, 3), np.uint8))
    return table(f, [("a", ip, lp, "train"), ("slide", slide, "", "predict")])


def _channel_missing_in_slide(f):
    ip, lp, _, _ = good(f)
    zarr.save_array(f / "slide_rgb.zarr", np.zeros((120, 100, 3), np.uint8))
    rgba = tif(f, "rgba.tif", np.zeros((64, 80, 4), np.uint8))
    return table(f, [("a", rgba, lp, "train"), ("slide", f / "slide_rgb.zarr", "", "predict")], channels=["G", "A"])


def _shape_in_table(f):
    ip, _, _, labels = good(f)
    return table(f, [("a", ip, tif(f, "wide_labels.tif", np.pad(labels, ((0, 0), (0, 3)))), "train")])


def _duplicate(f):
    ip, lp, _, _ = good(f)
    return table(f, [("a", ip, lp, "train"), ("a", ip, lp, "val")], "dup.tsv")


def _bad_name(f):
    ip, lp, _, _ = good(f)
    return table(f, [("frame 1", ip, lp, "train")], "names.tsv")


def _unknown_split(f):
    ip, lp, _, _ = good(f)
    return table(f, [("a", ip, lp, "training")], "splits.tsv")


def _no_labels(f):
    ip, _, _, _ = good(f)
    return table(f, [("a", ip, "", "test"), ("b", ip, ip, "train")], "nolabels.tsv")


def _no_train(f):
    ip, lp, _, _ = good(f)
    return table(f, [("a", ip, lp, "val")], "notrain.tsv")


def _no_column(f):
    (f / "columns.tsv").write_text("sample\timage\tsplit\na\ta.tif\ttrain\n")
    return lambda: read_sample_table(f / "columns.tsv")


def _no_table(f):
    return lambda: read_sample_table(f / "absent.tsv")


CASES = [
    ("shape mismatch", _labels_shape, "short_labels.tif", "has shape (63, 80) but its image", "same size"),
    ("float labels", _float_labels, "float_labels.tif", "non-integer label values", "integer instance ids"),
    ("negative labels", _negative_labels, "neg_labels.tif", "negative label values", ">= 0"),
    ("NaN pixels", _nan_image, "nan.tif", "NaN or infinite", "replace them"),
    ("infinite pixels", _inf_image, "inf.tif", "1 NaN or infinite", "replace them"),
    ("truncated TIFF", _truncated, "truncated.tif", "unreadable pixel data", "re-export"),
    ("TIFF cut in its header", _header_only, "header.tif", "cannot be read as TIFF", "re-export"),
    ("4D image", _four_d, "four_d.tif", "tileunet takes 2D", "one Z or T stack"),
    ("channel index out of range", _channel_out_of_range, "rgb_image.tif", "has no channel 3: its 3 channel(s) are "
     "0 'R', 1 'G', 2 'B'", "set ingest.channels to indices 0..2"),
    ("RGB label rendering", _rgb_labels, "coloured_labels.tif", "where one channel is needed", "one id per cell"),
    ("unknown channel name", _unknown_channel_name, "two_channels.ome.tif", "has no channel 'RFP': its 2 channel(s) "
     "are 0 'DAPI', 1 'GFP'", "or to these names"),
    ("binary mask refused", _binary_refused, "mask.tif", "binary mask", "ingest.binary_labels"),
    ("unsupported type", _png, "labels.png", "unsupported type '.png'", "TIFF"),
    ("complex pixels", _complex, "complex.tif", "not a number type", "integer or floating-point"),
    ("Zarr group without 0", _zarr_group, "group.zarr", "without an array '0'", "store.zarr/image"),
    ("folder that is no Zarr", _not_zarr, "folder.zarr", "cannot be opened as Zarr", "Zarr array"),
    ("empty array", _empty_array, "empty.zarr", "has shape (0, 80)", "export"),
    ("missing image", _missing_image, "gone.tif", "does not exist (image of sample 'a'", "correct the path"),
    ("missing labels", _missing_labels, "gone_labels.tif", "does not exist (labels of sample 'a'", "create the file"),
    ("missing slide", _missing_slide, "no/such/slide.tif", "relative paths start at the working directory",
     "correct the path"),
    ("channel counts differ in the table", _mixed_channels, "slide_rgb.tif", "has 3 channel(s) ['R', 'G', 'B'], but",
     "give every image of the sample table the same channels"),
    ("channel missing in a slide", _channel_missing_in_slide, "slide_rgb.zarr", "has no channel 'A'",
     "set ingest.channels"),
    ("shape mismatch in the table", _shape_in_table, "wide_labels.tif", "has shape (64, 83)", "same size"),
    ("duplicate sample", _duplicate, "dup.tsv (line 3)", "duplicate sample name 'a'", "unique sample name"),
    ("bad sample name", _bad_name, "names.tsv (line 2)", "sample name 'frame 1'", "rename the sample"),
    ("unknown split", _unknown_split, "splits.tsv (line 2)", "split 'training'", "train, val, test or predict"),
    ("labelled split without labels", _no_labels, "nolabels.tsv (line 2)", "has no labels", "split to predict"),
    ("no training sample", _no_train, "notrain.tsv", "training split is empty", "split train"),
    ("missing column", _no_column, "columns.tsv", "lacks column(s) labels", "tab-separated header"),
    ("missing sample table", _no_table, "absent.tsv", "does not exist", "samples:"),
    ("unknown config key", lambda f: config({"train": {"optimiser": "sgd"}}), "override.yaml",
     "unknown configuration key train.optimiser", "did you mean train.optimizer"),
    ("unknown config section", lambda f: config({"trainer": {}}), "override.yaml",
     "unknown configuration key trainer", "did you mean train"),
    ("out of range", lambda f: config({"weights": {"sigma": -1}}), "override.yaml",
     "weights.sigma = -1", "Width of the border term"),
    ("wrong type", lambda f: config({"predict": {"tile": "61"}}), "override.yaml",
     "predict.tile = '61': '61' is not of type 'integer'", "set predict.tile"),
    ("train tile size", lambda f: config({"train": {"tile_size": 69}}), "override.yaml",
     "train.tile_size 69 is not a valid input edge of the depth-2", "one of [66, 68, 70, 72]"),
    ("predict tile", lambda f: config({"predict": {"tile": 61}}), "override.yaml",
     "predict.tile 61 is not an output edge of the depth-2", "one of [58, 60, 62, 64]"),
    ("predict tile under the pooling grid", lambda f: config({"model": {"depth": 5}, "train": {"tile_size": 572},
                                                              "predict": {"tile": 4}}), "override.yaml",
     "smaller than the pooling grid 16", "at least 20"),
    ("tile size of a deeper net", lambda f: config({"model": {"depth": 4}}), "ci.yaml",
     "train.tile_size 68 is not a valid input edge of the depth-4 valid-padding U-Net: some 2x2 max-pooling would "
     "see an odd size (model.depth 4 is set by override.yaml)", "set train.tile_size to one of [92, 100]"),
    ("same-padding tile", lambda f: config({"model": {"padding": "same"}, "train": {"tile_size": 64},
                                            "predict": {"tile": 61}}), "override.yaml",
     "not a positive multiple of the pooling grid 2", "set predict.tile to 60"),
    ("channel named twice", lambda f: config({"ingest": {"channels": [1, 1]}}), "override.yaml",
     "ingest.channels = [1, 1]", "set ingest.channels"),
]


@pytest.mark.parametrize("build, file, problem, fix", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_file_problem_and_fix(tmp_path, build, file, problem, fix):
    run = build(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError) as err:
        run()
    e = err.value
    assert file in e.path, e
    assert problem in e.problem, e
    assert fix in e.fix, e
    assert str(e) == f"{e.path}: {e.problem}. Fix: {e.fix}"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, no temporary left behind


def test_the_matrix_covers_at_least_the_cases_of_issue_16():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


# --- accepted: legal but suspicious input gets a warning, good input none -----------------------


def test_binary_mask_and_single_cell_are_ingested_with_json_attributes(tmp_path, caplog):
    ip, _, _, labels = good(tmp_path)
    mask = tif(tmp_path, "mask.tif", two_cells_mask())
    one = np.zeros_like(labels)
    one[10:20, 10:30] = 1
    single = tif(tmp_path, "one.tif", one)
    with caplog.at_level(logging.WARNING):
        ingest_sample(ip, mask, tmp_path / "mask.zarr", "train")
    assert "mask.tif is a binary mask" in caplog.text
    stored = zarr.open_group(tmp_path / "mask.zarr", mode="r")["labels"]
    assert stored.attrs["binary_mask_components"] is True and stored[...].max() == 2
    shape, n = ingest_sample(ip, single, tmp_path / "one.zarr", "train")
    stored = zarr.open_group(tmp_path / "one.zarr", mode="r")["labels"]
    assert (shape, n) == (labels.shape, 1) and stored.attrs["binary_mask_components"] is False
    np.testing.assert_array_equal(stored[...], one)


@pytest.mark.parametrize("labels, planes", [(np.zeros((30, 40), np.uint16), [0]),
                                            (np.stack([np.eye(40, dtype=np.uint16)[:30], np.zeros((30, 40))]), [1])])
def test_labels_without_cells_are_accepted_with_a_warning(tmp_path, caplog, labels, planes):
    image = np.random.default_rng(0).integers(0, 200, labels.shape).astype(np.uint8)
    ip, lp = tif(tmp_path, "img.tif", image), tif(tmp_path, "empty_labels.tif", labels.astype(np.uint16))
    with caplog.at_level(logging.WARNING):
        load_pair(ip, lp)
    assert f"{lp}: " in caplog.text and "no cell (all zero)" in caplog.text and "Fix:" in caplog.text
    assert checks.warn_no_cells(labels) == planes


def test_a_constant_slide_is_accepted_with_a_warning(tmp_path, caplog):
    blank = tif(tmp_path, "blank.tif", np.zeros((300, 200), np.uint16))
    with caplog.at_level(logging.WARNING):
        assert checks.warn_constant(open_array(blank), blank) == [0]
    assert f"{blank}: the image is constant" in caplog.text and "Fix: check the export" in caplog.text
    stack = np.stack([np.zeros((50, 60)), np.arange(3000.0).reshape(50, 60), np.full((50, 60), 7.0)])
    assert checks.warn_constant(stack, "stack") == [0, 2]


def test_good_input_passes_every_check_without_a_warning(tmp_path, caplog):
    ip, lp, image, labels = good(tmp_path)
    stack = tif(tmp_path, "stack.ome.tif", np.stack([image, image]), ome=True, metadata={"axes": "TYX"})
    plain = tif(tmp_path, "plain.tif", np.stack([image, image]))  # tifffile writes two planes as a stack
    with caplog.at_level(logging.WARNING):
        table(tmp_path, [("a", ip, lp, "train"), ("s", stack, "", "predict"), ("p", plain, "", "predict")])()
        ingest_sample(ip, lp, tmp_path / "a.zarr", "train")
        checks.warn_constant(open_array(stack), stack)
        for _, values in CI:
            preflight.check_config(values, CI)
        preflight.check_tile_sizes(layered(CI), CI)
    assert caplog.text == ""


def test_files_a_rule_writes_are_left_to_the_job(tmp_path):
    rows = [("a", "resources/demo/a.tif", "resources/demo/a_labels.tif", "train")]
    check = table(tmp_path, rows)
    with pytest.raises(InputError, match="does not exist"):
        check()
    preflight.check_sample_files(read_sample_table(tmp_path / "samples.tsv"), produced=lambda p: p.startswith("resources/"))
