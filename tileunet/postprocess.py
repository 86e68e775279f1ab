"""From probability to instances: the post-processing, and its choice on the validation images.

Two methods: ``components``, the paper's 4-connected components of
``foreground > threshold`` (section 2), and ``watershed``, the seeded
watershed of :mod:`tileunet.watershed`, which separates touching cells and
joins the pieces of a cell cut across a high boundary.
Their parameters are not fixed for one data set: as nnU-Net determines its
post-processing on the validation folds (Isensee et al. 2021), :func:`tune`
tries a grid of them on the validation images at the end of training and
keeps the one with the best mean instance F1 (ties: the best foreground
IoU, then the best panoptic quality, then the best scores on augmented
copies of the validation images).  The choice is stored in ``model.pt``;
predict uses it unless the config sets a value (:func:`resolve`).
"""

import dataclasses
import functools
import itertools
import logging

import numpy as np
from scipy import ndimage

from . import instances, metrics, watershed
from .errors import InputError
from .tiling import chunk_slices, grid_of

log = logging.getLogger(__name__)

METHODS = ("components", "watershed")
#: Parameters of each method; the rest of :class:`PostProcessing`'s fields are ignored by it.
PARAMETERS = {"components": ("threshold", "min_size"),
              "watershed": ("threshold", "seed_threshold", "seed_erosion", "min_seed_size", "merge_threshold",
                            "merge_min_boundary", "min_size")}
#: ``predict`` config key (and ``train.tune`` grid key) of each parameter.
GRID_KEYS = {"threshold": "thresholds", "seed_threshold": "seed_thresholds", "seed_erosion": "seed_erosions",
             "min_seed_size": "min_seed_sizes", "merge_threshold": "merge_thresholds",
             "merge_min_boundary": "merge_min_boundaries", "min_size": "min_sizes"}
#: Parameters applied to the flood's labels; :func:`tune` scores all their values on one flood.
#: They come last in :data:`PARAMETERS`, so that grid order is kept.
AFTER_FLOOD = ("merge_threshold", "merge_min_boundary", "min_size")
#: The merge of a model.pt tuned before merging existed: none.
NO_MERGE = {"merge_threshold": 1.0, "merge_min_boundary": 1}


