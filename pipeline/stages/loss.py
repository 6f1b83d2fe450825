"""Stage `loss`: compare losses for the thin, rare line class.

Not built yet: it passes its input model through unchanged and its report says so, so
the pipeline runs end to end while later issues fill it in.
"""

from pipeline.stages._cli import passthrough_main


def main(argv: list[str] | None = None) -> None:
    """Copy --model to --out; write a report marking the pass-through."""
    passthrough_main(__doc__, "loss", argv)


if __name__ == "__main__":
    main()
