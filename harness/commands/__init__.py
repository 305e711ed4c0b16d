"""CLI command implementations; each module keeps heavy imports inside functions."""
