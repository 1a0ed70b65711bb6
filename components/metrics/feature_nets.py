"""Feature networks by name, and the evaluator folder every metric is computed under.

An evaluator folder holds `evaluator.json` (kind, architecture, shape, accuracy, dataset content hash,
`hash`) and, for networks trained here, `evaluator.safetensors`. `hash` identifies the weights: the
sha256 of the safetensors file, or of the user's InceptionV3 file, which is referenced rather than
copied. Metrics are only comparable under the same evaluator, so this hash travels with every metric,
and loading re-checks it: a changed file is refused, never silently used.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from components.atomic import atomic_dir
from components.metrics.base import FEATURE_NETS, FeatureExtractor, to_unit_range
from components.metrics.classifier import ClassifierNet, train_classifier
from components.hashing import file_sha256
from components.metrics.inception import InceptionV3
from components.metrics.stacked import PerChannelClassifier

FORMAT_VERSION = 1
WEIGHTS = "evaluator.safetensors"
INFO = "evaluator.json"
INPUT_DOMAIN = "input_domain"  # subfolder: the classifier of an unpaired dataset's inputs (domain A)

__all__ = ["FEATURE_NETS", "FeatureExtractor", "ClassifierNet", "InceptionV3", "PerChannelClassifier", "train_classifier",
           "save_evaluator", "load_evaluator", "load_inception", "to_unit_range"]


def _info(model: FeatureExtractor, weights: str, digest: str, report: dict, meta: dict) -> dict:
    fixed = {
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "arch": model.arch(),
        "image_shape": list(model.image_shape) if model.image_shape else meta.get("image_shape"),
        "num_classes": model.num_classes,
        "feature_dim": model.feature_dim,
        "test_accuracy": report.get("test_accuracy"),
        "content_hash": meta.get("content_hash"),  # the dataset the evaluator was trained / checked on
        "report": report,
        "weights": weights,
        "hash": digest,
    }
    clash = sorted(set(meta) & (set(fixed) - {"image_shape", "content_hash"}))
    if clash:
        raise ValueError(f"evaluator meta may not set {', '.join(clash)}: those keys are written by save_evaluator")
    return {**meta, **fixed}


def save_evaluator(model: FeatureExtractor, report: dict, meta: dict, out_dir: str | Path) -> dict:
    """Write the evaluator folder atomically (all or nothing); return the evaluator.json contents.

    `report`: from training (test_accuracy…); `meta`: plain data to keep, e.g. dataset, content_hash, seed.
    """
    with atomic_dir(out_dir) as tmp:
        if model.stores_weights:
            tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            save_file(tensors, str(tmp / WEIGHTS))
            weights, digest = WEIGHTS, file_sha256(tmp / WEIGHTS)
        else:  # referenced by path (e.g. a 100 MB InceptionV3), pinned by hash
            weights = model.arch()["weights_path"]
            digest = file_sha256(weights)
        info = _info(model, weights, digest, report, meta)
        (tmp / INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def load_evaluator(evaluator_dir: str | Path) -> tuple[FeatureExtractor, dict]:
    """Rebuild the evaluator (eval mode) from its folder; weights are verified against `hash` first."""
    evaluator_dir = Path(evaluator_dir)
    path = evaluator_dir / INFO
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no evaluator in {evaluator_dir}: {path} is missing; run `genpipe evaluator`") from None
    if not isinstance(info, dict) or info.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a genpipe evaluator of format_version {FORMAT_VERSION}")
    cls = FEATURE_NETS.get(info["kind"])
    if not cls.stores_weights:  # the user's file, pinned by hash; from_arch reads it
        external = Path(info["arch"]["weights_path"])
        if not external.is_file():
            raise FileNotFoundError(f"evaluator {evaluator_dir} uses weights {external}, which no longer exist")
        _check_hash(external, file_sha256(external), info["hash"])
        return cls.from_arch(**info["arch"]), info
    weights = evaluator_dir / info["weights"]
    data = weights.read_bytes()  # read once: the bytes hashed are the bytes loaded
    _check_hash(weights, hashlib.sha256(data).hexdigest(), info["hash"])
    model = cls.from_arch(**info["arch"])
    model.load_state_dict(load_safetensors(data))  # safetensors: tensors only, nothing unpickled
    return model.eval(), info


def load_inception(weights_path: str | Path | None) -> tuple[InceptionV3, dict]:
    """The FID InceptionV3 from a local weights file; info carries the file's sha256 as `hash`."""
    model = InceptionV3.from_arch(weights_path=weights_path)  # names a missing path or file
    info = {"kind": model.kind, "arch": model.arch(), "image_shape": None, "num_classes": model.num_classes,
            "feature_dim": model.feature_dim, "weights": str(weights_path), "hash": file_sha256(weights_path)}
    return model, info


def _check_hash(path: Path, actual: str, expected: str) -> None:
    if actual != expected:
        raise ValueError(f"evaluator weights {path} have sha256 {actual[:12]}…, but the evaluator recorded "
                         f"{expected[:12]}…: the file changed since it was saved; rebuild the evaluator")
