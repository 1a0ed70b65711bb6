"""What an evaluator is: the measuring stick of one kind of data, chosen once (components/metrics/evaluators/
__init__.py) from the prepared manifest's data kind and `evaluator.kind`. The evaluator stage asks it to build
its folder (train, copy a pin, or just record a definition), and every scorer (the evaluate stage, a sweep's
in-training scorer, promote's re-score) asks the `Scorer` it opens for numbers, so nothing outside this
package and the data kinds compares an evaluator's name.

An `Evaluator` declares:
- the data kinds it scores (`data_kinds`; a kind scored by one evaluator only is scored by it whatever
  `evaluator.kind` says) and the config combinations it refuses (`check_config`, `required_by`);
- its DVC deps (`deps`: the files that define what it measures);
- the metrics it reports with their directions (`metrics`, `label_metrics`, `set_metrics`), its default
  metric, and whether a family's own default may rank instead (`family_ranks`);
- how it is built (`build`) and what a build would do (`plan`, for `--dry-run`);
- how many samples evaluate must draw beyond `evaluate.num_samples` (`Scorer.extra_samples`) and what
  evaluate records about them (`report_fields`).

Importing an evaluator imports no torch: networks and scores are imported when used."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

INFO = "evaluator.json"  # the record every evaluator folder holds (components/metrics/feature_nets.py writes it too)
# what makes the evaluator of the prepared data, said by every refusal
REBUILD = "`dvc repro evaluator`, or `genpipe evaluator` with this command's --params/--set"


def _dataset(record: dict) -> str:
    """A dataset by name and short content hash, from a manifest or an evaluator.json."""
    digest = record.get("content_hash")
    return (f"dataset {record.get('dataset', '?')} (content hash {digest[:12]})" if digest
            else "no recorded dataset (made before evaluators recorded their data)")


def _shown(path: Path) -> str:
    """A path as the user typed it: relative to the working directory when under it. (components.options.shown
    does the same for a plan, but importing it here would close an import circle through the config.)"""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class EvaluatorError(ValueError):
    pass


class Evaluator:
    name: ClassVar[str]  # `evaluator.kind` for the kinds that offer a choice
    data_kinds: ClassVar[tuple[str, ...]]  # components/data/kinds.py
    description: ClassVar[str] = ""
    metrics: ClassVar[dict[str, bool]] = {}  # metric → greater is better, for every family it scores
    label_metrics: ClassVar[dict[str, bool]] = {}  # reported for class-conditional (and translating) families
    set_metrics: ClassVar[dict[str, bool]] = {}  # of a whole generated set, beside the others (Stacked MNIST's modes)
    default_metric: ClassVar[str] = ""
    floor_metrics: ClassVar[tuple[str, ...]] = ()  # what real data scores, printed after the metrics
    family_ranks: ClassVar[bool] = True  # False: its default ranks every family (a mode counter sees no family metric)
    classifies_inputs: ClassVar[bool] = False  # also classifies an unpaired dataset's inputs (CycleGAN's domain A)
    deps: ClassVar[tuple[str, ...]] = ()  # repo-relative files defining what it measures: the evaluator stage's deps
    rebuild_cost: ClassVar[str] = "nothing to train: it takes a second"  # said when it is refused on other data
    takes_holdout: ClassVar[bool] = False  # evaluator.holdout: reads its accuracy on a slice of the train split
    references: ClassVar[tuple[str, ...]] = ("test",)  # the evaluate.reference values it takes (its real side)

    @property
    def recorded_kind(self) -> str:
        """The `kind` its evaluator.json records (its name unless the record predates the name)."""
        return self.name

    # ------------------------------------------------------------------------------------ configuration
    def reported(self) -> dict[str, bool]:
        return {**self.metrics, **self.label_metrics, **self.set_metrics}

    def metric_names(self, conditional: bool) -> list[str]:
        """The scalar metrics evaluate reports under this evaluator (before a family's own)."""
        return [*self.metrics, *(self.label_metrics if conditional else {}), *self.set_metrics]

    def required_by(self, params) -> str | None:
        """Why this data config can only be scored by this evaluator (None: it can be scored by others)."""
        return None

    def check_config(self, params) -> None:
        """Raise ValueError, naming the keys, for params this evaluator cannot score."""

    def check_reference(self, params) -> None:
        """Refuse an evaluate.reference whose split it cannot compare samples with."""
        if params.evaluate.reference not in self.references:
            raise EvaluatorError(f"evaluate.reference = {params.evaluate.reference!r}: the {self.name} evaluator "
                                 f"compares samples with the {' or '.join(self.references)} split only; set "
                                 f"evaluate.reference: {self.references[0]}")

    # ------------------------------------------------------------------------------------ the evaluator stage
    def meta(self, params, manifest: dict) -> dict:
        return {"dataset": manifest["dataset"], "content_hash": manifest["content_hash"],
                "class_names": manifest["class_names"], "seed": params.evaluator.seed}

    def definition(self, params, manifest: dict) -> dict | None:
        """What decides a trained evaluator's weights, which names its pin (None: nothing trained, no pin)."""
        return None

    def size_problems(self, params, manifest: dict) -> list[str]:
        """Why this prepared dataset is too small to be measured under this evaluator, each with its fix ([]: it
        is not). The evaluator stage refuses on them (`check_size`); prepare warns at once."""
        return []

    def too_small(self, manifest: dict, problems: list[str]) -> str:
        return (f"dataset {manifest['dataset']} is too small to be measured: " + "; ".join(problems)
                + ". See docs/data.md#how-much-data-the-metrics-need")

    def check_size(self, params, manifest: dict) -> None:
        """Before anything is built: refuse a dataset `size_problems` finds too small."""
        if problems := self.size_problems(params, manifest):
            raise ValueError(self.too_small(manifest, problems))

    def plan(self, params, manifest: dict, retrain: bool = False) -> str:
        """What `build` would do, in words (for --dry-run)."""
        raise NotImplementedError

    def build(self, params, manifest: dict, prepared: Path, out_dir: Path, retrain: bool = False,
              pin: bool = False) -> dict:
        """Write the evaluator folder (atomically), say how in one printed line, return its evaluator.json."""
        raise NotImplementedError

    def write_info(self, info: dict, out_dir: Path) -> dict:
        from components.atomic import atomic_dir

        with atomic_dir(out_dir) as tmp:
            (tmp / INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        return info

    # ------------------------------------------------------------------------------------ scoring
    def open(self, evaluator_dir: Path, prepared: Path, manifest: dict) -> "Scorer":
        """The scorer of the folder the evaluator stage wrote, refused when it is not this data's (`recorded`)."""
        return self.scorer(Path(evaluator_dir), self.recorded(evaluator_dir, prepared, manifest), prepared, manifest)

    def recorded(self, evaluator_dir: Path, prepared: Path, manifest: dict) -> dict:
        """The folder's evaluator.json, refused unless it is this evaluator made for this prepared data: the one
        check every scorer passes through (evaluate, a sweep's trials, promote and its re-score). Every kind
        records the data it was made for, and every kind is refused on other data: a classifier learned its
        weights from it, a mode counter's record is the mixture's centres, a text scorer's the data's own
        definition, and InceptionV3 (whose weights know no data) was size-checked on it and is re-made in a
        second. A pin (mnist5k's) records the data it was trained on like any other build."""
        evaluator_at, prepared_at = _shown(evaluator_dir), _shown(prepared)
        path = Path(evaluator_dir) / INFO
        if not path.is_file():
            raise FileNotFoundError(f"no evaluator in {evaluator_at}: {INFO} is missing; make it with "
                                    f"{REBUILD}")
        info = json.loads(path.read_text())
        kind, made_for, here = info.get("kind"), info.get("content_hash"), manifest["content_hash"]
        if kind != self.recorded_kind:
            problem = (f"the evaluator in {evaluator_at} is a {kind} evaluator, but this "
                       f"{manifest.get('kind', 'image')} data is scored by the {self.name} evaluator")
        elif made_for != here:
            problem = (f"the evaluator in {evaluator_at} was made for {_dataset(info)}, but the prepared "
                       f"data in {prepared_at} is {_dataset(manifest)}")
        else:
            return info
        raise EvaluatorError(f"{problem}: scores under it would not measure this data. Make this data's evaluator "
                             f"with {REBUILD} ({self.rebuild_cost}), then run this command again")

    def scorer(self, evaluator_dir: Path, info: dict, prepared: Path, manifest: dict) -> "Scorer":
        raise NotImplementedError

    def report_fields(self, params) -> dict:
        """What evaluate records beside the numbers about how they were measured (beyond the hash)."""
        return {}


class Scorer:
    """An opened evaluator: scores generated samples against the held-out split. `reference` is computed
    once per test split and handed back to `score` and `floor`."""

    def __init__(self, evaluator: Evaluator, info: dict, prepared: Path, manifest: dict):
        self.evaluator, self.info, self.prepared, self.manifest = evaluator, info, Path(prepared), manifest

    @property
    def hash(self) -> str:
        return self.info["hash"]

    def check_sample_size(self, n: int, what: str, knob: str) -> None:
        """Refuse, before sampling, a sample count its set metrics cannot use."""

    def reference(self, test) -> Any:
        """The real side, computed once from the split evaluate.reference names (components/evaluation.real_side):
        its features, or the split itself."""
        return None

    def score(self, reference, fake: "torch.Tensor", labels, params) -> dict:
        raise NotImplementedError

    def extra_samples(self, params, drawn: int) -> int | None:
        """How many samples its set metrics want when that differs from the `drawn` ones (None: none)."""
        return None

    def set_scores(self, fake: "torch.Tensor") -> dict:
        return {}

    def floor(self, reference, params, metrics: dict) -> dict:
        """What real data scores (the best a model can do), after the candidate's metrics are averaged."""
        return {}
