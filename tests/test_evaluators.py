"""Evaluators and data kinds are chosen once (components/metrics/evaluators/): every data kind is scored by an
evaluator that declares it, the evaluator refuses data it was not made for, the evaluator stage depends on
every file that defines one, evaluate prints what the evaluator and the family report, and nothing outside
the metrics and data packages compares an evaluator's or a data kind's name."""
from __future__ import annotations

import ast

import pytest
import yaml

from components.config import load_params
from components.data.kinds import DATA_KINDS
from components.families import FAMILIES
from components.metrics.evaluators import EVALUATORS, EvaluatorError, evaluator_for
from conftest import REPO

NAMES = set(EVALUATORS.names()) | set(DATA_KINDS.names()) | {"per_channel", "mode counter", "feature network"}


def _modules(*dirs):
    for d in dirs:
        yield from sorted((REPO / d).rglob("*.py"))


def _compares_a_name(node) -> bool:
    if not isinstance(node, ast.Compare):
        return False
    for side in (node.left, *node.comparators):
        for c in ast.walk(side):
            if isinstance(c, ast.Constant) and c.value in NAMES:
                return True
    return False


def test_no_code_outside_metrics_and_data_compares_an_evaluator_or_data_kind_name():
    found = []
    for path in _modules("components", "pipelines"):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(("components/metrics/", "components/data/")):
            continue
        found += [f"{rel}:{n.lineno}" for n in ast.walk(ast.parse(path.read_text())) if _compares_a_name(n)]
    assert len(found) <= 2, "comparisons against evaluator / data-kind names:\n" + "\n".join(found)


def test_stages_never_sniff_what_samples_are():
    """No hasattr in a stage, and isinstance only of numbers and exceptions: samples say what they are."""
    sniffs = []
    for path in _modules("pipelines"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id == "hasattr":
                sniffs.append(f"{path.name}:{node.lineno} hasattr")
            if node.func.id == "isinstance":
                types = [t.id if isinstance(t, ast.Name) else getattr(t, "attr", "?") for t in ast.walk(node.args[1])
                         if isinstance(t, (ast.Name, ast.Attribute))]
                if not all(t in ("int", "float") or t.endswith(("Error", "Interrupt")) or t == "mlflow_store"
                           for t in types):
                    sniffs.append(f"{path.name}:{node.lineno} isinstance(…, {', '.join(types)})")
    assert not sniffs, "\n".join(sniffs)


@pytest.mark.parametrize("kind", DATA_KINDS.names())
def test_every_data_kind_has_an_evaluator_and_its_default_leads(kind):
    chosen = evaluator_for(kind)
    assert kind in chosen.data_kinds and chosen.default_metric in chosen.metrics


def test_the_evaluator_is_chosen_from_the_data_kind_and_evaluator_kind():
    assert evaluator_for("image", "inception").name == "inception"
    assert evaluator_for("points", "inception").name == "mode_counter"  # a kind one evaluator scores is scored by it
    assert evaluator_for("oracle_tokens").metrics["nll_oracle"] is False
    with pytest.raises(EvaluatorError, match="evaluator.kind = 'per_channel' does not score pairs data"):
        evaluator_for("pairs", "per_channel")


def test_the_evaluator_stage_depends_on_every_file_that_defines_an_evaluator():
    deps = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["evaluator"]["deps"])
    assert "components/metrics/evaluators" in deps
    for evaluator in EVALUATORS.values():
        missing = set(evaluator.deps) - deps
        assert not missing, f"{evaluator.name}: dvc.yaml's evaluator stage does not depend on {missing}"
        assert all((REPO / d).exists() for d in evaluator.deps)


@pytest.mark.parametrize("kind", DATA_KINDS.names())
def test_evaluate_prints_every_metric_the_evaluator_and_family_report(kind):
    from pipelines.evaluate import COSTS, printed

    for family in (f for f in FAMILIES.values() if kind in f.data_kinds or (kind == "pairs" and f.pairing)):
        for evaluator in (e for e in EVALUATORS.values() if kind in e.data_kinds):
            params = load_params(REPO / "params.yaml", ["preset=null", f"evaluator.kind={evaluator.name}",
                                                        "evaluator.inception_weights=w.pt"]) \
                if evaluator.name in ("classifier", "inception") else None
            names = family.metric_names(params, kind) if params else \
                [*evaluator.metric_names(family.conditioning), *family.own_metrics]
            shown = [*names, *evaluator.floor_metrics, *family.printed_extra, *COSTS]
            report = {name: 0.5 for name in shown} | {name + "_seed_std": 0.01 for name in names}
            line = printed(report, shown)
            for name in names:
                assert f"{name}=0.5±0.01" in line, (family.name, evaluator.name, name)


def test_an_evaluator_made_for_other_data_is_refused_naming_both(tmp_path):
    from components.data.shards import read_manifest
    from components.evaluation import open_evaluator
    from pipelines import evaluator, prepare

    params = load_params(None, ["preset=ring8", f"data.prepared_dir={tmp_path / 'prepared'}",
                                f"evaluator.output_dir={tmp_path / 'evaluator'}"])
    prepare.run(params, tmp_path)
    made_for = evaluator.run(params, tmp_path)["content_hash"]
    assert open_evaluator(params, tmp_path).hash == evaluator.run(params, tmp_path)["hash"]
    other = params.with_overrides({"seed": 1})
    prepare.run(other, tmp_path)
    here = read_manifest(other.prepared_path(tmp_path))["content_hash"]
    assert here != made_for
    with pytest.raises(EvaluatorError, match=f"made for data {made_for[:12]} .* holds data {here[:12]}"):
        open_evaluator(other, tmp_path)
