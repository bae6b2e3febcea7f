"""smooth stage of wbcap: filters, per-track SMPL-X smoothing (sequence) and temporal metrics."""
