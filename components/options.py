"""A stage's resolved options: the validated params after every layer (params file → preset → the sweep's
best configuration → --set), where each layer came from, the stage, and for some stages the code version.
A stage writes them beside its outputs (`options_path`), train/evaluate/promote also to the candidate's
MLflow run, and `genpipe <stage> --dry-run` prints them (docs/configuration.md#resolved-options).

What a stage's file holds is decided per stage:
- `stage_sections`: the sections a stage's DVC `params:` name (read from dvc.yaml), or None
  for every section. An output that other stages hash (data/prepared, data/evaluator, data/tune) then
  changes only when DVC reruns its stage anyway.
- `WITH_CODE`: the stages whose file carries the code version (git commit and whether the code differs
  from it; else the package version). Not prepare, evaluator and tune: their outputs feed the hashes of
  every later stage, and the evaluator copied from a pin must stay the same bytes on every commit.

Plain data in a fixed key order, so the same inputs render the same bytes. Imports neither torch nor
MLflow (MLflow only inside the two functions that talk to a run)."""
from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.atomic import atomic_write
from components.config.loading import PRESETS_DIR, apply_overrides

OPTIONS_FILE = "options.yaml"

# the sections each stage's options hold: its DVC params (dvc.yaml, read once: one source of truth), so an
# options file inside a DVC output changes only when DVC reruns the stage anyway. None = all: train records
# everything it ran with; sample and modes are no DVC stages.
RECORDS_ALL = ("train", "sample", "modes")
DVC_FILE = Path(__file__).resolve().parents[1] / "dvc.yaml"


@functools.lru_cache(maxsize=None)
def stage_sections(stage: str) -> tuple[str, ...] | None:
    if stage in RECORDS_ALL or not DVC_FILE.is_file():
        return None
    return tuple(yaml.safe_load(DVC_FILE.read_text())["stages"][stage]["params"])


WITH_CODE = frozenset({"train", "evaluate", "promote", "sample", "modes"})
# where on the candidate's MLflow run each stage's options go
RUN_ARTIFACT = {"train": OPTIONS_FILE, "evaluate": f"evaluation/{OPTIONS_FILE}",
                "promote": f"promotion/{OPTIONS_FILE}"}
# the code whose version is recorded: a change anywhere else in the tree (dvc.lock, reports/) is not "dirty"
CODE_PATHS = ("components", "pipelines", "pyproject.toml")
TUNED_FROM = "tune (best.json)"


@dataclass(frozen=True)
class Layers:
    """Where the params came from, in the order they apply (the preset's name is in the params)."""
    params_file: str | None = "params.yaml"
    overrides: tuple[str, ...] = ()
    tuned: dict[str, Any] = field(default_factory=dict)  # the sweep's best configuration, applied before --set


def options_path(stage: str, params, repo_root: Path) -> Path | None:
    """The file a stage writes its options to, beside its outputs (None: the stage writes none)."""
    root = Path(repo_root)
    where = {
        "prepare": lambda: params.prepared_path(root) / OPTIONS_FILE,
        "evaluator": lambda: root / params.evaluator.output_dir / OPTIONS_FILE,
        "tune": lambda: root / params.tune.output_dir / OPTIONS_FILE,
        "train": lambda: root / params.train.output_dir / OPTIONS_FILE,
        "evaluate": lambda: (root / params.evaluate.report).parent / f"evaluate_{OPTIONS_FILE}",
        "promote": lambda: (root / params.promote.report).parent / f"promote_{OPTIONS_FILE}",
    }.get(stage)
    return where().resolve() if where else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """{"commit", "dirty"} of the checkout this code runs from (dirty: its code differs from the commit,
    untracked files included); {"version"} of the installed package where that is no git checkout."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:  # a package inside someone else's repo
            raise ValueError(root)
        changed = git("status", "--porcelain", "--", *CODE_PATHS)
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed)}
    except (OSError, ValueError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"version": version("genpipe")}
        except PackageNotFoundError:
            return {"version": "unknown"}


def resolve(stage: str, params, layers: Layers) -> dict[str, Any]:
    """The options document of `stage`: stage, code (WITH_CODE stages), layers, set_by (every key a
    preset, the sweep or --set gave, and every params-file key off its code default, with the layer that
    set it) and params (the stage's sections, keys sorted)."""
    sections = stage_sections(stage)
    doc: dict[str, Any] = {"stage": stage}
    if stage in WITH_CODE:
        doc["code"] = code_version()
    doc["layers"] = {"params_file": layers.params_file, "preset": params.preset, "set": list(layers.overrides),
                     "tuned": _sorted(layers.tuned)}
    doc["set_by"] = {k: v for k, v in sorted(set_by(params, layers).items()) if _selected(k, sections)}
    doc["params"] = _sorted(_select(params.model_dump(mode="json"), sections))
    return doc


def render(doc: dict[str, Any]) -> str:
    head = f"# genpipe {doc['stage']}: resolved options (docs/configuration.md#resolved-options)\n"
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def write(path: Path, options: dict[str, Any] | str) -> Path:
    return atomic_write(path, options if isinstance(options, str) else render(options))


def log_to_run(uri: str, run_id: str, options: dict[str, Any], artifact_file: str) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).log_text(run_id, render(options), artifact_file)


