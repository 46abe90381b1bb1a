"""The file-drop source's Prometheus counters."""

from __future__ import annotations

from prometheus_client import Counter

DROP_FILES_TAKEN = Counter(
    "exchange_node_drop_files_taken_total", "File-drop source: export files compared and logged as changes", ["table"]
)
DROP_FILES_REFUSED = Counter(
    "exchange_node_drop_files_refused_total", "File-drop source: malformed export files refused and left in place",
    ["table"],
)
