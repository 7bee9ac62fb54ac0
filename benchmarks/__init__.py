"""Side-by-side measurements against the anchors (not tests): `python -m benchmarks.NAME`."""