def logged_on_run(uri: str, run_id: str, artifact_file: str = OPTIONS_FILE) -> str | None:
    """The options a run logged (the text), or None when it logged none (runs from before options)."""
    import tempfile

    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return Path(MlflowClient(uri).download_artifacts(run_id, artifact_file, tmp)).read_text()
        except Exception:  # noqa: BLE001 - not there (or not readable): the caller falls back to this run's own
            return None


def shown(path, repo_root: Path) -> str:
    """A path as a plan prints it: relative to the repository when inside it; a storage URI as it is."""
    if getattr(path, "is_local", True) is False:  # a components.storage.Location on object storage
        return path.uri
    path, root = Path(path), Path(repo_root).resolve()
    return str(path.relative_to(root)) if path.is_absolute() and path.is_relative_to(root) else str(path)


def tracking_uri(params, repo_root: Path) -> str:
    """The store a stage would write to, as mlflow_store.resolve_uri finds it, without creating its folder."""
    import os

    from components.tracking.mlflow_store import default_uri

    return params.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(Path(repo_root))


def record_line(path: Path, repo_root: Path, fields: tuple[str, ...], producer: str) -> str:
    """`<path> (field value, …)` from the JSON record an earlier stage wrote there (hashes shortened), or
    `<path> (missing; run genpipe <producer> first)`."""
    if not Path(path).is_file():
        return f"{shown(path, repo_root)} (missing; run `genpipe {producer}` first)"
    data = json.loads(Path(path).read_text())

    def short(v):
        return v[:12] if isinstance(v, str) and len(v) == 64 else v

    return f"{shown(path, repo_root)} (" + ", ".join(f"{k} {short(data[k])}" for k in fields if k in data) + ")"


def written(path: Path, repo_root: Path, what: str) -> str:
    """`<path> (what)`, saying when something there would be replaced."""
    there = path.exists() if hasattr(path, "is_local") else Path(path).exists()  # a storage Location or a path
    return f"{shown(path, repo_root)} ({what})" + (", replacing what is there" if there else "")


def render_plan(stage: str, plan: dict[str, list[str]], where: Path | None, repo_root: Path) -> str:
    """What `--dry-run` prints after the options: where they would go, and the stage's reads, writes and
    reuses (lists of sentences), as a second YAML document."""
    written = shown(where, repo_root) if where else "not written (this stage prints them only)"
    if stage in RUN_ARTIFACT:
        written += f"; logged on the candidate's MLflow run as {RUN_ARTIFACT[stage]}"
    body = {"options_file": written, **{k: list(plan.get(k, [])) for k in ("reads", "writes", "reuses", "notes")}}
    return (f"---\n# genpipe {stage} --dry-run: what the stage would read, write and reuse; nothing was written\n"
            + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=120))


def _sorted(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _sorted(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_sorted(v) for v in node]
    return node


def _selected(key: str, sections: tuple[str, ...] | None) -> bool:
    return sections is None or any(key == s or key.startswith(s + ".") for s in sections)


def _select(dumped: dict[str, Any], sections: tuple[str, ...] | None) -> dict[str, Any]:
    if sections is None:
        return dumped
    out: dict[str, Any] = {}
    for name in sections:
        head, _, rest = name.partition(".")
        if rest:  # one key of a section (tune.enabled)
            out.setdefault(head, {})[rest] = dumped[head][rest]
        else:
            out[name] = dumped[name]
    return out


def _leaves(node: Any, prefix: str = ""):
    for k, v in node.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    from components.config import Params

    return Params().flat()


def set_by(params, layers: Layers) -> dict[str, str]:
    """Dotted key → the last layer that set it, for every key of the params that a layer set: the preset,
    the sweep and --set always; the params file where it moves a key off its code default."""
    raw: dict[str, Any] = {}
    if layers.params_file is not None:
        raw = yaml.safe_load(Path(layers.params_file).read_text()) or {}
    tuned = [f"{k}={json.dumps(v)}" for k, v in layers.tuned.items()]
    chain = [(str(layers.params_file), raw)]
    if params.preset:
        chain.append((f"preset {params.preset}", yaml.safe_load((PRESETS_DIR / f"{params.preset}.yaml").read_text())
                      or {}))
    chain += [(TUNED_FROM, apply_overrides({}, [o])) for o in tuned]
    chain += [("--set", apply_overrides({}, [o])) for o in layers.overrides]
    final, defaults, origin = params.flat(), _defaults(), {}
    for name, layer in chain:
        for key, _ in _leaves(layer):
            for k in final:  # a key, or a whole section or mapping given at once
                if k == key or k.startswith(key + "."):
                    origin[k] = name
    return {k: who for k, who in origin.items()
            if who != chain[0][0] or final[k] != defaults.get(k, _MISSING)}


_MISSING = object()
