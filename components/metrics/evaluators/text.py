"""The evaluator of token sequences (components/metrics/text_scorer.py): BLEU / Self-BLEU against the held-out
split, and for an oracle dataset (SeqGAN's synthetic benchmark) the oracle's NLL of the samples. Nothing to
train: its record is its definition, hashed with the data's content hash."""
from __future__ import annotations

from components.metrics.evaluators.base import Evaluator, Scorer

# token sequences (components/metrics/text.py): BLEU-n of samples against the test split, Self-BLEU-n among
# samples (higher: less diverse), the model's per-token NLL of the test split, the share of empty sentences; an
# oracle dataset adds the oracle's per-token NLL of the samples (SeqGAN's NLL_oracle)
TEXT_METRICS = {**{f"bleu{n}": True for n in range(2, 6)}, **{f"self_bleu{n}": False for n in range(2, 6)},
                "nll_test": False, "empty_rate": False}
ORACLE_METRICS = {"nll_oracle": False}


class TextScorer(Scorer):
    def __init__(self, evaluator, info, prepared, manifest):
        from components.metrics.text_scorer import TextScorer as Bleu

        super().__init__(evaluator, info, prepared, manifest)
        self.bleu = Bleu(prepared)

    def score(self, reference, fake, labels, params):
        return self.bleu(fake)

    def floor(self, reference, params, metrics):
        return self.bleu.floor()

    def curve_point(self, fake):
        return self.bleu.curve_point(fake)


class Text(Evaluator):
    name = "text"
    data_kinds = ("tokens",)
    description = "BLEU / Self-BLEU against the held-out split"
    metrics = TEXT_METRICS
    default_metric = "nll_test"  # the one text metric mode collapse cannot improve
    floor_metrics = (*(f"floor_self_bleu{n}" for n in range(2, 6)), "floor_nll_oracle")
    deps = ("components/metrics/text.py", "components/metrics/text_scorer.py")

    def plan(self, params, manifest, retrain=False):
        return f"records the text scorer of {manifest['dataset']} (nothing to train)"

    def build(self, params, manifest, prepared, out_dir, retrain=False, pin=False):
        from components.metrics import text_scorer

        info = self.write_info({**self.meta(params, manifest), **text_scorer.info(manifest)}, out_dir)
        print(f"evaluator: text scorer for {manifest['dataset']} (BLEU / Self-BLEU"
              + (", NLL_oracle" if manifest.get("oracle") else "") + f"); hash {info['hash'][:12]}; written to {out_dir}")
        return info

    def scorer(self, evaluator_dir, info, prepared, manifest):
        return TextScorer(self, info, prepared, manifest)


class OracleText(Text):
    """Sequences of a known oracle LSTM: scored by the oracle's NLL too."""
    name = "oracle_text"
    recorded_kind = "text"  # one text scorer record (components/metrics/text_scorer.py), with the oracle's or not
    data_kinds = ("oracle_tokens",)
    metrics = {**TEXT_METRICS, **ORACLE_METRICS}
    default_metric = "nll_oracle"
