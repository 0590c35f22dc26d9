"""`python -m defectspectrum` runs the command line."""

from defectspectrum.cli import main

main()
