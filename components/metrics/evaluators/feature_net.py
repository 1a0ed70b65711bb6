"""Evaluators that score images through a frozen feature network (components/metrics/base.py): FID, KID, IS,
precision/recall/density/coverage and the class histogram, with the real-vs-real floor beside them. The real side
is the held-out split, or with evaluate.reference train the train split (components/evaluation.real_side)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import numpy as np

from components.metrics.catalogue import fid_fits
from components.metrics.evaluators.base import Evaluator, Scorer

# images, under a feature network (components/metrics/scores.py)
IMAGE_METRICS = {"fid": False, "kid_mean": False, "is_mean": True, "precision": True, "recall": True,
                 "density": True, "coverage": True, "class_kl": False}
# class-conditional models and translators: the evaluator agrees with the requested (or input's) label
CONDITIONAL_METRICS = {"cond_accuracy": True}

# Held-out images the metrics need per class at the least: precision/recall/density/coverage use
# k-nearest-neighbour balls (evaluate.prdc_k), and the evaluator's test accuracy is read per class.
MIN_TEST_PER_CLASS = 2


class FeatureScorer(Scorer):
    def __init__(self, evaluator, info, prepared, manifest, extractor):
        super().__init__(evaluator, info, prepared, manifest)
        self.extractor = extractor

    def check_sample_size(self, n, what, knob):
        from components.metrics import scores

        scores.check_sample_size(n, self.extractor.feature_dim, what, knob=knob)

    def reference(self, test):
        return self.extractor.features_and_logits(test.x)

    def score(self, reference, fake, labels, params):
        from components.metrics import scores

        ev = params.evaluate
        fake_features = self.extractor.features_and_logits(fake)
        out = scores.all_scores(reference, fake_features, prdc_k=ev.prdc_k,
                                kid_subset_size=min(ev.kid_subset_size, len(fake), len(reference[0])), seed=ev.seed,
                                requested=labels if self.evaluator.classifies_dataset else None)
        return {**out, **self.extractor.set_scores(fake_features[1])}

    def floor(self, reference, params, metrics):
        """The real-vs-real floor: the train split scored against the test split as if it were a generator, the
        best any model can do. `reference` holds the features of the split evaluate.reference names; the other
        split's are computed here. Left out, with a printed note, when either split is too small for FID (a small
        image set scored with evaluate.reference train): no number rather than a singular covariance's."""
        from components.data.kinds import kind_of
        from components.data.shards import load_split
        from components.metrics import scores

        ev, dim = params.evaluate, self.extractor.feature_dim
        short = [f"the {s} split has {self.manifest['splits'][s]['count']} images" for s in ("test", "train")
                 if not fid_fits(self.manifest["splits"][s]["count"], dim)]
        if short:
            print("evaluate: note: no real-vs-real floor (fid_floor, kid_floor, fid_over_floor): "
                  f"{' and '.join(short)}, and FID needs more than {dim} on each side; the scores are "
                  f"against the {ev.reference} split (docs/metrics.md#the-real-side)", flush=True)
            return {}

        def features(split):
            images = load_split(self.prepared, split)[0]
            if len(images) > ev.floor_samples:  # a seeded subset: the evaluator's seed, never a training seed
                keep = np.random.default_rng(ev.seed).choice(len(images), ev.floor_samples, replace=False)
                images = images[np.sort(keep)]
            return self.extractor.features(kind_of(self.manifest).to_model_space(images))

        test, train = (reference[0], features("train")) if ev.reference == "test" else (features("test"), reference[0])
        floor = scores.fid_kid(test, train, kid_subset_size=ev.kid_subset_size, seed=ev.seed)
        return {"fid_floor": floor["fid"], "kid_floor": floor["kid_mean"],
                "fid_over_floor": metrics["fid"] / max(floor["fid"], 1e-12)}


