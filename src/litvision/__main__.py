from litvision.commands import main

main()
