"""The `tune` section: what a sweep searches (tune.space), how (search, scheduler) and at what budget."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.section import Section, bookkeeping

def tunable_sections() -> dict[str, type[Section]]:
    """Which sections a sweep may vary: what changes the trained model (model, train and every family's own
    section). Data and evaluator stay fixed so every trial is scored under the same evaluator."""
    from components.config.sections import TrainConfig
    from components.families import FAMILIES
    from components.model_config import ModelConfig

    own = {f.section: f.Section for f in FAMILIES.values() if f.section}
    return {"model": ModelConfig, "train": TrainConfig, **own}


class SpaceEntry(Section):
    """One dimension of tune.space: exactly one of grid / choice (value lists), uniform / loguniform
    ([low, high])."""
    grid: list[Any] | None = Field(None, min_length=1, description="every value, crossed with the other grid keys")
    choice: list[Any] | None = Field(None, min_length=1, description="one value drawn per trial")
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "SpaceEntry":
        given = [k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of grid, choice, uniform, loguniform (got {given or 'none'})")
        bounds = self.uniform or self.loguniform
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"[low, high] must have low < high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {list(self.loguniform)}")
        return self

    @property
    def distribution(self) -> str:
        """grid | choice | uniform | loguniform: how this dimension's values are drawn."""
        return next(k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None)


class AshaConfig(Section):
    grace_period: int = Field(500, ge=1, description="steps every trial runs before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1.0, description="keep the best 1/reduction_factor at each rung")


class PbtConfig(Section):
    perturbation_interval: int = Field(500, ge=1, description="steps between exploit/explore decisions")
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5, description="bottom fraction copies the top fraction")
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    mutations: list[str] = Field(["train.lr_g", "train.lr_d", "train.label_smoothing", "train.d_steps_per_g_step"],
                                 description="space keys explore perturbs (those present in tune.space)")


# The default sweep (params.yaml, mnist5k): objective, EMA, G's learning rate, label smoothing.
DEFAULT_TUNE_SPACE = {
    "train": SpaceEntry(choice=[{"objective": "nonsaturating"}, {"objective": "lsgan"}, {"objective": "hinge"}]),
    "train.ema_decay": SpaceEntry(choice=[0.0, 0.999]),
    "train.lr_g": SpaceEntry(loguniform=(1.0e-4, 5.0e-4)),
    "train.label_smoothing": SpaceEntry(choice=[0.0, 0.1]),
}


