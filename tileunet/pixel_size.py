"""The physical size of a pixel, as an image file declares it.

OME-TIFF, ImageJ TIFF, baseline TIFF resolution tags and OME-Zarr scales are read and
their units turned into the UDUNITS-2 names NGFF requires, so that predictions overlay
the input in its own units (NGFF 0.5, https://ngff.openmicroscopy.org/0.5/#axes-md).
"""

import logging
from pathlib import Path

import numpy as np
import tifffile

from .io import TIFF_SUFFIXES, ngff_image

log = logging.getLogger(__name__)

# Unit spellings of OME-XML (UnitsLength / UnitsTime), ImageJ and TIFF -> the UDUNITS-2 names NGFF
# requires in an axis' "unit" (https://ngff.openmicroscopy.org/0.5/#axes-md).  NGFF names map to themselves.
UNITS = {
    "ym": "yoctometer", "zm": "zeptometer", "am": "attometer", "fm": "femtometer", "pm": "picometer",
    "Å": "angstrom", "nm": "nanometer", "µm": "micrometer", "μm": "micrometer", "um": "micrometer",
    "micron": "micrometer", "microns": "micrometer", "mm": "millimeter", "cm": "centimeter",
    "dm": "decimeter", "m": "meter", "km": "kilometer", "in": "inch", "inch": "inch", "ft": "foot",
    "ys": "yoctosecond", "zs": "zeptosecond", "as": "attosecond", "fs": "femtosecond", "ps": "picosecond",
    "ns": "nanosecond", "µs": "microsecond", "μs": "microsecond", "us": "microsecond", "ms": "millisecond",
    "s": "second", "sec": "second", "min": "minute", "h": "hour", "d": "day",
}
NGFF_UNITS = {
    "space": {"angstrom", "attometer", "centimeter", "decimeter", "exameter", "femtometer", "foot", "gigameter",
              "hectometer", "inch", "kilometer", "megameter", "meter", "micrometer", "mile", "millimeter",
              "nanometer", "parsec", "petameter", "picometer", "terameter", "yard", "yoctometer", "yottameter",
              "zeptometer", "zettameter"},
    "time": {"attosecond", "centisecond", "day", "decisecond", "exasecond", "femtosecond", "gigasecond",
             "hectosecond", "hour", "kilosecond", "megasecond", "microsecond", "millisecond", "minute",
             "nanosecond", "petasecond", "picosecond", "second", "terasecond", "yoctosecond", "yottasecond",
             "zeptosecond", "zettasecond"},
}
# TIFF ResolutionUnit (tifffile.RESUNIT) -> micrometres per unit; NONE (1) says nothing physical
_MICROMETERS_PER_RESUNIT = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}


def ngff_unit(unit, kind="space"):
    """The NGFF (UDUNITS-2) name of a unit spelling, or None if unknown or of another kind.

    Examples
    --------
    >>> ngff_unit("µm"), ngff_unit("micron"), ngff_unit("s", "time"), ngff_unit("pixel")
    ('micrometer', 'micrometer', 'second', None)
    """
    if unit is None:
        return None
    name = str(unit).strip().replace("\\u00B5", "µ")
    name = UNITS.get(name, name.lower())
    return name if name in NGFF_UNITS[kind] else None


def _entry(path, axis, size, unit):
    """(size, unit) for one axis, or None if the file gives no usable size; warns on unknown units."""
    try:
        size = float(size)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(size) or size <= 0:
        return None
    size = float(f"{size:.12g}")  # 1 / (pixels per unit) as stored: 0.65 rather than 0.6499999999999999
    kind = "time" if axis == "t" else "space"
    name = ngff_unit(unit, kind)
    if unit is not None and name is None:
        log.warning("%s: unit %r of axis %s is not an NGFF %s unit; writing the size %g without a unit",
                    path, unit, axis, kind, size)
    return size, name


