"""The shared params sections: data, train, scaling, tracking, evaluator, evaluate, promote, modes (and model,
in components/model_config.py, which the families import without the config).
A family's own section (diffusion, translation, vae…) lives in its family module (components/families/)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.registry import check_registered
from components.section import Section, bookkeeping

class DataConfig(Section):
    source: str = "mnist5k"
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="dataset folder name; default: source "
                             "(plus the pairing: mnist5k-downsample7, mnist5k-edges, mnist5k-digits)")
    path: str | None = Field(None, description="input folder for the imagefolder source; the text file (one "
                             "sentence per line) for the textfile source")
    image_size: int | None = Field(None, ge=4, le=1024, description="resize to image_size² (imagefolder); None: native")
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    rows_per_shard: int = Field(1024, ge=1)
    row_group_rows: int = Field(256, ge=1, description="unit of per-worker data sharding")
    prepared_dir: str = "data/prepared"
    stream: Literal["auto", "memory", "streamed"] = Field(
        "auto", description="how a worker holds its share: memory (read whole), streamed (a window of row groups at "
        "a time), auto (memory when it fits data.memory_budget_mb); docs/cluster.md#streamed-or-in-memory-the-rule")
    memory_budget_mb: int | None = Field(None, ge=1, description="auto: the most a worker's share may take in memory; "
                                         "default a quarter of the node's physical memory")
    stream_window_rows: int = Field(4096, ge=1, description="streamed: rows read and shuffled together (memory ~ two "
                                    "windows)")
    remote: str | None = Field(None, description="a URI every Ray node reaches (s3://bucket/prefix) where train and tune "
                               "publish the prepared dataset for their workers to read; needed when the workers run "
                               "on other nodes (docs/cluster.md)")
    # translation datasets (components/data/pairings.py): each row an (input, target) pair
    pairs: str | None = Field(None, description="derive (input, target) pairs by a named pairing: downsample | "
                              "edges (paired, pix2pix) | unpaired (two domains, CycleGAN); null: plain samples")
    pair_size: int = Field(7, ge=2, le=1024, description="downsample: the input's side (e.g. 7 for 7×7 → 28×28)")
    domain_b: str = Field("digits", description="unpaired: the second domain's source, resized to the first's size")
    domain_b_box: int | None = Field(None, ge=2, le=1024, description="unpaired: resize domain B into a centred "
                                     "box of this side, background around it (MNIST's digits sit in a 20×20 box "
                                     "of 28×28); null: to the full size")
    # token sequences (components/data/text.py, the oracle in components/data/oracle.py)
    seq_len: int = Field(20, ge=2, le=1024, description="tokens per sequence (oracle, textfile, python-docs); text "
                         "ends with <eos>, which also pads")
    num_sequences: int = Field(10_000, ge=2, le=10_000_000, description="oracle: sequences the oracle generates")
    vocab_size: int = Field(5_000, ge=2, le=1_000_000, description="oracle: its vocabulary (a random oracle)")
    oracle_embed: int = Field(32, ge=1, le=4096, description="oracle: embedding size (a random oracle)")
    oracle_hidden: int = Field(32, ge=1, le=4096, description="oracle: LSTM hidden size (a random oracle)")
    oracle_seed: int = Field(0, ge=0, description="oracle: seed of its N(0, 1) weights and of its sequences, apart "
                             "from `seed` so every run is measured against the same language")
    oracle_path: str | None = Field(None, description="oracle: an .npz of the oracle's arrays in the reference "
                                    "layout (docs/data.md#token-sequences) instead of a random one")
    min_count: int = Field(1, ge=1, description="text: a word enters the vocabulary when the train split holds it "
                           "this often; rarer words become <unk>")
    max_vocab: int = Field(20_000, ge=3, description="text: the largest vocabulary allowed (with <eos> and <unk>)")
    long_lines: Literal["error", "truncate", "drop"] = Field(
        "error", description="textfile: a line of more than seq_len - 1 words is an error, is cut, or is dropped")

    @field_validator("pairs")
    @classmethod
    def _pairing_known(cls, v: str | None) -> str | None:
        return None if v is None else check_registered("pairing", v)

    @field_validator("source")
    @classmethod
    def _source_known(cls, v: str) -> str:
        return check_registered("source", v)

    @property
    def dataset(self) -> str:
        """The prepared folder's name: data.name, else the source (with its pairing, e.g. mnist5k-edges)."""
        if self.name:
            return self.name
        suffix = {None: "", "downsample": f"-downsample{self.pair_size}",
                  "unpaired": f"-{self.domain_b}{self.domain_b_box or ''}"}
        return self.source + suffix.get(self.pairs, f"-{self.pairs}")


