"""The action-conditioned latent world model (`atom-train wm`)."""
