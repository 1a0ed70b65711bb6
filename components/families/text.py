"""What every text family shares (seqgan, relgan): a generator over token ids with `sample(n, generator,
temperature)` and `forward(tokens, temperature)` (per-token log-likelihoods), a `vocabulary` and a
`seq_len`; sampling at the family section's `temperature`; NLL_test beside the text scorer's metrics; sentences
as the report, the sample file and the pyfunc's answer."""
from __future__ import annotations

from typing import ClassVar

from components.families.base import SAMPLE_INPUTS, Family, SampleFile


class TextFamily(Family):
    data_kinds = ("tokens", "oracle_tokens")
    packing = False
    tempered = True
    requirements = ("nltk",)
    pyfunc_inputs = {**SAMPLE_INPUTS, "temperature": "sampling temperature (default: the section's temperature as trained)"}

    refused_train_keys: ClassVar[tuple[str, ...]] = ()  # train keys it has no use for: refused unless default
    refused_because: ClassVar[str] = ""  # why, after "model.family = '<name>'"
    phases: ClassVar[tuple[str, ...]] = ()  # its section's step counts, in the order they run

    def validate(self, params) -> None:
        super().validate(params)
        train, defaults = params.train, type(params.train)()
        changed = [k for k in self.refused_train_keys if getattr(train, k) != getattr(defaults, k)]
        if changed:
            raise ValueError(f"train.{changed[0]} = {getattr(train, changed[0])!r}: model.family = {self.name!r} "
                             f"{self.refused_because} and has no use for it (set it back to "
                             f"{getattr(defaults, changed[0])!r})")
        steps = " + ".join(f"{self.section}.{p}" for p in self.phases)
        if train.max_steps is not None:
            raise ValueError(f"train.max_steps: a {self.name} run is {steps} long; set those instead")
        if self.total_steps(params, 0) == 0:
            raise ValueError(f"{steps}: all 0, nothing to train")

    def total_steps(self, params, steps_per_epoch: int) -> int:
        return sum(getattr(self.settings(params), p) for p in self.phases)

    def sampling_options(self, params) -> dict:
        return {"temperature": self.settings(params).temperature}

    def draw(self, g, n, seed, labels, options, latent_dim):
        import torch

        return g.sample(n, torch.Generator().manual_seed(seed), options.get("temperature", 1.0)).cpu()

    # ---------------------------------------------------------------------------------- scoring
    def extra_metrics(self, g, params, test, fake, scores, classifier_a=None) -> dict:
        """NLL_test: the per-token negative log-likelihood of the held-out sequences (nats) under G at the
        temperature it samples at (untempered at 1)."""
        import torch

        from components.metrics.quality_diversity import tempered_nll

        return {"nll_test": tempered_nll(g, torch.as_tensor(test.x).long(), self.sampling_options(params)["temperature"])}

    def quality_diversity(self, g, params, test, scorer) -> list[dict]:
        import torch

        from components.metrics.quality_diversity import curve

        ev = params.evaluate
        return curve(g, self, params, scorer, torch.as_tensor(test.x).long(), ev.temperatures,
                     min(ev.curve_samples, ev.num_samples), ev.seed)

    def sample_file(self, samples):
        """The pyfunc's sentences as a text file, shown on the console too."""
        text = "\n".join(samples["sentence"])
        return SampleFile(text + "\n", ".txt", "sentences", text)

    def report_grid(self, g, fake, test) -> bytes:
        from components.training.images import text_png

        return text_png(self.sentences(g, fake[:24]))

    @staticmethod
    def sentences(g, tokens) -> list[str]:
        """Samples as text: words up to <eos>, or an oracle's token ids."""
        from components.data.text import decode, is_text

        if is_text(g.vocabulary):
            return [decode(row, g.vocabulary) for row in tokens]
        return [" ".join(g.vocabulary[i] for i in row.tolist()) for row in tokens]

    # ---------------------------------------------------------------------------------- serving
    def predict(self, g, spec, inputs, limit):
        """{"tokens": ids (N, L), "sentence": the decoded text}: one row per sample."""
        import pandas as pd

        from components import serving_inputs as req

        self.refuse_unknown(inputs)
        n = req.integer(inputs, "num_samples", min(16, limit), 1, limit, req.limit_note(limit))
        seed = req.integer(inputs, "seed", 0, 0, req.MAX_SEED)
        temperature = inputs.get("temperature", spec[self.section].get("temperature", 1.0))
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            temperature = float("nan")
        if not 0 < temperature <= 10:
            raise req.RequestError(f"temperature = {inputs.get('temperature')!r}: must be a number in (0, 10]")
        tokens = self.draw(g, n, seed, None, {"temperature": temperature}, 0)
        return pd.DataFrame({"tokens": [row.tolist() for row in tokens], "sentence": self.sentences(g, tokens)})
