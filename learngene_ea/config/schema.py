"""The recipe's schema: every section and key, with its default, documentation and checks.

:mod:`learngene_ea.config` loads YAML recipes into these dataclasses and validates them; a key
added here is a recipe key (and a ``--set`` override) with no other change.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.fresh import FRESH_RULES
from ..core.traced import is_traced, network_name
from ..data import list_datasets
from ..errors import UserError

# the generators take any seed below 2**32 distinctly (sampling.mix_seed keeps 32 bits of each part)
MAX_SEED = 2**32 - 1
# runtime.backend's choices: auto and the engines (parallel.engines.list_engines(), a layer above this one, so
# written out here; tests/test_registries.py holds the two to each other)
BACKENDS = ("auto", "scoop", "ray", "serial")


class ConfigError(UserError):
    """A recipe or ``--set`` override that cannot be used, named in one sentence."""


def _field(default, doc: str, **checks):
    """A dataclass field with a docstring and range/choice checks (min, max, gt, lt; ``choices``: a tuple, or a
    registry's list function, called at each check: ``data.name``'s are :func:`~learngene_ea.data.list_datasets`)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc, **checks})
    return field(default=default, metadata={"doc": doc, **checks})


@dataclass
class ModelConfig:
    family: str = _field("conv4", "backbone family: one of ours (core.models.list_families()), or torchvision:NAME "
                                  "(any torchvision classifier)")
    width: float = _field(1.0, "width multiplier of every gene layer (our families)", gt=0.0, max=16.0)
    kwargs: dict = _field({}, "keyword arguments of a torchvision network's or model.module's builder")
    module: str | None = _field(None, "your own network: 'package.module:factory' returning an nn.Module "
                                      "(imported from this recipe only; overrides family)")

    @property
    def network(self) -> str:
        """The architecture's one name (what learngenes and checkpoints record): ``family`` for ours,
        else the traced network with its keyword arguments (:func:`~learngene_ea.core.traced.network_name`)."""
        if self.module:
            return network_name("module:" + self.module, self.kwargs)
        return network_name(self.family, self.kwargs) if is_traced(self.family) else self.family


@dataclass
class DataConfig:
    name: str = _field("synthetic", "dataset", choices=list_datasets)
    root: str | None = _field(None, "folder holding the dataset files (not used by synthetic)")
    seed: int = _field(0, "seed of the synthetic dataset and of image-folder class splits", min=0,
                       max=MAX_SEED)
    images_per_class: int = _field(600, "images per class of the synthetic dataset", min=10)
    image_size: int = _field(32, "side of the square images the loader produces", min=8, max=512)
    channels: int = _field(3, "image channels (1 or 3)", choices=(1, 3))
    cache_dir: str | None = _field(None, "where decoded images are cached (default: next to the data)")
    split: dict = _field({}, "image-folder class split: {train, val, test} -> class list, count or fraction")
    augment: bool = _field(True, "random crop + horizontal flip when training descendants")


@dataclass
class TaskConfig:
    """The task a descendant learns inside fitness (training classes only)."""

    num_classes: int = _field(16, "training classes in each descendant's task", min=2)
    images_per_class: int = _field(60, "images per class in each task", min=1)
    steps: int = _field(120, "optimisation steps per descendant", min=1)
    batch_size: int = _field(64, "images per step", min=1)
    lr: float = _field(0.05, "learning rate (SGD with momentum 0.9, cosine decay)", gt=0.0)
    weight_decay: float = _field(5e-4, "weight decay", min=0.0)
    head_init: str = _field("random", "the descendant's head before it learns: random; prototypes (each class's "
                                      "mean feature over one batch of its task, Proto-MAML's W = 2c, b = -|c|^2; lost on "
                                      "validation classes: docs/gene-pool.md, round seven); or pool (the gene pool "
                                      "keeps its warm start's head over every training class, each descendant "
                                      "inherits its task's rows and the merge moves them: round eight)",
                            choices=("random", "prototypes", "pool"))


