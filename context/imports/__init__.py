"""Imports: extraction from syntax trees (`extract`), resolution to repository files
(`resolve`), and the resolved graph of a project (`graph`)."""

from .extract import ImportRef, extract_imports
from .graph import ImportGraph, import_graph
from .resolve import PathIndex, resolve_import, resolve_import_all

__all__ = ["ImportGraph", "ImportRef", "PathIndex", "extract_imports", "import_graph", "resolve_import",
           "resolve_import_all"]
