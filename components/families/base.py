"""What a model family is. One `Family` object per family (components/families/<name>.py) declares
everything the rest of genpipe needs to know about it, so the loop, the stages, the pyfunc and
`genpipe sample` ask the family and nothing else branches on a family's name:

- its params section and validation (`section`, `Section`, `validate`), and the combinations it refuses;
- its run key (`run_key`): every setting that changes the trained weights, derived from the sections it
  trains from (all keys but those marked bookkeeping or sampling), never listed by hand;
- its training task for the shared loop (`task`), the data kinds it trains on (`data_kinds`);
- the metrics it reports beside its data kind's (`own_metrics`, `metric_names`) and its one default metric
  (`default_metric`), used by both tune and promote;
- how its exported model is rebuilt (`build_generator`), sampled (`generate`), scored (`extra_metrics`),
  shown (`report_grid`) and served (`pyfunc_inputs`, `predict`, `pip_requirements`);
- its presets (`presets`).

Importing a family imports no torch: networks, tasks and metrics are imported when used."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from components.section import Section as ParamsSection
from components.section import weight_settings

if TYPE_CHECKING:
    import numpy as np
    import torch

# train keys only the GAN game reads: a family that plays no GAN game refuses non-default values
# rather than ignore them
GAN_TRAIN_KEYS = ("d_steps_per_g_step", "g_steps_per_d_step", "label_smoothing", "spectral_norm",
                  "gradient_penalty", "r1", "weight_clip", "pack", "instance_noise", "diffusion_d")
STEP_RATIO_KEYS = ("d_steps_per_g_step", "g_steps_per_d_step")

# what every sampling model's pyfunc takes
SAMPLE_INPUTS = {"num_samples": "how many samples (default 16, or one per label)",
                 "seed": "seed of every random draw (default 0): the same seed gives the same samples"}
LABEL_INPUT = {"labels": "class-conditional models: one class index, or one per sample (default every class in turn)"}


class Family:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    section: ClassVar[str | None] = None  # its own params.yaml section, if it has one
    Section: ClassVar[type[ParamsSection] | None] = None
    task: ClassVar[tuple[str, str]] = ("", "")  # (module, class) of its training Task, imported when used
    data_kinds: ClassVar[tuple[str, ...]] = ("image",)  # components/data/kinds.py
    pairing: ClassVar[str | None] = None  # the data.pairs it needs: "paired", "unpaired", or None (plain samples)
    plays_gan_game: ClassVar[bool] = True  # reads the GAN keys of `train` (objective, regularisers, packing…)
    step_ratios: ClassVar[bool] = True  # may update D and G at a ratio other than 1:1
    packing: ClassVar[bool] = True  # PacGAN: D judges several unconditional samples at once
    clusters: ClassVar[bool] = False  # model.clusters: label-free conditioning on k-means clusters (dcgan, mlp)
    conditioning: ClassVar[bool] = False  # accepts model.conditioning (a class-conditional GAN)
    own_metrics: ClassVar[dict[str, bool]] = {}  # metric → greater is better, beyond its data kind's
    default_metric_name: ClassVar[str | None] = None  # None: its evaluator's default
    printed_extra: ClassVar[tuple[str, ...]] = ()  # reported beside its own metrics (baselines, parts), printed after them
    tempered: ClassVar[bool] = False  # samples at a temperature: evaluate writes its quality–diversity curve
    input_evaluator: ClassVar[bool] = False  # scores with a classifier of its input domain too (unpaired data)
    presets: ClassVar[tuple[str, ...]] = ()
    pyfunc_inputs: ClassVar[dict[str, str]] = SAMPLE_INPUTS
    requirements: ClassVar[tuple[str, ...]] = ()  # packages its logged model needs beyond torch & co.

    # -------------------------------------------------------------------------------- configuration
    def variant(self, pairing: str | None) -> "Family":
        """The form of the family that trains on data of this pairing (data.pairs, or an exported spec's
        `pairing`): itself, unless one family both samples and translates (ddgan)."""
        return self

    def settings(self, params) -> ParamsSection | None:
        """Its own section of `params` (None when it has none)."""
        return getattr(params, self.section) if self.section else None

    def validate(self, params) -> None:
        """Raise ValueError, naming the keys and the reason, for a combination this family cannot use."""
        family, train = self.name, params.train
        if not self.plays_gan_game:
            defaults = type(train)()
            changed = [k for k in GAN_TRAIN_KEYS if getattr(train, k) != getattr(defaults, k)]
            if changed:
                raise ValueError(f"train.{changed[0]} = {getattr(train, changed[0])!r} is a GAN setting; "
                                 f"model.family = {family!r} trains {self.description} (set it back to "
                                 f"{getattr(defaults, changed[0])!r})")
        if not self.step_ratios and (train.d_steps_per_g_step, train.g_steps_per_d_step) != (1, 1):
            raise ValueError(f"train.d_steps_per_g_step / g_steps_per_d_step: model.family = {family!r} makes one "
                             "update of each network per step (set both to 1)")
        if params.model.conditional and not self.conditioning:
            raise ValueError(f"model.conditioning = {params.model.conditioning!r} is for family dcgan (a "
                             f"class-conditional GAN); family {family!r} conditions through its own section or "
                             "not at all")
        if params.model.clusters and not self.clusters:
            raise ValueError(f"model.clusters = {params.model.clusters} is for the GAN families dcgan and mlp "
                             f"(label-free conditioning on k-means clusters); family {family!r} does not use it "
                             "(set it to 0)")
        if (not self.packing or params.model.conditional or params.model.clusters) and train.pack != 1:
            raise ValueError(f"train.pack = {train.pack}: PacGAN packing is for unconditional GANs (a "
                             "conditional or translation D judges each sample with its own condition)")
        if train.matching_aware and not params.model.conditional:
            raise ValueError("train.matching_aware = true needs a class-conditional D: set model.conditioning to "
                             "concat or projection")
        have = None if params.data.pairs is None else ("unpaired" if params.data.pairs == "unpaired" else "paired")
        if have != self.pairing:
            need = {"paired": "data.pairs: downsample or edges", "unpaired": "data.pairs: unpaired",
                    None: "data.pairs: null"}[self.pairing]
            raise ValueError(f"model.family = {family!r} with data.pairs = {params.data.pairs!r}: {family} needs {need}")

    def run_key(self, params) -> dict:
        """Every setting that changes the trained weights: seed, world size, model, train and the family's
        own section, each without its bookkeeping and sampling keys (Field metadata in the sections).
        Names the run, its checkpoint folder and (with the tune section) the sweep."""
        key = {"seed": params.seed, "model": weight_settings(params.model), "train": weight_settings(params.train),
               "num_workers": params.scaling.num_workers}
        if self.section:
            key[self.section] = weight_settings(self.settings(params))
        return key

    def total_steps(self, params, steps_per_epoch: int) -> int:
        """How many steps a run of these params takes: train.epochs of the data, or train.max_steps if fewer."""
        total = steps_per_epoch * params.train.epochs
        return total if params.train.max_steps is None else min(total, params.train.max_steps)

    def check_data(self, manifest: dict, where: str) -> None:
        """Refuse a prepared dataset of a kind this family does not train on, naming it."""
        kind = manifest.get("kind", "image")
        allowed = (*self.data_kinds, "pairs") if self.pairing else self.data_kinds  # translators train on pairs
        if kind not in allowed:
            from components.data.source_data import DataError

            raise DataError(f"model.family = {self.name!r} trains on {' or '.join(allowed)} data, but {where} "
                            f"holds {kind} data (data.source = {manifest.get('source')!r}); pick a source of that "
                            "kind or another family")

    # -------------------------------------------------------------------------------- metrics
    def is_conditional(self, params) -> bool:
        """Whether its samples are drawn for requested labels (scored by cond_accuracy)."""
        return False

    def metric_names(self, params, data_kind: str) -> list[str]:
        """The scalar metrics evaluate (and a sweep's scorer) reports for this family on `data_kind` data: its
        evaluator's (components/metrics/evaluators/) and its own."""
        from components.metrics.evaluators import evaluator_for

        evaluator = evaluator_for(data_kind, params.evaluator.kind)
        return evaluator.metric_names(self.is_conditional(params)) + list(self.own_metrics)

    def default_metric(self, data_kind: str) -> str:
        """What tune ranks trials by and promote ranks candidates by, unless tune.metric / promote.metric say."""
        from components.metrics.evaluators import evaluator_for

        evaluator = evaluator_for(data_kind)
        return self.default_metric_name if self.default_metric_name and evaluator.family_ranks else evaluator.default_metric

    # -------------------------------------------------------------------------------- the exported model
    def spec(self, params) -> dict:
        """What its exported model needs beyond the shared spec (model section, shapes, classes)."""
        return {self.section: self.settings(params).model_dump(mode="json")} if self.section else {}

    def trained_differences(self, spec: dict, params) -> dict[str, tuple[Any, Any]]:
        """Dotted key → (as trained, as configured) for each weight setting of its own section in which an
        exported model's spec and these params differ (sampling keys may differ; evaluate refuses these)."""
        if not self.section:
            return {}
        now = weight_settings(self.settings(params))
        trained = spec[self.section]
        return {f"{self.section}.{k}": (trained.get(k), now[k]) for k in sorted(now) if trained.get(k) != now[k]}

    def build_generator(self, spec: dict) -> "torch.nn.Module":
        """The network that samples (or translates), from an exported spec; weights not loaded."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------- sampling and scoring
    def sampling_options(self, params) -> dict:
        """How its model samples now (settings that may change after training); {} when it has none."""
        return {}

    def draw(self, g, n: int, seed: int, labels, options: dict, latent_dim: int) -> "torch.Tensor":
        """n samples of a fixed seed (every random draw from one seeded CPU generator)."""
        raise NotImplementedError

    def generate(self, g, params, test, n: int, latent_dim: int | None = None):
        """(what a candidate is scored on, the labels its samples should have or None). Draws n samples with
        the evaluation seed, every class equally often when class-conditional."""
        from components.sampling import balanced_labels

        labels = balanced_labels(n, g.num_classes) if self.net_conditional(g) else None
        return self.draw(g, n, params.evaluate.seed, labels, self.sampling_options(params),
                         latent_dim or params.model.latent_dim), labels

    def network_passes(self, g, options: dict) -> int:
        """Network evaluations per sample (NFE) when sampling with `options`: a GAN's or a decoder's one pass."""
        return 1

    def scored_count(self, params, manifest: dict) -> tuple[int, str, str]:
        """(how many samples evaluate scores, what they are, the key that sets it), for the size check."""
        return params.evaluate.num_samples, "generated samples", "evaluate.num_samples"

    def extra_metrics(self, g, params, test, fake, scores: dict, classifier_a=None) -> dict:
        """What the family is for, beyond its data kind's metrics (translation quality, an ELBO…)."""
        return {}

    def quality_diversity(self, g, params, test, scorer) -> list[dict] | None:
        """Models with a sampling temperature (text): scores at each of evaluate.temperatures
        (components/metrics/quality_diversity.py); None for the others."""
        return None

    def sample_file(self, samples) -> "SampleFile":
        """What `genpipe sample` writes of its pyfunc's answer: a PNG grid of the samples."""
        import torch

        from components.training.images import preview_png

        return SampleFile(preview_png(torch.from_numpy(samples)), None, "images")

    def report_grid(self, g, fake, test) -> bytes:
        """The evaluation's sample image: 64 samples, or every point of a scatter."""
        from components.training.images import preview_png

        return preview_png(fake[:64] if fake.dim() == 4 else fake)

    # -------------------------------------------------------------------------------- serving (pyfunc)
    def predict(self, g, spec: dict, inputs: dict[str, Any], limit: int) -> "np.ndarray":
        """The pyfunc's answer to `inputs` (input name → value, already unwrapped from dict/DataFrame), at
        most `limit` samples; a refused input raises serving_inputs.RequestError naming it."""
        import numpy as np

        from components import serving_inputs as req
        from components.sampling import balanced_labels

        self.refuse_unknown(inputs)
        n = req.integer(inputs, "num_samples", None, 1, limit, req.limit_note(limit))
        seed = req.integer(inputs, "seed", 0, 0, req.MAX_SEED)
        conditional = self.net_conditional(g)
        labels = req.labels(inputs.get("labels"), n, g.num_classes if conditional else 0, limit)
        n = n if n is not None else (len(labels) if labels is not None else min(16, limit))
        if conditional and labels is None:
            labels = balanced_labels(n, g.num_classes)
        options = self.pyfunc_sampling_options(inputs, spec)
        out = self.draw(g, n, seed, labels, options, spec["model"]["latent_dim"])
        return out.numpy().astype(np.float32)

    def net_conditional(self, g) -> bool:
        """Whether this family's network `g` was built class-conditional (samples for requested labels)."""
        return False

    def served_inputs(self, g) -> dict[str, str]:
        """What the served network `g` takes (name → meaning): its `pyfunc_inputs`, `labels` only when `g`
        was built class-conditional. Recorded in its logged model's metadata."""
        return {k: v for k, v in self.pyfunc_inputs.items() if k != "labels" or self.net_conditional(g)}

    def pyfunc_sampling_options(self, inputs: dict, spec: dict) -> dict:
        """The request's sampling settings (diffusion: steps, sampler…), checked against the model's spec."""
        return {}

    def refuse_unknown(self, inputs: dict) -> None:
        unknown = [k for k in inputs if k not in self.pyfunc_inputs]
        if not unknown:
            return
        sampling = [k for k in unknown if k in DIFFUSION_SAMPLING_INPUTS]
        why = (": sampling options of diffusion models" if sampling == unknown else
               ": this model is unconditional" if unknown == ["labels"] else
               ": only translators (pix2pix, cyclegan) take an image batch" if unknown == ["images"] else
               ": not an input of this model")
        from components.serving_inputs import RequestError

        raise RequestError(f"{', '.join(unknown)}{why}; a {self.name} model takes {', '.join(self.pyfunc_inputs)}")

    def pip_requirements(self) -> list[str]:
        """The pip requirements of its logged model (pinned where the version matters)."""
        import importlib

        import torch

        out = [f"torch=={torch.__version__.split('+')[0]}", "safetensors", "numpy", "pydantic", "pyyaml"]
        for package in self.requirements:
            out.append(f"{package}=={importlib.import_module(package).__version__}")
        return out


class SampleFile(NamedTuple):
    """`genpipe sample`'s output: its content, the suffix it needs (None: the one asked for), what its rows
    are called, and what to show on the console (None: nothing)."""
    content: bytes | str
    suffix: str | None
    what: str
    shown: str | None = None


# the pyfunc inputs of a diffusion model → the diffusion section's sampling keys (components/diffusion/settings.py)
DIFFUSION_SAMPLING_INPUTS = {"steps": "sample_steps", "guidance": "guidance", "sampler": "sampler", "eta": "eta"}


class LatentGan(Family):
    """A GAN that maps latents z (and, class-conditional, labels) to samples: dcgan and mlp share the GAN
    task (components/training/gan_loop.py); each supplies its networks."""
    task = ("components.training.gan_loop", "GanTask")
    description = "a GAN"

    def networks(self, model_cfg, sample_shape: tuple, d_shape: tuple, num_classes: int):
        """(G, D) for one sample's shape; D's input shape may differ (PacGAN); num_classes > 0: conditional."""
        raise NotImplementedError

    def build_generator(self, spec: dict):
        from components.model_config import ModelConfig

        return self.networks(ModelConfig(**spec["model"]), tuple(spec["image_shape"]), tuple(spec["image_shape"]),
                             len(spec["class_names"]))[0]

    def draw(self, g, n, seed, labels, options, latent_dim):
        from components.sampling import latent_samples

        return latent_samples(g, latent_dim, n, seed, labels)
