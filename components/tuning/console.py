"""The sweep's progress table on the console: one row per trial with its status, step, the tuned metric and
its tuned values, short (`objective`, not `train` = '{"objective": "hinge"}' cut to 20 characters), the best
trial named above it. Plain ASCII without colour, so a log file reads as the terminal does.

Ray Tune's own table (its "new output engine", on by default) shows the first four metrics a trial reports
(here its losses, never the tuned metric) and cuts every value to 20 characters, and has no setting for
either; it also ignores `RunConfig(progress_reporter=…)`. pipelines/tune.py therefore runs Tune's classic
output (RAY_AIR_NEW_OUTPUT=0) with this reporter, Ray's documented ProgressReporter interface."""
from __future__ import annotations

import math
import time

from ray.tune import ProgressReporter

from components.tuning.space import flatten

MAX_ROWS = 20  # a larger sweep shows its running trials and the best finished ones
EVERY_S = 30.0  # a table at least this often while trials run…
CHANGE_S = 5.0  # …and after a change of a trial's status, at most this often (trials start in pairs)
WIDTH = 24  # a longer value is cut, at its end


def _status(trial, trial_steps: int) -> str:
    status, step = trial.status, (trial.last_result or {}).get("step", 0)
    if status == "TERMINATED":
        return "done" if step >= trial_steps else "stopped"
    return {"ERROR": "failed"}.get(status, status.lower())


def _shown(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    return text if len(text) <= WIDTH else text[:WIDTH - 3] + "..."


def _short_names(keys: list[str]) -> dict[str, str]:
    """train.lr_g → lr_g, unless two keys would share the short name."""
    short = {k: k.rpartition(".")[2] for k in keys}
    taken = list(short.values())
    return {k: s if taken.count(s) == 1 else k for k, s in short.items()}


def _value(trial, metric: str) -> float | None:
    v = (trial.last_result or {}).get(metric)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def table(trials, metric: str, mode: str, trial_steps: int, elapsed_s: float, total: int = 0,
          max_rows: int = MAX_ROWS) -> str:
    """The status line and the table of `trials` (Ray Tune Trial objects, or anything with trial_id, status,
    config and last_result); `total`: the sweep's trials, those Tune has not created yet counted as pending."""
    sign = 1 if mode == "min" else -1
    scored = sorted((t for t in trials if _value(t, metric) is not None), key=lambda t: sign * _value(t, metric))
    statuses = [_status(t, trial_steps) for t in trials] + ["pending"] * max(0, total - len(trials))
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in
                       ("running", "pending", "paused", "done", "stopped", "failed") if s in statuses)
    best = (f"best {metric} {_shown(_value(scored[0], metric), 4)} ({scored[0].trial_id})" if scored
            else f"no {metric} yet")
    minutes, seconds = divmod(int(elapsed_s), 60)
    lines = [f"tune: {len(statuses)} trials: {counts} | {minutes}:{seconds:02d} | {best}"]
    if len(trials) > max_rows:  # the running ones, then the best of the rest
        live = [t for t in trials if t.status in ("RUNNING", "PAUSED")]
        rest = [t for t in scored if t not in live][:max(0, max_rows - len(live))]
        shown = live + rest
    else:
        shown = list(trials)
    configs = {id(t): flatten(t.config or {}) for t in shown}
    keys = list(dict.fromkeys(k for t in shown for k in configs[id(t)]))
    names = _short_names(keys)
    rows = [["trial", "status", "step", metric, *names.values()]]
    for t in shown:
        rows.append([t.trial_id, _status(t, trial_steps), _shown((t.last_result or {}).get("step")),
                     _shown(_value(t, metric), 4),
                     *(_shown(configs[id(t)].get(k)) for k in keys)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if len(shown) < len(trials):
        lines.append(f"  ... {len(trials) - len(shown)} more trials (all of them: the trials CSV, at the end)")
    return "\n".join(lines)


class SweepConsole(ProgressReporter):
    """Prints `table` after a change of a trial's status (at most every CHANGE_S seconds), every EVERY_S
    seconds while trials run, and at the end unless the last table already shows it. Passed as
    tune.RunConfig(progress_reporter=…); it is pickled with the sweep's state (resume)."""

    def __init__(self, trial_steps: int, metric: str, mode: str, out=None):
        self.trial_steps, self.metric, self.mode, self.out = trial_steps, metric, mode, out
        self._start, self._last, self._shown, self._total = time.time(), -math.inf, None, 0

    def setup(self, start_time: float | None = None, total_samples: int | None = None, **kwargs) -> None:
        self._start, self._total = start_time or time.time(), total_samples or 0

    def should_report(self, trials, done: bool = False) -> bool:
        changed = tuple((t.trial_id, t.status) for t in trials) != self._shown
        since = time.time() - self._last
        return bool(trials) and (since >= EVERY_S and not done or changed and (done or since >= CHANGE_S))

    def report(self, trials, done: bool, *sys_info: str) -> None:
        self._last, self._shown = time.time(), tuple((t.trial_id, t.status) for t in trials)
        print(table(trials, self.metric, self.mode, self.trial_steps, self._last - self._start, self._total),
              file=self.out, flush=True)

    def __getstate__(self) -> dict:  # a stream does not pickle; a restored sweep prints to stdout
        return {**self.__dict__, "out": None}
