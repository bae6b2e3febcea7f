"""smooth stage of wbcap: temporal filters (filters), per-track SMPL-X smoothing (sequence), metrics."""
