from propylon.cli.main import main

main()
