"""The images a chart runs, mirrored with it: references.py names them, discovery.py finds them,
transfer.py copies them byte for byte, mirror.py checks or syncs one image item."""
