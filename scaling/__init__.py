"""scaling: scaling-law experiment orchestration for transformer language models."""
