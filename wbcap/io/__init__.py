"""io stage of wbcap."""
