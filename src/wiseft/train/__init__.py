"""Training: `sft` (supervised fine-tuning with a checkpoint schedule), `grpo` (RL with grader rewards,
starting from a checkpoint or a mix: `start`) and `toy` (the demo's toy world)."""
