"""Typed, validated configuration: one pydantic model per params.yaml section.

Everything is checked before any work starts; an error names the key, the bad value and
what is allowed (`ConfigError`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A params file or override that cannot be used; the message names key, value and rule."""


class _Section(BaseModel):
    # extra="forbid": a misspelt key is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _check_registered(kind: str, name: str) -> str:
    from components import registries

    reg = registries.by_kind(kind)
    if name not in reg:
        raise ValueError(f"unknown {kind} {name!r}; allowed: {', '.join(reg.names())}")
    return name


class DataConfig(_Section):
    source: str = "mnist5k"
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="dataset folder name; default: source "
                             "(plus the pairing: mnist5k-downsample7, mnist5k-edges, mnist5k-digits)")
    path: str | None = Field(None, description="input folder for the imagefolder source")
    image_size: int | None = Field(None, ge=4, le=1024, description="resize to image_size² (imagefolder); None: native")
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    rows_per_shard: int = Field(1024, ge=1)
    row_group_rows: int = Field(256, ge=1, description="unit of per-worker data sharding")
    prepared_dir: str = "data/prepared"
    # translation datasets (components/data/pairings.py): each row an (input, target) pair
    pairs: str | None = Field(None, description="derive (input, target) pairs by a named pairing: downsample | "
                              "edges (paired, pix2pix) | unpaired (two domains, CycleGAN); null: plain samples")
    pair_size: int = Field(7, ge=2, le=1024, description="downsample: the input's side (e.g. 7 for 7×7 → 28×28)")
    domain_b: str = Field("digits", description="unpaired: the second domain's source, resized to the first's size")
    domain_b_box: int | None = Field(None, ge=2, le=1024, description="unpaired: resize domain B into a centred "
                                     "box of this side, background around it (MNIST's digits sit in a 20×20 box "
                                     "of 28×28); null: to the full size")

    @field_validator("pairs")
    @classmethod
    def _pairing_known(cls, v: str | None) -> str | None:
        return None if v is None else _check_registered("pairing", v)

    @field_validator("source")
    @classmethod
    def _source_known(cls, v: str) -> str:
        return _check_registered("source", v)

    @property
    def dataset(self) -> str:
        """The prepared folder's name: data.name, else the source (with its pairing, e.g. mnist5k-edges)."""
        if self.name:
            return self.name
        suffix = {None: "", "downsample": f"-downsample{self.pair_size}",
                  "unpaired": f"-{self.domain_b}{self.domain_b_box or ''}"}
        return self.source + suffix.get(self.pairs, f"-{self.pairs}")


class ModelConfig(_Section):
    family: str = "dcgan"
    latent_dim: int = Field(64, ge=1, le=4096)
    g_channels: int = Field(32, ge=1, le=4096, description="generator width at its last hidden layer (mlp: every layer)")
    d_channels: int = Field(32, ge=1, le=4096, description="discriminator width at its first layer (mlp: every layer)")
    hidden_layers: int = Field(3, ge=1, le=64, description="mlp only: hidden layers of G and of D")
    conditioning: Literal["none", "concat", "projection"] = Field(
        "none", description="dcgan: class-conditional GAN. G gets (z, one-hot label); D gets the label as extra "
        "input channels (concat) or through a projection head (Miyato & Koyama 2018)")

    @field_validator("family")
    @classmethod
    def _family_known(cls, v: str) -> str:
        from components.models import family_names

        if v not in family_names():
            raise ValueError(f"unknown model family {v!r}; allowed: {', '.join(family_names())}")
        return v

    @property
    def kind(self) -> str:
        """gan | diffusion | translation | vae: how the family trains and is evaluated."""
        from components.models import family_kind

        return family_kind(self.family)

    @property
    def is_diffusion(self) -> bool:
        return self.kind == "diffusion"

    @property
    def conditional(self) -> bool:
        return self.conditioning != "none"

    @model_validator(mode="after")
    def _conditioning_fits(self) -> "ModelConfig":
        if self.conditional and self.family != "dcgan":
            raise ValueError(f"conditioning = {self.conditioning!r} is for family dcgan (a class-conditional GAN); "
                             f"family {self.family!r} conditions through its own section or not at all")
        return self


