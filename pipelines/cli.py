"""`genpipe <stage>`: one subcommand per DVC stage. Each reads params.yaml (+ --set overrides),
validates it into typed config before any work, then calls its stage module."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

STAGES = {
    "prepare": "turn the configured source into Parquet shards + manifest (data/prepared/<dataset>)",
    "evaluator": "train (or load) the feature network every metric uses (data/evaluator)",
    "tune": "Ray Tune sweep over tune.space (ASHA/PBT, random/grid/Optuna); writes the best config for train",
    "train": "train the configured GAN with Ray Train (or --no-ray), log to MLflow, export the generator",
    "evaluate": "score the trained generator: FID, KID, IS, precision/recall/density/coverage, class KL",
    "promote": "register the candidate in the MLflow Model Registry; move the champion alias if it is better",
    "sample": "draw samples from a logged/registered model: a PNG (image grid, points, translations), or for a "
              "text model a text file of sentences",
    "modes": "the mode-collapse benchmark on a 2D mixture: objectives × label smoothing × D:G ratios × seeds",
}


# Stages that use the model the tune stage chose (when tune.enabled).
TUNED_STAGES = ("train", "evaluate", "promote")


def stage_params(stage: str, path, overrides: list[str], repo_root: Path):
    """Params as the stage sees them: file → preset → (train/evaluate/promote: the tune stage's best
    configuration, when tune.enabled) → --set."""
    return _resolve(stage, path, overrides, repo_root)[0]


def _resolve(stage: str, path, overrides: list[str], repo_root: Path, quiet: bool = False):
    """(params, the tuned configuration applied: {} when none) of stage_params."""
    from components.config import load_params

    params = load_params(path, overrides)
    if stage in TUNED_STAGES:
        from pipelines.links import tuned_overrides

        if tuned := tuned_overrides(params, repo_root):
            params = load_params(path, [f"{k}={json.dumps(v)}" for k, v in tuned.items()] + list(overrides))
            if not quiet:
                print(f"genpipe {stage}: with the tuned configuration {tuned}", flush=True)
            return params, tuned
    return params, {}


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, except the empty ones (None, [], an off flag)."""

    def _get_help_string(self, action):
        empty = action.default is None or action.default is False or action.default == []
        return action.help if empty or action.default is argparse.SUPPRESS else super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpipe", description="Reproducible generative-model pipeline stages.")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, help_text in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=_ShowDefaults)
        p.add_argument("--params", default="params.yaml", help="params file")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one param (repeatable), value parsed as YAML")
        p.add_argument("--dry-run", action="store_true",
                       help="print the resolved options and what the stage would read, write and reuse; "
                            "write nothing")
        if name == "tune":
            how = p.add_mutually_exclusive_group()
            how.add_argument("--resume", dest="resume", action="store_const", const=True, default=None,
                             help="continue the interrupted sweep of these params (error if there is none); "
                                  "by default an interrupted sweep is continued and otherwise a new one starts")
            how.add_argument("--restart", dest="resume", action="store_const", const=False,
                             help="start afresh even if an interrupted sweep of these params exists")
        if name == "evaluator":
            p.add_argument("--retrain", action="store_true",
                           help="train the evaluator even when a pinned one matches its definition; lists the "
                                "numbers the new weights orphan")
            p.add_argument("--pin", action="store_true",
                           help="keep the evaluator in components/metrics/pinned/ so every clone measures with it")
        if name == "train":
            p.add_argument("--no-ray", action="store_true", help="run the training core in this process (1 worker)")
        if name == "sample":
            p.add_argument("--model", required=True, help="MLflow model URI, e.g. models:/mnist5k-dcgan@champion")
            p.add_argument("--n", type=int, default=64, help="number of samples (images, points or sentences)")
            p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
            p.add_argument("--out", default="samples.png",
                           help="file to write: a PNG (an image grid, a scatter of points, input | output pairs); "
                                "a text model writes its sentences to this path with the suffix .txt")
        if name == "modes":
            p.add_argument("--dataset", required=True, choices=["ring8", "grid25"], help="2D mixture to benchmark")
    init = sub.add_parser("init", help=INIT_HELP, description=INIT_HELP + ". Only the keys it sets change; every "
                          "other key and comment stays.", formatter_class=_ShowDefaults)
    what = init.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", metavar="DIR", help="a folder with one subfolder of PNG/JPEG images per class")
    what.add_argument("--text", metavar="FILE", help="a UTF-8 text file, one sentence per line")
    init.add_argument("--params", default="params.yaml", help="params file to write")
    return parser


INIT_HELP = "point params.yaml at your own images or text, with settings sized for them; then `dvc repro`"


def _layers(args, tuned: dict):
    from components.options import Layers

    return Layers(args.params, tuple(args.overrides), tuned)


