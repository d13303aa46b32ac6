"""vgrout: route GRPO updates into deployed or quarantine adapter blocks.

Submodules are imported on demand; `vgrout.env` never imports torch.
"""

__version__ = "0.1.0"
