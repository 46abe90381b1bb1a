"""The resource catalog: entries with national core metadata and their review workflow."""
