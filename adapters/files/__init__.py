"""File-drop source: full table exports dropped in a directory, diffed into changes."""
