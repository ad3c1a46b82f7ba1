"""Figures from committed per-run rows (a results folder's CSV files): runs read as rows, paired
by replicate, differences with their 95% t-interval and in how many replicates the first is
ahead, ratios with a paired interval, ranges. code/studies/claims.py builds the README's claims
table from them; a reader can redo each figure from the same rows.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..files import read_csv
from ..paths import shown
from .replicates import signed_interval, t_interval

FIX = "regenerate it with the command its folder's README names"


class Rows:
    """The rows of one per-run CSV (selection.csv, runs.csv, ablation.csv, probe.csv, ...),
    with its path for the figures' sources."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.rows = path, read_csv(path, "results table", FIX, columns)

    @property
    def source(self) -> str:
        return shown(self.path)

    def select(self, **where) -> list[dict]:
        """The rows whose columns equal `where` (compared as text: the CSV's own)."""
        return [r for r in self.rows if all(r[k] == text(v) for k, v in where.items())]

    def al2_gain(self, column: str, **where) -> dict:
        """AL2 − plain in `column` over the rows matching `where`, paired by replicate."""
        return paired(self.by_replicate(column, al2=True, **where),
                      self.by_replicate(column, al2=False, **where))

    def by_replicate(self, column: str, **where) -> dict[int, float]:
        """replicate -> `column` of the rows matching `where` (one per replicate)."""
        rows = self.select(**where)
        out = {int(r["replicate"]): float(r[column]) for r in rows}
        if len(out) != len(rows):
            raise ValueError(f"{self.source}: {len(rows)} rows of {where} for {len(out)} "
                             f"replicates; pass what tells them apart")
        return out


def text(value) -> str:
    """A value as a results CSV writes it (True, 75.0, bare, 35)."""
    return repr(value) if isinstance(value, float) else str(value)


def paired(a: dict, b: dict) -> dict:
    """a - b over the replicates both have: t_interval's figure (n, mean, sd, low, high,
    positive: in how many a is ahead)."""
    return {**t_interval(differences(a, b)["values"]), "replicates": sorted(set(a) & set(b))}


def pooled(*differences: dict) -> dict:
    """One interval over the differences of several sets of replicates (their values)."""
    return t_interval([d for ds in differences for d in ds["values"]])


def differences(a: dict, b: dict) -> dict:
    """{"values": a - b per shared replicate}: what pooled() joins."""
    return {"values": [a[k] - b[k] for k in sorted(set(a) & set(b))]}


def ratio(a: dict, b: dict) -> dict:
    """a / b, paired by replicate: the geometric mean of the per-replicate ratios with the
    95% t-interval of their logarithms, back-transformed; positive: how many ratios are > 1."""
    keys = sorted(set(a) & set(b))
    logs = t_interval([math.log(a[k] / b[k]) for k in keys])
    return {"n": logs["n"], "mean": math.exp(logs["mean"]), "low": math.exp(logs["low"]),
            "high": math.exp(logs["high"]), "positive": logs["positive"]}


def span(values: list[float]) -> tuple[float, float, float]:
    """(mean, min, max)."""
    return sum(values) / len(values), min(values), max(values)


def signed(ci: dict, digits: int = 1) -> str:
    """'+30.8 [+24.6, +37.1]', or '+30.8' for one value: the claims table's one decimal."""
    return signed_interval(ci, digits)


def headline(cis: dict, what: str, names: dict, digits: int = 1, top: bool = False) -> str:
    """One figure of a claims row for the README's table: the baseline with the smallest mean
    (the largest with top), e.g. 'last epoch, DO + AL2 − DO: +22.6 [+13.7, +31.4], 5 of 5'
    from what 'last epoch, {b} + AL2 − {b}' and names {baseline: its name}."""
    b, ci = (max if top else min)(cis.items(), key=lambda kv: kv[1]["mean"])
    return f"{what.format(b=names[b])}: {signed(ci, digits)}, {k_of_n(ci)}"


def k_of_n(ci: dict) -> str:
    return f"{ci['positive']} of {ci['n']}"


def k_of_n_each(cis) -> str:
    """'5 of 5 each', or '5 of 5 / 4 of 5 / ...' when they differ."""
    texts = [k_of_n(ci) for ci in cis]
    return f"{texts[0]} each" if len(set(texts)) == 1 else " / ".join(texts)


def above_zero(ci: dict) -> bool:
    return ci["n"] > 1 and ci["low"] > 0


def below_zero(ci: dict) -> bool:
    return ci["n"] > 1 and ci["high"] < 0


class Claims:
    """What code/studies/claims.py gathers from a results folder: the figures (claims.csv's
    rows: claim, measure, mean, low, high, ahead, n, source) and the claims table's rows
    (claim, verdict, evidence, results folders, headline figure)."""

    def __init__(self, results: Path):
        self.results, self.figures, self.table = results, [], []

    def rows(self, folder: str, name: str, columns: list[str]) -> Rows:
        return Rows(self.results / folder / name, columns)

    def figure(self, claim: str, measure: str, ci: dict, source: str) -> dict:
        self.figures.append({"claim": claim, "measure": measure, "mean": ci["mean"],
                             "low": ci.get("low", float("nan")),
                             "high": ci.get("high", float("nan")),
                             "ahead": ci.get("positive", float("nan")), "n": ci["n"],
                             "source": source})
        return ci

    def row(self, claim: str, verdict: str, evidence: str, folders: str,
            headline: str) -> None:
        """A claims-table row: its verdict, the one figure it rests on most (the README's
        table) and every figure behind it (claims.md)."""
        self.table.append((claim, verdict, evidence, folders, headline))
