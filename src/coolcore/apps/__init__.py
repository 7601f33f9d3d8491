"""Stage 6, using trained models: export to a model folder, load it safely, predict, explain, report."""
