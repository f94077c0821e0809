"""Data: raw sources, the embedded synthetic family, the prepared store and splits."""
