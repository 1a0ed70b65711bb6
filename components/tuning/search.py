"""How a sweep searches (Ray Tune): the search algorithm (random / grid presets, Optuna with refused
configurations skipped), the scheduler (FIFO, ASHA, PBT with explore kept valid) and PBT's mutations.
Built from the `tune` section; the space itself is space.py."""
from __future__ import annotations

import json
import logging
from typing import Any

from components.config import ConfigError, Params
from components.tuning import space as search_space


class TuneError(RuntimeError):
    pass


def refusal_skipping_searcher(inner, base: Params, skipped):
    """Wraps a Searcher (Optuna) so configurations the config refuses are never launched: each is
    reported to the inner searcher as a failed trial (it learns to avoid them) and redrawn."""
    from ray.tune.search import Searcher

    class SkipRefused(Searcher):
        def __init__(self):
            super().__init__(metric=inner.metric, mode=inner.mode)
            self.inner, self.alias = inner, {}

        def set_search_properties(self, metric, mode, config, **spec):
            return self.inner.set_search_properties(metric, mode, config, **spec)

        def suggest(self, trial_id):
            for attempt in range(search_space.MAX_DRAWS_PER_TRIAL):
                inner_id = f"{trial_id}-{attempt}"
                config = self.inner.suggest(inner_id)
                if not isinstance(config, dict):
                    return config
                if (why := search_space.refusal(base, config)) is None:
                    self.alias[trial_id] = inner_id
                    return config
                skipped[search_space.reason_class(why)] += 1
                self.inner.on_trial_complete(inner_id, error=True)
            raise TuneError(f"{search_space.MAX_DRAWS_PER_TRIAL} Optuna suggestions in a row were refused by the config")

        def on_trial_result(self, trial_id, result):
            self.inner.on_trial_result(self.alias.get(trial_id, trial_id), result)

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.inner.on_trial_complete(self.alias.get(trial_id, trial_id), result=result, error=error)

        def save(self, checkpoint_path):
            self.inner.save(checkpoint_path)

        def restore(self, checkpoint_path):
            self.inner.restore(checkpoint_path)

    return SkipRefused()


def optuna_space(space):
    """Define-by-run Optuna space. Categorical values must be plain: section-valued entries travel as JSON."""
    def define(trial):
        for key, entry in space.items():
            if entry.distribution == "choice":
                trial.suggest_categorical(key, [search_space.encode({key: v})[key] for v in entry.choice])
            else:
                low, high = entry.uniform or entry.loguniform
                trial.suggest_float(key, low, high, log=entry.distribution == "loguniform")
    return define


def pbt_mutations(params: Params) -> dict[str, Any]:
    from ray import tune

    out = {}
    for key in params.tune.pbt.mutations:
        entry = params.tune.space.get(key)
        if entry is None:
            continue
        if entry.distribution in ("grid", "choice"):
            out[key] = list(entry.grid or entry.choice)
        else:
            low, high = entry.uniform or entry.loguniform
            out[key] = tune.loguniform(low, high) if entry.distribution == "loguniform" else tune.uniform(low, high)
    if not out:
        raise ConfigError(f"tune.scheduler = 'pbt' perturbs tune.pbt.mutations = {params.tune.pbt.mutations}, "
                          "but none of them is in tune.space; add one (e.g. train.lr_g)")
    return out


def scheduler(params: Params):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    t = params.tune
    if t.scheduler == "asha":
        return ASHAScheduler(time_attr="step", max_t=t.trial_steps,
                             grace_period=min(t.asha.grace_period, t.trial_steps), reduction_factor=t.asha.reduction_factor)
    if t.scheduler == "pbt":
        train = params.model_dump(mode="json")["train"]
        fallbacks = {k: train[k.removeprefix("train.")] for k in t.pbt.mutations if k.startswith("train.")}

        def keep_valid(config):  # explore must not produce a configuration the config refuses
            return search_space.make_valid(params, config, fallbacks)

        logging.getLogger("ray.tune.schedulers.pbt").setLevel(logging.INFO)  # the log shows every exploit/explore
        return PopulationBasedTraining(time_attr="step",
                                       perturbation_interval=t.pbt.perturbation_interval,
                                       quantile_fraction=t.pbt.quantile_fraction,
                                       resample_probability=t.pbt.resample_probability,
                                       hyperparam_mutations=pbt_mutations(params), custom_explore_fn=keep_valid,
                                       synch=False)
    return FIFOScheduler()


def search(params: Params, metric: str, mode: str, skipped, concurrency: int) -> tuple[Any, int, dict | None]:
    """(search algorithm, number of trials, param_space to declare)."""
    from ray.tune.search import BasicVariantGenerator

    t = params.tune
    if t.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        inner = OptunaSearch(space=optuna_space(t.space), metric=metric, mode=mode, seed=params.seed)
        return refusal_skipping_searcher(inner, params, skipped), t.num_samples, None
    expansion = search_space.expand(params, t.space, t.search, t.num_samples, params.seed)
    skipped.update(expansion.skipped)
    # Every trial is a preset point; Tune requires their keys declared in param_space, with the values they take.
    from ray import tune

    configs = [search_space.encode(c) for c in expansion.configs]
    declared = {k: tune.choice(list({json.dumps(c[k]): c[k] for c in configs}.values())) for k in configs[0]}
    return BasicVariantGenerator(points_to_evaluate=configs, max_concurrent=concurrency), len(configs), declared
