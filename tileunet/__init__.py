"""tileunet: the U-Net paper's training strategy as a Snakemake pipeline.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical
Image Segmentation", MICCAI 2015 (arXiv 1505.04597).  Each module holds one
concept and knows nothing of Snakemake, so every piece is usable from a
notebook.
"""

__version__ = "0.1.0"
