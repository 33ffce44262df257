"""Training and evaluation: metrics (the Ray Train wrapper arrives with the training issue)."""
