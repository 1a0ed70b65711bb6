"""Sample-quality metrics for generative models: feature networks and the scores computed on their outputs.

- `base`: the uniform `FeatureExtractor` interface (images in [-1, 1] → features, logits) and the
  `FEATURE_NETS` registry.
- `feature_nets`: the public face — both networks, `train_classifier`, evaluator save/load
  (safetensors + JSON with a hash that travels with every metric), `load_inception`.
- `classifier`: the small CNN evaluator trained on the dataset's train split.
- `inception`: the standard FID InceptionV3 (pt_inception-2015-12-05), from a local weights file only.
- `scores`: FID/KID, Inception Score, precision/recall/density/coverage, class histogram and its KL to
  uniform — all on features and logits computed once by a `FeatureExtractor`.

Library code only: no CLI, no MLflow; `pipelines/` wires it to params and reports.
"""
