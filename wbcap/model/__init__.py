"""model stage of wbcap."""
