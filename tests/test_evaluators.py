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
    with pytest.raises(EvaluatorError, match=f"made for dataset ring8 \\(content hash {made_for[:12]}\\), .* is "
                                             f"dataset ring8 \\(content hash {here[:12]}\\).*`dvc repro evaluator`"):
        open_evaluator(other, tmp_path)


@pytest.fixture
def series_kind(monkeypatch):
    """docs/architecture.md's worked example, registered for one test: the data kind `series`, its source and
    its `spectrum` evaluator; mlp trains on it. Nothing else is edited."""
    import numpy as np

    from components.data.kinds import Points
    from components.data.source_data import SOURCES, SourceData
    from components.metrics.evaluators import Evaluator, Scorer

    class Series(Points):
        name = "series"

    def sines(cfg) -> SourceData:
        rng = np.random.default_rng(0)
        labels = rng.integers(4, size=1200)
        t = np.arange(16) / 16
        x = np.sin(2 * np.pi * (labels[:, None] + 1) * t + rng.uniform(0, 6.3, (1200, 1)))
        return SourceData(x.astype(np.float32), labels, [f"{f} cycles" for f in range(1, 5)], declared_kind="series")

    def spectrum(x):
        return (np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64), axis=1)) ** 2).mean(0)

    class SpectrumScorer(Scorer):
        def reference(self, test):
            return spectrum(test.x)

        def score(self, reference, fake, labels, params):
            return {"spectral_l1": float(np.abs(spectrum(fake) - reference).sum())}

        def floor(self, reference, params, metrics):
            from components.data.shards import load_split

            return {"floor_spectral_l1": float(np.abs(spectrum(load_split(self.prepared, "train")[0]) - reference).sum())}

    class Spectrum(Evaluator):
        name, data_kinds, metrics, default_metric = "spectrum", ("series",), {"spectral_l1": False}, "spectral_l1"
        floor_metrics, family_ranks = ("floor_spectral_l1",), False

        def plan(self, params, manifest, retrain=False):
            return "records the spectrum scorer"

        def build(self, params, manifest, prepared, out_dir, retrain=False, pin=False):
            return self.write_info({**self.meta(params, manifest), "kind": "spectrum", "hash": "5" * 64}, out_dir)

        def scorer(self, evaluator_dir, info, prepared, manifest):
            return SpectrumScorer(self, info, prepared, manifest)

    DATA_KINDS.register("series")(Series())
    SOURCES.register("sines")(sines)
    EVALUATORS.register("spectrum")(Spectrum())
    monkeypatch.setattr(type(FAMILIES.get("mlp")), "data_kinds", ("points", "series"))
    yield
    for registry, name in ((DATA_KINDS, "series"), (SOURCES, "sines"), (EVALUATORS, "spectrum")):
        registry.unregister(name)


def test_a_new_data_kind_and_its_evaluator_need_no_other_edit(series_kind, tmp_path):
    from components.evaluation import TestSplit, measure, metric_and_mode, open_evaluator
    from components.metrics.catalogue import all_metrics
    from components.training.checkpoint import generator_from_state
    from conftest import tiny_params, train_in_process
    from pipelines import evaluator, prepare
    from pipelines.evaluate import printed

    params = tiny_params(tmp_path, data={"source": "sines"}, model={"family": "mlp", "latent_dim": 4, "hidden_layers": 1},
                         train={"max_steps": 20, "batch_size": 64, "checkpoint_every": 20},
                         evaluator={"output_dir": str(tmp_path / "evaluator")}, evaluate={"num_samples": 200})
    prepared = prepare.run(params, tmp_path)
    assert evaluator.run(params, tmp_path)["kind"] == "spectrum"
    assert params.family.metric_names(params, "series") == ["spectral_l1"] and all_metrics()["spectral_l1"] is False
    assert metric_and_mode(params, "series") == ("spectral_l1", "min")
    rec, _ = train_in_process(params, tmp_path)
    g = generator_from_state(rec.states[-1])
    metrics, fake = measure(g, params, TestSplit.load(prepared), open_evaluator(params, tmp_path))
    assert fake.shape == (200, 16) and metrics["spectral_l1"] > metrics["floor_spectral_l1"] > 0
    assert printed(metrics, ["spectral_l1", "floor_spectral_l1"]).startswith("spectral_l1=")