def record_options(stage: str, params, resolved: dict, repo_root: Path, result) -> None:
    """After the stage: its resolved options beside its outputs (components/options.py says what each holds)
    and, for evaluate and promote, on the candidate's MLflow run (train logs its own when the run starts)."""
    from components import options

    path = options.options_path(stage, params, repo_root)
    if path is None:
        return
    if stage == "train":  # what the run trained with: a finished run rebuilt keeps the options it logged
        options.write(path, options.logged_on_run(result["tracking_uri"], result["mlflow_run_id"]) or resolved)
        return
    options.write(path, resolved)
    if stage in options.RUN_ARTIFACT:
        from pipelines.links import read_train_summary

        summary = read_train_summary(params, repo_root)
        options.log_to_run(summary["tracking_uri"], summary["mlflow_run_id"], resolved, options.RUN_ARTIFACT[stage])


def _stage_flags(args) -> dict:
    """The stage's own command-line options, as its dry_run takes them."""
    return {"train": lambda: {"use_ray": not args.no_ray}, "tune": lambda: {"resume": args.resume},
            "evaluator": lambda: {"retrain": args.retrain, "pin": args.pin},
            "sample": lambda: {"model_uri": args.model, "n": args.n, "seed": args.seed, "out": Path(args.out)},
            "modes": lambda: {"dataset": args.dataset, "params_path": args.params, "overrides": args.overrides},
            }.get(args.stage, dict)()


def dry_run(args, repo_root: Path) -> str:
    """`genpipe <stage> --dry-run`: the options the stage would resolve (and write), then what it would read,
    write and reuse, from each stage module's `dry_run(params, repo_root, ...)`. Writes nothing."""
    import importlib

    from components import options
    from components.config import load_params
    from pipelines.links import MissingStageOutput

    notes = []
    try:
        params, tuned = _resolve(args.stage, args.params, args.overrides, repo_root, quiet=True)
    except MissingStageOutput as e:  # the stage would stop there: shown without the sweep's configuration
        params, tuned = load_params(args.params, args.overrides), {}
        notes.append(f"the stage would stop: {e}")
    resolved = options.resolve(args.stage, params, _layers(args, tuned))
    plan = importlib.import_module(f"pipelines.{args.stage}").dry_run(params, repo_root, **_stage_flags(args))
    plan["notes"] = notes + list(plan.get("notes", []))
    return options.render(resolved) + options.render_plan(args.stage, plan, options.options_path(
        args.stage, params, repo_root), repo_root)


# MLflow draws a progress bar for every artifact download (a model is fetched several times per stage),
# which floods a CI log; the stages show their own progress. Ray's driver colours the "(raylet)" prefix
# (RAY_COLOR_PREFIX=0: no colour codes in a log file) and folds lines that differ only in numbers, such as
# the progress lines of concurrent sweep trials, into one green "[repeated 4x across cluster]" (RAY_DEDUP_LOGS,
# read when Ray is imported: set here, before any stage imports it).
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "RAY_COLOR_PREFIX": "0", "RAY_DEDUP_LOGS": "0"}


def main(argv: list[str] | None = None) -> int:
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)  # an explicit setting wins
    args = _parser().parse_args(argv)
    from components.config import ConfigError

    if args.stage == "init":
        return _init(args)

    try:
        repo_root = Path.cwd()
        if args.dry_run:
            print(dry_run(args, repo_root), end="", flush=True)
            return 0
        params, tuned = _resolve(args.stage, args.params, args.overrides, repo_root)
        from components import options

        layers = _layers(args, tuned)
        resolved = options.resolve(args.stage, params, layers)
        result = None
        if args.stage == "tune":
            from pipelines import tune

            tune.run(params, repo_root, resume=args.resume)
        elif args.stage == "train":
            from pipelines import train

            result = train.run(params, repo_root, use_ray=not args.no_ray, options=resolved)
        elif args.stage == "evaluate":  # the layers name where a refused setting came from
            from pipelines import evaluate

            evaluate.run(params, repo_root, layers=layers)
        elif args.stage == "sample":
            from pipelines import sample

            sample.run(params, repo_root, args.model, args.n, args.seed, Path(args.out))
        elif args.stage == "evaluator":
            from pipelines import evaluator

            evaluator.run(params, repo_root, retrain=args.retrain, pin=args.pin)
        elif args.stage == "modes":
            from pipelines import modes

            modes.run(params, repo_root, args.dataset, args.params, args.overrides)
        else:
            import importlib

            importlib.import_module(f"pipelines.{args.stage}").run(params, repo_root)
        record_options(args.stage, params, resolved, repo_root, result)
    except ConfigError as e:
        print(f"genpipe {args.stage}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the stage said what it saved; no traceback
        print(f"genpipe {args.stage}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"genpipe {args.stage}: error: {e}", file=sys.stderr)
        return 1
    return 0


def _init(args) -> int:
    from pipelines import init

    try:
        init.run(Path.cwd(), args.params, images=args.images, text=args.text)
    except (ValueError, FileNotFoundError) as e:  # ConfigError, DataError and EditError are ValueErrors
        print(f"genpipe init: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
