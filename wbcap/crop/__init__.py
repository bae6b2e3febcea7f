"""crop stage of wbcap."""
