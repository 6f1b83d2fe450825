"""The device latency table: layer shapes (layers.py), one small ONNX file per shape and
width pair (files.py), timed on the device by deploy/time_layers.py, read back and summed
into a whole-model prediction (table.py)."""
