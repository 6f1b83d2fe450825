"""The pruning methods by name: the one list of them (torch-free, so the config can check
names without importing torch; a class is imported only when its method is asked for).

Adding a method: write a `pipeline.pruning.method.Method` subclass and add one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.errors import PipelineError, did_you_mean

METHODS: dict[str, str] = {  # name -> "module:Class"
    "hqs_l0": "pipeline.pruning.methods:HqsL0Method",
    "hqs_l0_plain": "pipeline.pruning.methods:HqsL0PlainMethod",
    "magnitude": "pipeline.pruning.methods:MagnitudeMethod",
    "slimming": "pipeline.pruning.methods:SlimmingMethod",
    "random": "pipeline.pruning.methods:RandomMethod",
    "bn_l1": "pipeline.pruning.methods:BNL1Method",
    "group_l2": "pipeline.pruning.methods:GroupL2Method",
    "sfp": "pipeline.pruning.soft:SfpMethod",
    "ssfp": "pipeline.pruning.soft:SsfpMethod",
    "cluster_ssfp": "pipeline.pruning.soft:ClusterSsfpMethod",
    "fpgm": "pipeline.pruning.filters:FpgmMethod",
    "hrank": "pipeline.pruning.rank_methods:HRankMethod",
    "chip": "pipeline.pruning.independence_methods:ChipMethod",
    "fm_rank_similarity": "pipeline.pruning.rank_methods:FmRankSimilarityMethod",
    "correlation_independence": "pipeline.pruning.independence_methods:CorrelationIndependenceMethod",
    "tcfp": "pipeline.pruning.tcfp:TcfpMethod",
}


def method_names() -> list[str]:
    """Every registered method name, in registry order."""
    return list(METHODS)


def check_method(name: str) -> str:
    """`name` if it is registered, else a PipelineError listing the valid names."""
    if name not in METHODS:
        raise PipelineError(
            f"prune method {name!r} is unknown{did_you_mean(str(name), method_names())}; valid: {', '.join(METHODS)}"
        )
    return name


def method_class(name: str) -> type:
    """The class registered as `name` (a pipeline.pruning.method.Method), imported now: the
    registry itself imports no method module, so config.py can use it without an import cycle."""
    module, _, attr = METHODS[check_method(name)].partition(":")
    return getattr(importlib.import_module(module), attr)


def options_class(name: str) -> type[BaseModel]:
    """The pydantic model of the `prune.<name>` block."""
    return method_class(name).Options


def create_method(name: str, options: dict[str, Any] | None = None) -> Any:
    """The Method `name` with its options block (validated; None or {} for the defaults)."""
    cls = method_class(name)
    return cls(cls.Options.model_validate(options or {}))


def check_options(name: str, block: Any, common: list[str]) -> dict[str, Any]:
    """The block `prune.<name>` validated by its method's options class (defaults filled in);
    a ValidationError located at the failing key otherwise, so params.py names it. `common`:
    the prune section's own keys, listed with the method names when `name` is neither."""
    if name not in METHODS:
        valid = [*common, *METHODS]
        owners = [m for m in METHODS if name in options_class(m).model_fields]
        hint = f"; it is an option of prune.{owners[0]}" if owners else did_you_mean(str(name), valid)
        raise _error((name,), block, f"unknown key{hint} (valid keys: {', '.join(valid)})")
    options = options_class(name)
    try:
        return options.model_validate(block if block is not None else {}).model_dump()
    except ValidationError as err:
        first = err.errors()[0]
        loc = (name, *first["loc"])
        if first["type"] == "extra_forbidden":
            keys = list(options.model_fields)
            hint = did_you_mean(str(first["loc"][-1]), keys)
            raise _error(loc, first["input"], f"unknown key{hint} (valid keys: {', '.join(keys) or 'none'})") from None
        raise ValidationError.from_exception_data(err.title, [{**first, "loc": loc}]) from None


def _error(loc: tuple, value: Any, message: str) -> ValidationError:
    return ValidationError.from_exception_data(
        "PruneCfg", [{"type": "value_error", "loc": loc, "input": value, "ctx": {"error": ValueError(message)}}]
    )
