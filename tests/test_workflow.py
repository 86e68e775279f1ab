"""End-to-end runs of the workflow on tiny synthetic data, as a user runs it (subprocess)."""

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
import zarr

from synthetic import touching_cells, write_cell_samples, write_sample_table

ROOT = Path(__file__).resolve().parent.parent
SPLITS = {"a": "train", "b": "train", "c": "val", "d": "test", "e": "test"}


def snakemake(workdir, *args, samples=None, check=True, configfiles=()):
    # targets first: --configfile and --forcerun take several values each
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--configfile", str(ROOT / "config" / "ci.yaml"), *map(str, configfiles)]
    if samples:
        cmd += ["--config", f"samples={samples}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Five 2D samples and one (T, Y, X) stack to predict, as TIFF files."""
    tmp = tmp_path_factory.mktemp("data")
    rows = write_cell_samples(tmp, SPLITS)
    movie = np.stack([touching_cells((70, 80), n_cells=5, seed=10 + t)[0] for t in range(3)])
    # 0.65 µm pixels, 30 s frames: the prediction must carry them (NGFF scale and units)
    tifffile.imwrite(tmp / "movie.ome.tif", movie, ome=True,
                     metadata={"axes": "TYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65, "TimeIncrement": 30.0})
    rows.append(("movie", tmp / "movie.ome.tif", "", "predict"))
    return tmp, rows


@pytest.fixture(scope="module")
def finished_run(dataset, tmp_path_factory):
    data, rows = dataset
    work = tmp_path_factory.mktemp("run")
    table = write_sample_table(data / "samples.tsv", rows)
    snakemake(work, "all", samples=table)
    return work, table


@pytest.mark.workflow
def test_whole_workflow_writes_every_contract_output(finished_run):
    work, _ = finished_run
    r = work / "results"
    for name, split in SPLITS.items():
        g = zarr.open_group(r / "data" / f"{name}.zarr", mode="r")
        assert g["image"].dtype == np.float32 and g["labels"].dtype == np.int32
        assert g["image"].shape == g["labels"].shape == (90, 110)
        assert ("weights" in g) == (split in ("train", "val"))
    aug = zarr.open_group(r / "augmented.zarr", mode="r")
    assert set(aug.group_keys()) == {"a", "b"}
    assert aug["a"]["image"].shape[0] == 2 and aug["a"]["weights"].dtype == np.float32
    from tileunet.ensemble import Ensemble
    from tileunet.model import load_model, read_model_file
    model = load_model(r / "model" / "model.pt")
    assert model.config.depth == 2 and isinstance(model, Ensemble) and len(model.members) == 2  # ci.yaml: 2
    stored = read_model_file(r / "model" / "model.pt")
    assert stored["seeds"] == [0, 1000] and stored["postprocessing"]["chosen"] in ("components", "watershed")
    for k in (0, 1):
        member = read_model_file(r / "train" / "members" / str(k) / "model.pt")
        assert member["seed"] == 1000 * k
        # the join's search on copies and 8-pass maps replaces the members' own: they skip it
        assert member["train"]["tune"]["copies"] == 0 and not member["train"]["tune"]["tta"]
    rows = [ln.split("\t")[0] for ln in (r / "train" / "metrics.tsv").read_text().splitlines()]
    assert rows[0] == "member" and {"0", "1", "ensemble"} == set(rows[1:]) and rows[-1] == "ensemble"
    for name in ("d", "e", "movie"):
        assert (r / "predictions" / f"{name}.ome.zarr" / "zarr.json").exists()
    metrics = (r / "evaluation" / "metrics.tsv").read_text().splitlines()
    header = metrics[0].split("\t")
    assert {"sample", "iou"} <= set(header)
    assert [ln.split("\t")[0] for ln in metrics[1:]] == ["d", "e", "summary"]
    assert "<td>summary</td>" in (r / "evaluation" / "metrics.html").read_text()
    assert (r / "train" / "metrics.tsv").exists() and (r / "train" / "loss.png").exists()
    assert list((r / "evaluation" / "overlays").glob("*.png"))
    assert list((r / "weights").glob("*.png")) and (r / "augment" / "examples.png").exists()


@pytest.mark.workflow
def test_stack_prediction_keeps_the_time_axis(finished_run):
    from tileunet.ome import read_prediction
    prob, labels = read_prediction(finished_run[0] / "results" / "predictions" / "movie.ome.zarr")
    assert prob.shape == labels.shape == (3, 70, 80)


@pytest.mark.workflow
def test_every_prediction_store_validates_and_carries_the_input_pixel_size(finished_run):
    """ome-zarr-models accepts each store whole; ome_zarr's Reader finds image and labels; µm reach every level."""
    ome_zarr_models = pytest.importorskip("ome_zarr_models")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    stores = sorted((finished_run[0] / "results" / "predictions").glob("*.ome.zarr"))
    assert [p.name for p in stores] == ["d.ome.zarr", "e.ome.zarr", "movie.ome.zarr"]
    for store in stores:
        for group in (store, store / "labels", store / "labels" / "cells"):
            ome_zarr_models.open_ome_zarr(zarr.open_group(group, mode="r"))  # raises on any violation
        nodes = list(Reader(parse_url(str(store)))())
        assert sum(bool(n.load(Label)) for n in nodes) == 1 and len(nodes) >= 2
    ms = zarr.open_group(stores[2], mode="r").attrs["ome"]["multiscales"][0]
    assert ms["axes"] == [{"name": "t", "type": "time", "unit": "second"},
                          {"name": "y", "type": "space", "unit": "micrometer"},
                          {"name": "x", "type": "space", "unit": "micrometer"}]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[30.0, 0.65 * 2**k, 0.65 * 2**k] for k in range(len(scales))]
    plain = zarr.open_group(stores[0], mode="r").attrs["ome"]["multiscales"][0]
    assert plain["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0]  # declares no size
    assert all("unit" not in a for a in plain["axes"])


@pytest.mark.workflow
def test_opening_a_store_warns_of_nothing(finished_run):
    """No .snakemake_timestamp (or anything else) in a store that zarr would warn about when it lists members."""
    from tileunet.ome import read_prediction
    results = finished_run[0] / "results"
    folder = results / "predictions"
    assert sorted(p.name for p in folder.iterdir()) == ["d.ome.zarr", "e.ome.zarr", "movie.ome.zarr"]  # no leftovers
    for store in [*folder.iterdir(), results / "augmented.zarr", *(results / "data").iterdir()]:
        assert not [p for p in store.rglob(".*")], store
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            members = dict(zarr.open_group(store, mode="r").members(max_depth=None))
            if store.parent == folder:
                read_prediction(store)
        assert members, store
    assert {"0", "labels", "labels/cells"} <= set(dict(zarr.open_group(folder / "d.ome.zarr").members(max_depth=None)))


@pytest.mark.workflow
def test_forcerun_one_stage_reruns_it_and_downstream_only(finished_run):
    work, table = finished_run
    out = snakemake(work, "all", "-n", "--forcerun", "train_model", samples=table).stdout
    jobs = {ln.split()[0] for ln in out.splitlines() if ln.strip().split(" ")[0] in
            ("ingest_sample", "weights_sample", "augment_set", "train_model", "predict_sample", "evaluate_test")}
    assert jobs == {"train_model", "predict_sample", "evaluate_test"}  # the join only: the members stand
    out = snakemake(work, "all", "-n", "--forcerun", "train_member", samples=table).stdout
    assert re.search(r"^train_member\s+2$", out, re.M) and re.search(r"^train_model\s+1$", out, re.M)
    assert not re.search(r"^(ingest_sample|weights_sample|augment_set)\s", out, re.M)
    (work / "three.yaml").write_text("train: {ensemble: 3}\n")  # one member more: it alone is trained
    out = snakemake(work, "all", "-n", samples=table, configfiles=[work / "three.yaml"]).stdout
    assert re.search(r"^train_member\s+1$", out, re.M) and "wildcards: member=2" in out
    assert "Nothing to be done" in snakemake(work, "all", "-n", samples=table).stdout


@pytest.mark.workflow
def test_bad_input_fails_and_leaves_no_output(dataset, tmp_path):
    data, rows = dataset
    bad = tmp_path / "nan.tif"
    image = tifffile.imread(rows[0][1]).astype(np.float32)
    image[3, 4] = np.nan
    tifffile.imwrite(bad, image)
    table = write_sample_table(tmp_path / "samples.tsv", [("a", bad, rows[0][2], "train"), *rows[1:3]])
    proc = snakemake(tmp_path, "ingest", samples=table, check=False)
    assert proc.returncode != 0
    assert "NaN or infinite" in proc.stderr + proc.stdout + "".join(
        p.read_text() for p in (tmp_path / "results" / "logs").rglob("*.log"))
    assert not (tmp_path / "results" / "data" / "a.zarr").exists()


@pytest.mark.parametrize("override, message", [
    ("weights={'sigma': -1}", "sigma"),
    ("train={'optimiser': 'sgd'}", "optimiser"),
])
def test_bad_config_is_refused_before_anything_runs(dataset, tmp_path, override, message):
    data, rows = dataset
    table = write_sample_table(tmp_path / "samples.tsv", rows)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                           "-n", "--cores", "1", "--configfile", str(ROOT / "config" / "ci.yaml"),
                           "--config", f"samples={table}", override], capture_output=True, text=True)
    assert proc.returncode != 0 and message in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


BAD_DRY_RUNS = {
    # case: (extra sample row or None, config file text or None, message fragments)
    "predict tile": (None, "predict:\n  tile: 61\n",
                     ["t.yaml: predict.tile 61 is not an output edge of the depth-2", "Fix: set predict.tile to one of"]),
    "train tile": (None, "train:\n  tile_size: 69\n",
                   ["t.yaml: train.tile_size 69 is not a valid input edge", "Fix: set train.tile_size to one of"]),
    "RGB slide beside grey images": (("slide", "slide_rgb.tif", "", "predict"), None,
                                     ["slide_rgb.tif: has 3 channel(s) ['R', 'G', 'B'], but",
                                      "Fix: give every image of the sample table the same channels"]),
    "channel out of range": (None, "ingest:\n  channels: [2]\n",
                             ["a.tif: has no channel 2: its 1 channel(s) are 0 '0'", "Fix: set ingest.channels"]),
    "level beyond the pyramid": (None, "predict:\n  level: 1\n",
                                 ["movie.ome.tif: has no resolution level 1: its 1 level(s) are 0 (3, 70, 80)",
                                  "Fix: set predict.level: 0, or predict a pyramidal export"]),
    "missing slide": (("slide", "gone.tif", "", "predict"), None,
                      ["gone.tif: does not exist (image of sample 'slide'", "Fix: correct the path"]),
}


@pytest.mark.parametrize("case", list(BAD_DRY_RUNS))
def test_bad_input_stops_the_dry_run_with_file_problem_and_fix(dataset, tmp_path, case):
    """Tile sizes, channels and missing files are refused by `snakemake -n`, before the first job."""
    data, rows = dataset
    row, text, fragments = BAD_DRY_RUNS[case]
    tifffile.imwrite(tmp_path / "slide_rgb.tif", np.zeros((600, 500, 3), np.uint8))  # predicted as 600 frames before
    table = write_sample_table(tmp_path / "samples.tsv", rows + ([(row[0], tmp_path / row[1], *row[2:])] if row else []))
    extra = []
    if text:
        (tmp_path / "t.yaml").write_text(text)
        extra = [str(tmp_path / "t.yaml")]
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "1", "--configfile", str(ROOT / "config" / "ci.yaml"), *extra, "--config", f"samples={table}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "InputError" in out, out[-3000:]
    for fragment in fragments:
        assert fragment in out, out[-3000:]
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_repeat_and_ablation_plan_one_training_per_variant_and_seed(dataset, tmp_path):
    """`ablation` trains the main configuration and each chosen variant with every seed of repeat.runs."""
    _, rows = dataset
    table = write_sample_table(tmp_path / "samples.tsv", rows)
    (tmp_path / "r.yaml").write_text("repeat:\n  runs: 2\n  variants: [two_class, no_ema]\n")
    out = snakemake(tmp_path, "ablation", "-n", samples=table, configfiles=[tmp_path / "r.yaml"]).stdout
    trainings = {ln.split()[0] for ln in out.splitlines() if ln.split() and ln.split()[0].endswith("train_model")}
    assert trainings == {"train_model", "main_seed1_train_model", "two_class_seed0_train_model",
                         "two_class_seed1_train_model", "no_ema_seed0_train_model", "no_ema_seed1_train_model"}
    (tmp_path / "r.yaml").write_text("repeat:\n  variants: [two_clas]\n")
    proc = snakemake(tmp_path, "ablation", "-n", samples=table, configfiles=[tmp_path / "r.yaml"], check=False)
    assert proc.returncode != 0 and "r.yaml: repeat.variants names ['two_clas']" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_a_configfile_gives_the_same_run_in_any_folder_and_binary_masks_ingest(dataset, tmp_path):
    """--configfile layers on the workflow's config/config.yaml, not on one in the working directory.

    The user's file leaves the normalisation to the layers below it: both folders must take the
    workflow's values, though the first holds a config/config.yaml of its own. Its table also
    holds a 0/255 binary mask and a one-cell label image, which ingest must accept.
    """
    data, rows = dataset
    mine = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    for key in ("normalize_low", "normalize_high"):
        mine["ingest"].pop(key, None)
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(mine))
    mask = np.zeros((90, 110), np.uint8)
    mask[5:30, 5:40], mask[50:80, 60:100] = 255, 255
    one = np.zeros((90, 110), np.uint16)
    one[20:40, 30:60] = 1
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    tifffile.imwrite(tmp_path / "one.tif", one)
    table = write_sample_table(tmp_path / "samples.tsv", [rows[0], ("m", rows[1][1], tmp_path / "mask.tif", "train"),
                                     ("s", rows[2][1], tmp_path / "one.tif", "val")])
    here, there = tmp_path / "here", tmp_path / "there"
    (here / "config").mkdir(parents=True)
    (here / "config" / "config.yaml").write_text("ingest: {normalize_low: 40.0, normalize_high: 60.0}\n")
    stores = {}
    for folder, target in ((here, "ingest"), (there, "results/data/a.zarr/image/zarr.json")):
        proc = subprocess.run([sys.executable, "-m", "snakemake", target, "-s", str(ROOT / "Snakefile"), "--cores", "2",
                               "--directory", str(folder), "--configfile", str(tmp_path / "mine.yaml"),
                               "--config", f"samples={table}"], capture_output=True, text=True)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        stores[folder] = zarr.open_group(folder / "results" / "data" / "a.zarr", mode="r")
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["ingest"]
    want = {"method": "percentile", "low": demo["normalize_low"], "high": demo["normalize_high"]}
    assert stores[here]["image"].attrs["normalization"] == stores[there]["image"].attrs["normalization"] == want
    np.testing.assert_array_equal(stores[here]["image"][...], stores[there]["image"][...])
    m = zarr.open_group(here / "results" / "data" / "m.zarr", mode="r")["labels"]
    assert m.attrs["binary_mask_components"] is True and m[...].max() == 2
    s = zarr.open_group(here / "results" / "data" / "s.zarr", mode="r")["labels"]
    assert s.attrs["binary_mask_components"] is False and s[...].max() == 1
    assert "mask.tif is a binary mask" in (here / "results" / "logs" / "ingest" / "m.log").read_text()


