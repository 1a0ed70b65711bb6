"""MLflow: tracking URI, experiments, runs, sample images, logged generator models."""
