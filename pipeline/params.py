"""Reading params.yaml: safe YAML, one-line errors naming the key, each stage its own sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config import (
    AugmentCfg,
    BaseCfg,
    BaselineCfg,
    ExportCfg,
    FinetuneCfg,
    LossCfg,
    ModelCfg,
    PredictCfg,
    PrepareCfg,
    PruneCfg,
    ReportCfg,
    Strict,
    SweepCfg,
    TrainCfg,
    TrainerCfg,
)
from pipeline.errors import PipelineError, did_you_mean, one_line
from pipeline.sections import PickCfg, PretrainCfg, QuantizeCfg


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader (no arbitrary tags) that refuses a key given twice in one mapping: plain
    YAML keeps the last one silently, so half of a section would be ignored."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool, type(None))):  # [a]: 1 would be a TypeError
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a plain value, got a {type(key).__name__}", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_params(path: Path | str = "params.yaml") -> dict[str, Any]:
    """Read params.yaml safely: no arbitrary YAML tags, no duplicate keys, one-line errors."""
    path = Path(path)
    try:
        with path.open("rb") as f:  # bytes: YAML's reader reports bad encodings as a YAMLError
            params = yaml.load(f, Loader=UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader subclass
    except (OSError, yaml.YAMLError, RecursionError) as err:  # RecursionError: [[[[... nested too deep
        raise PipelineError(f"{path}: cannot read params ({one_line(err, 300)})") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{path}: expected a mapping of sections")
    return params


def parse_section(params: dict[str, Any], name: str, schema: type[Strict], path: str = "params.yaml"):
    """Validate one section; errors name the key and the problem: a misspelt key gets the
    closest valid key and the valid keys there, a wrong value what was given."""
    try:
        return schema.model_validate(params.get(name) or {})
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(part) for part in first["loc"]]
        keys = _keys_at(schema, loc)
        if first["type"] == "extra_forbidden":  # a misspelt key: suggest the closest valid one
            problem = f"unknown key{did_you_mean(loc[-1], keys)} (valid keys: {', '.join(keys)})"
        elif first["type"] == "missing":
            problem = "required key is missing"
        elif first["type"] == "value_error":  # our own validators say what is wrong
            problem = first["msg"]
        else:  # a wrong type or value: say what was given
            problem = f"{first['msg']}, got {one_line(repr(first['input']), 40)}"
        raise PipelineError(f"{path}: {'.'.join([name, *loc])}: {problem}") from None


def _keys_at(schema: type[Strict], loc: list[str]) -> list[str]:
    """The valid keys of the innermost config model on the error's path."""
    for part in loc[:-1]:
        field = schema.model_fields.get(part)
        inner = field.annotation if field else None
        if not (isinstance(inner, type) and issubclass(inner, Strict)):
            break
        schema = inner
    return list(schema.model_fields)


SECTIONS: dict[str, type[Strict]] = {
    "base": BaseCfg, "prepare": PrepareCfg, "model": ModelCfg, "train": TrainCfg,
    "trainer": TrainerCfg, "baseline": BaselineCfg, "augment": AugmentCfg, "loss": LossCfg,
    "sweep": SweepCfg, "prune": PruneCfg, "finetune": FinetuneCfg, "pick": PickCfg, "export": ExportCfg,
    "report": ReportCfg, "predict": PredictCfg, "pretrain": PretrainCfg, "quantize": QuantizeCfg,
}


def validate_params(params: dict[str, Any], path: str = "params.yaml") -> None:
    """Check every section (used before a preset is written into params.yaml)."""
    _check_section_names(params, path)
    for name, schema in SECTIONS.items():
        parse_section(params, name, schema, path)


def _check_section_names(params: dict[Any, Any], path: str) -> None:
    """A misspelt section (`trian:`) must fail, not leave `train` silently at its defaults."""
    unknown = sorted(str(key) for key in params if key not in SECTIONS)
    if unknown:
        raise PipelineError(f"{path}: unknown section {unknown[0]!r}{did_you_mean(unknown[0], list(SECTIONS))} "
                            f"(valid sections: {', '.join(SECTIONS)})")


def load_sections(path: Path | str, *names: str) -> list[Strict]:
    """Read params.yaml and validate just the named sections (a stage reads only its own);
    a section name that is not in the schema is an error in every stage."""
    params = load_params(path)
    _check_section_names(params, str(path))
    return [parse_section(params, name, SECTIONS[name], str(path)) for name in names]
