"""Downstream evaluation (PROTOCOL.md 1.2-1.3): metrics, sliding windows and features, the
linear / attentive / fine-tune protocols and the runner that writes run records."""
