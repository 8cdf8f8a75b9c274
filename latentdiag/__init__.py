"""latentdiag: diagnose the latent space of any VAE.

The package root stays light: importing it must not pull in torch, onnxruntime, umap or
matplotlib, so that ``latentdiag --help`` starts instantly.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
