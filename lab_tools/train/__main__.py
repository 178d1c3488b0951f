"""``python -m lab_tools.train`` / ``accelerate launch -m lab_tools.train``: the `lab train` command."""

from lab_tools.cli import main

if __name__ == "__main__":
    import sys

    main(["train", *sys.argv[1:]])
