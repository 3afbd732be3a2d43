from litvision.cli import main

main()
