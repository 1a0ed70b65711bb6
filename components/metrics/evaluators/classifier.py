"""evaluator.kind classifier: a small CNN (components/metrics/classifier.py) trained on the dataset's own
classes, or copied from its pin (components/metrics/pins.py) so every clone measures with the same weights.
An unpaired dataset (CycleGAN) gets a classifier of its inputs' domain too.

Its accuracy is read on the test split, or with `evaluator.holdout` on a slice of the train split held out
of its training (`holdout_mask`), so that a small dataset's classes need no held-out images for it."""
from __future__ import annotations

import numpy as np

from components.atomic import atomic_dir
from components.metrics.evaluators.feature_net import FeatureNetEvaluator


def holdout_counts(class_counts: list[int], fraction: float) -> list[int]:
    """Images of each class held out of the classifier's training: `fraction` of the class rounded half up, at
    least one while the class keeps one to train on."""
    return [min(max(1, int(fraction * n + 0.5)), n - 1) if n > 1 else 0 for n in class_counts]


def holdout_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Which train-split images the classifier holds out (stratified by class, drawn with its own seed)."""
    labels = np.asarray(labels)
    rng, held = np.random.default_rng(seed), np.zeros(len(labels), dtype=bool)
    for c, k in enumerate(holdout_counts(np.bincount(labels).tolist(), fraction)):
        held[rng.permutation(np.flatnonzero(labels == c))[:k]] = True
    return held


class Classifier(FeatureNetEvaluator):
    name = "classifier"
    description = "a CNN trained on the dataset's classes"
    classifies_inputs = True
    rebuild_cost = "it trains on this data, or copies its pin"
    takes_holdout = True
    deps = (*FeatureNetEvaluator.deps, "components/metrics/classifier.py", "components/metrics/pins.py",
            "components/metrics/pinned")

    def feature_dim(self, manifest):
        from components.metrics.classifier import FEATURE_DIM

        return FEATURE_DIM

    # ---------------------------------------------------------------------------- its definition and pin
    def definition(self, params, manifest: dict) -> dict:
        from components.metrics import pins

        defn = pins.definition(manifest, params.evaluator, self.network_shape(manifest))
        if params.evaluator.holdout is not None:  # only when set: a definition without it (every pin) keeps its hash
            defn["recipe"]["holdout"] = params.evaluator.holdout
        return defn

    def network_shape(self, manifest: dict) -> tuple[list[int], int]:
        """(image shape, classes) of the network it trains."""
        return list(manifest["image_shape"]), manifest["num_classes"]

    def accuracy_read_on(self, params, manifest):
        h = params.evaluator.holdout
        if h is None:
            per_class, what, fix = super().accuracy_read_on(params, manifest)
            if params.evaluate.reference == "train":
                # refused rather than held out on its own: evaluator.holdout changes the evaluator's definition
                # (its pin, its hash, the evaluator stage's params), which only the evaluator section may decide
                fix = ("with evaluate.reference train the test split may stay small, but the classifier must read "
                       "its accuracy on images it did not train on: set evaluator.holdout (e.g. 0.2, a slice of the "
                       "train split held out of its training) or raise data.test_fraction")
            return per_class, what, fix
        return (holdout_counts(manifest["splits"]["train"]["class_counts"], h),
                f"images in its holdout (evaluator.holdout {h} of the train split)",
                "add images of those classes or raise evaluator.holdout")

    def plan(self, params, manifest, retrain=False):
        from components.metrics import pins

        defn = self.definition(params, manifest)
        pinned = None if retrain else pins.find(defn)
        if pinned is not None:
            return f"copies the pinned evaluator components/metrics/pinned/{pinned.name} (definition " \
                   f"{pins.definition_hash(defn)[:12]})"
        holdout = params.evaluator.holdout
        return f"trains a {self.name} evaluator on this machine (definition {pins.definition_hash(defn)[:12]}" \
               + (", --retrain" if retrain else ", no pin of it") \
               + (f"; its accuracy read on evaluator.holdout {holdout} of the train split" if holdout else "") + ")"

    def build(self, params, manifest, prepared, out_dir, retrain=False, pin=False):
        from components.metrics import feature_nets, pins

        self.check_size(params, manifest)
        defn = self.definition(params, manifest)
        pinned = None if retrain else pins.find(defn)
        if pinned is not None:
            pins.copy_pin(pinned, out_dir)
            _, info = feature_nets.load_evaluator(out_dir)  # re-checks the weights against the recorded hash
            how = f"pinned (components/metrics/pinned/{pinned.name})"
        else:
            info = self._train_evaluator(params, manifest, prepared, defn, out_dir)
            how = "trained on this machine" + ("" if pin else
                  " (no pin of this definition: another machine would train other weights; `genpipe evaluator --pin` "
                  "keeps this one for every clone, `dvc push` shares it through the DVC remote)")
        if pin:
            kept = pins.pin(out_dir, defn)
            how += f"; pinned as {kept}"
        acc = info.get("test_accuracy")
        print(f"evaluator: {self.name} {how}" + (f", test accuracy {acc:.4f} on {self.held_out(info, manifest)}"
                                                 if acc is not None else "")
              + f"; hash {info['hash'][:12]}, definition {pins.definition_hash(defn)[:12]}; written to {out_dir}")
        return info

    def held_out(self, info: dict, manifest: dict) -> str:
        """What its test accuracy is read on, in words."""
        if info.get("holdout") is not None:
            return (f"{info['report']['test_count']} train-split images held out of its training "
                    f"(evaluator.holdout {info['holdout']})")
        return f"{manifest['splits']['test']['count']} held-out images"

    def fit_and_read(self, params, train_x, train_y, test_x, test_y) -> tuple:
        """(images, labels it trains on, images, labels its accuracy is read on): the train and test splits, or
        with evaluator.holdout the train split without its holdout, and the holdout."""
        if params.evaluator.holdout is None:
            return train_x, train_y, test_x, test_y
        held = holdout_mask(train_y, params.evaluator.holdout, params.evaluator.seed)
        return train_x[~held], train_y[~held], train_x[held], train_y[held]

    def _train_evaluator(self, params, manifest, prepared, defn, out_dir) -> dict:
        from components.data.shards import load_rank_inputs, load_split
        from components.metrics import feature_nets, pins

        meta = {**self.meta(params, manifest), "definition_hash": pins.definition_hash(defn),
                **({"holdout": params.evaluator.holdout} if params.evaluator.holdout is not None else {})}
        model, report = self.train(params, manifest, *self.fit_and_read(params, *load_split(prepared, "train"),
                                                                         *load_split(prepared, "test")))
        with atomic_dir(out_dir) as tmp:  # both evaluators of an unpaired dataset, or neither
            info = feature_nets.save_evaluator(model, report, meta, tmp)
            if defn["data"]["input_domain"]:
                # unpaired domains (CycleGAN): label preservation B → A needs a classifier of domain A too
                in_model, in_report = self.train(params, manifest, *self.fit_and_read(
                    params, *load_rank_inputs(prepared, "train"), *load_rank_inputs(prepared, "test")))
                in_info = feature_nets.save_evaluator(in_model, in_report, meta, tmp / feature_nets.INPUT_DOMAIN)
                print(f"evaluator (domain A, the inputs): test accuracy {in_info['test_accuracy']:.4f}; "
                      f"hash {in_info['hash'][:12]}")
        return info

    def train(self, params, manifest, train_x, train_y, test_x, test_y, num_classes: int | None = None):
        """(network, report) trained on these images with the evaluator section's recipe."""
        from components.metrics import feature_nets

        cfg = params.evaluator
        return feature_nets.train_classifier(
            train_x, train_y, test_x, test_y, seed=cfg.seed, epochs=cfg.epochs, batch_size=cfg.batch_size,
            lr=cfg.lr, num_threads=params.scaling.num_workers * params.scaling.cpus_per_worker,
            num_classes=num_classes or manifest["num_classes"])

