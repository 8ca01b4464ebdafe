"""The slide pipeline: plan, per-block work, assembly of outputs, and ``segment_slide``."""
