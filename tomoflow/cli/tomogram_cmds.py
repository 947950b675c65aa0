"""``tomoflow filter``, ``tomoflow denoise`` and ``tomoflow estimate wedge|snr``: work on tomograms (and estimates from data)."""

from __future__ import annotations

from ..params import FilterParams, SaliencyDenoiseParams
from .common import add_cluster_args, add_params, params, store_and_cluster


def cmd_filter(a) -> int:
    from ..ops.filter import filter_tomogram

    p = params(FilterParams, a, filter=a.filter)
    with store_and_cluster(a, tomograms=[a.tomogram]) as (store, client):
        run = filter_tomogram(store, a.tomogram, a.out, p.kind, p.kernel_params(), level=p.level, client=client,
                              overwrite=a.overwrite)
    print(f"tomogram '{a.out}' = {p.kind} {p.kernel_params()} of '{a.tomogram}' level {p.level}: {run.computed} "
          f"blocks computed, {run.skipped} already done")
    return 0


def cmd_denoise(a) -> int:
    from ..ops.saliency import denoise_saliency

    p = params(SaliencyDenoiseParams, a)
    with store_and_cluster(a, tomograms=[a.tomogram]) as (store, client):
        run = denoise_saliency(store, a.tomogram, a.out, p, client=client, overwrite=a.overwrite)
    print(f"tomogram '{a.out}' = saliency-weighted smoothing of '{a.tomogram}' level {p.level}: {run.computed} "
          f"blocks computed, {run.skipped} already done")
    return 0


def cmd_estimate_wedge(a) -> int:
    from ..ops.estimate import estimate_wedge

    with store_and_cluster(a, mode="r", cluster=False) as (store, _):
        r = estimate_wedge(store, tomogram=a.tomogram, set_name=a.set, level=a.level, max_particles=a.max_particles)
    print(f"estimated tilt range of {r['from']}: {r['tilt_min']:+.0f} to {r['tilt_max']:+.0f} degrees (tilt axis y)")
    return 0


def cmd_estimate_snr(a) -> int:
    from ..ops.estimate import estimate_snr

    with store_and_cluster(a, mode="r", sets=[a.set], cluster=False) as (store, _):
        r = estimate_snr(store, a.set, cls=a.cls, pairs=a.pairs, seed=a.seed)
    print(f"SNR {r['snr']:.3g} (median {r['median']:.3g}) from {r['pairs']} pairs of {r['particles']} aligned "
          "subtomograms")
    return 0


def add_parsers(sub) -> None:
    f = sub.add_parser("filter", help="filter a tomogram into a new one (Gaussian, DoG, anisotropic diffusion)")
    f.add_argument("store")
    f.add_argument("tomogram")
    f.add_argument("filter", choices=["gaussian", "dog", "diffusion"])
    f.add_argument("--out", required=True, help="name of the filtered tomogram")
    add_params(f, FilterParams, exclude=("filter",))
    f.add_argument("--overwrite", action="store_true")
    add_cluster_args(f)
    f.set_defaults(func=cmd_filter)

    # its own verb, not a filter kind: unlike the filters it is not exact under blocking (one RPCA per block)
    d = sub.add_parser("denoise", help="denoise a tomogram into a new one by saliency-weighted smoothing (seed 002, "
                                       "section 3.2.3)")
    d.add_argument("store")
    d.add_argument("tomogram")
    d.add_argument("--out", required=True, help="name of the denoised tomogram")
    add_params(d, SaliencyDenoiseParams)
    d.add_argument("--overwrite", action="store_true")
    add_cluster_args(d)
    d.set_defaults(func=cmd_denoise)

    est = sub.add_parser("estimate", help="estimate the SNR or the missing wedge from data")
    esub = est.add_subparsers(dest="what", required=True, metavar="WHAT")
    w = esub.add_parser("wedge", help="tilt range from the Fourier amplitudes (tilt axis y)")
    w.add_argument("store")
    g = w.add_mutually_exclusive_group(required=True)
    g.add_argument("--tomogram")
    g.add_argument("--set", help="particle set of subtomograms")
    w.add_argument("--level", type=int, default=0)
    w.add_argument("--max-particles", type=int, default=200)
    w.set_defaults(func=cmd_estimate_wedge)
    sn = esub.add_parser("snr", help="SNR from pairs of aligned subtomograms of one structure (Frank & Al-Ali)")
    sn.add_argument("store")
    sn.add_argument("set", help="particle set of aligned subtomograms (same orientation)")
    sn.add_argument("--class", dest="cls", help="use only particles of this true class")
    sn.add_argument("--pairs", type=int, default=100)
    sn.add_argument("--seed", type=int, default=0)
    sn.set_defaults(func=cmd_estimate_snr)
