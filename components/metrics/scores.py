"""Scores of a generated set against a real set, from features and logits computed once by the evaluator.

torchmetrics' FID/KID/IS run their `feature` module on whatever `update()` receives; here that module is
the identity, so they take the precomputed features and every metric shares one forward pass per set.
Everything runs in float64 on CPU and is deterministic for a seed (KID subsets, IS splits).
"""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import torch
from prdc import compute_prdc
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore

from components.metrics.catalogue import fid_fits
from torchmetrics.image.kid import maximum_mean_discrepancy, poly_kernel

from components.metrics.uniform_kl import kl_to_uniform

Tensor = torch.Tensor
SAMPLES_KNOB = "evaluate.num_samples"
REAL_KNOB = "data.test_fraction"  # the real set is the held-out split (evaluate.reference train: checked before)
KID_KERNEL_CACHE_MAX = 8192  # largest set whose whole n×n float64 kernel KID keeps (8192² × 8 B = 512 MiB)


class Precomputed(nn.Module):
    """Identity 'feature network'. `num_features` spares FID probing it with a dummy 299×299 image."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def _f64(x: Tensor | np.ndarray, name: str) -> Tensor:
    t = torch.as_tensor(x).detach().cpu().to(torch.float64)
    if t.dim() != 2:
        raise ValueError(f"{name} must be N×D, got shape {tuple(t.shape)}")
    return t


@contextlib.contextmanager
def _quiet_and_seeded(seed: int):
    """torchmetrics draws KID subsets / IS splits from torch's global RNG: seed it without disturbing the
    caller's stream, and drop its 'all features kept in a buffer' notice (that is the point here)."""
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
        torch.manual_seed(seed)
        yield


def check_sample_size(n: int, feature_dim: int, what: str, knob: str = SAMPLES_KNOB) -> None:
    """FID fits a full-covariance Gaussian: with n ≤ D samples the D×D covariance is singular and the
    score is an artefact (or NaN), so refuse before computing anything."""
    if not fid_fits(n, feature_dim):
        raise ValueError(
            f"{what}: {n} samples for {feature_dim}-dimensional evaluator features; FID needs more samples than "
            f"feature dimensions (else the covariance is singular). Raise {knob} above {feature_dim}"
        )


def fid_kid(real_feats, fake_feats, *, kid_subset_size: int, kid_subsets: int = 100, seed: int = 0) -> dict:
    """FID and KID (mean, std over `kid_subsets` random subsets of min(kid_subset_size, n_real, n_fake))."""
    real, fake = _f64(real_feats, "real features"), _f64(fake_feats, "generated features")
    d = real.shape[1]
    if fake.shape[1] != d:
        raise ValueError(f"real features are {d}-dimensional but generated ones {fake.shape[1]}: not the same evaluator")
    check_sample_size(len(real), d, "real images", REAL_KNOB)
    check_sample_size(len(fake), d, "generated samples")
    # sync_on_compute=False: one process scores its own samples; inside a DDP run (a sweep's rank 0)
    # torchmetrics would otherwise wait at a barrier for ranks that never compute
    fid = FrechetInceptionDistance(feature=Precomputed(d), sync_on_compute=False)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    kid_mean, kid_std = kid(real, fake, subset_size=min(kid_subset_size, len(real), len(fake)),
                            subsets=kid_subsets, seed=seed)
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def kid(real: Tensor, fake: Tensor, *, subset_size: int, subsets: int, seed: int) -> tuple[Tensor, Tensor]:
    """torchmetrics' KernelInceptionDistance (cubic polynomial kernel, unbiased MMD², mean and population
    std over random subsets), drawing the same subsets for a seed. torchmetrics computes three m×m kernels
    per subset, which made KID most of `evaluate`'s time once it scores several sampling seeds. Here each
    kernel is computed once over the whole sets, and every subset's kernel sums come from one matrix
    product with the subsets' 0/1 membership rows (S K Sᵀ's diagonal), not from slicing."""
    with _quiet_and_seeded(seed):
        draws = [(torch.randperm(len(real))[:subset_size], torch.randperm(len(fake))[:subset_size])
                 for _ in range(subsets)]
    if max(len(real), len(fake)) > KID_KERNEL_CACHE_MAX:  # n×n float64 kernels would not fit: per subset
        values = torch.stack([maximum_mean_discrepancy(poly_kernel(real[r], real[r]), poly_kernel(real[r], fake[f]),
                                                       poly_kernel(fake[f], fake[f])) for r, f in draws])
    else:
        in_r, in_f = (torch.zeros(subsets, n, dtype=real.dtype) for n in (len(real), len(fake)))
        for i, (r, f) in enumerate(draws):
            in_r[i, r], in_f[i, f] = 1.0, 1.0
        k_rr, k_ff, k_rf = poly_kernel(real, real), poly_kernel(fake, fake), poly_kernel(real, fake)
        # Σ_{i≠j} k(x_i, x_j) over a subset = 1ᵀK1 − trace, per membership row.
        xx = ((in_r @ k_rr) * in_r).sum(1) - in_r @ k_rr.diagonal()
        ff = ((in_f @ k_ff) * in_f).sum(1) - in_f @ k_ff.diagonal()
        rf = ((in_r @ k_rf) * in_f).sum(1)
        m = subset_size
        values = (xx + ff) / (m * (m - 1)) - 2 * rf / m**2
    return values.mean(), values.std(unbiased=False)