@dataclass
class FitnessConfig:
    episodes: int = _field(40, "validation episodes scored per individual", min=1)
    n_way: int = _field(5, "classes per episode", min=2)
    k_shot: int = _field(5, "support images per class", min=1)
    n_query: int = _field(15, "query images per class", min=1)
    score: str = _field("descendant", "what is scored: the whole trained descendant, its learngene sub-network "
                                      "alone (other channels zeroed), or the mean of both",
                        choices=("descendant", "learngene", "mix"))
    classifier: str = _field("prototype", "how episodes are scored", choices=("prototype", "finetune"))
    metric: str = _field("cosine", "prototype distance", choices=("cosine", "euclidean"))
    finetune_steps: int = _field(50, "head fine-tuning steps per episode (classifier: finetune)", min=1)
    inheritance: str = _field("lamarckian", "where a descendant's learngene comes from: its parent's trained "
                                            "weights (lamarckian), its parent's untrained ones (darwinian), "
                                            "or the shared gene pool every descendant trains (pool; see pool.*)",
                              choices=("lamarckian", "darwinian", "pool"))
    retries: int = _field(1, "times an evaluation that failed by bad luck (NaN/inf loss, out of memory) is "
                             "retried before it gets the worst fitness; other failures stop the run", min=0)
    rescore_episodes: int = _field(100, "fresh validation episodes the product is scored on again after the "
                                        "run, free of the selection's bias (0: off)", min=0)
    speed_points: int = _field(0, "validation scores taken at evenly spaced points of the descendant's task, the "
                                  "last at its end; fitness is their mean (the area under its learning curve: "
                                  "learngenes that let descendants learn fast score higher); 0: the end only",
                               min=0)
    common_draws: bool = _field(False, "every individual of a generation trains its descendant on the same task "
                                       "from the same initialisation and batches (common random numbers): "
                                       "fitness differences within a generation come from the masks alone")
    population_batch: int = _field(1, "descendants a worker trains at once as one grouped network "
                                      "(1: one by one)", min=1)
    complement_scale: float = _field(1.0, "scale of a descendant's fresh channels in the layers its learngene is "
                                          "written into (BatchNorm scale and shift): 1 fresh as in GTL, below 1 "
                                          "quieter, 0 silent (behind a ReLU they stay so: the descendant is the "
                                          "learngene's sub-network)", min=0.0, max=1.0)
    fresh_channels: str = _field("scaled", "how a descendant's fresh channels start: scaled (by complement_scale), "
                                           "or grow (random filters, identity BatchNorm, read by the next layers "
                                           "with zero weights: the descendant computes its learngene sub-network "
                                           "at step 0 and its fresh channels learn from the first step)",
                                 choices=FRESH_RULES)


@dataclass
class EAConfig:
    population_size: int = _field(8, "individuals per generation", min=2)
    generations: int = _field(6, "generations after generation 0", min=0)
    selection: str = _field("parsimony", "parent selection: the parsimony tournament on accuracy, NSGA-II on "
                                         "(accuracy, fraction): parents and offspring compete to survive, a "
                                         "crowded tournament picks parents, or random (no selection: parents "
                                         "drawn at random, the ablation that shows what selection adds)",
                            choices=("parsimony", "nsga2", "random"))
    tournsize: int = _field(3, "individuals per tournament", min=1)
    elites: int = _field(1, "best individuals copied unchanged into the next generation", min=0)
    parsimony_tolerance: float = _field(0.01, "accuracy gap within which the smaller learngene wins", min=0.0, max=1.0)
    init_fraction: float = _field(1.0, "fraction of channels in generation 0 (1.0 = whole network)", gt=0.0, max=1.0)
    target_fraction: float = _field(0.25, "learngene fraction the shrink schedule drives toward", gt=0.0, max=1.0)
    schedule: str = _field("geometric", "how the fraction moves toward the target",
                           choices=("geometric", "linear", "none"))
    schedule_generations: int = _field(4, "generations over which the schedule reaches the target", min=1)
    criterion: str = _field("l1", "which channels shrink drops first: the smallest filters (l1), BatchNorm "
                                  "scales (bn), random ones, or the lowest learngene scores (score; needs "
                                  "fitness.inheritance pool)", choices=("l1", "bn", "random", "score"))
    min_channels: int = _field(2, "channels every mask group keeps at least", min=1)
    mutpb: float = _field(1.0, "probability that an offspring is mutated", min=0.0, max=1.0)
    cxpb: float = _field(0.0, "probability of channel crossover (off by default)", min=0.0, max=1.0)
    grow_fraction: float = _field(0.02, "fraction of dropped channels re-added by a mutation", min=0.0, max=1.0)
    flip_prob: float = _field(0.0, "per-channel probability of flipping a mask bit", min=0.0, max=1.0)
    patience: int = _field(3, "generations without improvement, at the target, before stopping", min=1)
    shrink_temperature: float = _field(0.0, "randomness of which channels shrink and swap drop: 0 always the "
                                            "least important (by ea.criterion); T > 0 keeps channels drawn "
                                            "in proportion to importance ** (1/T) (Gumbel top-k), so offspring of "
                                            "one parent differ", min=0.0)
    swap_fraction: float = _field(0.0, "share of each group's kept channels a mutation exchanges for dropped "
                                       "ones at the same size (rounded at random, so small groups swap too): "
                                       "how learngenes at the target fraction keep exploring", min=0.0, max=1.0)
    scheduled_parents: bool = _field(False, "elites and tournament entrants are the individuals at or below the "
                                            "previous generation's scheduled fraction (when any): a bigger network "
                                            "cannot win every tournament it enters and breed clones")


