"""Training: `sft` (supervised fine-tuning with a checkpoint schedule) and `toy` (the demo's toy world)."""
