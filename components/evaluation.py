"""Sampling and scoring shared by the evaluate stage, a sweep's in-training scorer and the tune stage's
trial reports: the held-out split (`TestSplit`), what a candidate is scored on (its family's `generate`),
the metrics under the evaluator (`score`, `score_points`, `QuickScorer`) and the evaluator's files.

Metrics are computed under the evaluator the `evaluator` stage wrote (a feature network for images, the
mixture's mode counter for points, the text scorer for tokens); its hash travels with every number."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from components.data.kinds import kind_of
from components.data.shards import load_split, read_manifest
from components.metrics import feature_nets, modes, scores
from components.metrics.catalogue import SEED_STD
from components.metrics.text_scorer import TextScorer

INPUT_DOMAIN = feature_nets.INPUT_DOMAIN


def evaluator_dir(params, repo_root: Path) -> Path:
    return (Path(repo_root) / params.evaluator.output_dir).resolve()


def open_evaluator(params, repo_root: Path):
    """The evaluator the `evaluator` stage wrote, as (FeatureExtractor, info). For a points dataset the
    extractor is None and info is the mode counter's; for token data None and the text scorer's."""
    path = evaluator_dir(params, repo_root) / feature_nets.INFO
    info = json.loads(path.read_text()) if path.is_file() else {}
    if info.get("kind") in ("modes", "text"):
        return None, info
    return feature_nets.load_evaluator(evaluator_dir(params, repo_root))


def open_input_evaluator(params, repo_root: Path):
    """An unpaired dataset's classifier of domain A (the inputs), as (FeatureExtractor, info)."""
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
    def load(cls, prepared: Path) -> "TestSplit":
        kind = kind_of(read_manifest(prepared))
        share = kind.read_share(prepared, "test")
        pairs = {}
        if share.inputs is not None:
            pairs = {"inputs": kind.to_model_space(share.inputs), "input_labels": torch.from_numpy(share.input_labels)}
        x = share.samples if share.samples.dtype != np.uint8 else kind.to_model_space(share.samples)
        return cls(x, torch.from_numpy(share.labels), **pairs)


def _classifies_dataset(extractor) -> bool:
    """Only the classifier evaluators' classes are the dataset's (Inception's are ImageNet's)."""
    return extractor.kind in ("classifier", "per_channel")


def _candidate_scores(extractor, test_features, fake: torch.Tensor, params, requested) -> dict:
    ev = params.evaluate
    fake_features = extractor.features_and_logits(fake)
    out = scores.all_scores(test_features, fake_features, prdc_k=ev.prdc_k,
                            kid_subset_size=min(ev.kid_subset_size, len(fake), len(test_features[0])),
                            seed=ev.seed, requested=requested if _classifies_dataset(extractor) else None)
    return {**out, **extractor.set_scores(fake_features[1])}


def _floor(extractor, test_features, real_train: torch.Tensor, params, fid: float) -> dict:
    """The real-vs-real floor: the train split scored as if it were a generator, the best any model can do."""
    ev = params.evaluate
    floor = scores.fid_kid(test_features[0], extractor.features(real_train), kid_subset_size=ev.kid_subset_size,
                           seed=ev.seed)
    return {"fid_floor": floor["fid"], "kid_floor": floor["kid_mean"], "fid_over_floor": fid / max(floor["fid"], 1e-12)}


def score_points(info: dict, real_test: np.ndarray, fake: torch.Tensor) -> dict:
    """Mode metrics of the candidate, and of the held-out real points as the floor."""
    out = modes.mode_scores(fake.numpy(), info["centers"], info["sigma"], info["hq_sigmas"])
    floor = modes.mode_scores(real_test, info["centers"], info["sigma"], info["hq_sigmas"])
    out.update(floor_high_quality=floor["high_quality"], floor_reverse_kl=floor["reverse_kl"])
    return out


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


