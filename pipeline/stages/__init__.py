"""One thin module per dvc.yaml stage: parse arguments, read params, call the library."""

import time

STARTED = time.monotonic()  # `python -m pipeline.stages.X` imports this first: the stage's wall clock starts here
