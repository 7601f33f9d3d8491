"""Stage 3, the network: pure torch (no file is read or written here).

``options`` (variants, mask combinations, valid ranges; no torch import),
``backbone`` (the ResNet-18 trunk), ``masks`` (CAM, Gaussian, boxes, crops),
``outputs`` (what a forward pass returns), ``model`` (the multi-branch network
and :func:`coolcore.nn.model.build_network`, the one way from a run config to
it), ``losses``.  Pretrained weights are read by :mod:`coolcore.train.weights`.
"""
