"""Training, with no files and no Hydra: data on the device, the model, the loop, the
hand-written SGD step, K runs as one stacked model, precision and device choice, threads."""
