"""The config schema: typed dataclasses and Enums, registered in Hydra's ConfigStore.

Values live in YAML under conf/; this file only says which keys exist, their types and what
each is for. Composition then rejects unknown keys, unknown choices and wrong types before any
training. `validate` adds the range checks a type cannot express (lr > 0, epochs >= 1, ...).
The dataclasses are not frozen because Hydra merges overrides into them; below the entry
point treat them as read-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore

from mlp_sweep.errors import ConfigError

# trainer.threads=auto: the launcher's share of the cores (mlp_sweep.training.threads).
THREADS_AUTO = "auto"


class Activation(Enum):
    relu = "relu"
    leaky = "leaky"
    selu = "selu"
    softplus = "softplus"
    tanh = "tanh"
    sigmoid = "sigmoid"
    elu = "elu"
    gelu = "gelu"
    silu = "silu"


class Init(Enum):
    default = "default"  # what nn.Linear does on its own
    kaiming_normal = "kaiming_normal"
    kaiming_uniform = "kaiming_uniform"
    xavier_normal = "xavier_normal"
    xavier_uniform = "xavier_uniform"
    lecun_normal = "lecun_normal"
    orthogonal = "orthogonal"


class Impl(Enum):
    module = "module"  # nn.Sequential of nn.Linear and activation modules
    functional = (
        "functional"  # raw parameter tensors and x @ W.T + b, as the tutorial's low-level version
    )


class Optimizer(Enum):
    sgd = "sgd"
    adam = "adam"


class Dataset(Enum):
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    kmnist = "kmnist"
    synthetic = "synthetic"


class Precision(Enum):
    fp32 = "fp32"  # float32, matmuls in full float32
    tf32 = "tf32"  # float32, matmuls in TensorFloat-32 where the GPU has it (Ampere+)
    bf16 = "bf16"  # autocast to bfloat16 for matmuls; weights and optimizer float32
    fp64 = "fp64"  # float64 model and data: for checks


class Loss(Enum):
    ce = "ce"  # cross-entropy on the logits
    mse = "mse"  # mean squared error between softmax(logits) and one-hot targets


@dataclass
class ModelConfig:
    # ReLU is the tutorial's activation; the others are what it compares against.
    act: Activation = Activation.relu
    # PyTorch's own nn.Linear init is what the tutorial's nn.Module version gets.
    init: Init = Init.default
    # Widths of the hidden layers; [] is multinomial logistic regression.
    hidden: list[int] = field(default_factory=lambda: [200, 200])
    # The tutorial also applies the activation to the logits; off by default because a ReLU on
    # the logits clips negative scores and costs accuracy.
    output_act: bool = False
    impl: Impl = Impl.module
    # nn.LeakyReLU's default negative slope.
    leaky_slope: float = 0.01
    # nn.Softplus's default sharpness.
    softplus_beta: float = 1.0
    # nn.ELU's default alpha.
    elu_alpha: float = 1.0


@dataclass
class OptimConfig:
    name: Optimizer = Optimizer.sgd
    # The tutorial's learning rate for plain SGD.
    lr: float = 0.01
    # SGD only: plain SGD, as in the tutorial.
    momentum: float = 0.0
    # SGD only.
    nesterov: bool = False
    # L2 penalty, both optimizers; off as in the tutorial.
    weight_decay: float = 0.0
    # Adam only: torch.optim.Adam's defaults.
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class DataConfig:
    name: Dataset = Dataset.mnist
    # Folder holding <Dataset>/raw/; null means the data/ folder shipped beside the package.
    root: str | None = None
    # Standardize pixels with the training set's mean and std (the tutorial's Normalize).
    normalize: bool = True
    # Use only the first N training / test samples; null uses all. For quick runs and tests.
    limit_train: int | None = None
    limit_test: int | None = None
    # Let torchvision fetch a missing dataset; offline this fails with a line saying where to
    # put the files. MNIST ships with the project and never downloads.
    download: bool = True
    # Synthetic only: sizes of the generated train and test sets.
    n_train: int = 4000
    n_test: int = 1000


@dataclass
class TrainerConfig:
    # The tutorial trains for 10 epochs with mini-batches of 200.
    epochs: int = 10
    batch_size: int = 200
    # Evaluation needs no gradients, so it can take large chunks; this only bounds memory.
    eval_batch_size: int = 10_000
    # Save model, optimizer and RNG state after every epoch so a killed run resumes where it
    # stopped. Cheap: 0.8 MB and ~3 ms an epoch for the default MLP and plain SGD.
    checkpoint: bool = True
    # torch.use_deterministic_algorithms: the same seed gives bit-identical numbers on CPU
    # (and on CUDA where cuBLAS allows it). Costs nothing measurable for an MLP.
    deterministic: bool = True
    # torch threads for this run: auto shares the cores among the jobs running at once (the
    # parallel launcher's workers, a SLURM job's cpus_per_task), so jobs x threads never
    # exceeds the cores; or a number. The record says what was used.
    threads: str = "auto"
    # The number format a run computes in (mlp_sweep/training/precision.py): fp32, tf32, bf16, fp64.
    precision: Precision = Precision.fp32
    # torch.compile the model (and, on CUDA, capture its steps in CUDA graphs where they pay).
    # Compiling takes seconds per run: worth it for long runs on a GPU, rarely for a sweep of
    # short CPU runs.
    compile: bool = False
    # Seconds a run may train (per start: a resumed run gets them again); null: no limit. A run
    # past it stops at the next step, is recorded `timeout` with the checkpoint of its last
    # epoch, and --resume continues it. Not part of what a run computes, so changing it
    # never refuses a resume.
    time_limit: float | None = None


@dataclass
class TensorBoardConfig:
    # Event files go into each run's own folder: `tensorboard --logdir <sweep dir>` lists the
    # runs by job number. hparams also writes each run's hyperparameters and final metrics
    # for TensorBoard's HParams view (table and parallel coordinates).
    hparams: bool = True


@dataclass
class VisdomConfig:
    # Where the visdom server listens (`python -m mlp_sweep.visdom_server` starts one offline).
    server: str = "http://localhost"
    port: int = 8097
    # The visdom environment; null gives each sweep (or single run) its own, named by its folder.
    env: str | None = None
    # Seconds a run waits at its end for the last points to reach the server; after that the
    # logger is given up (and recorded as failed) and the run finishes regardless.
    flush_timeout: float = 5.0


@dataclass
class MlflowConfig:
    # Where runs go: null keeps them in the sweep's own folder (sqlite:///<sweep>/mlflow.db,
    # artifacts in <sweep>/mlartifacts), no server needed; or any MLflow tracking URI, say
    # http://127.0.0.1:5000. A resume never takes it from the folder: pass it again.
    tracking_uri: str | None = None
    # The MLflow experiment; null: the sweep's folder name (a single run's: "runs").
    experiment: str | None = None
    # Tags every run of the command gets besides mlp_sweep's own (team, ticket, ...).
    tags: dict[str, str] = field(default_factory=dict)
    # Upload history.csv, metrics.json, the job's config, its pictures and the test digits.
    artifacts: bool = True
    # Seconds one request to the server may take (and it is tried twice more) before the
    # logger gives up for the run: a hung server costs the run one warning, never its time.
    request_timeout: float = 10.0
    # Seconds a run waits at its end for its last metrics and artifacts to be sent.
    finish_timeout: float = 60.0


@dataclass
class LoggerConfig:
    # Set by logger=tensorboard / logger=visdom / logger=mlflow / logger=[mlflow,tensorboard];
    # null is off. A logger never fails a run: one warning line, and the record's
    # loggers_failed says why.
    tensorboard: TensorBoardConfig | None = None
    visdom: VisdomConfig | None = None
    mlflow: MlflowConfig | None = None
    # The train loss per step goes to the loggers as the mean over every this many optimizer
    # steps: 10 sends ~30 points per full-MNIST epoch at batch 200; 1 is every step, as the
    # tutorial plots it.
    every_n_steps: int = 10


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    loss: Loss = Loss.ce
    # Seeds the weights' init and the batch order; the same seed repeats a CPU run exactly.
    seed: int = 0
    # auto picks cuda, then mps, then cpu; or name one: cpu, cuda, cuda:N, mps.
    device: str = "auto"
    # A sweep's console shows one line per finished run (or a live display on a terminal);
    # true also prints Hydra's launch lines and every run's per-epoch lines, which always go to
    # each run's log file.
    verbose: bool = False


# Keys that say how a run executes or is watched, not what it computes: a resume may change
# them, and they are no hyperparameters to compare runs by. An entry ending in "." covers the
# keys below it.
RUN_SETTINGS = ("trainer.threads", "trainer.time_limit", "verbose", "logger.")


def is_run_setting(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RUN_SETTINGS)


def register_configs() -> None:
    """Make the schema known to Hydra; conf/config.yaml names it first in its defaults."""
    ConfigStore.instance().store(name="config_schema", node=Config)


def _positive(key: str, value: float, what: str = "a number > 0") -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(key, value, f"must be {what}")


def validate(cfg: Config) -> None:
    """Range checks that the schema's types cannot express. Raises ConfigError."""
    _positive("optim.lr", cfg.optim.lr)
    if cfg.optim.momentum < 0:
        raise ConfigError("optim.momentum", cfg.optim.momentum, "must be >= 0")
    if cfg.optim.weight_decay < 0:
        raise ConfigError("optim.weight_decay", cfg.optim.weight_decay, "must be >= 0")
    if cfg.optim.name is Optimizer.adam and (cfg.optim.momentum or cfg.optim.nesterov):
        raise ConfigError("optim.momentum", cfg.optim.momentum, "is for sgd; adam uses optim.betas")
    if cfg.optim.nesterov and cfg.optim.momentum <= 0:
        raise ConfigError("optim.nesterov", True, "needs optim.momentum > 0")
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ConfigError("optim.betas", cfg.optim.betas, "must be two numbers in [0, 1)")
    _positive("trainer.epochs", cfg.trainer.epochs, "an integer >= 1")
    _positive("trainer.batch_size", cfg.trainer.batch_size, "an integer >= 1")
    _positive("trainer.eval_batch_size", cfg.trainer.eval_batch_size, "an integer >= 1")
    if cfg.trainer.time_limit is not None:
        _positive("trainer.time_limit", cfg.trainer.time_limit, "a number of seconds > 0 or null")
    parse_threads(cfg.trainer.threads)
    if any(width < 1 for width in cfg.model.hidden):
        raise ConfigError(
            "model.hidden", cfg.model.hidden, "every width must be >= 1 ([] = no hidden layer)"
        )
    _positive("model.softplus_beta", cfg.model.softplus_beta)
    if cfg.model.leaky_slope < 0:
        raise ConfigError("model.leaky_slope", cfg.model.leaky_slope, "must be >= 0")
    for key in ("limit_train", "limit_test"):
        limit = getattr(cfg.data, key)
        if limit is not None:
            _positive(f"data.{key}", limit, "an integer >= 1 or null (all samples)")
    visdom = cfg.logger.visdom
    if visdom is not None:
        if not 1 <= visdom.port <= 65535:
            raise ConfigError("logger.visdom.port", visdom.port, "must be a port number, 1-65535")
        _positive("logger.visdom.flush_timeout", visdom.flush_timeout)
    mlflow = cfg.logger.mlflow
    if mlflow is not None:
        _positive("logger.mlflow.request_timeout", mlflow.request_timeout)
        _positive("logger.mlflow.finish_timeout", mlflow.finish_timeout)
        if mlflow.experiment is not None and not mlflow.experiment.strip():
            raise ConfigError(
                "logger.mlflow.experiment", mlflow.experiment, "must be a name or null"
            )
    every = cfg.logger.every_n_steps
    if not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
        raise ConfigError("logger.every_n_steps", every, "must be a whole number >= 1")
    _positive("data.n_train", cfg.data.n_train, "an integer >= 1")
    _positive("data.n_test", cfg.data.n_test, "an integer >= 1")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"model.act": "relu", ...}; lists stay values, Enums become their names."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, Enum):
            flat[name] = value.name
        else:
            flat[name] = value
    return flat


def to_config(cfg: Any) -> Config:
    """A composed DictConfig (without Hydra's node) as the typed schema."""
    from omegaconf import OmegaConf

    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, Config), type(typed)
    return typed


def parse_threads(value: object) -> int | None:
    """`trainer.threads`: None for auto, else a count >= 1. Raises ConfigError."""
    text = str(value).strip().lower()
    if text == THREADS_AUTO:
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError("trainer.threads", value, f"must be {THREADS_AUTO} or an integer >= 1")
