"""`sr train`: the papers' training recipes around the models in sr_cli.archs."""