def measure(g, params, prepared: Path, test: TestSplit, extractor, info: dict,
            classifier_a=None) -> tuple[dict, torch.Tensor]:
    """What the evaluate stage reports for one generator: every metric averaged over `evaluate.error_seeds`
    sampling seeds (evaluate.seed, +1, …) with its spread as `<metric>_seed_std`, and the real-vs-real
    floor once (from the train split in `prepared`). Promote re-scores a champion with the same function,
    so both sides are measured alike.
    Returns (metrics, the first seed's samples)."""
    import time

    family, ev = params.family, params.evaluate
    test_features = None if extractor is None else extractor.features_and_logits(test.x)
    per_seed, first = [], None
    text = TextScorer(prepared) if info.get("kind") == "text" else None  # token data: BLEU (and NLL_oracle)
    for k in range(ev.error_seeds):
        p = params.with_overrides({"evaluate.seed": ev.seed + k}, source="evaluate.error_seeds") if k else params
        started = time.perf_counter()
        fake, labels = family.generate(g, p, test, ev.num_samples)
        seconds = time.perf_counter() - started
        if text is not None:
            m = {**text(fake), **family.extra_metrics(g, p, test, fake, {}, classifier_a)}
        elif extractor is None:  # a mode counter
            m = score_points(info, test.x, fake)
        else:
            m = _candidate_scores(extractor, test_features, fake, p, labels)
            m.update(family.extra_metrics(g, p, test, fake, m, classifier_a))
            if extractor.set_metrics and ev.mode_samples != len(fake):  # e.g. modes on PacGAN's 26,000
                m.update(extractor.set_scores(extractor.logits(family.generate(g, p, test, ev.mode_samples)[0])))
        m["sampling_seconds"] = seconds
        per_seed.append(m)
        first = fake if first is None else first
    metrics = _mean_and_spread(per_seed)
    metrics["sampling_seconds"] = sum(m["sampling_seconds"] for m in per_seed)
    # the cost of a sample beside its quality: network passes (NFE) and wall time per 1,000 on this machine
    metrics["nfe"] = family.network_passes(g, family.sampling_options(params))
    metrics["seconds_per_1k_samples"] = 1000 * metrics["sampling_seconds"] / (ev.error_seeds * len(first))
    if extractor is not None:
        real_train = kind_of(read_manifest(prepared)).to_model_space(load_split(prepared, "train")[0])
        metrics.update(_floor(extractor, test_features, real_train, params, metrics["fid"]))
    elif text is not None:
        metrics.update(text.floor())
    return metrics, first


class QuickScorer:
    """The evaluate stage's metrics under the same evaluator, on fewer samples and without the floor:
    what a sweep reports during training (pipelines/tune.py). Real-side features are computed once."""

    def __init__(self, params, repo_root: Path, num_samples: int):
        self.params, self.num_samples = params, num_samples
        self.test = TestSplit.load(params.prepared_path(repo_root))
        self.classifier_a = input_classifier(params, repo_root)
        self.extractor, self.info = open_evaluator(params, repo_root)
        if self.info.get("kind") == "text":
            self.text = TextScorer(params.prepared_path(repo_root))
        if self.extractor is None:
            self.real = self.test.x
        else:
            scores.check_sample_size(num_samples, self.extractor.feature_dim, "in-training samples",
                                     knob="tune.eval_samples")
            self.real = self.extractor.features_and_logits(self.test.x)

    @torch.no_grad()
    def __call__(self, g: torch.nn.Module, params=None) -> dict:
        """The scores of `g`'s samples, drawn as `params` (default: the scorer's) says: seed, sampler."""
        p = params or self.params
        family = p.family
        fake, labels = family.generate(g, p, self.test, self.num_samples)
        if self.info.get("kind") == "text":
            return {**self.text(fake), **family.extra_metrics(g, p, self.test, fake, {})}
        if self.extractor is None:
            return modes.mode_scores(fake.numpy(), self.info["centers"], self.info["sigma"], self.info["hq_sigmas"])
        out = _candidate_scores(self.extractor, self.real, fake, p, labels)
        out.pop("class_histogram")
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
