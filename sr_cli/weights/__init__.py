"""Weights: manifest, download + sha256, safe reading, layout detection, interpolation, safetensors out.

The only module that imports huggingface_hub.
"""
