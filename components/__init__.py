"""genpipe components: plain PyTorch / pyarrow / MLflow code, importable without Ray running."""
