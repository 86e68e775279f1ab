"""Post-processing: the two methods, their choice on validation planes, and the config over model.pt."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from synthetic import touching_cells
from test_instances import same_partition
from test_watershed import probability_of
from tileunet import metrics, postprocess
from tileunet.errors import InputError
from tileunet.postprocess import PostProcessing

NO_MERGE = {"merge_thresholds": [1.0], "merge_min_boundaries": [1]}
GRID = {"thresholds": [0.4, 0.6], "seed_thresholds": [0.8, 0.95], "seed_erosions": [0, 2], "min_seed_sizes": [3],
        "merge_thresholds": [1.0, 0.8], "merge_min_boundaries": [3], "min_sizes": [0, 40]}


@pytest.fixture(scope="module")
def planes():
    out = []
    for seed in (1, 2):
        _, truth = touching_cells((80, 96), n_cells=8, radius=8, seed=seed)
        out.append((probability_of(truth), None, truth))
    return out


def test_components_are_the_thresholded_connected_components():
    p = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    labels = postprocess.extract(p, None, PostProcessing("components", 0.6, 0))
    assert same_partition(labels, ndimage.label(p > 0.6)[0])
    small = postprocess.extract(p, None, PostProcessing("components", 0.6, 3))
    sizes = np.bincount(small.ravel())[1:]
    assert sizes.min() >= 3 and small.max() == len(sizes)


def test_a_method_without_its_parameters_is_refused():
    with pytest.raises(ValueError, match=r"watershed post-processing needs \['seed_threshold'"):
        PostProcessing("watershed", 0.5, 0)
    with pytest.raises(ValueError, match="instances must be one of"):
        PostProcessing("otsu", 0.5, 0)


def brute_scores(planes, method, grid):
    """(mean F1, foreground IoU, panoptic quality) of every candidate of the grid on the whole planes, in grid order."""
    out = []
    for pp in postprocess.candidates(method, grid):
        rows = [metrics.evaluate_pair(postprocess.extract(fg, s, pp), t) for fg, s, t in planes]
        out.append(tuple(np.mean([r[k] for r in rows]) for k in ("f1", "iou", "panoptic_quality")))
    return out


def test_tune_finds_the_best_candidate_of_the_grid(planes):
    tuned = postprocess.tune(planes, GRID)
    for method in postprocess.METHODS:
        brute = brute_scores(planes, method, GRID)
        assert tuple(tuned[method][k] for k in ("val_f1", "val_iou", "val_pq")) == pytest.approx(max(brute))
    # touching cells: the watershed separates what components merge
    assert tuned["chosen"] == "watershed" and tuned["watershed"]["val_f1"] > tuned["components"]["val_f1"]
    assert tuned["watershed"]["val_f1"] > 0.9


def test_tune_counts_the_candidates_validation_cannot_tell_apart(planes, caplog):
    # min_size 0 and 1 keep the same instances, so every candidate has a twin with its very scores
    grid = {**GRID, "min_sizes": [0, 1, 40]}
    tuned = postprocess.tune(planes, grid)
    for method in postprocess.METHODS:
        scores = brute_scores(planes, method, grid)
        best = max(scores)
        assert tuned[method]["val_ties"] == sum(np.allclose(sc, best, rtol=0, atol=1e-12) for sc in scores) >= 2
    with caplog.at_level("WARNING", logger="tileunet.postprocess"):
        assert postprocess.warn_ties(tuned) == tuned["watershed"]["val_ties"]
    assert f"{tuned['watershed']['val_ties']} post-processings of train.tune's grid score the same" in caplog.text
    assert "Fix: add validation samples" in caplog.text


def test_tune_breaks_ties_of_f1_and_iou_by_panoptic_quality():
    # a noisy map of touching cells: the grid's first candidate with the best F1 and IoU cuts the cells
    # less well than a later one, which must win
    _, truth = touching_cells((80, 96), n_cells=8, radius=8, seed=1)
    noise = ndimage.gaussian_filter(np.random.default_rng(1).normal(0, 0.3, truth.shape), 2)
    planes = [(np.clip(probability_of(truth) + noise, 0, 1).astype(np.float32), None, truth)]
    grid = {"thresholds": [0.5], "seed_thresholds": [0.8, 0.9], "seed_erosions": [0, 1, 2], "min_seed_sizes": [3],
            "min_sizes": [0], **NO_MERGE}
    scores = brute_scores(planes, "watershed", grid)
    best = max(scores)
    tied = [k for k, sc in enumerate(scores) if sc[:2] == best[:2]]
    assert len(tied) >= 2 and scores[tied[0]][2] < best[2]  # the case this test is about
    tuned = postprocess.tune(planes, grid, methods=("watershed",))["watershed"]
    winner = list(postprocess.candidates("watershed", grid))[scores.index(best)]
    assert {k: tuned[k] for k in winner.as_dict()} == winner.as_dict()
    assert tuned["val_pq"] == pytest.approx(best[2]) and tuned["val_ties"] == scores.count(best)


def test_tune_ranks_candidates_tied_on_validation_by_the_augmented_copies(caplog):
    # a clean validation map that many candidates cut alike, and a noisy copy of it that tells them apart:
    # the first tied candidate with the best scores on the copy must win, not the first in grid order
    _, truth = touching_cells((80, 96), n_cells=8, radius=8, seed=1)
    clean = [(probability_of(truth), None, truth)]
    noise = ndimage.gaussian_filter(np.random.default_rng(1).normal(0, 0.3, truth.shape), 2)
    copies = [(np.clip(probability_of(truth) + noise, 0, 1).astype(np.float32), None, truth)]
    grid = {"thresholds": [0.6, 0.5, 0.4], "seed_thresholds": [0.7, 0.8, 0.9], "seed_erosions": [0, 1, 2],
            "min_seed_sizes": [3], "min_sizes": [0], **NO_MERGE}
    val, aug = brute_scores(clean, "watershed", grid), brute_scores(copies, "watershed", grid)
    tied = [k for k, sc in enumerate(val) if sc == max(val)]
    win = max(tied, key=lambda k: (aug[k], -k))
    assert len(tied) >= 2 and win != tied[0]  # the case this test is about
    everyone = list(postprocess.candidates("watershed", grid))
    tuned = postprocess.tune(clean, grid, methods=("watershed",), tie_planes=copies)["watershed"]
    assert {k: tuned[k] for k in everyone[win].as_dict()} == everyone[win].as_dict()
    assert tuple(tuned[k] for k in ("aug_f1", "aug_iou", "aug_pq")) == pytest.approx(aug[win])
    assert tuned["val_ties"] == len(tied) and tuned["aug_ties"] == sum(aug[k] == aug[win] for k in tied)
    plain = postprocess.tune(clean, grid, methods=("watershed",))["watershed"]
    assert {k: plain[k] for k in everyone[tied[0]].as_dict()} == everyone[tied[0]].as_dict()
    assert "aug_ties" not in plain
    with caplog.at_level("WARNING", logger="tileunet.postprocess"):
        still = {**tuned, "aug_ties": 2}
        assert postprocess.warn_ties({"chosen": "watershed", "watershed": still}) == 2
    assert "2 post-processings of train.tune's grid score the same on the validation images and on their " \
           "augmented copies" in caplog.text


def test_a_decided_choice_is_not_warned_about(caplog):
    with caplog.at_level("WARNING", logger="tileunet.postprocess"):
        assert postprocess.warn_ties({**STORED, "watershed": {**STORED["watershed"], "val_ties": 1}}) == 1
        assert postprocess.warn_ties(STORED) == 1  # an older model.pt records no ties
        assert postprocess.warn_ties(None) == 1
    assert not caplog.records


def test_tune_on_cropped_planes_scores_as_the_whole_planes(planes):
    # a plane padded with empty background scores the same (the search crops to the cells)
    padded = [(np.pad(fg, 40), s, np.pad(t, 40)) for fg, s, t in planes]
    a, b = postprocess.tune(planes, GRID), postprocess.tune(padded, GRID)
    assert a == b


def test_tune_needs_validation_planes():
    with pytest.raises(ValueError, match="there are none. Fix: give some samples split val"):
        postprocess.tune([], GRID)


STORED = {"chosen": "watershed",
          "watershed": {"instances": "watershed", "threshold": 0.4, "seed_threshold": 0.9, "seed_erosion": 2,
                        "min_seed_size": 3, "min_size": 40, "val_f1": 0.9, "val_iou": 0.8},
          "components": {"instances": "components", "threshold": 0.6, "min_size": 0, "val_f1": 0.5, "val_iou": 0.8}}
UNSET = dict.fromkeys(["instances", "threshold", "min_size", "seed_threshold", "seed_erosion", "min_seed_size"])


def test_the_config_overrides_what_validation_chose():
    assert postprocess.resolve(UNSET, STORED) == PostProcessing("watershed", 0.4, 40, 0.9, 2, 3)
    # a model.pt tuned before the merge existed: no merge; one tuned with it: its choice, unless the config says
    assert postprocess.resolve(UNSET, STORED).params()["merge_threshold"] == 1.0
    merging = {**STORED, "watershed": {**STORED["watershed"], "merge_threshold": 0.8, "merge_min_boundary": 3}}
    assert postprocess.resolve(UNSET, merging) == PostProcessing("watershed", 0.4, 40, 0.9, 2, 3, 0.8, 3)
    assert postprocess.resolve({**UNSET, "merge_threshold": 1.0}, merging).merge_threshold == 1.0
    assert postprocess.resolve({**UNSET, "seed_erosion": 0}, STORED).seed_erosion == 0
    assert postprocess.resolve({**UNSET, "instances": "components"}, STORED) == PostProcessing("components", 0.6, 0)
    given = {**UNSET, "instances": "components", "threshold": 0.5, "min_size": 7}
    assert postprocess.resolve(given, None) == PostProcessing("components", 0.5, 7)


@pytest.mark.parametrize("cfg, stored, missing", [
    (UNSET, None, "Fix: set predict.instances"),
    ({**UNSET, "instances": "watershed", "threshold": 0.5}, None, r"\['seed_threshold', 'seed_erosion'"),
    ({**UNSET, "instances": "components"}, {"chosen": "watershed", "watershed": STORED["watershed"]},
     "predict.threshold, predict.min_size"),
])
def test_a_model_without_stored_postprocessing_names_the_keys_to_set(cfg, stored, missing):
    with pytest.raises(InputError, match=f"m.pt: holds no .*{missing}"):
        postprocess.resolve(cfg, stored, "m.pt")


@pytest.mark.parametrize("method", postprocess.METHODS)
def test_chunked_labels_equal_the_whole_plane_extraction(planes, method):
    fg = planes[0][0]
    pp = next(itertools.islice(postprocess.candidates(method, GRID), 3, None))
    ref = postprocess.extract(fg, None, pp)
    labels, anchored = np.zeros(fg.shape, np.int32), np.zeros(fg.shape, np.int64)
    n, beyond = postprocess.label_chunked(fg, None, anchored, labels, 17, max(fg.shape), pp)
    assert n == ref.max() and beyond == 0 and same_partition(labels, ref)
