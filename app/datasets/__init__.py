"""Datasets people bring: reading, checking and normalising rows (torch-free; used by the web process and the worker)."""

from .jsonl import read_rows
from .rows import NORMALISED_FORMATS, DatasetError, Rows

__all__ = ["NORMALISED_FORMATS", "DatasetError", "Rows", "read_rows"]
