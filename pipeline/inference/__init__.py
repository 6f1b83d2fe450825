"""Inference: line masks of photos and GeoTIFF scenes (the command is `python -m pipeline.predict`).

predictor.py    Predictor: a model folder or an ONNX file -> line probability of a batch
windows.py      blended overlapping windows, one row-strip at a time (scenes, large photos)
photos.py       the image route: photos -> <name>.png masks, large ones in windows
scene.py        the scene route: GeoTIFF -> georeferenced mask / probability GeoTIFFs
scene_reader.py which TIFFs are scenes; bands, scaling and nodata of a scene's windows
vectorise.py    mask GeoTIFF -> GeoJSON LineStrings, tile by tile
route.py        which inputs are photos and which scenes
"""
