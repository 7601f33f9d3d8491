"""Stage 1, the simulator: cluster physics, the population, projected maps and the sample (coolcore simulate)."""
