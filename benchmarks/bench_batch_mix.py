"""How mixed the training batches are when a set is stored class by class (issue 23).

Usage: python benchmarks/bench_batch_mix.py [--classes 8] [--per-class 1000] [--extra 0 500 1500] [--box 40]
       [--buffer-mb 256 1000]

Lays out labels as ``bench_more_data.py`` does (a simulated set of ``per-class`` particles a class stored class by
class, its stratified 50/50 split, plus ``extra`` particles a class appended class by class, 10% of the training
particles held out) and draws one epoch of label batches from :func:`tomoflow.ml.training.stream_batches` (its
sliding shuffle buffer) with the store's chunk of 128 and each buffer size at ``box``^3 (volumes are not read: a
stand-in source gives empty ones), beside the buffer it replaced (filled, then emptied in one go: ``flush`` below,
label-only) with the same chunk order. Prints, per layout and buffer, the mean share of a batch's largest class and
the share of batches missing two or more classes, beside the same figures for independent uniform draws.
"""

from __future__ import annotations

import argparse

import numpy as np

from tomoflow.ml.training import TRAIN, stratified_split, stream_batches, validation_part


class _Labels:
    """A source of ``n`` particles in chunks of ``chunk`` reporting box ``box`` (for the buffer's size) whose
    volumes are empty: only the order of the draws is looked at."""

    def __init__(self, n: int, chunk: int, box: int):
        self.n, self.chunk, self.box_size = n, chunk, box
        self.n_chunks = -(-n // chunk)

    def chunk_slice(self, i: int) -> slice:
        return slice(i * self.chunk, min((i + 1) * self.chunk, self.n))

    def read_volumes(self, sl: slice) -> np.ndarray:
        return np.zeros((sl.stop - sl.start, 1, 1, 1), np.float32)


def flush(ps: _Labels, members, labels, n_classes: int, batch_size: int, rng, cap: int) -> np.ndarray:
    """(batches, classes) label counts of one pass of the fill-and-flush buffer tomoflow used until 2026-12-08:
    chunks in random order, and whenever ``cap`` members are held all full batches are drawn and the buffer
    keeps only the rest."""
    member = np.zeros(ps.n, bool)
    member[members] = True
    chunks = [i for i in range(ps.n_chunks) if member[ps.chunk_slice(i)].any()]
    ys, out = [], []
    for c in rng.permutation(chunks):
        sl = ps.chunk_slice(int(c))
        ys += [labels[sl.start + i] for i in np.flatnonzero(member[sl])]
        if len(ys) >= cap:
            order = rng.permutation(len(ys))
            full = len(ys) - len(ys) % batch_size
            out += [[ys[j] for j in order[b:b + batch_size]] for b in range(0, full, batch_size)]
            ys = [ys[j] for j in order[full:]]
    order = rng.permutation(len(ys))
    out += [[ys[j] for j in order[b:b + batch_size]] for b in range(0, len(ys), batch_size)]
    return np.array([np.bincount(o, minlength=n_classes) for o in out])


def mix(counts: np.ndarray) -> tuple[float, float]:
    """(mean share of the largest class, share of batches missing >= 2 classes) of (batches, classes) counts."""
    return float((counts.max(1) / counts.sum(1)).mean()), float(((counts == 0).sum(1) >= 2).mean())


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--extra", type=int, nargs="+", default=[0, 500, 1500])
    ap.add_argument("--box", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--buffer-mb", type=float, nargs="+", default=[256, 1000])
    args = ap.parse_args(argv)
    c, b, rows = args.classes, args.batch_size, []
    for extra in args.extra:
        cls0, ext = np.repeat(np.arange(c), args.per_class), np.repeat(np.arange(c), extra)
        labels = np.concatenate([cls0, ext])
        split = stratified_split(cls0, 0.5, 0)
        chosen = np.concatenate([np.flatnonzero(split == TRAIN), len(cls0) + np.arange(len(ext))])
        train, _ = validation_part(np.sort(chosen), labels, 0.1, 0)
        steps = -(-len(train) // b)
        src = _Labels(len(labels), 128, args.box)
        iid = np.random.default_rng(1).multinomial(b, np.full(c, 1 / c), size=steps)
        share0, missing0 = mix(iid)
        for mb in args.buffer_mb:
            cap = max(b, int(mb * 1e6 // (4 * args.box ** 3)))
            batches = stream_batches(src, train, labels, c, b, np.random.default_rng(0), loop=False,
                                     buffer_bytes=mb * 1e6)
            share, missing = mix(np.array([y.sum(0) for _, y in batches]))
            share1, missing1 = mix(flush(src, train, labels, c, b, np.random.default_rng(0), cap))
            rows.append({"train_per_class": len(train) // c, "buffer_mb": mb, "largest_share": share,
                         "missing2": missing, "flush_largest_share": share1, "flush_missing2": missing1,
                         "iid_largest_share": share0, "iid_missing2": missing0})
            print(f"{len(train) // c:5d} training particles a class, {mb:g} MB ({cap} subtomograms): largest class "
                  f"{share:.2f} of a batch, {missing:.2f} of batches miss >= 2 classes (sliding); {share1:.2f}, "
                  f"{missing1:.2f} (fill and flush); independent draws {share0:.2f}, {missing0:.2f}")
    return rows


if __name__ == "__main__":
    main()
