"""Stage `evaluate`: sample the candidate generator with a fixed seed and score it against the
held-out split under the evaluator: FID, KID, IS, precision/recall/density/coverage, class
histogram KL, and the real-vs-real floor (train split vs test split). For 2D mixtures: modes
captured, % high quality and reverse KL (components/metrics/modes.py), the test split as floor.

Per family: class-conditional models add cond_accuracy (every class requested equally often);
translators translate the whole test split and add what they are for (components/metrics/
translation.py: PSNR/SSIM vs bicubic, or label preservation and cycle error); a VAE adds its
negative ELBO on the test split."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from components.atomic import atomic_write
from components.config import SAMPLING_KEYS, Params
from components.data.shards import load_rank_inputs, load_split, read_manifest
from components.metrics import modes, scores, translation
from components.sampling import draw_samples, requested_labels, translate
from components.training.checkpoint import load_generator
from components.training.images import preview_png
from pipelines.evaluator import open_evaluator, open_input_evaluator

EVALUATOR_HASH_TAG = "genpipe.evaluator_hash"


class EvaluateError(ValueError):
    pass


def read_train_summary(params: Params, repo_root: Path) -> dict:
    from pipelines.train import SUMMARY_FILE  # here: pipelines.train brings MLflow, which QuickScorer's workers skip

    path = (Path(repo_root) / params.train.output_dir / SUMMARY_FILE).resolve()
    if not path.is_file():
        raise EvaluateError(f"no trained candidate: {path} is missing; run `genpipe train` first")
    return json.loads(path.read_text())


def load_candidate(params: Params, repo_root: Path) -> tuple[torch.nn.Module, dict]:
    model_dir = (Path(repo_root) / params.train.output_dir).resolve()
    spec = json.loads((model_dir / "generator.json").read_text())
    configured = params.model.model_dump(mode="json")
    if spec["model"] != configured:
        raise EvaluateError(f"the generator in {model_dir} was trained with model {spec['model']}, "
                            f"but params.yaml configures model {configured}; retrain or fix the model section")
    if params.model.kind == "translation" and spec["translation"] != params.translation.model_dump(mode="json"):
        raise EvaluateError(f"the translator in {model_dir} was trained with translation {spec['translation']}, "
                            f"but params.yaml configures {params.translation.model_dump(mode='json')}; retrain "
                            "or fix the translation section")
    if params.model.is_diffusion:  # sampling keys may differ: evaluate samples as configured now
        trained, now = ({k: v for k, v in d.items() if k not in SAMPLING_KEYS}
                        for d in (spec["diffusion"], params.diffusion.model_dump(mode="json")))
        if trained != now:
            diff = sorted(k for k in now if trained.get(k) != now[k])
            raise EvaluateError(f"the model in {model_dir} was trained with diffusion "
                                + ", ".join(f"{k} = {trained.get(k)!r}" for k in diff)
                                + " but params.yaml configures " + ", ".join(f"{k} = {now[k]!r}" for k in diff)
                                + "; retrain or fix the diffusion section")
    try:
        return load_generator(model_dir)
    except RuntimeError as e:  # state dict does not fit the architecture
        raise EvaluateError(f"the weights in {model_dir} do not match model {configured}: {e}") from None


def sampling_options(params: Params) -> dict:
    """How a diffusion model samples now (diffusion.sampler, sample_steps, eta, guidance); {} for a GAN."""
    return {k: getattr(params.diffusion, k) for k in SAMPLING_KEYS} if params.model.is_diffusion else {}


def _to_float(images_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images_u8).float().div_(127.5).sub_(1.0)


def _classifies_dataset(extractor) -> bool:
    """Only the classifier evaluator's classes are the dataset's (Inception's are ImageNet's)."""
    return extractor.kind == "classifier"


@dataclass(frozen=True)
class TestSplit:
    """The held-out split, read once per evaluation (or once per sweep trial): samples in model space
    (points as stored) and labels; for translation pairs also the inputs and their labels."""
    x: torch.Tensor | np.ndarray
    labels: torch.Tensor
    inputs: torch.Tensor | None = None
    input_labels: torch.Tensor | None = None

    @classmethod
    def load(cls, prepared: Path) -> "TestSplit":
        x, labels = load_split(prepared, "test")
        pairs = {}
        if read_manifest(prepared).get("kind") == "pairs":
            inputs, input_labels = load_rank_inputs(prepared, "test")
            pairs = {"inputs": _to_float(inputs), "input_labels": torch.from_numpy(input_labels)}
        return cls(x if x.dtype != np.uint8 else _to_float(x), torch.from_numpy(labels), **pairs)


def generate(g: torch.nn.Module, params: Params, test: TestSplit, n: int,
             latent_dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What a candidate is scored on, and the labels its samples should have (None: no such thing).
    A translator translates the whole test split (n is ignored): its outputs should keep the labels of
    their inputs. Any other model draws n samples with the evaluation seed, every class equally often
    when class-conditional."""
    if params.model.kind == "translation":
        return translate(g, test.inputs), test.input_labels
    labels = requested_labels(g, n)
    return draw_samples(g, latent_dim or params.model.latent_dim, n, params.evaluate.seed, labels=labels,
                        sampling=sampling_options(params)), labels


