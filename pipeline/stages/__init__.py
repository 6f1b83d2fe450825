"""One thin module per dvc.yaml stage: parse arguments, read params, call the library."""
