"""`genpipe prepare`: a named source → Parquet shards + manifest in `<data.prepared_dir>/<dataset>/`."""
from __future__ import annotations

from pathlib import Path

from components.config import Params
from components.data.kinds import kind_of
from components.data.shards import SPLITS, write_prepared
from components.data.sources import SOURCES


def summary(manifest: dict, out_dir: Path) -> str:
    shape = "x".join(map(str, manifest["image_shape"]))
    what = kind_of(manifest).rows_called(manifest)
    counts = ", ".join(f"{s} {manifest['splits'][s]['count']}" for s in SPLITS)
    return (f"prepared {manifest['dataset']} (source {manifest['source']}, seed {manifest['seed']}): "
            f"{manifest['count']} {what} of {shape} in {manifest['num_classes']} classes; {counts}; "
            f"content hash {manifest['content_hash']}; written to {out_dir}")


def run(params: Params, repo_root: Path | str = ".") -> Path:
    cfg = params.data
    out_dir = params.prepared_path(Path(repo_root))
    data = SOURCES.get(cfg.source)(cfg).encoded(cfg, params.seed)  # text: the vocabulary of the train split
    if cfg.pairs is not None:
        from components.data.pairings import PAIRINGS

        data = PAIRINGS.get(cfg.pairs)(data, cfg, params.seed)
    manifest = write_prepared(data, cfg, params.seed, out_dir)
    print(summary(manifest, out_dir))
    if warning := size_warning(params, manifest):
        print(warning, flush=True)
    return out_dir


def size_warning(params: Params, manifest: dict) -> str | None:
    """The evaluator these params choose, asked at once whether it can measure this split (None: it can). The
    evaluator stage refuses on the same problems; said here, before anything is trained on the split."""
    from components.metrics.evaluators import EvaluatorError, evaluator_of

    try:
        evaluator = evaluator_of(params, manifest)
        evaluator.check_reference(params)
    except EvaluatorError as e:
        return f"prepare: warning: {e}; the evaluator stage will refuse this data"
    problems = evaluator.size_problems(params, manifest)
    return (f"prepare: warning: {evaluator.too_small(manifest, problems)}. The evaluator stage will refuse this "
            "split: change it now and run prepare again" if problems else None)


def dry_run(params: Params, repo_root: Path | str = ".") -> dict:
    """What `run` would read and write (`genpipe prepare --dry-run`); writes nothing."""
    from components.data.shards import MANIFEST
    from components.options import OPTIONS_FILE, record_line, written

    cfg, out_dir = params.data, params.prepared_path(Path(repo_root))
    source = f"source {cfg.source}" + (f" from {cfg.path}" if cfg.path else "")
    if cfg.pairs is not None:
        source += f", paired by {cfg.pairs}" + (f" with source {cfg.domain_b}" if cfg.pairs == "unpaired" else "")
    return {"reads": [source],
            "writes": [written(out_dir, repo_root, f"Parquet shards {', '.join(SPLITS)}, {MANIFEST}, {OPTIONS_FILE}")],
            "reuses": [],
            "notes": [f"split: test_fraction {cfg.test_fraction}, seed {params.seed}"]
            + ([f"there now: {record_line(out_dir / MANIFEST, repo_root, ('content_hash', 'count'), 'prepare')}"]
               if (out_dir / MANIFEST).is_file() else [])}
