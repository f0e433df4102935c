"""Losses: LPIPS, ArcFace identity, adversarial."""