@dataclasses.dataclass(frozen=True)
class PostProcessing:
    """One instance extraction: the method and its parameters.

    Attributes
    ----------
    instances : {"components", "watershed"}
    threshold : float
        Foreground probability above which a pixel belongs to a cell.
    seed_threshold : float or None
        Watershed markers: seed map above this (:func:`tileunet.watershed.markers`).
    seed_erosion : int or None
        Radius (px) the markers are eroded by.
    min_seed_size : int or None
        Markers with fewer pixels are dropped.
    merge_threshold : float
        Adjacent instances are joined where the seed map along their
        boundary averages above this (:func:`tileunet.watershed.merge`; 1: never).
    merge_min_boundary : int
        Boundaries shorter than this (px) are never joined.
    min_size : int
        Instances with fewer pixels are removed.
    """

    instances: str
    threshold: float
    min_size: int
    seed_threshold: float = None
    seed_erosion: int = None
    min_seed_size: int = None
    merge_threshold: float = NO_MERGE["merge_threshold"]
    merge_min_boundary: int = NO_MERGE["merge_min_boundary"]

    def __post_init__(self):
        if self.instances not in METHODS:
            raise ValueError(f"instances must be one of {METHODS}, got {self.instances!r}")
        missing = [k for k in PARAMETERS[self.instances] if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{self.instances} post-processing needs {missing}")

    def params(self):
        """The parameters this method uses, as a dict (JSON-serialisable)."""
        return {k: getattr(self, k) for k in PARAMETERS[self.instances]}

    def as_dict(self):
        return {"instances": self.instances, **self.params()}


def extract(foreground, seed_map, pp):
    """Instance labels of one 2D plane (the whole-image reference of the chunked step).

    Parameters
    ----------
    foreground : numpy.ndarray of float, shape (Y, X)
    seed_map : numpy.ndarray of float, shape (Y, X), or None
        Interior probability of a border-class model; None for a two-class one.
    pp : PostProcessing

    Returns
    -------
    numpy.ndarray of int32, shape (Y, X)
    """
    if pp.instances == "components":
        return drop_small(ndimage.label(np.asarray(foreground) > pp.threshold)[0], pp.min_size)
    p = pp.params()
    min_size = p.pop("min_size")
    return watershed.watershed_plane(foreground, seed_map, **p, min_size=min_size)


def candidates(method, grid):
    """Every :class:`PostProcessing` of ``method`` on the ``train.tune`` grid, in grid order."""
    keys = PARAMETERS[method]
    for values in itertools.product(*(grid[GRID_KEYS[k]] for k in keys)):
        yield PostProcessing(method, **dict(zip(keys, values)))


def _crop(foreground, truth, lowest, margin):
    """Box holding every pixel above the lowest threshold and every true cell, plus ``margin`` px."""
    where = (np.asarray(foreground) > lowest) | (np.asarray(truth) > 0)
    if not where.any():
        return (slice(0, 1), slice(0, 1))
    box = ndimage.find_objects(where.astype(np.int8))[0]
    return tuple(slice(max(s.start - margin, 0), s.stop + margin) for s in box)


def drop_small(labels, min_size):
    """Instances with fewer than ``min_size`` px set to 0, the rest renumbered 1..K in their order."""
    sizes = np.bincount(np.asarray(labels).ravel())
    keep = sizes >= max(min_size, 1)
    keep[0] = False
    return (np.cumsum(keep) * keep).astype(np.int32)[labels]


def _after_flood(method, grid):
    """Every combination of ``method``'s :data:`AFTER_FLOOD` parameters on the grid, as dicts in grid order."""
    keys = [k for k in PARAMETERS[method] if k in AFTER_FLOOD]
    return [dict(zip(keys, v)) for v in itertools.product(*(grid[GRID_KEYS[k]] for k in keys))]


def _labelings(fg, seeds, pp, variants):
    """Labels of ``pp`` with each variant's :data:`AFTER_FLOOD` values, from one threshold or flood.

    Yields (key, labels): variants with equal keys have equal labels (a
    merge threshold that joins nothing leaves the flood as it is), so that
    :func:`_scores` scores each labeling once.
    """
    if pp.instances == "components":
        base = ndimage.label(np.asarray(fg) > pp.threshold)[0]

        def joins(v):
            return ()

        def joined(join):
            return base
    else:
        sm = fg if seeds is None else seeds
        lab, anchors = watershed.flood_window(fg, sm, pp.threshold, pp.seed_threshold, pp.seed_erosion,
                                              pp.min_seed_size)
        table = watershed.boundaries(lab, sm)

        def joins(v):
            return tuple(watershed.joining(table, v["merge_threshold"], v["merge_min_boundary"]))

        def joined(join):
            return watershed.join(lab, anchors, table[0][list(join)])[0] if join else lab

    merged = functools.cache(joined)

    @functools.cache
    def labels(join, size):
        return drop_small(merged(join), size) if size > 1 else merged(join)

    for v in variants:
        key = (joins(v), v["min_size"] if v["min_size"] > 1 else 0)
        yield key, labels(*key)


def _scores(planes, pp, variants, iou_threshold):
    """(F1, IoU, PQ) means over planes of ``pp`` with each of ``variants``: array (len(variants), 3)."""
    out = np.zeros((len(variants), 3))
    for fg, seeds, truth in planes:
        done = {}
        for k, (key, pred) in enumerate(_labelings(fg, seeds, pp, variants)):
            if key not in done:
                match = metrics.match_instances(pred, truth, iou_threshold)
                done[key] = (match.f1, metrics.foreground_iou(pred, truth), match.panoptic_quality)
            out[k] += done[key]
    return out / len(planes)


def _crops(planes, grid):
    """Each plane cropped to its cells (:func:`_crop`), with the margin the grid's widest erosion needs."""
    margin = 2 + max(grid["seed_erosions"])
    out = []
    for fg, seeds, truth in planes:
        box = _crop(fg, truth, min(grid["thresholds"]), margin)
        out.append((np.asarray(fg)[box], None if seeds is None else np.asarray(seeds)[box], np.asarray(truth)[box]))
    return out


def tune(planes, grid, iou_threshold=0.5, methods=METHODS, tie_planes=()):
    """The post-processing of each method with the best validation F1 (ties: IoU, PQ, copies), and the best overall.

    Parameters
    ----------
    planes : list of (foreground, seed_map or None, true_labels)
        Validation planes, (Y, X) each; cropped to their cells here, which
        leaves every score unchanged and makes the search fast.
    grid : dict
        The ``train.tune`` config: a list of values per parameter.
    iou_threshold : float
    methods : sequence of str
    tie_planes : list of (foreground, seed_map or None, true_labels)
        The same maps of augmented copies of the validation planes
        (:func:`tileunet.validation.augmented_copies`); they rank only the
        candidates tied on ``planes``.  Empty: grid order ranks those.

    Returns
    -------
    dict
        ``{"chosen": method, method: {"instances", parameters..., "val_f1", "val_iou", "val_pq",
        "val_ties"[, "aug_f1", "aug_iou", "aug_pq", "aug_ties"]}, ...}``,
        JSON-serialisable, as stored in ``model.pt``.  ``val_ties`` counts
        the candidates (the winner included) with its very F1, IoU and PQ
        on ``planes``; with ``tie_planes``, ``aug_*`` are the winner's means
        on them and ``aug_ties`` counts the candidates still equal after
        them.  Of candidates equal in all, the first in grid order wins
        (:func:`warn_ties`).

    Notes
    -----
    Many candidates share the best F1 and foreground IoU when they differ
    only in where they cut the same foreground into the same number of
    matched cells (30 of 480 on the demo's four validation frames).  The
    panoptic quality (Kirillov et al. 2019, the CoNIC challenge's measure
    for nuclei) is F1 times the mean IoU of the matched cells, so at equal
    F1 it prefers the candidate whose cells overlap the true ones best.
    Candidates still equal cut the validation frames identically; the
    augmented copies, drawn with the training set's own deformations and
    gray-value variations from the validation frames alone, show them the
    variation (pale, deformed cells) those frames lack.  Every choice is
    made on validation images, never on test.  The checkpoint is still
    chosen by (F1, IoU) on ``planes``
    (:meth:`tileunet.training_run.TrainingRun.consider`), which the tie
    breaks leave unchanged.
    """
    if not planes:
        raise ValueError("post-processing is tuned on validation images, and there are none. "
                         "Fix: give some samples split val in the sample table")
    crops, extra = _crops(planes, grid), _crops(tie_planes, grid)
    result, best = {}, None
    for method in methods:
        top, tied, tried = None, [], 0
        variants = _after_flood(method, grid)
        for pp in candidates(method, {**grid, **{GRID_KEYS[k]: [v] for k, v in variants[0].items()}}):
            for v, score in zip(variants, _scores(crops, pp, variants, iou_threshold)):
                score, tried = tuple(map(float, score)), tried + 1
                if top is None or score > top:
                    top, tied = score, []
                if score == top:
                    tied.append(dataclasses.replace(pp, **v))
        key, pp, record = _break_tie(top, tied, extra, iou_threshold)
        result[method] = {**pp.as_dict(), **record}
        log.info("post-processing %s: %s (validation F1 %.3f, IoU %.3f, PQ %.3f; %d tried, %d of them score the "
                 "same%s)", method, pp.params(), *top, tried, len(tied),
                 f"; on {len(extra)} augmented copies F1 {record['aug_f1']:.3f}, IoU {record['aug_iou']:.3f}, "
                 f"PQ {record['aug_pq']:.3f}, {record['aug_ties']} still the same" if extra else "")
        if best is None or key > best[0]:
            best = (key, method)
    result["chosen"] = best[1]
    return result


def _break_tie(top, tied, extra, iou_threshold):
    """The first of the ``tied`` candidates (validation score ``top``) with the best scores on the ``extra`` crops.

    Returns
    -------
    (tuple, PostProcessing, dict)
        The ranking key (validation, then copy scores), the winner and its ``val_*``/``aug_*`` record.
    """
    record = dict(zip(("val_f1", "val_iou", "val_pq"), top), val_ties=len(tied))
    if not extra:
        return top, tied[0], record
    scores = [tuple(map(float, _scores(extra, pp, [{k: getattr(pp, k) for k in AFTER_FLOOD}], iou_threshold)[0]))
              for pp in tied]
    win = max(range(len(tied)), key=lambda k: (scores[k], -k))
    record.update(zip(("aug_f1", "aug_iou", "aug_pq"), scores[win]), aug_ties=scores.count(scores[win]))
    return top + scores[win], tied[win], record


def _fmt(value):
    return "not recorded" if value is None else f"{value:.3f}"


def warn_ties(tuned):
    """Log a warning when validation could not tell the chosen post-processing from others.

    Parameters
    ----------
    tuned : dict or None
        :func:`tune`'s result (records without ``val_ties``, from an older
        ``model.pt``, count as decided).

    Returns
    -------
    int
        The number of tied candidates, the chosen one included (1: decided).
    """
    best = (tuned or {}).get((tuned or {}).get("chosen"), {})
    ties = int(best.get("aug_ties", best.get("val_ties", 1)))
    if ties > 1:
        copies = " and on their augmented copies" if "aug_ties" in best else ""
        log.warning("%d post-processings of train.tune's grid score the same on the validation images%s (F1 %.3f, "
                    "IoU %.3f, PQ %s); the first in grid order is used, %s. Validation cannot tell them apart, and "
                    "on other images they may differ. Fix: add validation samples like the images you will predict "
                    "(as dense, with the same kinds of cells), or set predict.instances and its parameters yourself",
                    ties, copies, best["val_f1"], best["val_iou"], _fmt(best.get("val_pq")),
                    {k: best[k] for k in PARAMETERS[best["instances"]]})
    return ties


def resolve(cfg, stored, source="model.pt"):
    """The post-processing predict uses: the config's values where set, else those chosen on validation.

    Parameters
    ----------
    cfg : dict
        The ``predict`` config; ``instances`` and each parameter may be None.
    stored : dict or None
        :func:`tune`'s result from ``model.pt``.
    source : str
        Where ``stored`` came from, for the error message.

    Returns
    -------
    PostProcessing

    Raises
    ------
    InputError
        If a parameter is neither set nor stored.
    """
    stored = stored or {}
    method = cfg.get("instances") or stored.get("chosen")
    if method is None:
        raise InputError(source, "holds no post-processing chosen on validation images (it was written by "
                         "an older tileunet, or trained without validation samples)",
                         "set predict.instances and its parameters in the config, or re-train "
                         "(snakemake --forcerun train_model)")
    chosen = {**NO_MERGE, **stored.get(method, {})}
    values = {k: cfg.get(k) if cfg.get(k) is not None else chosen.get(k) for k in PARAMETERS[method]}
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise InputError(source, f"holds no {method} parameter {missing} chosen on validation images",
                         f"set predict.{', predict.'.join(missing)} in the config, or re-train "
                         f"(snakemake --forcerun train_model)")
    return PostProcessing(method, **values)


def label_chunked(foreground, seed_map, anchored, labels, chunk, halo, pp, decode=np.asarray, workers=1,
                  progress=None):
    """Chunked instance labels of a stored slide: ``pp``'s method, written chunk by chunk.

    See :func:`tileunet.watershed.label_chunked` for the arguments; the
    components method needs no halo, scratch array or seed map (it is exact
    for objects of any size, :mod:`tileunet.instances`).

    Returns
    -------
    (int, int)
        Number of instances, and of instances reaching beyond the halo (0 for components).
    """
    if pp.instances == "components":
        shape = foreground.shape

        def read_mask(p, cy, cx):
            if progress:
                progress(1)
            return decode(foreground[chunk_slices(shape, chunk, p, cy, cx)]) > pp.threshold

        def write(p, cy, cx, lab):
            labels[chunk_slices(shape, chunk, p, cy, cx)] = lab

        grid = grid_of(shape, chunk)
        return instances.label_chunked(read_mask, write, grid, pp.min_size), 0
    p = pp.params()
    min_size = p.pop("min_size")
    return watershed.label_chunked(foreground, seed_map, anchored, labels, chunk, halo, p, min_size, decode,
                                   workers, progress)
