"""testing stage of wbcap."""
