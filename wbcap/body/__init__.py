"""body stage of wbcap."""
