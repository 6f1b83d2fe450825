"""Source registry: `prepare.source` names one of these readers."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import PrepareCfg
from pipeline.data.sources.base import Sample, Source
from pipeline.errors import PipelineError

SOURCE_NAMES = ("synthetic", "pld-uav", "ttpla", "folder", "geotiff")


def create_source(cfg: PrepareCfg, seed: int) -> Source:
    """Build the reader `cfg.source` names; imports are lazy so rasterio loads only if used."""
    root = Path(cfg.root)
    if cfg.source != "synthetic" and not root.exists():
        raise PipelineError(f"{root}: prepare.root does not exist (source {cfg.source})")
    if cfg.source == "synthetic":
        from pipeline.data.sources.synthetic import SyntheticSource

        return SyntheticSource(cfg.synthetic, seed)
    if cfg.source == "pld-uav":
        from pipeline.data.sources.pld_uav import PldUavSource

        return PldUavSource(root)
    if cfg.source == "ttpla":
        from pipeline.data.sources.ttpla import TtplaSource

        return TtplaSource(root, cfg.ttpla)
    if cfg.source == "folder":
        from pipeline.data.sources.folder import FolderSource

        return FolderSource(root, cfg.folder)
    if cfg.source == "geotiff":
        from pipeline.data.sources.geotiff import GeotiffSource

        return GeotiffSource(root, cfg.geotiff)
    raise PipelineError(f"unknown source {cfg.source!r}; valid: {', '.join(SOURCE_NAMES)}")


__all__ = ["SOURCE_NAMES", "Sample", "Source", "create_source"]