class TuneConfig(Section):
    """`genpipe tune`: a Ray Tune sweep whose best configuration `train` retrains (pipelines/tune.py)."""
    enabled: bool = Field(False, description="false: the tune stage records 'no sweep' and train uses params as is")
    space: dict[str, SpaceEntry] = Field(default_factory=lambda: dict(DEFAULT_TUNE_SPACE),
                                         description="dotted key → grid/choice/uniform/loguniform; a section key "
                                         "(train) takes mappings, to vary keys together")
    search: Literal["random", "grid", "optuna"] = "random"
    num_samples: int = Field(6, ge=1, description="random/optuna: trials; grid: repeats of the whole grid (its "
                             "choice/uniform/loguniform entries drawn anew for each point of each repeat)")
    max_concurrent_trials: int | None = Field(None, ge=1, description="default: as many as the cluster's CPUs fit")
    num_workers: int = Field(1, ge=1, description="workers per trial (scaling.num_workers is for train): 1 trains "
                             "in the trial's own process; more start a Ray Train run per trial")
    in_process: bool = bookkeeping(True, description="one-worker trials train in the trial's own process; false "
                                   "starts a Ray Train run for each (the same weights; for comparing start-up)")
    gpus_per_trial: float = Field(1.0, gt=0, le=1, description="with scaling.use_gpu, the share of a GPU each "
                                  "one-worker trial holds: 0.25 puts four trials on a GPU")
    metric: str | None = Field(None, description="default: the family's default metric (the one promote uses)")
    scheduler: Literal["fifo", "asha", "pbt"] = "asha"
    asha: AshaConfig = Field(default_factory=AshaConfig)
    pbt: PbtConfig = Field(default_factory=PbtConfig)
    trial_steps: int = Field(1500, ge=1, description="training steps per trial (train retrains at the full budget)")
    eval_every: int = Field(250, ge=1, description="steps between in-training evaluations (and Tune checkpoints)")
    eval_samples: int = Field(500, ge=1, description="generated samples per in-training evaluation")
    error_seeds: int = Field(1, ge=1, description="re-score each trial's last checkpoint over this many sampling "
                             "seeds: the trials CSV's scores become their mean, with <score>_seed_std; 1: as reported")
    max_failures: int = Field(0, ge=-1, description="retries of a crashed trial from its last checkpoint (-1: unlimited)")
    register_best: bool = bookkeeping(True, description="register the best trial's generator under "
                                      "<registered model name>-sweeps, apart from promotion candidates (no alias)")
    output_dir: str = bookkeeping("data/tune")
    storage_path: str | None = Field(None, description="trial checkpoints; a shared path on a cluster. "
                                     "Default data/tune_runs")
    report: str = bookkeeping("reports/tune.json")
    trials_csv: str = bookkeeping("reports/tune_trials.csv")
    curves_csv: str | None = bookkeeping(None, description="every in-training evaluation of every trial (trial, "
                                         "step, seconds, scores): learning curves; null = not written")

    @field_validator("space")
    @classmethod
    def _keys_tunable(cls, v: dict[str, SpaceEntry]) -> dict[str, SpaceEntry]:
        for key in v:
            section, _, field = key.partition(".")
            tunable = tunable_sections()
            if key == "seed" or key in tunable:  # a section key takes mappings of its keys
                continue
            if section not in tunable:
                raise ValueError(f"space key {key!r}: only seed, {', '.join(s + '.*' for s in tunable)} "
                                 "can be tuned (data and evaluator stay fixed so trials are comparable)")
            fields = tunable[section].model_fields
            if field not in fields:
                raise ValueError(f"space key {key!r}: {section} has no key {field!r}; "
                                 f"allowed: {', '.join(fields)}")
        return v

    @model_validator(mode="after")
    def _gpu_share_needs_one_worker(self) -> "TuneConfig":
        if self.gpus_per_trial < 1 and (self.num_workers > 1 or not self.in_process):
            raise ValueError(f"tune.gpus_per_trial = {self.gpus_per_trial:g} shares a GPU between trials, which only "
                             f"in-process trials can (tune.num_workers = {self.num_workers}, tune.in_process = "
                             f"{self.in_process}: each Ray Train worker holds a whole GPU); set tune.num_workers: 1 "
                             "and tune.in_process: true, or gpus_per_trial: 1")
        return self

    @model_validator(mode="after")
    def _search_fits_space(self) -> "TuneConfig":
        kinds = {e.distribution for e in self.space.values()}
        if self.search == "grid" and "grid" not in kinds:
            raise ValueError("search = 'grid' needs at least one grid entry (its other entries are drawn anew for "
                             "every grid point); use random or optuna to draw choice/uniform/loguniform entries only")
        if self.search == "optuna" and "grid" in kinds:
            raise ValueError("search = 'optuna' draws every value; write grid entries as choice")
        if self.eval_every > self.trial_steps:
            raise ValueError(f"eval_every = {self.eval_every} exceeds trial_steps = {self.trial_steps}: "
                             "a trial would never be evaluated before its end")
        return self

    def idle_scheduler(self) -> str | None:
        """Why ASHA would never stop a trial, or PBT never exploit one, with these steps; None when it can.

        A warning, not a refusal (the stage prints it before the first trial; `--dry-run` lists it): such a
        sweep still ranks every trial correctly, as FIFO would, only without the compute the scheduler was
        to save; and a short trial under the default scheduler (grace 500) is what a quick sweep, a test or
        a benchmark asks for. Both schedulers act only at a report (every eval_every steps) before the
        trial's end, and ASHA only from grace_period on, PBT every perturbation_interval steps."""
        if self.scheduler not in ("asha", "pbt"):
            return None
        last = (self.trial_steps - 1) // self.eval_every * self.eval_every  # the last report before the end
        key, value = (("asha.grace_period", self.asha.grace_period) if self.scheduler == "asha" else
                      ("pbt.perturbation_interval", self.pbt.perturbation_interval))
        if value <= last:
            return None
        why = (f"tune.{key} = {value} comes after a trial's last evaluation before its end (step {last}: "
               f"tune.trial_steps = {self.trial_steps}, tune.eval_every = {self.eval_every})" if last > 0 else
               f"tune.eval_every = {self.eval_every} leaves a trial no evaluation before its end at "
               f"tune.trial_steps = {self.trial_steps}")
        fix = f"tune.{key} at most {last}" if last > 0 else "tune.eval_every below tune.trial_steps"
        return (f"{why}: {self.scheduler.upper()} {'stops' if self.scheduler == 'asha' else 'exploits'} no "
                f"trial, and the sweep runs every trial to its end as FIFO would. Set {fix}, or tune.scheduler: fifo")


