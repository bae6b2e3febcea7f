"""export stage of wbcap."""
