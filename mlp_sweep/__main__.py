from mlp_sweep.cli import main

main()
