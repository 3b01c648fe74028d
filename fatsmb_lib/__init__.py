"""fatsmb_lib: the shared library of the FatsMB teaching notebooks (KDD '26 companion)."""

__version__ = "0.1.0"
