"""Post-processing of network outputs (instance label images from class probabilities)."""
