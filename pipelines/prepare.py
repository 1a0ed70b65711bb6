"""`genpipe prepare`: a named source → Parquet shards + manifest in `<data.prepared_dir>/<dataset>/`."""
from __future__ import annotations

from pathlib import Path

from components.config import Params
from components.data.kinds import kind_of
from components.data.shards import SPLITS, write_prepared
from components.data.sources import SOURCES
from components.data.tokens import Sentences, encode_split


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
    data = SOURCES.get(cfg.source)(cfg)
    if isinstance(data, Sentences):  # text: the vocabulary comes from the train split
        data = encode_split(data, cfg, params.seed)
    if cfg.pairs is not None:
        from components.data.pairings import PAIRINGS

        data = PAIRINGS.get(cfg.pairs)(data, cfg, params.seed)
    manifest = write_prepared(data, cfg, params.seed, out_dir)
    print(summary(manifest, out_dir))
    return out_dir