@dataclass
class PoolConfig:
    """The shared gene pool (``fitness.inheritance: pool``; see :mod:`learngene_ea.ea.gene_pool`)."""

    step: float = _field(1.0, "how far each pool weight moves toward the mean of the descendants that trained "
                              "it (1.0: to their mean; Reptile's outer step)", gt=0.0, max=4.0)
    score_decay: float = _field(0.6, "how much of a channel's learngene score survives each generation", min=0.0,
                                max=1.0)
    warm_start_fraction: float = _field(0.0, "before generation 0, train one whole network on the training "
                                             "classes for this share of the evolution's planned images and "
                                             "start the pool from it (counted in the equal-compute budget)",
                                        min=0.0, max=16.0)
    warm_start_subnets: float = _field(0.0, "share of the warm start's steps that train a random sub-network "
                                            "(each channel kept with probability sqrt(ea.target_fraction)) instead "
                                            "of the whole network, so that channels work without the others",
                                       min=0.0, max=1.0)


@dataclass
class OperatorSpec:
    function: str = _field("", "'package.module:function'")
    kwargs: dict = _field({}, "keyword arguments bound to the function")


@dataclass
class OperatorsConfig:
    select: OperatorSpec | None = _field(None, "selection operator (default: parsimony tournament)")
    mutate: OperatorSpec | None = _field(None, "mutation operator (default: learngene mutation)")
    mate: OperatorSpec | None = _field(None, "crossover operator (default: channel crossover)")
    evaluate: OperatorSpec | None = _field(None, "fitness function (default: learngene_ea.ea.fitness:evaluate)")


@dataclass
class TransferConfig:
    """Downstream evaluation on test classes (``python -m learngene_ea.transfer``)."""

    after_run: bool = _field(False, "evaluate the learngene on test classes at the end of the run")
    seed: int = _field(0, "seed of the test episodes and of every descendant's initialisation", min=0,
                       max=MAX_SEED)
    episodes: int = _field(20, "test episodes per setting (the standard is 600, on a GPU)", min=1)
    n_way: int = _field(5, "classes per episode", min=2)
    shots: list = _field([1, 5], "support images per class, one setting each")
    limited_data: int = _field(20, "images per class of the limited-data setting (0: off)", min=0)
    n_query: int = _field(15, "query images per class", min=1)
    steps: int = _field(60, "fine-tuning steps on the support set", min=0)
    lr: float = _field(0.01, "fine-tuning learning rate", gt=0.0)
    optimizer: str = _field("sgd", "fine-tuning optimiser (sgd: momentum 0.9; adam)", choices=("sgd", "adam"))
    weight_decay: float = _field(5e-4, "fine-tuning weight decay", min=0.0)
    batch_size: int = _field(128, "support images per fine-tuning step (the whole support set when smaller)",
                             min=1)
    augment: bool | None = _field(None, "random crop + horizontal flip of support images while fine-tuning "
                                        "(default: the data.augment of the data fine-tuned on)")
    pretrain_images: int = _field(0, "training images the pre-trained baseline learns from; 0: as many as all "
                                     "the evolution's descendants together (equal compute, recorded in "
                                     "learngene.pt)", min=0)
    pretrain_epochs: int = _field(3, "epochs of the pre-trained baseline for a learngene that does not record "
                                     "its compute (and pretrain_images 0)", min=1)
    descendants: list = _field([], "extra descendants for scalability rows, e.g. ['conv4@2.0', 'vgg11']")
    classes: str = _field("test", "the split the episodes come from: test (the report), or val (validation "
                                  "classes: choosing between recipes without looking at the test classes)",
                          choices=("test", "val"))
    target: DataConfig | None = _field(None, "the data the test episodes come from, with the keys of data "
                                             "(every class a test class unless its split names test); null: "
                                             "the test split of data")
    pretrain_on: str = _field("source", "what the pre-trained baseline trains on: the source (the data the "
                                        "learngene was evolved on) or the target's classes",
                              choices=("source", "target"))
    cache_dir: str | None = _field(None, "folder of the cached pre-trained networks (default: the output folder)")
    complement_scale: float = _field(1.0, "scale of every descendant's fresh channels in the layers a learngene "
                                          "(or pre-trained channels like it) is written into: 1 fresh as in GTL, "
                                          "0 silent (see fitness.complement_scale)", min=0.0, max=1.0)
    fresh_channels: str = _field("scaled", "how every descendant's fresh channels start beside a learngene (or "
                                           "pre-trained channels like it): scaled (by complement_scale) or grow "
                                           "(see fitness.fresh_channels)", choices=FRESH_RULES)