def test_bad_sample_table_is_refused(tmp_path):
    table = write_sample_table(tmp_path / "samples.tsv", [("a", "a.tif", "a_l.tif", "val")])
    proc = snakemake(tmp_path, "-n", samples=table, check=False)
    assert proc.returncode != 0 and "training split is empty" in proc.stderr + proc.stdout


def test_demo_config_dry_run_plans_every_stage():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--forceall"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rule in ("demo_data", "ingest_sample", "weights_sample", "augment_set", "train_model", "predict_sample", "evaluate_test"):
        assert rule in proc.stdout


def test_slurm_profile_dry_run_requests_gpus_for_train_and_predict(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--workflow-profile", "profiles/slurm",
                           "--configfile", "config/paper.yaml", "--printshellcmds", "--verbose"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for rule in ("train_model", "predict_sample"):
        block = out[out.index(f"rule {rule}:"):][:1500]
        assert "gpu=1" in block and "gpu_model=" in block and "cpus_per_gpu=8" in block, block


def test_scatter_gather_plans_one_job_per_band(dataset, tmp_path):
    data, rows = dataset
    table = write_sample_table(tmp_path / "samples.tsv", rows)
    out = snakemake(tmp_path, "predict", "-n", "--forceall", samples=table).stdout
    assert "predict_part" not in out
    parts = tmp_path / "parts.yaml"
    parts.write_text("predict:\n  parts: 3\n")  # nested --config values arrive as strings: use a file
    proc = subprocess.run([sys.executable, "-m", "snakemake", "predict", "-n", "--forceall", "-s", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path), "--cores", "2", "--configfile", str(ROOT / "config" / "ci.yaml"),
                           str(parts), "--config", f"samples={table}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = dict(ln.split()[:2] for ln in proc.stdout.split("Job stats:")[1].splitlines()[3:] if len(ln.split()) == 2)
    # 3 slides (d, e, movie): one prepare, three bands and one gather each
    assert (stats["predict_prepare"], stats["predict_part"], stats["predict_gather"]) == ("3", "9", "3")


@pytest.fixture(scope="module")
def report_html(finished_run):
    work, table = finished_run
    snakemake(work, "all", "--report", str(work / "report.html"), samples=table)
    return work / "report.html"


@pytest.mark.workflow
def test_report_holds_every_picture(finished_run, report_html):
    work, _ = finished_run
    html = report_html.read_text()
    pictures = [*(work / "results").rglob("*.png")]
    assert len(pictures) >= 6
    for png in pictures:  # every picture the workflow draws is tagged for the report
        assert png.name in html, png
    assert "metrics.html" in html


@pytest.mark.workflow
def test_report_shows_every_entry_in_a_headless_browser(report_html, tmp_path):
    """Open every result of every category with its eye button in chromium: a picture or a table must show."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser check needs playwright")
    chromium = shutil.which("chromium") or pytest.skip("the browser check needs Debian's chromium")
    shown = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(report_html.as_uri())
        page.wait_for_timeout(2000)
        categories = [c.inner_text().strip() for c in page.locator("text=/^\\d+\\. /").all()]
        assert len(categories) >= 4
        for category in categories:
            page.goto(report_html.as_uri())
            page.wait_for_timeout(1000)
            page.get_by_text(category, exact=True).first.click()
            rows = page.locator("tr").filter(has=page.locator("a[iconname=eye]"))
            rows.first.wait_for()
            for i in range(rows.count()):
                name = rows.nth(i).locator("td").first.inner_text().strip()
                rows.nth(i).locator("a[iconname=eye]").click()
                page.wait_for_timeout(500)
                if name.endswith(".html"):  # in an iframe
                    shown[name] = sum(f.locator("table tr").count() for f in page.frames if f != page.main_frame) > 1
                else:
                    shown[name] = page.locator("img").evaluate_all(
                        "imgs => imgs.some(e => e.naturalWidth > 100 && !e.src.includes('logo.svg'))")
                page.screenshot(path=tmp_path / f"{len(shown):02d}.png")
        browser.close()
    assert len(shown) >= 7 and all(shown.values()), shown


# -- channels: a named 3-channel OME-TIFF set and a real RGB histology image --------------------------------

CHANNEL_SPLITS = {"a": "train", "b": "train", "c": "val", "d": "test"}


def fluorescence_samples(folder):
    """3-channel (C, Y, X) OME-TIFFs named DAPI, GFP, phase: cells in DAPI, their inverse in phase, noise in GFP."""
    rng, rows = np.random.default_rng(0), []
    for i, (name, split) in enumerate(CHANNEL_SPLITS.items()):
        image, labels = touching_cells((90, 110), n_cells=7, seed=i)
        stack = np.stack([image, rng.integers(0, 500, image.shape), 2000 - image // 2]).astype(np.uint16)
        tifffile.imwrite(folder / f"{name}.ome.tif", stack, ome=True,
                         metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP", "phase"]}})
        tifffile.imwrite(folder / f"{name}_labels.tif", labels)
        rows.append((name, folder / f"{name}.ome.tif", folder / f"{name}_labels.tif", split))
    return rows


def histology_samples(folder):
    """Crops of scikit-image's immunohistochemistry image (RGB, shipped in its wheel) with nuclei labels from
    its hematoxylin stain (colour deconvolution, Otsu, connected components); the whole image is predicted,
    from a pyramidal OME-TIFF of 0.5 µm pixels at its level 1 (predict.level)."""
    from skimage import color, data, filters, measure
    rgb = data.immunohistochemistry()
    hematoxylin = filters.gaussian(color.rgb2hed(rgb)[..., 0], 1.0)
    labels = measure.label(hematoxylin > filters.threshold_otsu(hematoxylin))
    labels[np.bincount(labels.ravel())[labels] < 20] = 0  # specks are no nuclei
    rows = []
    for (name, split), (y, x) in zip(CHANNEL_SPLITS.items(), [(0, 0), (0, 256), (256, 0), (256, 256)]):
        tifffile.imwrite(folder / f"{name}.tif", rgb[y:y + 160, x:x + 200], photometric="rgb")
        tifffile.imwrite(folder / f"{name}_labels.tif", measure.label(labels[y:y + 160, x:x + 200] > 0))
        rows.append((name, folder / f"{name}.tif", folder / f"{name}_labels.tif", split))
    with tifffile.TiffWriter(folder / "ihc.ome.tif") as out:
        out.write(rgb, subifds=1, tile=(128, 128), photometric="rgb",
                  metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        out.write(rgb[::2, ::2], subfiletype=1, tile=(128, 128), photometric="rgb")
    (folder / "level.yaml").write_text("predict: {level: 1}\n")
    return rows + [("ihc", folder / "ihc.ome.tif", "", "predict")]


@pytest.fixture(scope="module", params=["fluorescence", "histology"])
def channel_run(request, tmp_path_factory):
    data = tmp_path_factory.mktemp(request.param)
    rows = (fluorescence_samples if request.param == "fluorescence" else histology_samples)(data)
    work = tmp_path_factory.mktemp(f"{request.param}_run")
    (data / "single.yaml").write_text("train: {ensemble: 1}\n")  # one network: the path without members
    extra = [data / ("level.yaml" if request.param == "histology" else "single.yaml")]
    snakemake(work, "all", samples=write_sample_table(data / "samples.tsv", rows), configfiles=extra)
    return request.param, work / "results", rows


@pytest.mark.workflow
def test_channels_train_and_predict_end_to_end(channel_run):
    from tileunet.ensemble import Ensemble
    from tileunet.model import load_model
    from tileunet.ome import read_prediction
    kind, results, rows = channel_run
    names = ["DAPI", "GFP", "phase"] if kind == "fluorescence" else ["R", "G", "B"]
    for name, image, _, split in rows:
        if split == "predict":
            continue
        stored = zarr.open_group(results / "data" / f"{name}.zarr", mode="r")["image"]
        assert stored.shape[0] == 3 and stored.attrs["channels"] == names
    aug = zarr.open_group(results / "augmented.zarr", mode="r")
    assert aug["a"]["image"].shape[:2] == (2, 3) and aug["a"]["image"].attrs["channels"] == names
    model = load_model(results / "model" / "model.pt")
    assert model.config.in_channels == 3 and model.channels == names
    assert isinstance(model, Ensemble) == (kind == "histology") == (results / "train" / "members").exists()
    for name, image, _, split in rows:
        if split in ("test", "predict"):
            prob, labels = read_prediction(results / "predictions" / f"{name}.ome.zarr")
            level = 1 if split == "predict" else 0  # the test images at full resolution, as their labels
            raw = tifffile.imread(image, level=level)
            assert prob.shape == labels.shape == (raw.shape[-2:] if kind == "fluorescence" else raw.shape[:2])
            assert np.isfinite(prob).all()
    if kind == "histology":  # level 1 of 0.5 µm pixels: 1 µm, so that it overlays the slide
        ms = zarr.open_group(results / "predictions" / "ihc.ome.zarr", mode="r").attrs["ome"]["multiscales"][0]
        assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0]
        assert [a.get("unit") for a in ms["axes"]] == ["micrometer", "micrometer"]
    metrics = (results / "evaluation" / "metrics.tsv").read_text().splitlines()
    assert [ln.split("\t")[0] for ln in metrics[1:]] == ["d", "summary"]
    log = (results / "logs" / "ingest" / "a.log").read_text()
    assert "Traceback" not in log
