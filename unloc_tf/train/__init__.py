"""Training: strategies, optimisers and schedules, checkpoints, health checks,
mixed precision and the custom training loop (`trainer.train`)."""
