"""Evaluators by name, chosen once per prepared dataset: a data kind scored by one evaluator only (points,
tokens) is scored by it; a kind that offers several (images) is scored by the one `evaluator.kind` names.
Adding an evaluator is one module (components/metrics/evaluators/base.py says what it declares) and one
line in the tuple below. Torch-free: the config's cross-checks ask this registry."""
from __future__ import annotations

import importlib

from components.metrics.evaluators.base import INFO, Evaluator, EvaluatorError, Scorer
from components.registry import Registry

EVALUATORS: Registry[Evaluator] = Registry("evaluator")

# Registration order is the order of the metric catalogue's columns (the default pipeline's evaluator first).
for _module, _class in (("classifier", "Classifier"), ("inception", "Inception"), ("mode_counter", "ModeCounter"),
                        ("per_channel", "PerChannel"), ("text", "Text"), ("text", "OracleText")):
    _evaluator = getattr(importlib.import_module(f"components.metrics.evaluators.{_module}"), _class)()
    EVALUATORS.register(_evaluator.name)(_evaluator)


def candidates(data_kind: str) -> list[Evaluator]:
    """The evaluators that score `data_kind` data, the default (the registry's first) first."""
    found = [e for e in EVALUATORS.values() if data_kind in e.data_kinds]
    if not found:
        raise EvaluatorError(f"no evaluator scores {data_kind} data; evaluators: "
                             + ", ".join(f"{e.name} ({'/'.join(e.data_kinds)})" for e in EVALUATORS.values()))
    return found


def evaluator_for(data_kind: str, kind: str | None = None) -> Evaluator:
    """The evaluator of `data_kind` data under `evaluator.kind` = `kind` (None: the kind's default)."""
    found = candidates(data_kind)
    if len(found) == 1 or kind is None:
        return found[0]
    chosen = [e for e in found if e.name == kind]
    if not chosen:
        raise EvaluatorError(f"evaluator.kind = {kind!r} does not score {data_kind} data; "
                             f"allowed: {', '.join(e.name for e in found)}")
    return chosen[0]


def evaluator_of(params, manifest: dict) -> Evaluator:
    """The evaluator of this prepared dataset under these params: the one choice everything asks."""
    return evaluator_for(manifest.get("kind", "image"), params.evaluator.kind)


def check_config(params) -> None:
    """The config's cross-checks: a data config only one evaluator can score needs that one, and the chosen
    evaluator's own requirements (before any data is prepared, so by evaluator.kind)."""
    for evaluator in EVALUATORS.values():
        why = evaluator.required_by(params)
        if why and params.evaluator.kind != evaluator.name:
            raise ValueError(f"{why}: set evaluator.kind = {evaluator.name}")
    chosen = EVALUATORS.get(params.evaluator.kind)
    if params.evaluator.holdout is not None and not chosen.takes_holdout:
        raise ValueError(f"evaluator.holdout = {params.evaluator.holdout} holds out part of the train split for the "
                         f"classifier evaluator's accuracy; evaluator.kind = {chosen.name} takes none: set it to null")
    chosen.check_config(params)


__all__ = ["EVALUATORS", "INFO", "Evaluator", "EvaluatorError", "Scorer", "candidates",
           "check_config", "evaluator_for", "evaluator_of"]