class TrainConfig(_Section):
    objective: str = "nonsaturating"
    epochs: int = Field(50, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (overrides epochs when smaller)")
    batch_size: int = Field(32, ge=1, description="per worker; the global batch is batch_size × num_workers")
    lr_g: float = Field(2e-4, gt=0.0, le=1.0)
    lr_d: float = Field(2e-4, gt=0.0, le=1.0)
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    lr_schedule: Literal["constant", "linear"] = Field("constant", description="linear: both learning rates "
                                                        "decay linearly to 0 at the last step")
    log_every: int = Field(25, ge=1, description="steps between MLflow metric points")
    checkpoint_every: int = Field(200, ge=1, description="steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1)
    sample_grid: int = Field(64, ge=1, le=1024, description="images in the per-epoch sample grid")
    sample_every: int = Field(1, ge=1, description="epochs between sample grids (and always at the end)")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads per worker; default cpus_per_worker")
    run_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="default: derived from config hash")
    output_dir: str = "data/train"
    # --- the GAN game: step ratio, smoothing, regularisers (components/objectives/), EMA, PacGAN, noise
    d_steps_per_g_step: int = Field(1, ge=1, le=100, description="D updates (each on a fresh batch) per G update")
    g_steps_per_d_step: int = Field(1, ge=1, le=100, description="G updates per D update")
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="one-sided: real target 1 - ε")
    spectral_norm: bool = Field(False, description="spectral norm on every Linear/Conv of D")
    gradient_penalty: float = Field(0.0, ge=0.0, description="WGAN-GP λ on real/fake interpolates; 0 = off")
    r1: float = Field(0.0, ge=0.0, description="R1 γ on real data; 0 = off")
    weight_clip: float | None = Field(None, gt=0.0, description="clamp D parameters to [-c, c] (WGAN); null = off")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description="EMA of G weights (e.g. 0.999); 0 = off. "
                             "Samples, export and evaluation use the EMA weights when on")
    pack: int = Field(1, ge=1, le=64, description="PacGAN: D judges `pack` samples at once")
    instance_noise: float = Field(0.0, ge=0.0, description="std of Gaussian noise on D's inputs (data units), "
                                  "decaying linearly to 0 over the run; 0 = off")
    matching_aware: bool = Field(False, description="class-conditional D also sees real images paired with wrong "
                                 "labels as negatives (Reed et al. 2016)")
    # --- the GPU fast path (components/training/fast.py): "auto" is on for CUDA, off on CPU (CPU runs unchanged)
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="autocast dtype of forwards and "
                                                        "losses; auto = bf16 on a CUDA GPU with native bf16 "
                                                        "(Ampere or newer), else fp32")
    channels_last: Literal["auto"] | bool = Field("auto", description="NHWC memory format for image models "
                                                  "and batches; auto = on for CUDA")
    compile: Literal["auto"] | bool = Field("auto", description="torch.compile the networks a step calls "
                                            "(checkpoint keys unchanged); auto = on for CUDA. D stays eager "
                                            "under gradient_penalty or r1 (no double backprop when compiled)")
    device_data: Literal["auto"] | bool = Field("auto", description="hold the worker's whole share of the data "
                                                "on its device and index batches there; auto = on for CUDA "
                                                "when the share is under 1 GiB")

    @field_validator("channels_last", "compile", "device_data", mode="before")
    @classmethod
    def _auto_or_bool(cls, v: Any) -> Any:
        if v == "auto" or isinstance(v, bool):
            return v
        raise ValueError(f"must be auto, true or false, got {v!r}")

    @field_validator("objective")
    @classmethod
    def _objective_known(cls, v: str) -> str:
        return _check_registered("objective", v)

    @model_validator(mode="after")
    def _game_is_coherent(self) -> "TrainConfig":
        """Refuse combinations that make no sense, with the reason (names as in params.yaml)."""
        from components.objectives import OBJECTIVES

        obj = OBJECTIVES.get(self.objective)
        if self.label_smoothing and not obj.has_targets:
            raise ValueError(f"label_smoothing = {self.label_smoothing} cannot be used with objective = "
                             f"{self.objective!r}: one-sided smoothing moves the real *target* to 1 - ε, and "
                             f"{self.objective} has no targets (hinge, wasserstein and the f-GANs score D's raw "
                             "output); use minimax, nonsaturating or lsgan, or set label_smoothing: 0")
        if self.d_steps_per_g_step > 1 and self.g_steps_per_d_step > 1:
            raise ValueError(f"d_steps_per_g_step = {self.d_steps_per_g_step} and g_steps_per_d_step = "
                             f"{self.g_steps_per_d_step}: set at most one of them above 1 (a ratio, one way)")
        if self.weight_clip is not None and (self.gradient_penalty or self.spectral_norm):
            other = "gradient_penalty" if self.gradient_penalty else "spectral_norm"
            raise ValueError(f"weight_clip = {self.weight_clip} with {other}: both impose D's Lipschitz constraint, "
                             f"and clipping distorts the gradient norms {other} controls; choose one")
        if obj.critic and self.weight_clip is None and not self.gradient_penalty and not self.spectral_norm:
            raise ValueError(f"objective = {self.objective!r} needs a Lipschitz constraint on its critic, or its "
                             "output grows without bound: set weight_clip (WGAN), gradient_penalty (WGAN-GP) or "
                             "spectral_norm")
        if self.pack > self.batch_size:
            raise ValueError(f"pack = {self.pack} is larger than batch_size = {self.batch_size}: D would not see "
                             "one packed sample per step")
        if self.batch_size % self.pack:
            raise ValueError(f"pack = {self.pack} must divide batch_size = {self.batch_size} "
                             "(D judges batch_size / pack packed samples)")
        return self


