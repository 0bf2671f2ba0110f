"""Promotion as a library: an image copied by digest with its referrers and signature into an environment's
registry, gated by that environment's policy, with the model's data, its artifacts and a GitOps record."""
