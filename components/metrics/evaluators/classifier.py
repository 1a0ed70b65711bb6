"""evaluator.kind classifier: a small CNN (components/metrics/classifier.py) trained on the dataset's own
classes, or copied from its pin (components/metrics/pins.py) so every clone measures with the same weights.
An unpaired dataset (CycleGAN) gets a classifier of its inputs' domain too."""
from __future__ import annotations

from components.atomic import atomic_dir
from components.metrics.evaluators.feature_net import FeatureNetEvaluator

class Classifier(FeatureNetEvaluator):
    name = "classifier"
    description = "a CNN trained on the dataset's classes"
    classifies_inputs = True
    deps = (*FeatureNetEvaluator.deps, "components/metrics/classifier.py", "components/metrics/pins.py",
            "components/metrics/pinned")

    def feature_dim(self, manifest):
        from components.metrics.classifier import FEATURE_DIM

        return FEATURE_DIM

    # ---------------------------------------------------------------------------- its definition and pin
    def definition(self, params, manifest: dict) -> dict:
        from components.metrics import pins

        return pins.definition(manifest, params.evaluator, self.network_shape(manifest))

    def network_shape(self, manifest: dict) -> tuple[list[int], int]:
        """(image shape, classes) of the network it trains."""
        return list(manifest["image_shape"]), manifest["num_classes"]

    def plan(self, params, manifest, retrain=False):
        from components.metrics import pins

        defn = self.definition(params, manifest)
        pinned = None if retrain else pins.find(defn)
        if pinned is not None:
            return f"copies the pinned evaluator components/metrics/pinned/{pinned.name} (definition " \
                   f"{pins.definition_hash(defn)[:12]})"
        return f"trains a {self.name} evaluator on this machine (definition {pins.definition_hash(defn)[:12]}" \
               + (", --retrain" if retrain else ", no pin of it") + ")"

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
        return f"{manifest['splits']['test']['count']} held-out images"

    def _train_evaluator(self, params, manifest, prepared, defn, out_dir) -> dict:
        from components.data.shards import load_rank_inputs, load_split
        from components.metrics import feature_nets, pins

        meta = {**self.meta(params, manifest), "definition_hash": pins.definition_hash(defn)}
        model, report = self.train(params, manifest, *load_split(prepared, "train"), *load_split(prepared, "test"))
        with atomic_dir(out_dir) as tmp:  # both evaluators of an unpaired dataset, or neither
            info = feature_nets.save_evaluator(model, report, meta, tmp)
            if defn["data"]["input_domain"]:
                # unpaired domains (CycleGAN): label preservation B → A needs a classifier of domain A too
                in_model, in_report = self.train(params, manifest, *load_rank_inputs(prepared, "train"),
                                                 *load_rank_inputs(prepared, "test"))
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

