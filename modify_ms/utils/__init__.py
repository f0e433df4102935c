"""Small helpers with no model code (image grids, ...)."""
