"""Channel pruning: feature templates per dependency group (templates.py), the methods that
decide which channels go under a MAC target (method.py, methods.py, named in registry.py)
and the stage logic (run.py). Kept import-free, so the registry loads without torch."""
