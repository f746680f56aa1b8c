"""Datasets people bring: reading, checking and normalising rows (torch-free; used by the web process and the worker)."""

from .formats import SHAPE_TITLES, SHAPES, Detection, detect
from .load import read_rows
from .rows import NORMALISED_FORMATS, DatasetError, Rows

__all__ = ["NORMALISED_FORMATS", "SHAPES", "SHAPE_TITLES", "DatasetError", "Detection", "Rows", "detect", "read_rows"]
