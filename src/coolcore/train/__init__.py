"""Stage 4, training: configs and presets, hardware and precision, the Lightning module, one fold, the cv and ablation protocol."""
