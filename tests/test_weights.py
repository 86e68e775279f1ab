"""tileunet.weights against an independent per-cell naive map, hand-computed cases and the scripts' glue."""

import inspect
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from synthetic import touching_cells

from tileunet.config import defaults
from tileunet.errors import InputError
from tileunet.io import write_array
from tileunet.plots import cell_box
from tileunet.plots.weights import label_colours, save_weight_preview, weight_figure
from tileunet.labels import separate_touching
from tileunet.weights import class_frequencies, cutoff_radius, weight_kwargs, weight_map, weight_map_stack


ROOT = Path(__file__).resolve().parents[1]
HUGE = 2**62


# ---------------------------------------------------------------- independent references

def naive_class_weights(labels, balance="inverse_frequency", class_weights=None, frequencies=None):
    if balance == "none":
        wbg = wfg = 1.0
    elif balance == "explicit":
        wbg, wfg = class_weights
    else:
        if frequencies is None:
            fg = float(np.mean(labels > 0))
            frequencies = (1.0 - fg, fg)
        bg, fg = frequencies
        top = max(bg, fg)
        wbg = top / bg if bg > 0 else 1.0
        wfg = top / fg if fg > 0 else 1.0
    return np.where(labels > 0, wfg, wbg)


def naive_weight_map(labels, w0=10.0, sigma=5.0, spacing=(1.0, 1.0), border_region="background", **balance):
    """Every cell's EDT over the whole image, stacked and sorted; the two smallest are d1 and d2."""
    w = naive_class_weights(labels, **balance)
    ids = np.unique(labels[labels > 0])
    if len(ids) < 2:
        return w
    dist = np.sort(np.stack([ndimage.distance_transform_edt(labels != i, sampling=spacing) for i in ids]), axis=0)
    term = w0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * sigma**2))
    if border_region == "background":
        term = np.where(labels == 0, term, 0.0)
    return w + term


# ---------------------------------------------------------------- strategies

IDS = [1, 2, 3, 7, 1000, 2**31 + 5, HUGE]


@st.composite
def label_images(draw, max_side=20):
    """Rectangles (cells at the border, 1-px cells, overlaps that make ids touch or split) with non-contiguous, huge ids."""
    ny, nx = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    labels = np.zeros((ny, nx), np.int64)
    for _ in range(draw(st.integers(0, 6))):
        y0, x0 = draw(st.integers(0, ny - 1)), draw(st.integers(0, nx - 1))
        h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        labels[y0:y0 + h, x0:x0 + w] = draw(st.sampled_from(IDS))
    return labels


PARAMS = st.fixed_dictionaries({
    "w0": st.floats(0.5, 20.0),
    "sigma": st.floats(0.7, 6.0),
    "tol": st.sampled_from([1e-6, 1e-4, 1e-3, 1e-2]),
    "spacing": st.sampled_from([(1.0, 1.0), (0.5, 1.3), (2.0, 0.7)]),
    "border_region": st.sampled_from(["background", "all"]),
})


# ---------------------------------------------------------------- the map against the naive one

@settings(max_examples=80, deadline=None)
@given(labels=label_images(), params=PARAMS)
def test_matches_naive_within_tol(labels, params):
    tol = params.pop("tol")
    fast = weight_map(labels, tol=tol, **params)
    assert fast.dtype == np.float32 and fast.shape == labels.shape
    assert np.abs(fast - naive_weight_map(labels, **params)).max() <= tol + 1e-5


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), separate=st.booleans())
def test_touching_cells_default_tol_below_1e3(seed, separate):
    _, labels = touching_cells((64, 80), n_cells=10, radius=8, seed=seed)
    if separate:
        labels = separate_touching(labels)
    assert np.abs(weight_map(labels) - naive_weight_map(labels)).max() < 1e-3


