"""Dataset checks before any GPU time: where rows come from, and what they fit."""
