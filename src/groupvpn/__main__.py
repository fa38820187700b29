from groupvpn.cli.main import main

main()
