from lab_tools.cli import main

main()
