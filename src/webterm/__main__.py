from webterm.cli import main

main()
