"""``python -m latentdiag`` runs the command line (also what ``torchrun -m latentdiag`` uses)."""

from latentdiag.cli import main

if __name__ == "__main__":
    main()
