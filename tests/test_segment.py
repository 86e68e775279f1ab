"""A slide's store: chunked labels and probability equal the whole-image pass; it resumes and scatters exactly."""

import numpy as np
import pytest
import torch
import zarr
from scipy import ndimage

from synthetic import blob_slide as slide
from synthetic import tiny_unet
from test_instances import same_partition
from tileunet import ome, postprocess, predict, segment
from tileunet.errors import InputError
from tileunet.model import UNet
from tileunet.ome import read_prediction
from tileunet.postprocess import PostProcessing
from tileunet.tiling import bands, grid_of


@pytest.fixture(scope="module")
def model():
    return tiny_unet()


def components(threshold=0.5, min_size=0):
    return PostProcessing("components", threshold, min_size)


def run(model, image, tmp_path, name="out", threshold=0.5, **kw):
    out = tmp_path / f"{name}.ome.zarr"
    kw = {"tile": 28, "batch_size": 2, "pp": components(threshold), "pyramid_levels": 3, "progress": False, **kw}
    n = segment.predict_to_ome_zarr(model, image, out, tmp_path / f".{name}.work", **kw)
    return out, n


@pytest.fixture(scope="module")
def stack():
    return slide((2, 61, 45), seed=3)


@pytest.fixture(scope="module")
def threshold(model, stack):
    return float(np.median(predict.predict_image(model, stack[0])))


@pytest.mark.parametrize("dtype, atol", [("float16", 1e-3), ("uint8", 0.5 / 255 + 1e-6)])
def test_store_holds_the_probability_and_whole_image_labels(model, stack, threshold, tmp_path, dtype, atol):
    out, n = run(model, stack, tmp_path, threshold=threshold, probability_dtype=dtype)
    prob, labels = read_prediction(out)
    assert prob.dtype == np.float32 and labels.dtype == np.int32 and prob.shape == labels.shape == stack.shape
    ref = np.stack([predict.predict_image(model, p) for p in stack])
    np.testing.assert_allclose(prob, ref, atol=atol, rtol=0)
    for p in range(2):  # one id per cell whatever the chunks: the stored mask labelled whole
        assert same_partition(labels[p], ndimage.label(prob[p] > threshold)[0])
    assert n == labels.max() == len(np.unique(labels)) - 1 > 2
    assert not (tmp_path / ".out.work").exists()


