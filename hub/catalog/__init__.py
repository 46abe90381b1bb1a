"""The resource catalog: entries with national core metadata and their review workflow."""

from hub.catalog.catalog import Catalog
from hub.catalog.entry import CatalogEntry, WorkflowError
from hub.catalog.metadata import InvalidEntry, Problem

__all__ = ["Catalog", "CatalogEntry", "InvalidEntry", "Problem", "WorkflowError"]
