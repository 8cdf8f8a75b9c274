"""Reference VAEs bundled with latentdiag: a baseline conditional VAE and the disentangled
conditional VAE with a partitioned latent space, with one training loop for both.

Depends on the latentdiag core; the core never imports this package.
"""
