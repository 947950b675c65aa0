"""Every verb's parameters, in one light module: the single source of truth for their defaults.

Each verb's frozen dataclass holds its fields with their types and defaults; each field carries its
help text and its public name (see :func:`opt`), the one name used by the command line (``--`` + name
with ``_`` as ``-``) and by pipeline files (the key). :mod:`tomoflow.options` makes command-line
options and pipeline-schema entries from these classes, so a default is written once, here.

Standard library only at import: the command line imports this module to build its parser, and
``tomoflow info`` must start fast. Methods that need numpy or the simulator import them when called.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

DEFAULT_VOXEL = 9.2  # Å (0.92 nm, seed 000); as tomoflow.simulate.density
DEFAULT_RESOLUTION = 9.2  # Å
EMPTY = "empty"  # name of the noise-only class of simulated datasets
MAX_TASK_BYTES = 4 << 30  # what one task may allocate for its data (a chunk of boxes, a set of templates)


def opt(default: Any = MISSING, *, help: str, name: str | None = None, choices=None, factory=None,
        xyz: bool = False, aliases: tuple[str, ...] = (), short: str | None = None, metavar=None,
        gt=None, ge=None, lt=None, le=None, finite: bool = False):
    """A dataclass field with the metadata :mod:`tomoflow.options` reads.

    ``name``: the public name (default: the field's name); ``choices``: the values allowed; ``factory``:
    a default factory instead of ``default``; ``xyz``: a (z, y, x) tuple that users give as X Y Z (reversed
    on the way in and out); ``aliases``: other public names accepted (kept for existing command lines and
    pipeline files); ``short``: a short command-line flag such as ``-k``; ``metavar``: command-line
    placeholder(s); ``gt``, ``ge``, ``lt``, ``le``, ``finite``: bounds every value (each element of a tuple)
    must meet, checked when the instance is made (:class:`Checked`)."""
    metadata = {"help": help, "name": name, "choices": None if choices is None else tuple(choices), "xyz": xyz,
                "aliases": tuple(aliases), "short": short, "metavar": metavar,
                "bounds": {k: v for k, v in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if v is not None},
                "finite": finite}
    if factory is not None:
        if default is not MISSING:
            raise TypeError("give a default or a factory, not both")
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class ParamError(ValueError):
    """A parameter value out of its bounds: ``name`` is the public name (CLI flag / pipeline key)."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = name, problem
        super().__init__(f"'{name}' {problem}")


_OPS = {"gt": (lambda v, b: v > b, ">"), "ge": (lambda v, b: v >= b, ">="), "lt": (lambda v, b: v < b, "<"),
        "le": (lambda v, b: v <= b, "<=")}


class Checked:
    """Checks every field's bounds (``opt(gt=..., ...)``) when a Params instance is made: values are validated
    once, at the edge, before anything is written. Subclasses with their own ``__post_init__`` call
    ``Checked.__post_init__(self)`` first."""

    def __post_init__(self):
        import math

        for f in fields(self):
            md = f.metadata
            bounds, finite = md.get("bounds") or {}, md.get("finite", False)
            value = getattr(self, f.name)
            if value is None or not (bounds or finite):
                continue
            for v in (value if isinstance(value, tuple) else (value,)):
                name = md.get("name") or f.name
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                if finite and not math.isfinite(v):
                    raise ParamError(name, f"must be a finite number, got {v}")
                if isinstance(v, float) and math.isnan(v):
                    raise ParamError(name, "must be a number, got nan")
                for op, bound in bounds.items():
                    ok, sign = _OPS[op]
                    if not ok(v, bound):
                        raise ParamError(name, f"must be {sign} {bound:g}, got {v:g}")


# ---- microscope ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Microscope(Checked):
    voltage_kv: float = opt(300.0, name="voltage", gt=0, finite=True, help="acceleration voltage, kV")
    cs_mm: float = opt(2.0, name="cs", ge=0, finite=True, help="spherical aberration, mm")
    defocus_um: float = opt(-5.0, name="defocus", finite=True, help="defocus, um; negative = underfocus")
    amplitude_contrast: float = opt(0.07, ge=0, le=1, help="amplitude contrast")
    mtf: bool = opt(True, help="apply the detector MTF sinc(pi w / 2)")

    def as_dict(self) -> dict:
        return asdict(self)

    # read-only mapping access, so code written for the former ``microscope: dict`` of the simulation specs
    # (``Microscope(**spec.microscope)``, ``spec.microscope["cs_mm"]``) keeps working
    def keys(self):
        return self.as_dict().keys()

    def __getitem__(self, key: str):
        return self.as_dict()[key]


def _microscope(value) -> Microscope:
    if isinstance(value, Microscope):
        return value
    if isinstance(value, dict):
        try:
            return Microscope(**value)
        except TypeError as exc:
            raise ValueError(f"bad microscope {value!r}: {exc}") from None
    raise ValueError(f"microscope must be a Microscope or a dict, not {type(value).__name__}")


# ---- simulation -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec(Checked):
    classes: tuple[str, ...] = opt(("6zu5", "4v8r", "5cvz", "6wg6"), name="structures", metavar="NAME",
                                   help="embedded structure names or PDB/mmCIF files")
    per_class: int = opt(100, ge=1, help="subtomograms per class, SNR and tilt range")
    snrs: tuple[float, ...] = opt((0.1,), name="snr", help="target SNRs (inf: no noise)")
    tilt_ranges: tuple[float, ...] = opt((60.0,), name="tilt_range",  # symmetric: +-60 degrees
                                         help="half tilt ranges, degrees")
    include_empty: bool = opt(True, name="empty", help="add the empty (noise-only) class")
    box: int = opt(40, ge=8, le=256, help="box edge, voxels")
    voxel_size: float = opt(DEFAULT_VOXEL, gt=0, finite=True, help="Å per voxel")
    resolution: float = opt(DEFAULT_RESOLUTION, gt=0, finite=True, help="density map resolution, Å")
    tilt_step: float = opt(2.0, gt=0, le=90, help="degrees between tilts")
    tilt_axis: float = opt(0.0, finite=True, help="tilt axis, degrees from y in the x-y plane")
    max_shift: float = opt(4.0, ge=0, finite=True, help="random shift radius, voxels")  # shift drawn uniformly in a ball of this radius
    method: str = opt("fourier", choices=("fourier", "wbp"),
                      help="reconstruction: direct Fourier inversion or weighted back-projection")
    microscope: Microscope = opt(factory=Microscope, help="the simulated microscope")
    seed: int = opt(0, help="random seed")

    def __post_init__(self):
        object.__setattr__(self, "microscope", _microscope(self.microscope))
        Checked.__post_init__(self)
        if not self.classes:
            raise ValueError("a dataset needs at least one structure")
        if self.per_class < 1 or self.box < 8:
            raise ValueError("per_class must be >= 1 and box >= 8")
        if any(not s > 0 for s in self.snrs):
            raise ValueError(f"SNRs must be > 0 (use inf for noise-free), got {self.snrs}")
        if any(not 0 < t <= 90 for t in self.tilt_ranges):
            raise ValueError(f"tilt ranges are half-ranges in (0, 90] degrees, got {self.tilt_ranges}")

    @property
    def class_names(self) -> list[str]:
        return list(self.classes) + ([EMPTY] if self.include_empty else [])

    @property
    def n(self) -> int:
        return len(self.snrs) * len(self.tilt_ranges) * len(self.class_names) * self.per_class

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DatasetSpec":
        d = json.loads(text)
        for k in ("classes", "snrs", "tilt_ranges"):
            d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class CrowdedSpec(Checked):
    classes: tuple[str, ...] = opt(("6zu5", "4v8r", "5cvz", "6wg6", "3o21"), name="structures", aliases=("classes",),
                                   metavar="NAME", help="embedded structure names or PDB/mmCIF files")
    shape: tuple[int, int, int] = opt((100, 256, 256), xyz=True,  # z, y, x voxels
                                      ge=2, le=4096, help="tomogram size in voxels, X Y Z")
    n_particles: int = opt(100, name="particles", ge=1, help="particles to place (fewer if they do not fit)")
    snr: float = opt(0.1, gt=0, help="target SNR of an average particle in a box (inf: no noise)")
    tilt_range: float = opt(60.0, gt=0, le=90, help="half tilt range, degrees")
    tilt_step: float = opt(2.0, gt=0, le=90, help="degrees between tilts")
    box: int = opt(40, ge=8, le=256, help="box edge, voxels, of the particles' maps and of the SNR")
    voxel_size: float = opt(DEFAULT_VOXEL, gt=0, finite=True, help="Å per voxel")
    resolution: float = opt(DEFAULT_RESOLUTION, gt=0, finite=True, help="density map resolution, Å")
    microscope: Microscope = opt(factory=Microscope, help="the simulated microscope")
    seed: int = opt(0, help="random seed")

    def __post_init__(self):
        object.__setattr__(self, "microscope", _microscope(self.microscope))
        Checked.__post_init__(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CrowdedSpec":
        d = json.loads(text)
        d["classes"], d["shape"] = tuple(d["classes"]), tuple(d["shape"])
        return cls(**d)


# ---- tomograms: import, filter, pick, extract, evaluate ---------------------------------------------------
@dataclass(frozen=True)
class ImportParams(Checked):
    name: str | None = opt(None, help="tomogram name (default: file name without extension)")
    voxel_size: float | None = opt(None, gt=0, finite=True, help="Å per voxel (default: from the MRC header or "
                                                                  "the OME-Zarr scale)")
    chunk: int = opt(128, ge=8, le=1024, help="chunk edge, voxels")
    levels: int = opt(3, ge=1, le=8, help="pyramid levels: full, 2x, 4x, ...")
    tilt_range: tuple[float, float] | None = opt(None, metavar=("MIN", "MAX"),
                                                 ge=-90, le=90, help="tilt range, degrees (default: unknown)")
    tilt_axis: float = opt(0.0, finite=True, help="tilt axis, degrees from y in the x-y plane")
    # what RELION needs to place particles in a binned tomogram (rlnTomoTiltSeriesPixelSize, rlnTomoTomogramBinning)
    tilt_series_pixel_size: float | None = opt(None, gt=0, finite=True,
                                               help="Å per pixel of the tilt series the tomogram was reconstructed "
                                                    "from (default: unknown; RELION export then assumes binning 1)")
    binning: float | None = opt(None, gt=0, finite=True, help="binning of the tomogram relative to that tilt series "
                                                              "(default: voxel size / tilt-series pixel size)")

    def relion_attrs(self) -> dict:
        """The tomogram attributes a RELION export reads (only what was given)."""
        out = {}
        if self.tilt_series_pixel_size is not None:
            out["tilt_series_pixel_size"] = self.tilt_series_pixel_size
        if self.binning is not None:
            out["binning"] = self.binning
        return out

    def __post_init__(self):
        Checked.__post_init__(self)
        if self.tilt_range is not None and not self.tilt_range[0] < self.tilt_range[1]:
            raise ParamError("tilt_range", f"must be MIN < MAX, got {self.tilt_range[0]:g} {self.tilt_range[1]:g}")


FILTER_KINDS = ("gaussian", "dog", "diffusion")


@dataclass(frozen=True)
class FilterParams(Checked):
    kind: str = opt("gaussian", name="filter", choices=FILTER_KINDS, help="the filter")
    sigma: float = opt(2.0, gt=0, finite=True, help="Gaussian / DoG sigma, voxels")
    k: float = opt(1.1, gt=1, finite=True, help="DoG ratio K")
    iterations: int = opt(10, ge=0, le=1000, help="diffusion iterations")
    kappa: float = opt(1.0, gt=0, finite=True, help="diffusion edge threshold")
    gamma: float = opt(0.1, gt=0, le=0.25, help="diffusion step, <= 1/6")
    option: int = opt(1, choices=(1, 2), help="diffusion conduction function: 1 exp(-(d/kappa)^2), "
                                              "2 1/(1+(d/kappa)^2)")
    level: int = opt(0, ge=0, le=8, help="pyramid level of the input")

    def __post_init__(self):
        Checked.__post_init__(self)
        if self.kind not in FILTER_KINDS:
            raise ValueError(f"filter is one of {', '.join(FILTER_KINDS)}, not {self.kind!r}")
        if self.option not in (1, 2):
            raise ValueError(f"option is 1 or 2, not {self.option!r}")

    def kernel_params(self) -> dict:
        """The keyword arguments of the filter kernel (``tomoflow.kernels.filters``) for :attr:`kind`."""
        return {"gaussian": {"sigma": self.sigma}, "dog": {"sigma": self.sigma, "k": self.k},
                "diffusion": {"iterations": self.iterations, "kappa": self.kappa, "gamma": self.gamma,
                              "option": self.option}}[self.kind]


@dataclass(frozen=True)
class DogParams(Checked):
    sigma_A: float = opt(70.0, name="sigma", finite=True, help="DoG sigma, Å")  # seed 000: 7 nm
    k: float = opt(1.1, help="DoG ratio K")
    # "dark" (particles darker than background, as after the CTF) or "bright"
    polarity: str = opt("dark", choices=("dark", "bright", "auto"),
                        help="particles darker (as after the CTF) or brighter than the background; auto: the "
                             "tomogram's recorded contrast (import_tomograms), else its values' skewness")
    threshold: float = opt(2.5, finite=True, help="standard deviations of the response above its mean")
    min_distance_A: float = opt(100.0, name="min_distance", finite=True, help="Å between picks")
    level: int = opt(1, ge=0, le=8, help="pyramid level to pick on (1: 2x binned)")

    def __post_init__(self):
        Checked.__post_init__(self)
        if self.polarity not in ("dark", "bright", "auto"):
            raise ValueError(f"polarity is 'dark', 'bright' or 'auto', not {self.polarity!r}")
        if not (self.sigma_A > 0 and self.k > 1 and self.min_distance_A > 0):
            raise ValueError("sigma and min distance must be > 0 and K > 1")


@dataclass(frozen=True)
class MatchParams(Checked):
    angular_step: float = opt(30.0, ge=3, le=180, help="degrees between rotations (30: 551 rotations)")
    threshold: float = opt(5.0, finite=True, help="standard deviations of the score map above its mean")
    # default: 0.7 x the template's mask radius (one particle, one pick)
    min_distance_A: float | None = opt(None, name="min_distance",
                                       gt=0, finite=True, help="Å between picks (default: 0.7 x the template radius)")
    level: int = opt(1, ge=0, le=8, help="pyramid level to pick on (1: 2x binned)")


# saliency detection (seed 002, section 3.2.3): tomoflow.kernels.saliency
@dataclass(frozen=True)
class SaliencyParams(Checked):
    spacing: int = opt(4, ge=2, le=64, help="super-voxel seed grid step, voxels at the level")
    compactness: float = opt(1.0, gt=0, finite=True, help="SLIC weight of spatial against intensity distance")
    iterations: int = opt(5, ge=1, le=50, help="SLIC iterations")
    smooth: float = opt(1.0, ge=0, finite=True, help="Gaussian sigma before SLIC, voxels (0: none)")
    scales: tuple[float, ...] = opt((1.0, 2.0, 4.0), gt=0, finite=True, metavar="SIGMA",
                                    help="feature scales (DoG and gradient), voxels")
    # lam = sparsity / sqrt(super-voxels): larger, fewer super-voxels salient
    sparsity: float = opt(1.0, gt=0, finite=True, help="Robust PCA sparsity weight (x 1/sqrt(super-voxels))")


@dataclass(frozen=True)
class SaliencyPickParams(Checked):
    saliency: SaliencyParams = opt(factory=SaliencyParams, help="super-voxels, features and Robust PCA")
    threshold: float = opt(3.0, finite=True, help="standard deviations of the saliency above its mean")
    min_distance_A: float = opt(100.0, name="min_distance", gt=0, finite=True, help="Å between picks")
    level: int = opt(1, ge=0, le=8, help="pyramid level to pick on (1: 2x binned)")


@dataclass(frozen=True)
class SaliencyDenoiseParams(Checked):
    saliency: SaliencyParams = opt(factory=SaliencyParams, help="super-voxels, features and Robust PCA")
    fine: float = opt(0.5, ge=0, finite=True, help="Gaussian sigma where salient, voxels (0: none)")
    coarse: float = opt(2.0, gt=0, finite=True, help="Gaussian sigma where not salient, voxels")
    # weight of the fine smoothing: 1 - exp(-saliency / weight_scale)
    weight_scale: float = opt(4.0, gt=0, finite=True, help="saliency at which 63% of a voxel is lightly smoothed")
    level: int = opt(0, ge=0, le=8, help="pyramid level of the input")


EDGES = ("drop", "pad")


@dataclass(frozen=True)
class ExtractParams(Checked):
    box: int = opt(40, ge=4, le=512, help="box edge, voxels")
    level: int = opt(0, ge=0, le=8, help="pyramid level to cut from")
    edge: str = opt("drop", choices=EDGES, help="particles whose box crosses the tomogram edge: drop, or pad "
                                                "with their mean")
    chunk: int = opt(256, ge=1, le=65536, help="particles per chunk")
    flip_bright: bool = opt(False, help="negate boxes cut from tomograms recorded as bright (density positive), so "
                                        "every subtomogram has the dark contrast of raw data and of the simulator")

    def __post_init__(self):
        Checked.__post_init__(self)
        if self.chunk * self.box**3 * 4 > MAX_TASK_BYTES:  # one task holds a chunk of boxes
            raise ParamError("box", f"{self.box}^3 boxes in chunks of {self.chunk} need "
                                    f"{self.chunk * self.box**3 * 4 / 2**30:.1f} GiB per task (at most "
                                    f"{MAX_TASK_BYTES / 2**30:g}); give a smaller chunk or box")
        if self.edge not in EDGES:
            raise ValueError(f"edge is 'drop' or 'pad', not {self.edge!r}")


@dataclass(frozen=True)
class EvaluateParams(Checked):
    tolerance: float = opt(80.0, gt=0, finite=True, help="Å between a pick and its true particle")


# ---- learning ---------------------------------------------------------------------------------------------
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")  # tomoflow.ml.precision
CONDITIONINGS = ("none", "cdan", "cdan_e")  # tomoflow.ml.domain's discriminator inputs
MODEL_NAMES = ("inception3d", "dsrf3d", "dsrf3d_v2", "rb3d", "cb3d")  # tomoflow.ml.models.MODELS (tested equal)
PRECISION_HELP = ("numeric precision of the CNN: auto (mixed_bfloat16 where the CPU has AMX-BF16 or AVX512-BF16 "
                  "or the GPU supports bf16, else float32), float32, mixed_bfloat16, mixed_float16 (GPU only); "
                  "outputs and features are float32 in every case")


@dataclass(frozen=True)
class TrainParams(Checked):
    model: str = opt("dsrf3d", help="inception3d, dsrf3d, dsrf3d_v2, rb3d or cb3d")
    epochs: int = opt(20, ge=1, help="training epochs")
    batch_size: int = opt(64, ge=1, help="subtomograms per batch")
    learning_rate: float = opt(0.01, gt=0, finite=True, help="learning rate")
    decay: float = opt(1e-6, ge=0, finite=True, help="SGD learning-rate decay")
    momentum: float = opt(0.9, ge=0, lt=1, help="SGD Nesterov momentum")
    train_fraction: float = opt(0.5, gt=0, le=1, help="share of each class in the train split (stratified)")
    seed: int = opt(0, help="random seed")
    # class names left out of training and testing (leave-one-out)
    exclude: tuple[str, ...] = opt((), metavar="CLASS", help="class names left out of training and testing")
    # of the train split, held out to pick the best epoch; 0: keep the last
    validation_fraction: float = opt(0.1, ge=0, lt=1, help="share of the train split held out to pick the epoch kept "
                                               "(0 keeps the last)")
    # random 180-degree turns about z, y or x (they keep the missing wedge in place)
    augment: bool = opt(True, help="random wedge-preserving half turns of the training draws")
    # "sgd": the paper's (Nesterov, decay); "adam": Adam at learning_rate (small sets)
    optimizer: str = opt("sgd", choices=("sgd", "adam"),
                         help="sgd: the paper's (Nesterov momentum, decay); adam: trains small sets "
                              "(try learning rate 1e-3)")
    # with augment: the share of draws given a random rotation in the wedge (augment.py)
    rotate: float = opt(0.0, ge=0, le=1, help="share of training draws turned to a random orientation in their own wedge "
                                  "(0: half turns only)")
    # "auto": the measured rule of tomoflow.ml.precision.resolve_precision; the model records what was used
    precision: str = opt("auto", choices=PRECISIONS, help=PRECISION_HELP)
    # a collapse (training loss back at chance, ln C, after the network had learned, or not finite, or identical
    # logits for every probe particle: a dead network) goes back to the best live epoch's weights, or fresh ones, with
    # half the learning rate; the epochs still count (ml/training.py)
    recover: bool = opt(True, help="after a collapse to chance or a dead network, resume from the best epoch "
                                   "(fresh weights if none learned) at half the learning rate")
    # memory for the training stream's sliding shuffle buffer (ml/training.py stream_batches); 1,000 MB holds a
    # paper-scale set (3,600 at 40^3) whole, whose batches are then as mixed as independent draws
    shuffle_mb: float = opt(1000.0, gt=0, finite=True, help="MB of training subtomograms held to shuffle the draws "
                                                           "(the whole training set when it fits)")


@dataclass(frozen=True)
class FeatureParams(Checked):
    layer: str = opt("logits", help="layer whose output is the feature (logits: the last layer without its "
                                    "softmax)")
    name: str = opt("features", help="per-particle array name")
    batch_size: int = opt(64, ge=1, help="subtomograms per batch")
    precision: str = opt("auto", choices=PRECISIONS, help=PRECISION_HELP)


@dataclass(frozen=True)
class RifParams(Checked):
    lmax: int = opt(10, ge=0, le=50, help="highest spherical-harmonic degree")
    # "fourier": shells of |F| (translation-invariant); "real": shells of the density
    space: str = opt("fourier", choices=("fourier", "real"),
                     help="shells of the Fourier amplitude (translation-invariant) or of the density")
    max_radius: float = opt(0.9, gt=0, le=1, help="outermost shell as a fraction of the box half-width")


@dataclass(frozen=True)
class KMeansParams(Checked):
    k: int = opt(100, short="-k", ge=1, help="clusters")
    max_iter: int = opt(300, ge=1, help="most iterations")
    tol: float = opt(1e-4, ge=0, finite=True, help="tolerance, relative to the mean feature variance")  # as scikit-learn
    init_sample: int = opt(100_000, ge=1, help="rows sampled for k-means++")
    seed: int = opt(0, help="random seed")


# ---- averaging -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlignParams(Checked):
    coarse_step: float = opt(30.0, name="angular_step",  # degrees between coarse rotations (551 at 30)
                             ge=10, le=90, help="coarse rotation grid, degrees")
    fine_step: float = opt(2.0, gt=0, finite=True, help="the local rotation search stops below this step, degrees")
    candidates: int = opt(2, ge=1, le=10, help="distinct coarse candidates refined locally")
    max_shift: float = opt(6.0, ge=0, finite=True, help="largest shift, voxels")  # full size
    # keep |k| < lowpass (cycles/voxel, full size); None: all
    lowpass: float | None = opt(None, gt=0, le=0.5, help="keep frequencies below this, cycles/voxel (default: all)")


@dataclass(frozen=True)
class AverageParams(Checked):
    classes: int = opt(3, ge=1, le=50, help="classes per cluster (1: averaging)")
    iterations: int = opt(5, ge=0, le=100, help="iterations")
    seed: int = opt(0, help="random seed")
    align: AlignParams = opt(factory=AlignParams, help="alignment")
    # reference-free by default: iteration 0 averages every particle unrotated (identity pose, random class)
    from_poses: bool = opt(False, help="start iteration 0 from the table's poses (rot, tilt, psi: from template "
                                       "matching or an imported STAR file) instead of the identity")
    # gold-standard: both half-sets start from iteration 0's average of all members, low-passed here (cycles/voxel),
    # so that the halves share nothing finer and their FSC cannot report a resolution neither half earned
    start_lowpass: float = opt(0.125, gt=0, le=0.5, help="the half-sets' common start is low-passed to this, "
                                                         "cycles/voxel")


# ---- issue 25 (seed 002, 3.3.2 and 3.3.3) ----------------------------------------------------------------------
@dataclass(frozen=True)
class FamlParams(Checked):
    classes: int = opt(1, ge=1, le=20, help="classes (1: averaging)")
    iterations: int = opt(5, ge=0, le=100, help="EM iterations")
    # FAML's short list: the EM sums over these instead of a whole rotation grid
    candidates: int = opt(3, ge=1, le=10, help="candidate poses per particle and class (the fast alignment's best "
                                               "distinct ones)")
    coarse_step: float = opt(30.0, name="angular_step", ge=10, le=90, help="coarse rotation grid, degrees")
    fine_step: float = opt(4.0, gt=0, finite=True, help="each candidate's local search stops below this step, degrees")
    max_shift: float = opt(6.0, ge=0, finite=True, help="largest shift, voxels")
    start_lowpass: float = opt(0.125, gt=0, le=0.5, help="the reference-free start is low-passed to this, "
                                                         "cycles/voxel")
    seed: int = opt(0, help="random seed (the start's random classes)")

    def alignment(self) -> "AlignParams":
        return AlignParams(coarse_step=self.coarse_step, fine_step=self.fine_step, candidates=self.candidates,
                           max_shift=self.max_shift)


@dataclass(frozen=True)
class AutoClassParams(Checked):
    components: int = opt(10, ge=1, le=200, help="principal components of the aligned, imputed particles")
    max_classes: int = opt(8, ge=2, le=50, help="most classes the automatic cut-off may choose")
    min_members: int = opt(3, ge=2, help="a cut that leaves a class smaller than this is not considered")


# ---- issue 24 parts 1-2 (seed 002, 3.4.2 and 3.4.3): autoencoder, semi-supervised autoencoding classifier ---------
@dataclass(frozen=True)
class AutoencoderParams(Checked):
    latent: int = opt(32, ge=2, le=1024, help="length of the latent code")
    epochs: int = opt(20, ge=1, help="training epochs")
    batch_size: int = opt(32, ge=1, help="subtomograms per batch")
    learning_rate: float = opt(1e-3, gt=0, finite=True, help="Adam learning rate")
    # seed 002, 3.4.2: one structure in many orientations must give similar codes for k-means to group them
    pose_norm: bool = opt(True, help="pose-normalise each subtomogram (centre of mass, principal axes) before "
                                     "encoding")
    input_box: int = opt(16, ge=8, le=128, help="pose-normalised subtomograms are Fourier-binned to this box")
    polarity: str = opt("dark", choices=("dark", "bright"), help="particles darker or brighter than the background "
                                                                  "(the pose normalisation's weights)")
    seed: int = opt(0, help="random seed")
    precision: str = opt("auto", choices=PRECISIONS, help=PRECISION_HELP)


@dataclass(frozen=True)
class EncodeParams(Checked):
    name: str = opt("ae_latent", help="per-particle array of the codes")
    batch_size: int = opt(64, ge=1, help="subtomograms per batch")
    precision: str = opt("auto", choices=PRECISIONS, help=PRECISION_HELP)


@dataclass(frozen=True)
class AutoencoderFilterParams(Checked):
    # none of the three given: the size-weighted Otsu split of the cluster scores (tomoflow.ml.autoencoder)
    min_score: float | None = opt(None, ge=0, finite=True, help="keep clusters whose decoded centre scores at least "
                                                                "this (default: automatic split of the scores)")
    top: int = opt(0, ge=0, help="keep the N best-scoring clusters instead (0: not used)")
    keep_clusters: tuple[int, ...] = opt((), name="keep_clusters", metavar="ID", ge=0,
                                         help="keep exactly these cluster ids instead")
    # issue 24: contrast alone keeps crops of particle edges (structured density); a picked particle is centred
    score: str = opt("both", choices=("both", "contrast", "centred"),
                     help="the tests: contrast (a cluster's decoded centre is structured: the automatic split, "
                          "--min-score or --top), centred (a box's density centroid lies near the box centre, "
                          "offset <= --max-offset, or its cluster's median offset does; drops crops of particle "
                          "edges and off-centre boxes), or both: centred particles of structured clusters")
    # 0.3: picks up to a quarter box off give cluster medians up to ~0.26; corner crops of a particle ~0.6
    max_offset: float = opt(0.3, gt=0, le=1, finite=True,
                            help="centred: the largest distance of a density centroid from the box centre, as a "
                                 "fraction of the box edge")
    per_particle: bool = opt(False, help="centred/both: judge each particle by its own offset only (by default a "
                                         "cluster whose median offset passes keeps all its members)")


@dataclass(frozen=True)
class SemiSupervisedParams(Checked):
    labelled_fraction: float = opt(0.1, gt=0, le=1, help="share of each class's train split whose labels are used")
    train_fraction: float = opt(0.5, gt=0, lt=1, help="share of each class in the train split (stratified); the "
                                                      "rest is the test split")
    reconstruction_weight: float = opt(1.0, ge=0, finite=True, help="weight of the decoder's loss (0: the "
                                                                    "classifier alone on the labelled part)")
    model: str = opt("dsrf3d", help="the shared encoder: a registered classifier (inception3d, dsrf3d, dsrf3d_v2, "
                                    "rb3d, cb3d) whose own head classifies and whose features (the input of its "
                                    "logits) the decoder rebuilds from")
    latent: int = opt(32, ge=2, le=1024, help="length of the code (dense on the encoder's features) the decoder "
                                              "rebuilds from")
    augment: bool = opt(True, help="random wedge-preserving half turns of the training draws (and test-time "
                                   "turns in the recorded accuracy_turns)")
    epochs: int = opt(20, ge=1, help="training epochs")
    batch_size: int = opt(32, ge=2, help="training particles per batch (plus half as many labelled ones)")
    learning_rate: float = opt(1e-3, gt=0, finite=True, help="Adam learning rate")
    seed: int = opt(0, help="random seed (split, labelled part, weights)")
    precision: str = opt("auto", choices=PRECISIONS, help=PRECISION_HELP)


# ---- issue 24 parts 3-4 (seed 002, 3.4.4 and 3.4.1): open-set features, adversarial domain adaptation -----------
@dataclass(frozen=True)
class OpenSetParams(Checked):
    # cosface: normalised features and class weights, logits s * (cos - m) for the true class (large margin cosine)
    loss: str = opt("cosface", choices=("cosface", "softmax"),
                    help="cosface: large-margin cosine loss on normalised features; softmax: the plain head (the "
                         "baseline)")
    margin: float = opt(0.35, ge=0, lt=1, help="cosine margin m subtracted from the true class's cosine")
    scale: float = opt(16.0, gt=0, finite=True, help="cosine logits are scaled by s")
    center_weight: float = opt(0.0, ge=0, finite=True, help="weight of the centre loss (squared distance of a "
                                                            "feature to its class centre; 0: none)")
    embedding: int = opt(64, ge=2, le=4096, help="length of the feature vector")
    name: str = opt("openset_features", help="per-particle array of the features")
    model: str = opt("dsrf3d", help="the network below the feature layer: inception3d, dsrf3d, dsrf3d_v2, rb3d, cb3d")
    epochs: int = opt(20, ge=1, help="training epochs")
    batch_size: int = opt(32, ge=1, help="subtomograms per batch")
    optimizer: str = opt("adam", choices=("sgd", "adam"), help="adam (constant rate) or sgd (Nesterov, decay)")
    learning_rate: float = opt(1e-3, gt=0, finite=True, help="learning rate")
    decay: float = opt(1e-6, ge=0, finite=True, help="SGD learning-rate decay")
    momentum: float = opt(0.9, ge=0, lt=1, help="SGD Nesterov momentum")
    train_fraction: float = opt(0.5, gt=0, le=1, help="share of each class in the train split (stratified)")
    validation_fraction: float = opt(0.1, ge=0, lt=1, help="share of the train split held out to pick the epoch "
                                                           "kept (0 keeps the last)")
    exclude: tuple[str, ...] = opt((), metavar="CLASS", help="class names left out of training (the unseen classes)")
    augment: bool = opt(True, help="random wedge-preserving half turns of the training draws")
    seed: int = opt(0, help="random seed")
    precision: str = opt("auto", choices=PRECISIONS, help=PRECISION_HELP)


@dataclass(frozen=True)
class DomainParams(Checked):
    model: str = opt("dsrf3d", help="inception3d, dsrf3d, dsrf3d_v2, rb3d or cb3d")
    epochs: int = opt(20, ge=1, help="epochs of supervised training on the source (stage 1)")
    adapt_epochs: int = opt(20, ge=1, help="epochs of adversarial adaptation (stage 2)")
    domain_weight: float = opt(1.0, ge=0, finite=True, help="largest weight of the reversed domain gradient (0: no "
                                                            "adaptation, the class loss only)")
    information_weight: float = opt(1.0, ge=0, finite=True, help="weight of the target's information maximisation "
                                    "(mean prediction entropy minus entropy of the mean prediction; 0: off)")
    discriminator_width: int = opt(128, ge=2, le=4096, help="units of the discriminator's two hidden layers")
    batch_size: int = opt(32, ge=2, help="subtomograms per batch (stage 2: half source, half target)")
    optimizer: str = opt("adam", choices=("sgd", "adam"), help="adam (constant rate) or sgd (Nesterov, decay)")
    learning_rate: float = opt(1e-3, gt=0, finite=True, help="learning rate of stage 1")
    adapt_learning_rate: float = opt(1e-4, gt=0, finite=True, help="learning rate of stage 2")
    decay: float = opt(1e-6, ge=0, finite=True, help="SGD learning-rate decay")
    momentum: float = opt(0.9, ge=0, lt=1, help="SGD Nesterov momentum")
    train_fraction: float = opt(0.5, gt=0, le=1, help="share of each source class in the train split (stratified)")
    validation_fraction: float = opt(0.1, ge=0, lt=1, help="share of the source train split held out to pick "
                                                           "stage 1's epoch")
    augment: bool = opt(True, help="random wedge-preserving half turns of the training draws")
    name: str = opt("domain", help="per-particle arrays of the target: <name> (logits), <name>_class, ...")
    seed: int = opt(0, help="random seed")
    precision: str = opt("auto", choices=PRECISIONS, help=PRECISION_HELP)
    conditioning: str = opt("none", choices=CONDITIONINGS,
                            help="what the domain discriminator sees: none (the features: marginal alignment), cdan "
                                 "(features x class probabilities, Long et al. 2018) or cdan_e (cdan, each row's "
                                 "domain loss weighted by 1 + exp(-entropy))")

    def source_training(self) -> "TrainParams":
        """Stage 1's settings, as a supervised training."""
        return TrainParams(model=self.model, epochs=self.epochs, batch_size=self.batch_size,
                           learning_rate=self.learning_rate, decay=self.decay, momentum=self.momentum,
                           train_fraction=self.train_fraction, seed=self.seed,
                           validation_fraction=self.validation_fraction, augment=self.augment,
                           optimizer=self.optimizer, precision=self.precision)

    def adapt_training(self) -> "TrainParams":
        """Stage 2's optimizer settings."""
        from dataclasses import replace

        return replace(self.source_training(), learning_rate=self.adapt_learning_rate)


ALL_PARAMS = (Microscope, DatasetSpec, CrowdedSpec, ImportParams, FilterParams, DogParams, MatchParams,
              ExtractParams, EvaluateParams, TrainParams, FeatureParams, RifParams, KMeansParams, AlignParams,
              AverageParams, SaliencyParams, SaliencyPickParams, SaliencyDenoiseParams, FamlParams, AutoClassParams,
              AutoencoderParams, EncodeParams, AutoencoderFilterParams, SemiSupervisedParams)
ALL_PARAMS = ALL_PARAMS + (OpenSetParams, DomainParams)  # issue 24 parts 3-4
# The seed paper's experiments keep their Params beside them (tomoflow.experiments: GridParams,
# LeaveOneOutParams), written with opt() too; the library never imports them.
