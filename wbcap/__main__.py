"""``python -m wbcap``: the ``wbcap`` command (job scripts and environments without the console script)."""

from wbcap.cli import console_main

if __name__ == "__main__":
    console_main()
