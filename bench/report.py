"""Turns per-round samples into the markdown table: median [min–max] over rounds, where every
ratio is taken within a round first (so drift between rounds cancels out) and summarised after."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from load import LoadResult


@dataclass
class Sample:
    """One target measured in one round."""

    target: str
    round: int
    concurrent: LoadResult
    sequential: LoadResult
    download_mib_s: float
    upload_mib_s: float
    peak_rss_mib: float | None
    cpu_us_per_request: float | None


Rounds = dict[int, dict[str, Sample]]  # round -> target -> sample


@dataclass
class FarSample:
    """One proxy measured in one round against the far upstream."""

    target: str
    round: int
    load: LoadResult
    cpu_us_per_request: float | None


FarRounds = dict[int, dict[str, FarSample]]  # round -> target -> sample


def spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    if not values:
        return "–"
    low, mid, high = min(values), statistics.median(values), max(values)
    if len(values) == 1:
        return fmt(mid)
    return f"{fmt(mid)} [{fmt(low)}–{fmt(high)}]"


def _int(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}×"


def _one(value: float) -> str:
    return f"{value:.1f}"


def _ms(value_us: float) -> str:
    return f"{value_us / 1000:.2f}"


def per_round(rounds: Rounds, target: str, pick: Callable[[Sample], float | None]) -> list[float]:
    values = []
    for samples in rounds.values():
        if target in samples and (value := pick(samples[target])) is not None:
            values.append(value)
    return values


def relative(
    rounds: Rounds, target: str, base: str, pick: Callable[[Sample], float], *, diff: bool = False
) -> list[float]:
    """`target` against `base` within each round: a ratio, or a difference when `diff`."""
    values = []
    for samples in rounds.values():
        if target in samples and base in samples:
            mine, theirs = pick(samples[target]), pick(samples[base])
            if diff:
                values.append(mine - theirs)
            elif theirs:
                values.append(mine / theirs)
    return values


COLUMNS = (
    "target",
    "1 KB req/s @c50",
    "vs direct",
    "vs naive",
    "p50 / p99 @c50 (ms)",
    "seq p50 (µs)",
    "seq added p50 vs direct (µs)",
    "100 MB down (MiB/s)",
    "down vs direct",
    "50 MB up (MiB/s)",
    "up vs direct",
    "peak RSS streaming (MiB)",
    "CPU µs/req",
)


def row(rounds: Rounds, target: str) -> list[str]:
    def rps(s: Sample) -> float:
        return s.concurrent.rps

    def seq_p50(s: Sample) -> float:
        return s.sequential.p50_us

    def down(s: Sample) -> float:
        return s.download_mib_s

    def up(s: Sample) -> float:
        return s.upload_mib_s

    p50 = spread(per_round(rounds, target, lambda s: s.concurrent.p50_us), _ms)
    p99 = spread(per_round(rounds, target, lambda s: s.concurrent.p99_us), _ms)
    is_direct = target == "direct"
    return [
        target,
        spread(per_round(rounds, target, rps), _int),
        "—" if is_direct else spread(relative(rounds, target, "direct", rps), _ratio),
        spread(relative(rounds, target, "naive", rps), _ratio) if target == "authproxy" else "—",
        f"{p50} / {p99}",
        spread(per_round(rounds, target, seq_p50), _int),
        "—" if is_direct else spread(relative(rounds, target, "direct", seq_p50, diff=True), _int),
        spread(per_round(rounds, target, down), _int),
        "—" if is_direct else spread(relative(rounds, target, "direct", down), _ratio),
        spread(per_round(rounds, target, up), _int),
        "—" if is_direct else spread(relative(rounds, target, "direct", up), _ratio),
        "—" if is_direct else spread(per_round(rounds, target, lambda s: s.peak_rss_mib), _one),
        "—"
        if is_direct
        else spread(per_round(rounds, target, lambda s: s.cpu_us_per_request), _int),
    ]


FAR_COLUMNS = ("target", "1 KB req/s", "p50 / p99 (ms)", "CPU µs/req", "CPU vs naive")


def far_row(far: FarRounds, target: str) -> list[str]:
    def cpu(s: FarSample) -> float | None:
        return s.cpu_us_per_request

    def ratio(mine: FarSample, theirs: FarSample) -> float | None:
        if mine.cpu_us_per_request is None or not theirs.cpu_us_per_request:
            return None
        return mine.cpu_us_per_request / theirs.cpu_us_per_request

    ratios = [
        value
        for samples in far.values()
        if target in samples and "naive" in samples
        if (value := ratio(samples[target], samples["naive"])) is not None
    ]
    p50 = spread([s[target].load.p50_us for s in far.values() if target in s], _ms)
    p99 = spread([s[target].load.p99_us for s in far.values() if target in s], _ms)
    return [
        target,
        spread([s[target].load.rps for s in far.values() if target in s], _int),
        f"{p50} / {p99}",
        spread([v for s in far.values() if target in s if (v := cpu(s[target])) is not None], _int),
        "—" if target == "naive" else spread(ratios, _ratio),
    ]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def verdicts(rounds: Rounds, far: FarRounds) -> list[str]:
    """One line per performance target, each judged on the median over rounds."""

    def far_cpu_ratio(samples: dict[str, FarSample]) -> float | None:
        mine, theirs = samples.get("authproxy"), samples.get("naive")
        if mine is None or theirs is None or not theirs.cpu_us_per_request:
            return None
        if mine.cpu_us_per_request is None:
            return None
        return mine.cpu_us_per_request / theirs.cpu_us_per_request

    rps = _median(relative(rounds, "authproxy", "naive", lambda s: s.concurrent.rps))
    cpu = _median([r for samples in far.values() if (r := far_cpu_ratio(samples)) is not None])
    down = _median(relative(rounds, "authproxy", "direct", lambda s: s.download_mib_s))
    up = _median(relative(rounds, "authproxy", "direct", lambda s: s.upload_mib_s))
    rss = _median(per_round(rounds, "authproxy", lambda s: s.peak_rss_mib))
    checks = [
        ("1 KB req/s on loopback vs naive", rps, "≥ 1.50×", rps is not None and rps >= 1.5),
        ("CPU per request, far upstream, vs naive", cpu, "≤ 0.80×", cpu is not None and cpu <= 0.8),
        ("100 MB down vs direct", down, "≥ 0.90×", down is not None and down >= 0.9),
        ("50 MB up vs direct", up, "≥ 0.90×", up is not None and up >= 0.9),
    ]
    lines = [
        f"- {what}: {'–' if value is None else _ratio(value)} (target {goal}): "
        f"{'met' if ok else '**not met**'}"
        for what, value, goal, ok in checks
    ]
    met = rss is not None and rss < 60
    shown = "–" if rss is None else f"{rss:.1f} MiB"
    lines.append(
        f"- peak RSS streaming: {shown} (target < 60 MiB): {'met' if met else '**not met**'}"
    )
    return lines


def markdown(
    header: Sequence[tuple[str, str]],
    rounds: Rounds,
    targets: Sequence[str],
    notes: Sequence[str],
    far: FarRounds | None = None,
    far_title: str = "",
) -> str:
    lines = ["# authproxy benchmark", ""]
    lines += [f"- **{key}:** {value}" for key, value in header]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(rounds, target)) + " |" for target in targets]
    if far:
        names = list(next(iter(far.values())))
        lines += ["", f"**{far_title}**", ""]
        lines += ["| " + " | ".join(FAR_COLUMNS) + " |", "|" + "---|" * len(FAR_COLUMNS)]
        lines += ["| " + " | ".join(far_row(far, target)) + " |" for target in names]
        lines += ["", "**Targets, medians over rounds:**", "", *verdicts(rounds, far)]
    lines += ["", *notes, ""]
    return "\n".join(lines)
