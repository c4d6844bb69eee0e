"""Faithful image reading and atomic writing (bit depth, alpha, ICC, EXIF, text chunks)."""
