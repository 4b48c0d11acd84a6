"""Training stage: the one training loop over a model family's train step (`loop`)."""
