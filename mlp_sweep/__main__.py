from mlp_sweep.cli import main

# Guarded: the parallel launcher's spawned workers import this module as __mp_main__.
if __name__ == "__main__":
    main()
