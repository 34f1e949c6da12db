"""Image support: A1111-compatible infotext (infotext.py), model hashes (hashing.py) and related helpers."""