def metric_names(params: Params, kind: str) -> list[str]:
    """The scalar metrics evaluate (and a sweep's QuickScorer) reports for this family on `kind` data."""
    if kind == "points":
        return ["modes", "high_quality", "reverse_kl"]
    names = ["fid", "kid_mean", "is_mean", "precision", "recall", "density", "coverage", "class_kl"]
    m = params.model
    if m.conditional or m.kind == "translation" or (m.is_diffusion and params.diffusion.class_conditional):
        names.append("cond_accuracy")
    return names + {"pix2pix": ["psnr", "ssim", "l1"], "cyclegan": ["label_preservation", "cycle_l1"],
                    "vae": ["nelbo"]}.get(m.family, [])


def family_metrics(g: torch.nn.Module, params: Params, test: TestSplit, fake: torch.Tensor, generated: dict,
                   classifier_a=None) -> dict:
    """What the family is for, beyond generation metrics: translation quality or the VAE's ELBO.
    classifier_a: CycleGAN's domain-A classifier (open_input_evaluator)."""
    kind, family = params.model.kind, params.model.family
    if kind == "vae":
        return {"nelbo": g.negative_elbo(test.x, torch.Generator().manual_seed(params.evaluate.seed))}
    if family == "pix2pix":
        return translation.paired_scores(fake, test.x, test.inputs)
    if family == "cyclegan":
        return translation.cycle_scores(g, test.inputs, test.x, fake, test.labels, classifier_a,
                                        generated["cond_accuracy"])
    return {}


def _input_classifier(params: Params, repo_root: Path):
    return open_input_evaluator(params, repo_root)[0] if params.model.family == "cyclegan" else None


def score(extractor, real_test: torch.Tensor, real_train: torch.Tensor, fake: torch.Tensor, params: Params,
          requested: torch.Tensor | None = None) -> dict:
    """Every metric of one candidate (features extracted once per image set), plus the real-vs-real
    floor: the train split scored as if it were a generator, the best any model can do here."""
    ev = params.evaluate
    test = extractor.features_and_logits(real_test)
    out = scores.all_scores(test, extractor.features_and_logits(fake), prdc_k=ev.prdc_k,
                            kid_subset_size=min(ev.kid_subset_size, len(fake), len(real_test)), seed=ev.seed,
                            requested=requested if _classifies_dataset(extractor) else None)
    floor = scores.fid_kid(test[0], extractor.features(real_train), kid_subset_size=ev.kid_subset_size, seed=ev.seed)
    out.update(fid_floor=floor["fid"], kid_floor=floor["kid_mean"], fid_over_floor=out["fid"] / max(floor["fid"], 1e-12))
    return out


def score_points(info: dict, real_test: np.ndarray, fake: torch.Tensor) -> dict:
    """Mode metrics of the candidate, and of the held-out real points as the floor."""
    out = modes.mode_scores(fake.numpy(), info["centers"], info["sigma"], info["hq_sigmas"])
    floor = modes.mode_scores(real_test, info["centers"], info["sigma"], info["hq_sigmas"])
    out.update(floor_high_quality=floor["high_quality"], floor_reverse_kl=floor["reverse_kl"])
    return out


class QuickScorer:
    """The evaluate stage's metrics under the same evaluator, on fewer samples and without the floor:
    what a sweep reports during training (pipelines/tune.py). Real-side features are computed once."""

    def __init__(self, params: Params, repo_root: Path, num_samples: int):
        self.params, self.num_samples = params, num_samples
        self.test = TestSplit.load(params.prepared_path(repo_root))
        self.classifier_a = _input_classifier(params, repo_root)
        self.extractor, self.info = open_evaluator(params, repo_root)
        if self.extractor is None:
            self.real = self.test.x
        else:
            scores.check_sample_size(num_samples, self.extractor.feature_dim, "in-training samples",
                                     knob="tune.eval_samples")
            self.real = self.extractor.features_and_logits(self.test.x)

    @torch.no_grad()
    def __call__(self, g: torch.nn.Module) -> dict:
        fake, labels = generate(g, self.params, self.test, self.num_samples)
        if self.extractor is None:
            return modes.mode_scores(fake.numpy(), self.info["centers"], self.info["sigma"], self.info["hq_sigmas"])
        ev = self.params.evaluate
        out = scores.all_scores(self.real, self.extractor.features_and_logits(fake), prdc_k=ev.prdc_k,
                                kid_subset_size=min(ev.kid_subset_size, len(fake), len(self.real[0])),
                                seed=ev.seed, requested=labels if _classifies_dataset(self.extractor) else None)
        out.pop("class_histogram")
        out.update(family_metrics(g, self.params, self.test, fake, out, self.classifier_a))
        return out