@dataclass
class RuntimeConfig:
    device: str = _field("auto", "'auto' (GPU when present), 'cpu', 'cuda' or 'cuda:N'")
    threads: int = _field(0, "torch threads per worker (0: cores / workers)", min=0)
    channels_last: bool = _field(False, "keep images and conv weights channels-last (NHWC): 1.2-1.5x faster "
                                        "CPU training in `python -m bench --only channels_last`; float "
                                        "results differ from the default layout in the last bits")
    deterministic: bool = _field(True, "GPU results repeat run after run: cuDNN deterministic, no cuDNN "
                                       "benchmarking, torch's deterministic algorithms where it has them "
                                       "(warning where not), CUBLAS_WORKSPACE_CONFIG=:4096:8; false: faster "
                                       "kernels whose sums may differ from run to run (no effect on a CPU)")
    tf32: bool = _field(False, "let CUDA matrix products and cuDNN convolutions use TF32 (10-bit mantissa "
                               "inputs on tensor cores): faster on Ampere and later, results differ from "
                               "FP32 in the third digit (no effect on a CPU)")
    precision: str = _field("fp32", "what networks train in: fp32, or bf16 (the forward pass under bf16 "
                                    "autocast on CUDA or the CPU, loss and weights in fp32; accuracies within "
                                    "0.01 of fp32's, 1.4-2x faster on a CPU with AVX-512 BF16, slower on one "
                                    "without: docs/measurements.md)", choices=("fp32", "bf16"))
    keep_freed_memory: bool = _field(True, "keep freed host memory for reuse (glibc malloc) instead of page-"
                                          "faulting every step's tensors in again: 1.13-1.20x faster CPU "
                                          "training in `python -m bench --only host_memory`; a process "
                                          "keeps its peak heap")
    tensorboard: bool = _field(False, "write TensorBoard logs under runs/<run>/tb/ (pip install "
                                      "'learngene-ea[tensorboard]')")
    stall_timeout: float = _field(1800.0, "seconds without any finished evaluation before the run "
                                          "stops as 'a worker died' (SCOOP) or 'no Ray worker answers'", gt=0.0)
    backend: str = _field("auto", "what spreads the evaluations: auto (SCOOP when launched under "
                                  "`python -m scoop`, else one process), scoop, ray or serial",
                          choices=BACKENDS)
    ray_address: str | None = _field(None, "backend ray: null starts a local Ray on this machine; 'auto' joins "
                                           "the cluster `ray start` made here; 'host:port' joins that head node")
    gpus_per_evaluation: float = _field(0.0, "backend ray: GPUs one evaluation reserves (Ray's num_gpus; 0.25: "
                                             "four descendants share a GPU; 0: CPU only)", min=0.0)
    ray_max_retries: int = _field(3, "backend ray: times Ray reruns an evaluation whose worker process or "
                                     "node died (seeded, so the result is the same)", min=0)
    keep_checkpoints: int = _field(0, "checkpoints/gen_NNNN.pkl files kept: 0 keeps every generation; K keeps the "
                                      "newest K (plus latest.pkl and start.pkl), deleting older ones once a new "
                                      "checkpoint is written", min=0)


@dataclass
class Config:
    name: str | None = _field(None, "run name (run directory runs/<name>-<timestamp>); unset: "
                                    "runs/<recipe>-<dataset>-<timestamp>")
    seed: int = _field(0, "seed of everything random in the run", min=0, max=MAX_SEED)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    ea: EAConfig = field(default_factory=EAConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    operators: OperatorsConfig = field(default_factory=OperatorsConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
