"""Training: strategies, optimisers and schedules, checkpoints, health checks
and the custom training loop (`trainer.train`)."""
