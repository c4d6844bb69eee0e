"""Datasets: benchmark sets (lookup, download, sha256) and training data."""
