"""One thin module per DVC stage; the only code that touches Ray, DVC files and the CLI."""
