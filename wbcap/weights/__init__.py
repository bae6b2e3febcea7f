"""weights stage of wbcap."""
