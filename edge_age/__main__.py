"""``python -m edge_age``: the command line."""
from edge_age.cli import main

main()