def test_cutoff_bites_but_stays_within_tol():
    # small cells 10-25 px apart: d1 + d2 crosses the cutoff radius (about 15 px here) in the gaps
    labels = np.zeros((60, 90), np.int32)
    for k, (y, x) in enumerate([(10, 10), (10, 26), (30, 15), (40, 40), (20, 60)], start=1):
        labels[y:y + 3, x:x + 3] = k
    tol = 1e-2
    fast = weight_map(labels, sigma=4.0, tol=tol)
    exact = naive_weight_map(labels, sigma=4.0)
    diff = np.abs(fast - exact)
    assert diff.max() <= tol
    assert (diff > 1e-4).any()  # the cut really dropped small values


def test_two_squares_gap_midpoint_is_analytic():
    sigma, w0 = 5.0, 10.0
    for gap in (2, 4, 6, 10, 16):
        labels = np.zeros((40, 30 + gap), np.int32)
        labels[10:30, 2:14] = 1
        labels[10:30, 13 + gap:25 + gap] = 2  # nearest pixel centres `gap` apart
        w = weight_map(labels, w0=w0, sigma=sigma, tol=1e-12)
        fg = np.mean(labels > 0)
        wc_bg = max(fg, 1 - fg) / (1 - fg)
        expected = wc_bg + w0 * math.exp(-(gap**2) / (2 * sigma**2))
        assert w[20, 13 + gap // 2] == pytest.approx(expected, abs=1e-5)


def test_one_pixel_cells_on_a_line():
    labels = np.zeros((1, 9), np.int64)
    labels[0, 2], labels[0, 6] = 5, HUGE
    w = weight_map(labels, class_balance="none", w0=10.0, sigma=5.0)
    assert w[0, 4] == pytest.approx(1 + 10 * math.exp(-16 / 50), abs=1e-6)
    assert w[0, 0] == pytest.approx(1 + 10 * math.exp(-(2 + 6) ** 2 / 50), abs=1e-4)
    assert w[0, 2] == w[0, 6] == 1.0  # no border term inside cells by default


def test_border_region_all_weights_inside_cells():
    labels = np.zeros((5, 12), np.int32)
    labels[:, :4], labels[:, 7:] = 1, 2
    w = weight_map(labels, class_balance="none", border_region="all", sigma=3.0, tol=1e-9)
    assert w[2, 3] == pytest.approx(1 + 10 * math.exp(-16 / 18), abs=1e-5)  # d1 = 0 inside, d2 = 4
    assert np.allclose(w, naive_weight_map(labels, sigma=3.0, border_region="all", balance="none"), atol=1e-5)


def test_anisotropic_spacing_scales_distances():
    labels = np.zeros((9, 1), np.int32)
    labels[0, 0], labels[8, 0] = 1, 2
    w = weight_map(labels, spacing=(0.5, 1.0), class_balance="none", sigma=2.0, tol=1e-9)
    assert w[4, 0] == pytest.approx(1 + 10 * math.exp(-(4.0**2) / 8), abs=1e-6)  # 8 px * 0.5 apart


def test_anisotropic_cutoff_counts_pixels_per_axis():
    # 0.25 units per row: the cutoff radius (about 8.6 units) spans 35 rows but only 9 columns
    labels = np.zeros((60, 30), np.int32)
    labels[5:10, 10:20], labels[30:35, 10:20] = 1, 2
    kw = dict(spacing=(0.25, 1.0), sigma=2.0)
    fast = weight_map(labels, tol=1e-3, **kw)
    assert np.abs(fast - naive_weight_map(labels, **kw)).max() <= 1e-3
    assert fast[20, 15] == pytest.approx(1 + 10 * math.exp(-(5.25**2) / 8), abs=1e-5)  # 11 + 10 rows from the cells


@pytest.mark.parametrize("labels", [np.array([[2**40, 2**40, 3 * 2**40]]), np.array([[1], [3]]),
                                    np.array([[0, HUGE, 0, 5, 0, 0]])])
def test_sparse_huge_ids_without_background(labels):
    for region in ("background", "all"):
        kw = dict(sigma=1.0, border_region=region)
        assert np.abs(weight_map(labels, tol=1e-6, **kw) - naive_weight_map(labels, **kw)).max() < 1e-5


@pytest.mark.parametrize("labels", [np.zeros((7, 9), np.uint8), np.pad(np.ones((3, 3), np.int32), 3)])
def test_fewer_than_two_cells_give_class_weights_only(labels):
    w = weight_map(labels)
    assert np.array_equal(w, naive_class_weights(labels).astype(np.float32))


def test_border_term_switches():
    _, labels = touching_cells((40, 50), n_cells=5, radius=7, seed=1)
    wc = naive_class_weights(labels).astype(np.float32)
    assert np.array_equal(weight_map(labels, border_term=False), wc)
    assert np.array_equal(weight_map(labels, w0=0.0), wc)
    assert np.array_equal(weight_map(labels, w0=1e-5, tol=1e-4), wc)  # whole term below tol
    assert (weight_map(labels) > wc).any()


def test_class_balance_options():
    labels = np.zeros((4, 4), np.int32)
    labels[:2, :2] = 3  # 25 % foreground
    w = weight_map(labels, border_term=False)
    assert w[0, 0] == pytest.approx(3.0) and w[3, 3] == pytest.approx(1.0)
    w = weight_map(labels, border_term=False, class_balance="explicit", class_weights=[0.5, 2.0])
    assert w[0, 0] == 2.0 and w[3, 3] == 0.5
    assert np.array_equal(weight_map(labels, border_term=False, class_balance="none"), np.ones((4, 4), np.float32))
    w = weight_map(labels, border_term=False, frequencies=[0.4, 0.6])  # dataset frequencies override the image's
    assert w[0, 0] == pytest.approx(1.0) and w[3, 3] == pytest.approx(1.5)
    w = weight_map(np.zeros((3, 3), np.int32), border_term=False, frequencies=[1.0, 0.0])
    assert np.array_equal(w, np.ones((3, 3), np.float32))


def test_cutoff_radius():
    r = cutoff_radius(10.0, 5.0, 1e-4)
    assert 10.0 * math.exp(-(r**2) / 50.0) == pytest.approx(1e-4)
    assert cutoff_radius(1e-5, 5.0, 1e-4) == -math.inf


def test_stack_is_plane_by_plane():
    planes = [touching_cells((24, 30), n_cells=4, radius=6, seed=s)[1] for s in range(3)]
    stack = np.stack(planes)
    out = weight_map_stack(stack, sigma=3.0)
    assert out.dtype == np.float32 and out.shape == stack.shape
    for plane, w in zip(planes, out):
        assert np.array_equal(w, weight_map(plane, sigma=3.0))


@pytest.mark.parametrize("labels, problem", [
    (np.zeros((4, 4), np.float32), "dtype float32"),
    (np.full((4, 4), -1, np.int32), "negative"),
    (np.zeros((4, 4), bool), "boolean mask"),
    (np.zeros((2, 4, 4), np.int32), "expected 2 axes"),
    (np.zeros(4, np.int32), "expected 2 axes"),
])
def test_bad_labels_are_refused(labels, problem):
    with pytest.raises(InputError, match=problem):
        weight_map(labels)


def test_stack_wants_three_axes():
    with pytest.raises(InputError, match="expected 3 axes"):
        weight_map_stack(np.zeros((4, 4), np.int32))


@pytest.mark.parametrize("kwargs, name", [
    ({"sigma": 0.0}, "sigma"), ({"tol": 0.0}, "tol"), ({"w0": -1.0}, "w0"), ({"sigma": math.nan}, "sigma"),
    ({"border_region": "inside"}, "border_region"), ({"class_balance": "median"}, "class_balance"),
    ({"spacing": (1.0, 0.0)}, "spacing"), ({"spacing": (1.0,)}, "spacing"),
    ({"class_balance": "explicit"}, "class_weights"), ({"class_balance": "explicit", "class_weights": [1, -2]}, "class_weights"),
    ({"frequencies": [0.0, 0.0]}, "frequencies"),
])
def test_bad_parameters_are_refused(kwargs, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        weight_map(np.zeros((4, 4), np.int32), **kwargs)


# ---------------------------------------------------------------- separating touching cells

def test_class_frequencies(tmp_path):
    stack = write_array(tmp_path / "s.zarr", "labels", np.array([[[0, 1], [2, 2]], [[0, 0], [0, 5]]], np.int32))
    assert class_frequencies([np.array([[0, 1], [0, 0]]), np.array([[2, 2]])]) == [0.5, 0.5]
    assert class_frequencies([stack]) == [0.5, 0.5]
    with pytest.raises(InputError, match="no pixels"):
        class_frequencies([])


def test_weight_kwargs_from_config():
    cfg = {"w0": 5.0, "sigma": 3.0, "tol": 1e-5, "border_region": "all", "class_balance": "explicit",
           "class_weights": [1.0, 2.0], "frequency_scope": "image", "separate_touching": True,
           "spacing": [1.0, 0.5], "border_term": True}
    kw = weight_kwargs(cfg)
    assert kw == {"w0": 5.0, "sigma": 3.0, "tol": 1e-5, "spacing": [1.0, 0.5], "border_region": "all",
                  "class_balance": "explicit", "class_weights": [1.0, 2.0], "frequencies": None, "border_term": True}
    json.dumps(kw)
    kw = weight_kwargs({"frequency_scope": "dataset", "class_weights": [3, 3]}, frequencies=(0.7, 0.3))
    assert kw["frequencies"] == [0.7, 0.3] and kw["class_weights"] is None and kw["sigma"] == 5.0
    with pytest.raises(InputError, match="frequency_scope"):
        weight_kwargs({"frequency_scope": "dataset"})


# ---------------------------------------------------------------- canaries for upstream behaviour we rely on

def test_scipy_edt_is_exact_euclidean_with_sampling():
    mask = np.ones((7, 9), bool)
    mask[2, 3] = False
    d = ndimage.distance_transform_edt(mask, sampling=(0.5, 2.0))
    yy, xx = np.indices(mask.shape)
    assert np.allclose(d, np.hypot((yy - 2) * 0.5, (xx - 3) * 2.0))


# ---------------------------------------------------------------- preview and scripts

def test_weight_figure_and_preview(tmp_path):
    image, labels = touching_cells((30, 40), n_cells=4, radius=6)
    weights = weight_map(labels)
    fig = weight_figure(image.astype(np.float32), labels, weights, title="t")
    assert len(fig.axes) == 4  # three panels and the colour bar
    rgba = label_colours(labels)
    assert rgba.shape == labels.shape + (4,) and (rgba[labels == 0][:, :3] == 0).all()
    save_weight_preview(tmp_path / "p.png", image, labels, weights)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="one shape"):
        weight_figure(image, labels[:-1], weights)


def test_previews_show_the_cells_not_the_empty_frame():
    labels = np.zeros((300, 400), np.int32)
    labels[100:110, 200:230], labels[112:120, 200:230] = 1, 2
    assert cell_box(labels, margin=5) == (slice(95, 125), slice(195, 235))
    assert cell_box(np.zeros((3, 4), int)) == (slice(0, 3), slice(0, 4))
    assert cell_box(labels, margin=1000) == (slice(0, 300), slice(0, 400))
    fig = weight_figure(np.zeros(labels.shape, np.float32), labels, weight_map(labels), title="f", margin=5)
    assert fig.axes[0].images[0].get_array().shape[:2] == (30, 40)
    assert fig.get_suptitle() == "f  (rows 95-125, columns 195-235)"


CFG = {"w0": 10.0, "sigma": 5.0, "tol": 1e-4, "border_region": "background", "class_balance": "inverse_frequency",
       "class_weights": [1.0, 1.0], "frequency_scope": "image", "separate_touching": True, "spacing": [1.0, 1.0],
       "border_term": True}


def make_sample(store, stack=False):
    planes = [touching_cells((32, 48), n_cells=5, radius=7, seed=s) for s in range(2 if stack else 1)]
    image = np.stack([p[0] for p in planes]).astype(np.float32)
    labels = np.stack([separate_touching(p[1]) for p in planes])
    if not stack:
        image, labels = image[0], labels[0]
    chunks = (1,) * (labels.ndim - 2) + (16, 24)
    write_array(store, "image", image, chunks)
    write_array(store, "labels", labels, chunks, {"touching_separated": True})
    return labels


@pytest.mark.parametrize("stack", [False, True])
def test_weights_script(tmp_path, stack, run_script):
    store = tmp_path / "data" / "s1.zarr"
    labels = make_sample(store, stack)
    run_script("weights.py", log=[str(tmp_path / "w.log")], params=SimpleNamespace(store=str(store), cfg=CFG),
               input=SimpleNamespace(frequencies=[]), wildcards=SimpleNamespace(sample="s1"),
               output=SimpleNamespace(weights=str(store / "weights" / "zarr.json"), preview=str(tmp_path / "s1.png")))
    weights = zarr.open_array(store / "weights", mode="r")
    assert weights.dtype == np.float32 and weights.shape == labels.shape and weights.chunks == (zarr.open_array(store / "labels").chunks)
    expected = weight_map_stack(labels.reshape((-1,) + labels.shape[-2:])).reshape(labels.shape)
    assert np.array_equal(weights[...], expected)
    params = weights.attrs["parameters"]
    assert params["w0"] == 10.0 and params["sigma"] == 5.0 and params["tol"] == 1e-4 and params["frequencies"] is None
    assert weights.attrs["config"] == CFG and weights.attrs["labels_touching_separated"] is True
    assert (tmp_path / "s1.png").stat().st_size > 1000
    assert "weights" in (tmp_path / "w.log").read_text()


def test_dataset_frequencies_scripts(tmp_path, run_script):
    stores = [tmp_path / f"s{k}.zarr" for k in range(2)]
    all_labels = [make_sample(s) for s in stores]
    freq_json = tmp_path / "weights" / "class_frequencies.json"
    run_script("class_frequencies.py", log=[str(tmp_path / "f.log")], params=SimpleNamespace(stores=[str(s) for s in stores]),
               output=[str(freq_json)])
    frequencies = json.loads(freq_json.read_text())["frequencies"]
    assert frequencies == pytest.approx(class_frequencies(all_labels))
    cfg = {**CFG, "frequency_scope": "dataset"}
    run_script("weights.py", log=[str(tmp_path / "w.log")], params=SimpleNamespace(store=str(stores[0]), cfg=cfg),
               input=SimpleNamespace(frequencies=str(freq_json)), wildcards=SimpleNamespace(sample="s0"),
               output=SimpleNamespace(weights="", preview=str(tmp_path / "s0.png")))
    weights = zarr.open_array(stores[0] / "weights", mode="r")
    assert weights.attrs["parameters"]["frequencies"] == pytest.approx(frequencies)
    assert np.array_equal(weights[...], weight_map(all_labels[0], frequencies=frequencies))


def test_weights_script_names_the_store_on_bad_labels(tmp_path, run_script):
    store = tmp_path / "bad.zarr"
    write_array(store, "image", np.zeros((8, 8), np.float32))
    write_array(store, "labels", np.full((8, 8), -3, np.int32))
    with pytest.raises(InputError, match="bad.zarr/labels: has negative ids"):
        run_script("weights.py", log=[str(tmp_path / "w.log")], params=SimpleNamespace(store=str(store), cfg=CFG),
                   input=SimpleNamespace(frequencies=[]), wildcards=SimpleNamespace(sample="bad"),
                   output=SimpleNamespace(weights="", preview=str(tmp_path / "bad.png")))
    assert not (store / "weights").exists() and not (tmp_path / "bad.png").exists()


def test_weight_map_defaults_are_the_schemas():
    """weight_map(...) keeps the paper's w0 and sigma in its signature (the contract); they are the schema's."""
    schema = defaults("weights")  # class_weights: None in the signature, used only with class_balance explicit
    signature = {k: p.default for k, p in inspect.signature(weight_map).parameters.items()
                 if k in schema and k != "class_weights"}
    assert signature and signature == {k: tuple(v) if isinstance(signature[k], tuple) else v
                                       for k, v in schema.items() if k in signature}