class FeatureNetEvaluator(Evaluator):
    data_kinds = ("image", "pairs")
    metrics = IMAGE_METRICS
    label_metrics = CONDITIONAL_METRICS
    default_metric = "fid"
    floor_metrics = ("fid_floor", "fid_over_floor")
    deps = ("components/metrics/base.py", "components/metrics/feature_nets.py")
    # True: its classes are the dataset's, so it scores requested labels (cond_accuracy)
    classifies_dataset: ClassVar[bool] = True
    classes_need_test_images: ClassVar[bool] = True
    references = ("test", "train")  # evaluate.reference train: a small set's FID against its train split
    scorer_class: ClassVar[type[FeatureScorer]] = FeatureScorer

    def feature_dim(self, manifest: dict) -> int:
        raise NotImplementedError

    def accuracy_read_on(self, params, manifest: dict) -> tuple[list[int], str, str]:
        """(images per class its accuracy is read on, what they are, the fix when a class has too few)."""
        return (manifest["splits"]["test"].get("class_counts", []), "held-out images",
                "add images of those classes or raise data.test_fraction")

    def size_problems(self, params, manifest: dict) -> list[str]:
        """The real side of FID/KID/PRDC (the split evaluate.reference names: the held-out one by default) and the
        samples evaluate will score must outnumber the feature dimension (else FID's covariance is singular), and
        every class must keep images to read the evaluator's accuracy on. Each problem says how many images that
        takes."""
        dim = self.feature_dim(manifest)
        test, frac, total = manifest["splits"]["test"], manifest["test_fraction"], manifest["count"]
        train = manifest["splits"]["train"]["count"]
        problems = []
        if params.evaluate.reference == "train":
            if not fid_fits(train, dim):
                problems.append(
                    f"the train split (FID's real side: evaluate.reference train) has {train} images ({total} less "
                    f"{test['count']} held out), and the {self.name} evaluator's features are {dim}-dimensional: FID "
                    f"needs more than {dim} real images, so bring at least {math.ceil((dim + 1) / (1 - frac))} images")
        elif not fid_fits(test["count"], dim):
            need = math.ceil((dim + 1) / frac)  # images in all at this test_fraction
            fix = (f"raise data.test_fraction to at least {math.ceil(100 * (dim + 1) / total) / 100:.2f} or bring "
                   f"{need} images" if (dim + 1) / total <= 0.5 else f"bring at least {need} images at this "
                   f"data.test_fraction (more than {dim} must be held out, and most of the data should train)")
            if fid_fits(train, dim):  # a small set may keep its test split and be compared with what it trains on
                fix += (f", or set evaluate.reference: train (its {train} train-split images become FID's real side; "
                        "docs/metrics.md#the-real-side)")
            problems.append(
                f"the held-out split has {test['count']} images ({total} × data.test_fraction {frac}), and the "
                f"{self.name} evaluator's features are {dim}-dimensional: FID needs more than {dim} real "
                f"images, so {fix}")
        per_class, what, fix = self.accuracy_read_on(params, manifest)
        thin = [name for name, n in zip(manifest["class_names"], per_class)
                if n < MIN_TEST_PER_CLASS and self.classes_need_test_images]
        if thin:
            problems.append(f"classes {', '.join(thin[:10])} keep fewer than {MIN_TEST_PER_CLASS} {what}; {fix}")
        n, what, knob = params.family.scored_count(params, manifest)
        if not fid_fits(n, dim) and (knob != "data.test_fraction" or params.evaluate.reference == "train"):  # else said above
            problems.append(f"evaluate scores {n} {what}, not more than the feature dimension {dim}; raise {knob} "
                            f"above {dim}")
        return problems

    def scorer(self, evaluator_dir: Path, info: dict, prepared: Path, manifest: dict) -> FeatureScorer:
        from components.metrics import feature_nets

        extractor, info = feature_nets.load_evaluator(evaluator_dir)
        return self.scorer_class(self, info, prepared, manifest, extractor)