class DiffusionConfig(_Section):
    """model.family = ddpm: the noise process, the UNet (diffusers) and how samples are drawn.
    The sampling keys (SAMPLING_KEYS) may change after training: evaluate and pyfunc use them as given."""
    timesteps: int = Field(1000, ge=2, le=100_000, description="T of the forward process")
    beta_schedule: Literal["linear", "cosine"] = Field("linear", description="linear (Ho et al. 2020) | cosine "
                                                        "(Nichol & Dhariwal 2021)")
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0, description="linear schedule only")
    beta_end: float = Field(0.02, gt=0.0, lt=1.0, description="linear schedule only")
    prediction: Literal["epsilon", "v"] = Field("epsilon", description="what the UNet predicts: the noise ε or v")
    channels: list[int] = Field([16, 32, 64], min_length=1, max_length=6,
                                description="UNet width per resolution; every level but the last halves the size")
    layers_per_block: int = Field(1, ge=1, le=8)
    attention: bool = Field(True, description="self-attention at the lowest resolution")
    class_conditional: bool = Field(True, description="condition on the dataset's labels (one model: conditional "
                                    "and, through label dropout, unconditional)")
    cond_drop_prob: float = Field(0.1, ge=0.0, le=1.0, description="training: fraction of labels replaced by the "
                                  "null label (what classifier-free guidance needs)")
    grad_clip: float | None = Field(1.0, gt=0.0, description="max gradient norm; null = off")
    sampler: Literal["ddpm", "ddim"] = Field("ddim", description="ddpm: ancestral, every step; ddim: sample_steps")
    sample_steps: int = Field(50, ge=1, description="ddim only: denoising steps (ddpm uses all timesteps)")
    eta: float = Field(1.0, ge=0.0, le=1.0, description="ddim only: 1 ≈ ddpm's noise; 0 deterministic (needs a "
                       "well-trained model: short runs leave residual noise on the deterministic path)")
    guidance: float = Field(1.0, ge=0.0, le=50.0, description="classifier-free guidance w: ε_u + w(ε_c - ε_u); "
                            "0 = unconditional, 1 = conditional only, > 1 sharper classes")

    @field_validator("channels")
    @classmethod
    def _widths_positive(cls, v: list[int]) -> list[int]:
        if any(c < 8 or c % 8 for c in v):
            raise ValueError(f"every UNet width must be a positive multiple of 8 (GroupNorm of 8 groups), got {v}")
        return v

    @model_validator(mode="after")
    def _schedule_coherent(self) -> "DiffusionConfig":
        if self.beta_schedule == "linear" and not self.beta_start < self.beta_end:
            raise ValueError(f"beta_start = {self.beta_start} must be below beta_end = {self.beta_end}")
        if self.sampler == "ddim" and self.sample_steps > self.timesteps:
            raise ValueError(f"sample_steps = {self.sample_steps} exceeds timesteps = {self.timesteps}")
        return self


