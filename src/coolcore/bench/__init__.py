"""``coolcore bench``: speed and memory measured side by side (the network against a plain ResNet-18)."""
