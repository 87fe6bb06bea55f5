"""``python -m convlens`` (and ``torchrun -m convlens``) runs the command-line interface."""

from convlens.cli import main

if __name__ == "__main__":
    main()