class TranslationConfig(_Section):
    """model.family = pix2pix | cyclegan: image-to-image translation (components/models/translation.py).
    The adversarial part uses train.objective and D's regularisers like any GAN."""
    g_depth: int = Field(2, ge=1, le=6, description="U-Net down/up levels of the generator(s); each halves the side")
    d_layers: int = Field(2, ge=1, le=5, description="strided convs of the PatchGAN D (receptive field grows with it)")
    lambda_l1: float = Field(100.0, ge=0.0, description="pix2pix: weight of ‖G(x) - y‖₁ beside the adversarial loss")
    lambda_cycle: float = Field(10.0, ge=0.0, description="cyclegan: weight of ‖F(G(a)) - a‖₁ + ‖G(F(b)) - b‖₁")
    lambda_identity: float = Field(0.5, ge=0.0, description="cyclegan: identity loss ‖G(b) - b‖₁ + ‖F(a) - a‖₁, "
                                   "as a fraction of lambda_cycle (0 = off)")
    pool_size: int = Field(50, ge=0, le=10_000, description="cyclegan: past fakes D also sees (Shrivastava et al. "
                           "2017); 0 = off")


class VaeConfig(_Section):
    """model.family = vae: encoder/decoder with the reparameterisation trick; loss = reconstruction + β·KL.
    Latent size is model.latent_dim, widths model.g_channels / d_channels (decoder / encoder)."""
    beta: float = Field(1.0, gt=0.0, description="KL weight (β-VAE, Higgins et al. 2017); 1 = the ELBO")
    kl_warmup: float = Field(0.0, ge=0.0, le=1.0, description="fraction of the run over which β ramps from 0")


SAMPLING_KEYS = ("sampler", "sample_steps", "eta", "guidance")
# train keys that only the GAN game reads: a diffusion run refuses non-default values rather than ignore them
GAN_ONLY_TRAIN_KEYS = ("d_steps_per_g_step", "g_steps_per_d_step", "label_smoothing", "spectral_norm",
                       "gradient_penalty", "r1", "weight_clip", "pack", "instance_noise")


class ScalingConfig(_Section):
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: int = Field(1, ge=1)
    storage_path: str | None = Field(None, description="Ray Train storage (shared FS/S3 on a cluster); default data/checkpoints")
    max_failures: int = Field(0, ge=-1, description="worker-group restarts from the latest checkpoint; -1 = unlimited")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how Ray places the workers' bundles on nodes (SPREAD: one per node where possible)")
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict, description="extra Ray resources each worker needs beyond CPU/GPU, e.g. {trainer: 1} "
                                          "to keep workers on nodes started with --resources='{\"trainer\": N}'")

    @field_validator("resources_per_worker")
    @classmethod
    def _custom_only(cls, v: dict[str, float]) -> dict[str, float]:
        for name, amount in v.items():
            if name.upper() in ("CPU", "GPU"):
                raise ValueError(f"{name!r} is set by scaling.cpus_per_worker / scaling.use_gpu, not resources_per_worker")
            if amount <= 0:
                raise ValueError(f"scaling.resources_per_worker[{name!r}] = {amount} must be > 0")
        return v


class TrackingConfig(_Section):
    uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow/mlflow.db")
    experiment: str | None = Field(None, description="default: <dataset>-<model family>")
    flush_timeout_s: float = Field(300.0, ge=0.0, description="at the end of training, how long to wait for metrics "
                                   "buffered while the store was unavailable before the stage fails (nothing is dropped)")


class EvaluatorConfig(_Section):
    kind: Literal["classifier", "inception"] = "classifier"
    inception_weights: str | None = Field(None, description="local pt_inception-2015-12-05 weights file; never downloaded")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(4e-3, gt=0.0, le=1.0)
    output_dir: str = "data/evaluator"


class EvaluateConfig(_Section):
    num_samples: int = Field(2000, ge=2)
    seed: int = Field(0, ge=0, lt=2**31, description="sampling seed, fixed so candidates see the same latents")
    prdc_k: int = Field(5, ge=1)
    kid_subset_size: int = Field(1000, ge=2)
    report: str = "reports/metrics.json"
    grid: str = "reports/samples.png"


