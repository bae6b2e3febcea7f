"""Training data sets (all return upstream-schema (inputs, targets, meta_info) samples)."""