def inception_score(logits, *, splits: int = 10, seed: int = 0) -> dict:
    """IS = exp E[KL(p(y|x) ‖ p(y))], mean and std over `splits` random splits."""
    logits = _f64(logits, "logits")
    if len(logits) < 2 * splits:
        raise ValueError(f"inception score over {splits} splits needs at least {2 * splits} samples, got {len(logits)}; "
                         f"raise {SAMPLES_KNOB}")
    with _quiet_and_seeded(seed):
        metric = InceptionScore(feature=Precomputed(logits.shape[1]), splits=splits, sync_on_compute=False)
        metric.update(logits)
        mean, std = metric.compute()
    return {"is_mean": float(mean), "is_std": float(std)}


def prdc_scores(real_feats, fake_feats, k: int) -> dict:
    """Precision, recall, density, coverage with k-nearest-neighbour balls (Naeem et al. 2020)."""
    real = _f64(real_feats, "real features").numpy()
    fake = _f64(fake_feats, "generated features").numpy()
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} real and generated samples, got "
                         f"{len(real)} and {len(fake)}; lower evaluate.prdc_k or raise {SAMPLES_KNOB}")
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        out = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    return {name: float(out[name]) for name in ("precision", "recall", "density", "coverage")}


def class_histogram(logits, num_classes: int) -> np.ndarray:
    """How many samples the evaluator assigns to each class (argmax of its logits)."""
    pred = torch.as_tensor(logits).argmax(dim=1).cpu().numpy()
    return np.bincount(pred, minlength=num_classes).astype(np.int64)


def conditional_accuracy(logits, requested) -> float:
    """Fraction of samples the evaluator classifies as the class they were generated for."""
    requested = torch.as_tensor(requested)
    if len(requested) != len(logits):
        raise ValueError(f"{len(requested)} requested labels for {len(logits)} samples")
    return float((torch.as_tensor(logits).argmax(dim=1).cpu() == requested.cpu()).double().mean())


def all_scores(real: tuple, fake: tuple, *, prdc_k: int, kid_subset_size: int, seed: int = 0,
               requested=None) -> dict:
    """Every metric from (features, logits) of the real and the generated set, as
    `FeatureExtractor.features_and_logits` returns them: the evaluate stage's report. `requested`: the
    labels a class-conditional model was asked for, when the evaluator classifies the dataset's classes."""
    (real_feats, _), (fake_feats, fake_logits) = real, fake
    hist = class_histogram(fake_logits, fake_logits.shape[1])
    extra = {} if requested is None else {"cond_accuracy": conditional_accuracy(fake_logits, requested)}
    return {**extra,
        **fid_kid(real_feats, fake_feats, kid_subset_size=kid_subset_size, seed=seed),
        **inception_score(fake_logits, seed=seed),
        **prdc_scores(real_feats, fake_feats, prdc_k),
        "class_kl": kl_to_uniform(hist),
        "class_histogram": hist.tolist(),
    }
