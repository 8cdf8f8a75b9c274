"""The reference models, one module each: baseline, disentangled, beta-vae, beta-tcvae."""
