"""detect stage of wbcap."""
