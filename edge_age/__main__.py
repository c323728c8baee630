from edge_age.cli import main

main()
