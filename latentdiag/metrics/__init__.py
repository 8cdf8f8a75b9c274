"""Metrics on latent arrays: separation, information and disentanglement."""
