"""`python -m mlp_sweep.bench [sweep-overhead | fused | loggers | load | gpu] ...`: one
command, six measurements."""

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sweep-overhead"]:  # the cost around the runs, beside plain Hydra
        from mlp_sweep.bench import overhead

        return overhead.main(argv[1:])
    if argv[:1] == ["load"]:  # mlp_sweep.load over many sweeps
        from mlp_sweep.bench import collect

        return collect.main(argv[1:])
    if argv[:1] == ["loggers"]:  # a watched run's training against an unwatched one
        from mlp_sweep.bench import loggers

        return loggers.main(argv[1:])
    if argv[:1] == ["fused"]:  # K runs as one stack against the same K alone
        from mlp_sweep.bench import stacked

        return stacked.main(argv[1:])
    if argv[:1] == ["gpu"]:  # a GPU machine: CUDA tests, precisions, sweeps packed per GPU
        from mlp_sweep.bench import gpu

        return gpu.main(argv[1:])
    from mlp_sweep.bench import training

    return training.main(argv)


if __name__ == "__main__":
    sys.exit(main())