def _ome_tiff_sizes(tif):
    pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
    pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
    out = {a: (pixels.get(f"PhysicalSize{a.upper()}"), pixels.get(f"PhysicalSize{a.upper()}Unit", "µm"))
           for a in "xyz"}
    out["t"] = (pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s"))  # OME-XML defaults
    return out


def _tiff_sizes(tif):
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    (xres, yres), resunit = page.resolution, int(page.resolutionunit)
    ij = tif.imagej_metadata or {}
    out = {}
    if ij.get("unit") and resunit == 1:  # ImageJ: resolution in pixels per `unit`
        unit = ij["unit"]
        out = {"x": (1 / xres if xres else None, unit), "y": (1 / yres if yres else None, unit),
               "z": (ij.get("spacing"), unit)}
        if ij.get("finterval"):
            out["t"] = (ij["finterval"], ij.get("tunit", "s"))
    elif resunit in _MICROMETERS_PER_RESUNIT:  # baseline TIFF: pixels per inch / centimetre
        um = _MICROMETERS_PER_RESUNIT[resunit]
        out = {"x": (um / xres if xres else None, "micrometer"), "y": (um / yres if yres else None, "micrometer")}
    return out


def _ome_zarr_sizes(path, level=0):
    """Scale and units of an OME-Zarr image's ``level`` (NGFF 0.4 or 0.5), or of one of its resolution arrays."""
    ms, _, ds = ngff_image(path, level)
    if ds is None:
        return {}
    scale = np.ones(len(ms["axes"]))
    for transforms in (ds.get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for t in transforms:  # the dataset's scale, then the multiscale's global one
            if t.get("type") == "scale":
                scale = scale * np.asarray(t["scale"], dtype=float)
    axes = [a if isinstance(a, dict) else {"name": a} for a in ms["axes"]]
    return {a["name"].lower(): (s, a.get("unit")) for a, s in zip(axes, scale) if a["name"].lower() in "tzyx"}


def _tiff_level_factors(tif, level):
    """Pixel size of a pyramidal TIFF's ``level`` over level 0's, per spatial axis ("y", "x")."""
    series = tif.series[0]
    full, this = series.levels[0].shape, series.levels[level].shape
    axes = series.axes.lower()
    return {a: full[axes.index(a)] / this[axes.index(a)] for a in "yx" if a in axes}


def pixel_size(path, level=0):
    """Physical size of one pixel (or plane, or frame) per axis, as the image file declares it.

    Parameters
    ----------
    path : str or Path
        An image :func:`open_array` reads.
    level : int
        Resolution level of a pyramidal TIFF or OME-Zarr image (:func:`tileunet.io.open_image`):
        the TIFF's level 0 size times the level's subsampling; the OME-Zarr dataset's own scale.

    Returns
    -------
    dict
        Axis name (``"x"``, ``"y"``, ``"z"``, ``"t"``) -> ``(size, unit)``, ``unit`` an NGFF
        (UDUNITS-2) name such as ``"micrometer"`` or ``"second"``, or None where the file gives a
        size in a unit NGFF does not know.  Axes the file says nothing about are absent, so
        ``{}`` means "pixels": no physical size at all.

    Notes
    -----
    Sources, in order: OME-TIFF ``PhysicalSizeX/Y/Z`` (+ ``...Unit``, default µm) and
    ``TimeIncrement``; ImageJ TIFF resolution with its ``unit``, ``spacing`` and ``finterval``;
    baseline TIFF ``XResolution``/``YResolution`` in pixels per inch or centimetre (converted to
    micrometres; ``ResolutionUnit`` NONE declares nothing); an OME-Zarr image's scale of its
    first resolution (or of the array named) times the multiscale's global scale, with the
    axes' units.  Nothing here is ever fatal: an unreadable file is reported by
    :func:`open_array`.

    Examples
    --------
    >>> import tempfile, numpy as np, tifffile
    >>> f = tempfile.NamedTemporaryFile(suffix=".ome.tif", delete=False).name
    >>> tifffile.imwrite(f, np.zeros((4, 4), np.uint8), ome=True, metadata={"PhysicalSizeX": 0.65,
    ...                  "PhysicalSizeY": 0.65})
    >>> pixel_size(f)
    {'x': (0.65, 'micrometer'), 'y': (0.65, 'micrometer')}
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                raw = _ome_tiff_sizes(tif) if tif.is_ome else _tiff_sizes(tif)
                for axis, factor in (_tiff_level_factors(tif, level) if level else {}).items():
                    if axis in raw and raw[axis][0]:
                        raw[axis] = (raw[axis][0] * factor, raw[axis][1])
        elif path.is_dir():
            raw = _ome_zarr_sizes(path, level)
        else:
            raw = {}
    except Exception as exc:  # metadata is a bonus: the pixels are what open_array checks
        log.warning("%s: could not read its pixel size (%s); the prediction is written in pixels", path, exc)
        return {}
    out = {}
    for axis in "xyzt":
        if axis in raw:
            entry = _entry(path, axis, *raw[axis])
            if entry is not None:
                out[axis] = entry
    return out