def test_store_opens_with_ome_zarr_reader(model, stack, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader
    out, _ = run(model, stack, tmp_path)
    nodes = list(Reader(parse_url(str(out)))())
    image, labels = nodes[0], [n for n in nodes if n.load(Label)][0]
    assert image.load(Multiscales) and [a.shape for a in image.data] == [(2, 61, 45), (2, 31, 23), (2, 16, 12)]
    assert np.array_equal(np.asarray(labels.data[1]), np.asarray(labels.data[0])[:, ::2, ::2])
    meta = zarr.open_group(out, mode="r").attrs["ome"]
    assert meta["version"] == "0.5" and [a["name"] for a in meta["multiscales"][0]["axes"]] == ["t", "y", "x"]


def test_killed_run_resumes_and_equals_an_uninterrupted_one(model, stack, threshold, tmp_path, monkeypatch):
    whole, _ = run(model, stack, tmp_path, "whole", threshold=threshold)
    forward, calls = predict._forward, []

    def dying(*args, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        return forward(*args, **kw)

    monkeypatch.setattr(predict, "_forward", dying)
    with pytest.raises(KeyboardInterrupt):
        run(model, stack, tmp_path, "resumed", threshold=threshold)
    assert not (tmp_path / "resumed.ome.zarr").exists()
    done = len(list((tmp_path / ".resumed.work" / segment.DONE).iterdir()))
    assert done == 3 * 2  # three batches of two chunks finished before the kill
    calls.clear()
    monkeypatch.setattr(predict, "_forward", lambda *a, **k: (calls.append(1), forward(*a, **k))[1])
    resumed, _ = run(model, stack, tmp_path, "resumed", threshold=threshold)
    assert len(calls) == 3  # 2 planes x 3 x 2 chunks = 12 = 6 batches; 3 were done
    a, b = zarr.open_group(whole, mode="r"), zarr.open_group(resumed, mode="r")
    for path in ("0", "1", "2", "labels/cells/0", "labels/cells/2"):
        np.testing.assert_array_equal(a[path][...], b[path][...])


def test_bands_of_chunk_rows_equal_the_one_part_run(model, stack, threshold, tmp_path):
    """Scatter-gather: three jobs over bands of chunk rows, then one finalise."""
    one, _ = run(model, stack, tmp_path, "one", threshold=threshold)
    work = tmp_path / ".parts.work"
    segment.prepare(model, stack, work, 28)
    n_rows = grid_of(stack.shape, 28)[1]
    for band in bands(n_rows, 3):
        segment.prepare(model, stack, work, 28)  # every part job finds the same work store
        segment.predict_rows(model, stack, work, band, batch_size=2, progress=False)
    segment.finalise(work, components(threshold), progress=False)
    parts = segment.publish(work, tmp_path / "parts.ome.zarr")
    for path in ("0", "2", "labels/cells/0"):
        np.testing.assert_array_equal(zarr.open_group(one)[path][...], zarr.open_group(parts)[path][...])


def test_distributed_scheduler_gives_the_local_result(model, stack, threshold, tmp_path):
    """predict.scheduler_address: tasks load the model and open the slide on the workers."""
    distributed = pytest.importorskip("distributed")
    import tifffile

    from tileunet.model import save_model

    local, _ = run(model, stack, tmp_path, "local", threshold=threshold)
    tifffile.imwrite(tmp_path / "s.tif", stack)
    save_model(tmp_path / "m.pt", model, model.normalization)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        remote, _ = run(segment.ModelFile(str(tmp_path / "m.pt"), "cpu"), str(tmp_path / "s.tif"), tmp_path, "remote",
                        threshold=threshold, scheduler_address=c.scheduler_address)
    for path in ("0", "labels/cells/0"):
        np.testing.assert_array_equal(zarr.open_group(local)[path][...], zarr.open_group(remote)[path][...])


def test_finalise_refuses_missing_chunks(model, stack, tmp_path):
    work = tmp_path / "w"
    segment.prepare(model, stack, work, 28)
    segment.predict_rows(model, stack, work, (0, 1), progress=False)
    with pytest.raises(ValueError, match="not predicted yet"):
        segment.finalise(work, components())


def test_work_of_another_model_is_discarded(model, stack, tmp_path):
    work = tmp_path / "w"
    segment.prepare(model, stack, work, 28)
    segment.predict_rows(model, stack, work, (0, 1), progress=False)
    segment.prepare(tiny_unet(seed=1), stack, work, 28)
    assert not list((work / segment.DONE).iterdir())


@pytest.mark.parametrize("image, problem", [
    (np.zeros((2, 2, 8, 8), np.float32), "shape"),
    (np.zeros((8, 8), np.complex64), "dtype"),
])
def test_bad_input_is_refused_and_nothing_written(model, tmp_path, image, problem):
    with pytest.raises(InputError, match=problem):
        run(model, image, tmp_path)
    assert not list(tmp_path.iterdir())


def test_bad_tile_writes_nothing(model, stack, tmp_path):
    with pytest.raises(ValueError, match="predict.tile"):
        run(model, stack, tmp_path, tile=30)
    assert not list(tmp_path.iterdir())


def _run_predict_script(run_script, tmp_path, cfg, step, output, work, part=None):
    from types import SimpleNamespace

    log = tmp_path / f"{step}{part}.log"
    run_script("predict.py", input=SimpleNamespace(model=str(tmp_path / "model.pt"), image=str(tmp_path / "s.ome.tif")),
               output=[str(output)], params=SimpleNamespace(cfg=cfg, work=str(work), step=step, channels=None, level=0),
               wildcards=SimpleNamespace(part=part), threads=1, log=[str(log)])
    return log.read_text()

def test_script_predicts_an_ome_tiff_stack_in_one_job_or_scattered(model, stack, threshold, tmp_path, run_script):
    import tifffile

    from tileunet.model import save_model

    tifffile.imwrite(tmp_path / "s.ome.tif", stack, ome=True, metadata={"axes": "ZYX"})
    save_model(tmp_path / "model.pt", model, model.normalization)
    cfg = {"device": "cpu", "tile": 28, "batch_size": 2, "instances": "components", "threshold": threshold,
           "min_size": 0, "seed_threshold": None, "seed_erosion": None, "min_seed_size": None,
           "max_object_size": 64, "tta": False, "amp": False, "probability_dtype": "float16", "pyramid_levels": 2,
           "parts": 1, "scheduler_address": ""}
    with pytest.raises(InputError, match="model.pt: holds no post-processing.*Fix: set predict.instances"):
        _run_predict_script(run_script, tmp_path, {**cfg, "instances": None}, "all", tmp_path / "s.ome.zarr", tmp_path / ".w")
    assert not (tmp_path / "s.ome.zarr").exists() and not (tmp_path / ".w").exists()
    log = _run_predict_script(run_script, tmp_path, cfg, "all", tmp_path / "s.ome.zarr", tmp_path / ".w")
    prob, labels = read_prediction(tmp_path / "s.ome.zarr")
    np.testing.assert_allclose(prob[1], predict.predict_image(model, stack[1]), atol=1e-3, rtol=0)
    assert zarr.open_group(tmp_path / "s.ome.zarr").attrs["ome"]["multiscales"][0]["axes"][0]["name"] == "z"
    assert "predict: 100%" in log and "instances" in log and not (tmp_path / ".w").exists()

    # scatter-gather: prepare, three bands as separate jobs (in any order), gather
    cfg3 = {**cfg, "parts": 3}
    _run_predict_script(run_script, tmp_path, cfg3, "prepare", tmp_path / "m", tmp_path / ".w3")
    for part in (2, 0, 1):
        _run_predict_script(run_script, tmp_path, cfg3, "part", tmp_path / "m", tmp_path / ".w3", part=part)
    _run_predict_script(run_script, tmp_path, cfg3, "gather", tmp_path / "s3.ome.zarr", tmp_path / ".w3")
    one, three = zarr.open_group(tmp_path / "s.ome.zarr"), zarr.open_group(tmp_path / "s3.ome.zarr")
    for level in ("0", "1", "labels/cells/0", "labels/cells/1"):
        assert np.array_equal(one[level][...], three[level][...]), level


# --- instances, classes and test-time augmentation ------------------------------------------------

def test_test_time_augmentation_is_tiled_exactly_and_changes_the_result(model, stack, tmp_path):
    ref = predict.predict_image(model, stack[0], tta=True)
    plain = predict.predict_image(model, stack[0])
    assert np.abs(ref - plain).max() > 1e-3  # the 8 turned copies do see something else
    out, _ = run(model, stack, tmp_path, tta=True)
    prob, _ = read_prediction(out)
    np.testing.assert_allclose(prob[0], ref, atol=1e-3, rtol=0)
    assert zarr.open_group(out, mode="r").attrs["tileunet"]["key"]["tta"] is True


def test_watershed_store_equals_the_whole_plane_extraction_of_its_probability(model, stack, threshold, tmp_path):
    pp = PostProcessing("watershed", threshold, 3, seed_threshold=min(0.99, threshold + 0.15), seed_erosion=1,
                        min_seed_size=2)
    out, n = run(model, stack, tmp_path, pp=pp, halo=64)
    prob, labels = read_prediction(out)
    ref = [postprocess.extract(p, None, pp) for p in prob]
    assert np.array_equal(labels[0], ref[0])  # ids in anchor order, exactly
    assert same_partition(labels[1], ref[1]) and n == ref[0].max() + ref[1].max() > 4
    attrs = zarr.open_group(out, mode="r").attrs["tileunet"]
    assert attrs["postprocessing"] == pp.as_dict() and attrs["halo"] == 64 and attrs["instances_beyond_halo"] == 0


def test_border_class_model_seeds_the_watershed_with_its_interior(stack, tmp_path):
    torch.manual_seed(0)
    model = UNet(depth=3, base_channels=4, n_classes=3, dropout=0.0).eval()
    model.normalization = {"method": "percentile", "low": 1.0, "high": 99.8}
    maps = predict.predict_maps(model, stack[0])
    assert maps.shape == (2,) + stack.shape[1:] and (maps[1] <= maps[0] + 1e-6).all()
    pp = PostProcessing("watershed", float(np.median(maps[0])), 0, seed_threshold=float(np.median(maps[1])),
                        seed_erosion=0, min_seed_size=1)
    work = tmp_path / "w"
    segment.prepare(model, stack, work, 28)
    segment.predict_rows(model, stack, work, batch_size=2, progress=False)
    seeds = ome.decode_probability(zarr.open_array(work / segment.SCRATCH / "seeds")[...])
    np.testing.assert_allclose(seeds[0], maps[1], atol=1e-3, rtol=0)
    segment.finalise(work, pp, halo=64, progress=False)
    out = segment.publish(work, tmp_path / "b.ome.zarr")
    prob, labels = read_prediction(out)
    np.testing.assert_allclose(prob[0], maps[0], atol=1e-3, rtol=0)
    assert np.array_equal(labels[0], postprocess.extract(prob[0], seeds[0], pp))


def test_nan_in_a_slide_is_refused_naming_the_slide_and_nothing_is_published(model, tmp_path):
    image = slide((61, 45)).astype(np.float32)
    image[10:30, 5:25] = np.nan  # seen by the intensity sample: refused before any chunk
    with pytest.raises(InputError, match=r"s.tif: has NaN or infinite pixels \(planes \[0\]\).*Fix: replace"):
        run(model, image, tmp_path, source="s.tif 1 2")
    one = slide((61, 45)).astype(np.float32)
    one[37, 41] = np.inf  # one pixel, not in the strided sample: refused by the chunk that reads it
    assert np.isfinite(predict.plane_ranges(model, one)).all()
    with pytest.raises(InputError, match=r"s.tif: NaN or infinite pixels in the input windows of chunks"):
        run(model, one, tmp_path, "one", source="s.tif 1 2")
    assert not list(tmp_path.glob("*.ome.zarr"))


def test_multichannel_stack_store_equals_the_whole_image_pass(tmp_path):
    """A (T, C, Y, X) OME-TIFF read lazily: the stored probability is the whole-image pass, stored as float16."""
    import tifffile

    from tileunet.io import open_image
    model = tiny_unet(in_channels=3)
    raw = np.stack([np.stack([slide((61, 45), seed=3 * t + c) // (c + 1) for c in range(3)]) for t in range(2)])
    tifffile.imwrite(tmp_path / "tc.ome.tif", raw, ome=True, metadata={"axes": "TCYX"})
    view, names = open_image(tmp_path / "tc.ome.tif")
    assert view.shape == (2, 3, 61, 45) and names == ["0", "1", "2"]
    ref = np.stack([predict.predict_image(model, p) for p in raw])
    threshold = float(np.median(ref))
    out, n = run(model, view, tmp_path, threshold=threshold, probability_dtype="float16")
    prob, labels = read_prediction(out)
    assert prob.shape == labels.shape == (2, 61, 45)
    np.testing.assert_allclose(prob, ref, atol=1e-3, rtol=0)  # float16 storage
    for p in range(2):
        assert same_partition(labels[p], ndimage.label(prob[p] > threshold)[0])
    with pytest.raises(InputError, match=r"has 2 channels .*the model 3"):
        run(model, view[:, :2], tmp_path, "two")
    assert not (tmp_path / "two.ome.zarr").exists() and not (tmp_path / ".two.work").exists()