class TrainConfig(Section):
    objective: str = "nonsaturating"
    epochs: int = Field(74, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (overrides epochs when smaller)")
    batch_size: int = Field(32, ge=1, description="per worker; the global batch is batch_size × num_workers")
    lr_g: float = Field(2e-4, gt=0.0, le=1.0)
    lr_d: float = Field(2e-4, gt=0.0, le=1.0)
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    lr_schedule: Literal["constant", "linear"] = Field("constant", description="linear: both learning rates "
                                                        "decay linearly to 0 at the last step")
    log_every: int = bookkeeping(25, ge=1, description="steps between MLflow metric points")
    checkpoint_every: int = bookkeeping(200, ge=1, description="steps between checkpoints")
    keep_checkpoints: int = bookkeeping(2, ge=1)
    sample_grid: int = bookkeeping(64, ge=1, le=1024, description="images in the per-epoch sample grid")
    sample_every: int = bookkeeping(1, ge=1, description="epochs between sample grids (and always at the end)")
    num_threads: int | None = bookkeeping(None, ge=1, description="torch CPU threads per worker; default cpus_per_worker")
    run_name: str | None = bookkeeping(None, pattern=r"^[A-Za-z0-9_.-]+$", description="default: derived from config hash")
    output_dir: str = bookkeeping("data/train")
    curves_dir: str = bookkeeping("reports/train_curves", description="the run's training curves as DVC plots "
                                  "(one CSV per loss); a run beside the pipeline's writes its own")
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
    pack: int = Field(1, ge=1, le=64, description="PacGAN: D judges `pack` samples at once, concatenated along "
                      "channels; a step draws pack × batch_size samples from G and from the data, so D sees "
                      "batch_size packed inputs (as in the PacGAN paper's code)")
    instance_noise: float = Field(0.0, ge=0.0, description="std of Gaussian noise on D's inputs (data units), "
                                  "decaying linearly to 0 over the run; 0 = off")
    # Diffusion-GAN (components/training/diffusion_d.py): D judges diffused inputs at an adaptive maximum T
    diffusion_d: bool = Field(False, description="pass D's real and fake inputs through a forward diffusion whose "
                              "noise level D is told; its maximum T adapts to D's overfitting (Wang et al. 2023)")
    diffusion_d_target: float = Field(0.6, gt=0.0, lt=1.0, description="diffusion_d: the r_d = E[sign(D(real))] "
                                      "that T is steered towards (higher: T grows later)")
    diffusion_d_t_min: int = Field(5, ge=2, le=10_000, description="diffusion_d: the smallest maximum T")
    diffusion_d_t_max: int = Field(500, ge=2, le=10_000, description="diffusion_d: the largest maximum T")
    diffusion_d_kimg: float = Field(100.0, gt=0.0, description="diffusion_d: thousands of real images D must judge "
                                    "for T to cross its whole range (the adaptation speed)")
    diffusion_d_noise_std: float = Field(0.05, gt=0.0, description="diffusion_d: σ of the forward noise, "
                                         "y = √ᾱ x + √(1-ᾱ) σ ε (the reference's 0.05)")
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
        return check_registered("objective", v)

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
        if self.diffusion_d and self.diffusion_d_t_min > self.diffusion_d_t_max:
            raise ValueError(f"diffusion_d_t_min = {self.diffusion_d_t_min} is above diffusion_d_t_max = "
                             f"{self.diffusion_d_t_max}: T adapts between them")
        if self.diffusion_d and self.gradient_penalty:
            raise ValueError(f"diffusion_d with gradient_penalty = {self.gradient_penalty}: WGAN-GP's interpolates "
                             "would mix a real and a fake input at two noise levels; use r1 (as Diffusion-GAN does) "
                             "or spectral_norm")
        return self



class ScalingConfig(Section):
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: int = Field(1, ge=1)
    storage_path: str | None = Field(None, description="Ray Train checkpoints: a local path, or a URI every node "
                                     "reaches on a cluster (s3://bucket/prefix); default data/checkpoints")
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


class TrackingConfig(Section):
    uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow/mlflow.db")
    experiment: str | None = Field(None, description="default: <dataset>-<model family>")
    flush_timeout_s: float = Field(300.0, ge=0.0, description="at the end of training, how long to wait for metrics "
                                   "buffered while the store was unavailable before the stage fails (nothing is dropped)")


class EvaluatorConfig(Section):
    kind: Literal["classifier", "inception", "per_channel"] = Field(
        "classifier", description="classifier: a CNN trained on the dataset's classes; inception: the user's "
        "InceptionV3 file; per_channel (Stacked MNIST): a digit classifier read on each channel")
    inception_weights: str | None = Field(None, description="local pt_inception-2015-12-05 weights file; never downloaded")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(4e-3, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0, lt=2**31, description="the evaluator's own seed: a training seed never changes the "
                      "measuring stick")
    holdout: float | None = Field(None, gt=0.0, lt=1.0, description="classifier only: read its accuracy on this "
                                  "fraction of the train split, held out of its training (stratified, by its seed), "
                                  "instead of on the test split; null: the test split (docs/metrics.md)")
    output_dir: str = "data/evaluator"


class EvaluateConfig(Section):
    num_samples: int = Field(2000, ge=2)
    seed: int = Field(0, ge=0, lt=2**31, description="sampling seed, fixed so candidates see the same latents")
    error_seeds: int = Field(5, ge=1, le=100, description="sampling seeds (seed, seed+1, …) every metric is averaged "
                             "over; their std is the metric's error bar (<metric>_seed_std)")
    prdc_k: int = Field(5, ge=1)
    kid_subset_size: int = Field(1000, ge=2)
    floor_samples: int = Field(20_000, ge=2, description="the most train-split images the real-vs-real floor "
                               "reads: a seeded subset of a larger split (Stacked MNIST's 128,000 would cost "
                               "minutes per evaluation; 20,000 already puts the floor's FID within its noise)")
    mode_samples: int = Field(26_000, ge=1, description="evaluator.kind per_channel (Stacked MNIST): samples per "
                              "seed that modes and reverse_kl are counted on (26,000 as in PacGAN); the other "
                              "metrics use num_samples")
    mode_samples_file: str | None = Field(None, description="evaluator.kind per_channel: keep the first sampling "
                                          "seed's mode_samples here, as uint8 images (N, C, H, W) under key "
                                          "`samples` of an .npz, so they can be recounted with another reader; "
                                          "null: not kept")
    reference: Literal["test", "train"] = Field("test", description="the real side of FID/KID/IS/precision/recall/"
                                                "density/coverage: the held-out split, or the train split (a small "
                                                "image set: blind to memorisation, no real-vs-real floor on a tiny "
                                                "test split; docs/metrics.md#the-real-side)")
    temperatures: list[float] = Field([0.3, 0.5, 0.7, 0.85, 1.0, 1.2, 1.5], min_length=1, max_length=32,
                                      description="text models: the sampling temperatures of the quality–diversity "
                                      "curve (docs/metrics.md#quality-diversity-curves); include 1.0")
    curve_samples: int = Field(2000, ge=2, description="text models: samples per temperature of the curve "
                               "(at most evaluate.num_samples)")
    curve: str = Field("reports/quality_diversity.csv", description="text models: the curve, one row per temperature "
                       "(written only for them)")
    curve_reference: str | None = Field(None, description="text models: another model's curve (e.g. MLE's); evaluate "
                                        "then reports matched_gain: the metric minus that curve's at equal NLL_test")
    report: str = "reports/metrics.json"
    headline: str = Field("reports/headline.json", description="the family's metrics ± error bars only: what "
                          "`dvc metrics show` compares")
    grid: str = "reports/samples.png"

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, v: list[float]) -> list[float]:
        if any(not 0 < t <= 10 for t in v) or len(set(v)) != len(v):
            raise ValueError(f"{v}: temperatures must be distinct numbers in (0, 10]")
        return sorted(v)


class PromoteConfig(Section):
    model_name: str | None = Field(None, description="registered model; default <dataset>-<family>")
    metric: str | None = Field(None, description="what ranks candidates; default: the family's default metric "
                               "(the same one tune ranks trials by)")
    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    margin: float = Field(1.0, ge=0.0, description="the candidate must beat the champion by more than margin × the "
                          "std of the difference (from both error bars); 0: any improvement")
    report: str = "reports/promotion.json"


class ServingConfig(Section):
    """How the logged model answers requests (`mlflow models serve`, the pyfunc); never changes weights."""
    max_samples: int = Field(1024, ge=1, le=1_000_000, description="samples (or images to translate) one request "
                             "may ask for; larger requests are refused with a 400 naming the limit. "
                             "GENPIPE_MAX_SAMPLES where the model is served overrides it")


class ModesConfig(Section):
    """`genpipe modes`: the mode-collapse benchmark on the 2D mixtures (components/benchmarks/modes.py)."""
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
        return None if v is None else [check_registered("objective", o) for o in v]

    @field_validator("d_steps")
    @classmethod
    def _ratios_positive(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError(f"every D:G ratio must be ≥ 1, got {v}")
        return v



