"""Sampling and scoring shared by the evaluate stage, a sweep's in-training scorer and the tune stage's
trial reports: the held-out split (`TestSplit`), what a candidate is scored on (its family's `generate`), what it
is compared with (`real_side`: evaluate.reference), the metrics under the evaluator (`measure`, `QuickScorer`)
and the evaluator's files.

Metrics are computed under the evaluator the `evaluator` stage wrote, chosen once from the prepared data and
`evaluator.kind` (components/metrics/evaluators/); its hash travels with every number. Nothing here asks
which evaluator it is."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from components.data.kinds import kind_of
from components.data.shards import load_split, read_manifest, read_share
from components.metrics import feature_nets
from components.metrics.catalogue import SEED_STD
from components.metrics.evaluators import Scorer, evaluator_of

INPUT_DOMAIN = feature_nets.INPUT_DOMAIN


def evaluator_dir(params, repo_root: Path) -> Path:
    return (Path(repo_root) / params.evaluator.output_dir).resolve()


def node_view(params, repo_root: Path, published: dict | None):
    """(params, root) to score with on this node. Without `published`, the driver's checkout. With it (the
    driver published {"prepared": URI, "evaluator": URI}: its files are not on this node), local copies of
    both, made once per node in a cache named by the URIs (they name their content), under a root of its own."""
    if not published:
        return params, Path(repo_root)
    import hashlib
    import tempfile

    from components.atomic import atomic_dir
    from components.storage import location

    key = hashlib.sha256(json.dumps(published, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / "genpipe-node-cache" / key
    view = params.with_overrides({"data.prepared_dir": "prepared", "evaluator.output_dir": "evaluator"},
                                 source="copies of the published data and evaluator on this node")
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_dir(root) as tmp:
                for rel, uri in ((f"prepared/{params.data.dataset}", published["prepared"]),
                                 ("evaluator", published["evaluator"])):
                    with location(uri).local_copy() as copy:
                        shutil.copytree(copy, tmp / rel)
        except OSError:
            if not root.is_dir():  # another trial on this node made it first: use theirs
                raise
    return view, root


def open_evaluator(params, repo_root: Path) -> Scorer:
    """The evaluator the `evaluator` stage wrote, opened as the scorer of the prepared dataset: refused, naming
    both datasets and the command that makes the right one, when it is another kind or was made for other data
    (Evaluator.recorded). Every scorer opens it here: evaluate, tune and its trials, promote's re-score."""
    evaluator, *where = _bound(params, repo_root)
    return evaluator.open(*where)


def check_evaluator(params, repo_root: Path) -> dict:
    """The evaluator's record, refused as `open_evaluator` refuses it, without loading a network: for a stage
    that compares numbers measured under it (promote) and the domain-A classifier beside it."""
    evaluator, *where = _bound(params, repo_root)
    return evaluator.recorded(*where)


def _bound(params, repo_root: Path):
    """(the evaluator these params choose for the prepared data, its folder, the prepared folder, its manifest)."""
    prepared = params.prepared_path(repo_root)
    manifest = read_manifest(prepared)
    return evaluator_of(params, manifest), evaluator_dir(params, repo_root), prepared, manifest


def open_input_evaluator(params, repo_root: Path):
    """An unpaired dataset's classifier of domain A (the inputs), as (FeatureExtractor, info); its folder lies
    inside the evaluator's, which every caller has opened (and so checked) first with `open_evaluator`."""
    return feature_nets.load_evaluator(evaluator_dir(params, repo_root) / INPUT_DOMAIN)


def input_classifier(params, repo_root: Path):
    """The domain-A classifier when the family scores with one (CycleGAN), else None."""
    return open_input_evaluator(params, repo_root)[0] if params.family.input_evaluator else None


@dataclass(frozen=True)
class TestSplit:
    """The held-out split, read once per evaluation (or once per sweep trial): samples in model space
    (points as stored) and labels; for translation pairs also the inputs and their labels."""
    __test__ = False  # not a pytest test class
    x: torch.Tensor
    labels: torch.Tensor
    inputs: torch.Tensor | None = None
    input_labels: torch.Tensor | None = None

    @classmethod
    def load(cls, prepared: Path, split: str = "test") -> "TestSplit":
        """The held-out split; `split` "train": the train split as the real side (`real_side`)."""
        kind = kind_of(read_manifest(prepared))
        share = read_share(prepared, split)
        pairs = {}
        if share.inputs is not None:
            pairs = {"inputs": kind.to_model_space(share.inputs), "input_labels": torch.from_numpy(share.input_labels)}
        x = share.samples if share.samples.dtype != np.uint8 else kind.to_model_space(share.samples)
        return cls(x, torch.from_numpy(share.labels), **pairs)


def real_side(params, scorer: Scorer, test: TestSplit) -> TestSplit:
    """What the set metrics (FID, KID, precision/recall/density/coverage) compare samples with: the held-out split
    `test` as read for sampling, or with evaluate.reference train the train split, for an image set too small to
    hold out more real images than the evaluator has features (docs/metrics.md#the-real-side). Every scorer asks
    here: evaluate, a sweep's in-training scorer, promote's re-score."""
    if params.evaluate.reference == "test":
        return test
    scorer.evaluator.check_reference(params)
    x, labels = load_split(scorer.prepared, "train")  # the real side needs no inputs; the scorer holds the manifest
    real = TestSplit(kind_of(scorer.manifest).to_model_space(x), torch.from_numpy(labels))
    scorer.check_sample_size(len(real.x), "evaluate.reference train: the train split, FID's real side",
                             knob="the train split (bring more images)")
    return real


