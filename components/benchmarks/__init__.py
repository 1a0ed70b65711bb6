"""Quality benchmarks built from the components, run by their own `genpipe` commands (`genpipe modes`)."""
