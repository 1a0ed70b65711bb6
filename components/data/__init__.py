"""Data layer: named image sources (`sources`) and prepared Parquet datasets read per rank (`shards`)."""
