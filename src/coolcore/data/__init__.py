"""Stage 2, data in: map formats, catalogues, checks at the edge, preprocessing transforms, the cache, folds, inputs to classify."""