_PRINTED = {"image": ("fid", "fid_floor", "fid_over_floor", "kid_mean", "is_mean", "precision", "recall", "density",
                      "coverage", "class_kl", "cond_accuracy", "psnr", "bicubic_psnr", "ssim", "bicubic_ssim",
                      "label_preservation_ab", "label_preservation_ba", "cycle_l1", "nelbo", "sampling_seconds",
                      "eval_seconds"),
            "points": ("modes", "high_quality", "reverse_kl", "floor_high_quality", "eval_seconds")}


def _report_grid(g: torch.nn.Module, fake: torch.Tensor, test: TestSplit, family: str | None) -> bytes:
    """64 samples; a translator: 16 test inputs spread over the split (it is sorted by source row), each
    as input | output | target (pix2pix) or a | G(a) | F(G(a)) (cyclegan: no row is a pair)."""
    if family is None:
        return preview_png(fake[:64] if fake.dim() == 4 else fake)  # every point of a scatter
    from components.training.images import side_by_side

    rows = np.linspace(0, len(fake) - 1, min(16, len(fake))).astype(int)
    third = translate(g, fake[rows], reverse=True) if family == "cyclegan" else test.x[rows]
    return preview_png(side_by_side(test.inputs[rows], fake[rows], third), cols=3)


def run(params: Params, repo_root: Path) -> dict:
    repo_root = Path(repo_root)
    started = time.perf_counter()
    summary = read_train_summary(params, repo_root)
    g, spec = load_candidate(params, repo_root)
    extractor, info = open_evaluator(params, repo_root)
    prepared = params.prepared_path(repo_root)
    manifest = read_manifest(prepared)
    if spec["data_hash"] != manifest["content_hash"]:
        raise EvaluateError(f"the candidate was trained on data {spec['data_hash'][:12]} but {prepared} holds "
                            f"{manifest['content_hash'][:12]}; rerun the pipeline")
    kind = "points" if manifest.get("kind") == "points" else "image"
    translator = params.model.kind == "translation"
    if extractor is not None:
        n = manifest["splits"]["test"]["count"] if translator else params.evaluate.num_samples
        scores.check_sample_size(n, extractor.feature_dim, "test pairs" if translator else "generated samples",
                                 knob="data.test_fraction" if translator else scores.SAMPLES_KNOB)
    sampling = sampling_options(params)
    test = TestSplit.load(prepared)
    sampling_started = time.perf_counter()
    fake, labels = generate(g, params, test, params.evaluate.num_samples)
    sampling_seconds = time.perf_counter() - sampling_started
    if kind == "points":
        metrics = score_points(info, test.x, fake)
    else:
        train_x, _ = load_split(prepared, "train")
        metrics = score(extractor, test.x, _to_float(train_x), fake, params, labels)
        metrics.update(family_metrics(g, params, test, fake, metrics, _input_classifier(params, repo_root)))
    metrics["sampling_seconds"] = sampling_seconds
    report = {**metrics, "evaluator_hash": info["hash"], "evaluator_kind": info["kind"],
              "num_samples": len(fake), "seed": params.evaluate.seed,
              "model_uri": summary["model_uri"], "mlflow_run_id": summary["mlflow_run_id"],
              **({"sampling": sampling} if sampling else {}),
              "eval_seconds": time.perf_counter() - started}

    report_path = (repo_root / params.evaluate.report).resolve()
    grid_path = (repo_root / params.evaluate.grid).resolve()
    atomic_write(grid_path, _report_grid(g, fake, test, params.model.family if translator else None))
    atomic_write(report_path, json.dumps(report, indent=2, sort_keys=True) + "\n")

    from mlflow.entities import Metric, RunTag  # here: in-training scoring (QuickScorer) needs no MLflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(summary["tracking_uri"])
    run_id = summary["mlflow_run_id"]
    ts = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(f"eval/{k}", float(v), ts, 0) for k, v in metrics.items()
                                      if isinstance(v, (int, float))],
                     tags=[RunTag(EVALUATOR_HASH_TAG, info["hash"])])
    client.log_artifact(run_id, str(report_path), "evaluation")
    client.log_artifact(run_id, str(grid_path), "evaluation")
    print("evaluate: " + ", ".join(f"{k}={report[k]:.4g}" for k in _PRINTED[kind] if k in report))
    return report