def has_error_bar(key: str, value) -> bool:
    return isinstance(value, (int, float)) and not key.endswith(("_std", "seconds"))


def _mean_and_spread(per_seed: list[dict]) -> dict:
    """Numbers: mean over the seeds, and `<key>_seed_std` (sample std) when there are several seeds.
    Lists (the class histogram): elementwise mean. Anything else: the first seed's."""
    out: dict = {}
    for key, first in per_seed[0].items():
        values = [m[key] for m in per_seed]
        if isinstance(first, (int, float)) and not isinstance(first, bool):
            arr = np.asarray(values, dtype=np.float64)
            out[key] = float(arr.mean())
            if len(values) > 1 and has_error_bar(key, first):
                out[key + SEED_STD] = float(arr.std(ddof=1))
        elif isinstance(first, list) and all(isinstance(v, (int, float)) for v in first):
            out[key] = np.asarray(values, dtype=np.float64).mean(0).tolist()
        else:
            out[key] = first
    return out


def measure(g, params, test: TestSplit, scorer: Scorer, classifier_a=None,
            keep_extra: Callable[[torch.Tensor], None] | None = None) -> tuple[dict, torch.Tensor]:
    """What the evaluate stage reports for one generator: every metric averaged over `evaluate.error_seeds`
    sampling seeds (evaluate.seed, +1, …) with its spread as `<metric>_seed_std`, against the real side
    evaluate.reference names, and the real-vs-real floor once (when both splits can carry it). Promote re-scores
    a champion with the same function, so both sides are measured alike. Returns (metrics, the first seed's
    samples). `keep_extra` receives the first seed's extra set (Stacked MNIST's 26,000), when one is drawn."""
    import time

    family, ev = params.family, params.evaluate
    reference = scorer.reference(real_side(params, scorer, test))
    per_seed, first = [], None
    for k in range(ev.error_seeds):
        p = params.with_overrides({"evaluate.seed": ev.seed + k}, source="evaluate.error_seeds") if k else params
        started = time.perf_counter()
        fake, labels = family.generate(g, p, test, ev.num_samples)
        seconds = time.perf_counter() - started
        m = scorer.score(reference, fake, labels, p)
        m.update(family.extra_metrics(g, p, test, fake, m, classifier_a))
        if extra := scorer.extra_samples(p, len(fake)):  # e.g. modes on PacGAN's 26,000
            extra_set = family.generate(g, p, test, extra)[0]
            m.update(scorer.set_scores(extra_set))
            if k == 0 and keep_extra is not None:
                keep_extra(extra_set)
        m["sampling_seconds"] = seconds
        per_seed.append(m)
        first = fake if first is None else first
    metrics = _mean_and_spread(per_seed)
    metrics["sampling_seconds"] = sum(m["sampling_seconds"] for m in per_seed)
    # the cost of a sample beside its quality: network passes (NFE) and wall time per 1,000 on this machine
    metrics["nfe"] = family.network_passes(g, family.sampling_options(params))
    metrics["seconds_per_1k_samples"] = 1000 * metrics["sampling_seconds"] / (ev.error_seeds * len(first))
    metrics.update(scorer.floor(reference, params, metrics))
    return metrics, first


class QuickScorer:
    """The evaluate stage's metrics under the same evaluator, on fewer samples and without the floor:
    what a sweep reports during training (pipelines/tune.py). Real-side features are computed once."""

    def __init__(self, params, repo_root: Path, num_samples: int):
        self.params, self.num_samples = params, num_samples
        self.scorer = open_evaluator(params, repo_root)  # first: a foreign evaluator is refused before any work
        self.test = TestSplit.load(params.prepared_path(repo_root))
        self.classifier_a = input_classifier(params, repo_root)
        self.scorer.check_sample_size(num_samples, "in-training samples", knob="tune.eval_samples")
        self.reference = self.scorer.reference(real_side(params, self.scorer, self.test))

    @torch.no_grad()
    def __call__(self, g: torch.nn.Module, params=None) -> dict:
        """The scores of `g`'s samples, drawn as `params` (default: the scorer's) says: seed, sampler."""
        p = params or self.params
        family = p.family
        fake, labels = family.generate(g, p, self.test, self.num_samples)
        out = self.scorer.score(self.reference, fake, labels, p)
        out.pop("class_histogram", None)
        out.update(family.extra_metrics(g, p, self.test, fake, out, self.classifier_a))
        return out

    def over_seeds(self, g: torch.nn.Module, params, seeds: int) -> dict:
        """Every score averaged over `seeds` sampling seeds (evaluate.seed, +1, …) with `<score>_seed_std`:
        the evaluate stage's error bars, at this scorer's sample count."""
        ev = params.evaluate
        return _mean_and_spread([self(g, params.with_overrides({"evaluate.seed": ev.seed + k}, source="error seeds"))
                                 for k in range(seeds)])


def metric_and_mode(params, data_kind: str) -> tuple[str, str]:
    """The metric that ranks this run's candidates (tune.metric / promote.metric or the family's default)
    and its direction for Tune ("min" | "max"); refuses one the family does not report on this data."""
    from components.metrics.catalogue import greater_is_better
    from components.section import ConfigError

    metric = params.tune.metric or params.family.default_metric(data_kind)
    allowed = params.family.metric_names(params, data_kind)
    if metric not in allowed:
        raise ConfigError(f"tune.metric = {metric!r} is not reported for model.family = {params.model.family!r} "
                          f"on {data_kind} data; allowed: {', '.join(allowed)}")
    return metric, "max" if greater_is_better(metric) else "min"