# metric name -> True when larger is better
PROMOTION_METRICS = {"fid": False, "kid_mean": False, "is_mean": True, "precision": True, "recall": True,
                     "density": True, "coverage": True, "class_kl": False,
                     "cond_accuracy": True,  # class-conditional models: evaluator agrees with the requested label
                     "psnr": True, "ssim": True, "l1": False,  # pix2pix, on held-out pairs
                     "label_preservation": True, "cycle_l1": False,  # cyclegan, both directions averaged
                     "nelbo": False,  # vae: negative ELBO (nats per image) on the test split
                     # 2D mixtures (components/metrics/modes.py)
                     "modes": True, "high_quality": True, "reverse_kl": False}


class PromoteConfig(_Section):
    model_name: str | None = Field(None, description="registered model; default <dataset>-<family>")
    metric: str = "fid"
    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    report: str = "reports/promotion.json"

    @field_validator("metric")
    @classmethod
    def _metric_known(cls, v: str) -> str:
        if v not in PROMOTION_METRICS:
            raise ValueError(f"unknown metric {v!r}; allowed: {', '.join(PROMOTION_METRICS)}")
        return v

    @property
    def greater_is_better(self) -> bool:
        return PROMOTION_METRICS[self.metric]


PRESETS_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


class ModesConfig(_Section):
    """`genpipe modes`: the mode-collapse benchmark on the 2D mixtures (pipelines/modes.py)."""
    seeds: int = Field(3, ge=1, le=100, description="seeds per configuration of the objective table")
    preset_seeds: int = Field(10, ge=1, le=100, description="seeds for the dataset's preset (best configuration)")
    objectives: list[str] | None = Field(None, description="objectives in the table; null = every registered one")
    label_smoothing: float = Field(0.1, gt=0.0, lt=0.5, description="ε of the 'with label smoothing' rows")
    d_steps: list[int] = Field([1, 5], min_length=1, description="D:G ratios of the table (d_steps_per_g_step)")
    d_updates: int | None = Field(2000, ge=1, description="D updates per table run (a k:1 run makes d_updates / k "
                                  "G steps, so every run of the table costs about the same); null: the preset's "
                                  "max_steps")
    critic_gradient_penalty: float = Field(10.0, gt=0.0, description="critic objectives run as WGAN-GP with this λ")
    num_samples: int = Field(2500, ge=1, description="generated points scored per run (2,500 in VEEGAN/PacGAN)")
    workers: int = Field(2, ge=1, le=64, description="runs in parallel, one CPU thread each")
    report_dir: str = "reports/modes"

    @field_validator("objectives")
    @classmethod
    def _objectives_known(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_check_registered("objective", o) for o in v]

    @field_validator("d_steps")
    @classmethod
    def _ratios_positive(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError(f"every D:G ratio must be ≥ 1, got {v}")
        return v



# Which sections a sweep may vary: what changes the trained model. Data and evaluator stay fixed so
# every trial is scored under the same evaluator.
TUNABLE_SECTIONS = {"model": ModelConfig, "train": TrainConfig, "diffusion": DiffusionConfig,
                    "translation": TranslationConfig, "vae": VaeConfig}
TUNE_METRICS = dict(PROMOTION_METRICS)  # name → greater is better: every metric evaluate reports


class SpaceEntry(_Section):
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
    def kind(self) -> str:
        return next(k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None)


class AshaConfig(_Section):
    grace_period: int = Field(500, ge=1, description="steps every trial runs before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1.0, description="keep the best 1/reduction_factor at each rung")


class PbtConfig(_Section):
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


class TuneConfig(_Section):
    """`genpipe tune`: a Ray Tune sweep whose best configuration `train` retrains (pipelines/tune.py)."""
    enabled: bool = Field(False, description="false: the tune stage records 'no sweep' and train uses params as is")
    space: dict[str, SpaceEntry] = Field(default_factory=lambda: dict(DEFAULT_TUNE_SPACE),
                                         description="dotted key → grid/choice/uniform/loguniform; a section key "
                                         "(train) takes mappings, to vary keys together")
    search: Literal["random", "grid", "optuna"] = "random"
    num_samples: int = Field(6, ge=1, description="random/optuna: trials; grid: repeats of the whole grid")
    max_concurrent_trials: int | None = Field(None, ge=1, description="default: as many as the cluster's CPUs fit")
    num_workers: int = Field(1, ge=1, description="Ray Train workers per trial (scaling.num_workers is for train)")
    metric: str | None = Field(None, description="default: fid for images, reverse_kl for 2D mixtures")
    scheduler: Literal["fifo", "asha", "pbt"] = "asha"
    asha: AshaConfig = AshaConfig()
    pbt: PbtConfig = PbtConfig()
    trial_steps: int = Field(1500, ge=1, description="training steps per trial (train retrains at the full budget)")
    eval_every: int = Field(250, ge=1, description="steps between in-training evaluations (and Tune checkpoints)")
    eval_samples: int = Field(500, ge=1, description="generated samples per in-training evaluation")
    max_failures: int = Field(0, ge=-1, description="retries of a crashed trial from its last checkpoint (-1: unlimited)")
    register_best: bool = Field(True, description="register the best trial's generator as a model version (no alias)")
    output_dir: str = "data/tune"
    storage_path: str | None = Field(None, description="trial checkpoints; a shared path on a cluster. "
                                     "Default data/tune_runs")
    report: str = "reports/tune.json"
    trials_csv: str = "reports/tune_trials.csv"

    @field_validator("space")
    @classmethod
    def _keys_tunable(cls, v: dict[str, SpaceEntry]) -> dict[str, SpaceEntry]:
        for key in v:
            section, _, field = key.partition(".")
            if key == "seed" or key in TUNABLE_SECTIONS:  # a section key takes mappings of its keys
                continue
            if section not in TUNABLE_SECTIONS:
                raise ValueError(f"space key {key!r}: only seed, {', '.join(s + '.*' for s in TUNABLE_SECTIONS)} "
                                 "can be tuned (data and evaluator stay fixed so trials are comparable)")
            fields = TUNABLE_SECTIONS[section].model_fields
            if field not in fields:
                raise ValueError(f"space key {key!r}: {section} has no key {field!r}; "
                                 f"allowed: {', '.join(fields)}")
        return v

    @field_validator("metric")
    @classmethod
    def _metric_known(cls, v: str | None) -> str | None:
        if v is not None and v not in TUNE_METRICS:
            raise ValueError(f"unknown metric {v!r}; allowed: {', '.join(TUNE_METRICS)}")
        return v

    @model_validator(mode="after")
    def _search_fits_space(self) -> "TuneConfig":
        kinds = {e.kind for e in self.space.values()}
        if self.search == "grid" and kinds - {"grid"}:
            raise ValueError("search = 'grid' takes grid entries only; use random or optuna to draw "
                             "choice/uniform/loguniform entries")
        if self.search == "optuna" and "grid" in kinds:
            raise ValueError("search = 'optuna' draws every value; write grid entries as choice")
        if self.eval_every > self.trial_steps:
            raise ValueError(f"eval_every = {self.eval_every} exceeds trial_steps = {self.trial_steps}: "
                             "a trial would never be evaluated before its end")
        return self


class Params(_Section):
    seed: int = Field(0, ge=0, lt=2**31)
    preset: str | None = Field(None, description="named partial params (components/presets/<name>.yaml) "
                               "applied over the params file, under --set overrides")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    translation: TranslationConfig = TranslationConfig()
    vae: VaeConfig = VaeConfig()
    scaling: ScalingConfig = ScalingConfig()
    tracking: TrackingConfig = TrackingConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    promote: PromoteConfig = PromoteConfig()
    modes: ModesConfig = ModesConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> "Params":
        if self.data.source == "imagefolder" and not self.data.path:
            raise ValueError("data.path is required when data.source is 'imagefolder'")
        if self.evaluator.kind == "inception" and not self.evaluator.inception_weights:
            raise ValueError("evaluator.inception_weights (a local weights file) is required when evaluator.kind is "
                             "'inception'; weights are never downloaded")
        kind, family = self.model.kind, self.model.family
        if kind in ("diffusion", "vae"):
            defaults = TrainConfig()
            changed = [k for k in GAN_ONLY_TRAIN_KEYS if getattr(self.train, k) != getattr(defaults, k)]
            if changed:
                raise ValueError(f"train.{changed[0]} = {getattr(self.train, changed[0])!r} is a GAN setting; "
                                 f"model.family = {family!r} trains a {kind} model (set it back to "
                                 f"{getattr(defaults, changed[0])!r})")
        wants = {"pix2pix": "paired", "cyclegan": "unpaired"}.get(family)
        have = None if self.data.pairs is None else ("unpaired" if self.data.pairs == "unpaired" else "paired")
        if wants != have:
            need = {"paired": "data.pairs: downsample or edges", "unpaired": "data.pairs: unpaired",
                    None: "data.pairs: null"}[wants]
            raise ValueError(f"model.family = {family!r} with data.pairs = {self.data.pairs!r}: {family} needs {need}")
        if family == "cyclegan" and self.evaluator.kind != "classifier":
            raise ValueError(f"evaluator.kind = {self.evaluator.kind!r}: CycleGAN's label preservation needs the "
                             "classifier evaluator (a classifier of each domain's own classes)")
        if (self.model.conditional or kind == "translation") and self.train.pack != 1:
            raise ValueError(f"train.pack = {self.train.pack}: PacGAN packing is for unconditional GANs (a "
                             "conditional or translation D judges each sample with its own condition)")
        if kind in ("translation", "vae") and (self.train.d_steps_per_g_step, self.train.g_steps_per_d_step) != (1, 1):
            raise ValueError(f"train.d_steps_per_g_step / g_steps_per_d_step: model.family = {family!r} makes one "
                             "update of each network per step (set both to 1)")
        if self.train.matching_aware and not self.model.conditional:
            raise ValueError("train.matching_aware = true needs a class-conditional D: set model.conditioning to "
                             "concat or projection")
        return self

    def prepared_path(self, repo_root: Path) -> Path:
        """Absolute: later stages and Ray workers (which run in their own working directory) read it."""
        return (Path(repo_root) / self.data.prepared_dir / self.data.dataset).resolve()

    @property
    def registered_model_name(self) -> str:
        return self.promote.model_name or f"{self.data.dataset}-{self.model.family}"

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or f"{self.data.dataset}-{self.model.family}"

    def with_overrides(self, values: dict[str, Any], source: str = "overrides") -> "Params":
        """These params with dotted keys (`train.lr_g`: 1e-3) replaced, validated like a params file."""
        raw = self.model_dump(mode="json")
        for key, value in values.items():
            node = raw
            *sections, last = key.split(".")
            for part in sections:
                node = node[part]
            node[last] = value
        try:
            return Params.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(_format_errors(e, source)) from None

    def flat(self) -> dict[str, Any]:
        """Dotted keys → values, for MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, obj: Any) -> None:
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = obj

        walk("", self.model_dump(mode="json"))
        return out


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (value {e['input']!r}); check the spelling against params.yaml")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if isinstance(e["input"], dict):  # a cross-check of a whole section: its message names the keys
            lines.append(f"  {key}: {msg}")
            continue
        lines.append(f"  {key} = {e['input']!r}: {msg}")
    return "\n".join(lines)


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """`section.key=value` strings (value parsed as YAML) applied onto a raw params dict."""
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = yaml.safe_load(text)
    return raw


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _with_preset(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """file → preset → --set: a preset overrides the params file; explicit overrides win over both."""
    name = apply_overrides(raw, overrides).get("preset")
    if name is None:
        return raw
    if not isinstance(name, str) or name not in preset_names():
        raise ConfigError(f"preset = {name!r}: unknown preset; available: {', '.join(preset_names())} "
                          f"(files in {PRESETS_DIR})")
    preset = yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text()) or {}
    merged = _deep_merge(raw, {**preset, "preset": name})
    if "space" in preset.get("tune", {}):  # a space is one value: the preset's replaces the file's, never mixes
        merged["tune"]["space"] = preset["tune"]["space"]
    return merged


def load_params(path: str | Path | None = "params.yaml", overrides: Iterable[str] = ()) -> Params:
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"params file {str(p)!r} not found")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"params file {str(p)!r} is not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"params file {str(p)!r} must hold a mapping of sections, got {type(raw).__name__}")
        source = str(p)
    overrides = list(overrides)
    raw = apply_overrides(_with_preset(raw, overrides), overrides)
    if overrides:
        source += " with --set " + " ".join(overrides)
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
