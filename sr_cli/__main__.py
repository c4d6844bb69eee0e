"""`python -m sr_cli ...` (and `torchrun -m sr_cli train ...`) runs the same CLI as `sr`."""
from sr_cli.cli.app import main

if __name__ == "__main__":
    main()
