"""Small shared utilities (checkpoint files, image grids)."""
