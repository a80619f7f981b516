"""Offline GRPO on the SFT policy, rewarded by the latent world model (`atom-train grpo`)."""
