#!/usr/bin/env python3
"""Draws the latency distributions of a bench run as one SVG picture.

    bench/plot.py bench-results.json docs/bench-latency.svg

Reads the JSON that sbx_bench writes (--json) and draws, on one log-scale
time axis, every latency series it holds: sbx's rows and the baselines
measured beside them in the same run (fork+exec, unshare, bwrap, plain
/bin/true, and the floor: the same calls to a server that isolates
nothing). Each series is a row: its samples as dots, a box from the 25th
to the 75th percentile, a tick at the median and a line out to the p99.
Standard library only, so it runs wherever the bench does.
"""
import json
import math
import random
import sys
from xml.sax.saxutils import escape

WIDTH, LEFT, RIGHT, ROW, TOP, BOTTOM = 980, 330, 30, 34, 50, 60
SBX_COLOR, BASE_COLOR = "#1f77b4", "#8c8c8c"


def series_of(rows):
    """(label, samples, is_baseline) for every latency series, in table order."""
    out = []
    for row in rows:
        value = row.get("value")
        if value and value.get("samples") and value.get("unit") == "ms":
            baseline = row["key"].startswith(("baseline", "floor"))
            out.append((row["what"].strip(), value["samples"], baseline))
        base = row.get("baseline")
        if base and base.get("samples") and base.get("unit") == "ms":
            out.append(("  baseline: " + base["name"], base["samples"], True))
    # A baseline attached to a row may also have a row of its own: draw once.
    seen, unique = set(), []
    for label, samples, baseline in out:
        if tuple(samples) in seen:
            continue
        seen.add(tuple(samples))
        unique.append((label, samples, baseline))
    return unique


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        data = json.load(f)
    series = series_of(data.get("rows", []))
    if not series:
        print("plot.py: no latency series with samples in " + argv[1], file=sys.stderr)
        return 1
    values = [v for _, s, _ in series for v in s if v > 0]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    span = math.log10(hi) - math.log10(lo)
    plot_w = WIDTH - LEFT - RIGHT
    height = TOP + ROW * len(series) + BOTTOM

    def x(ms):
        return LEFT + plot_w * (math.log10(max(ms, lo)) - math.log10(lo)) / span

    rng = random.Random(1)  # same jitter every time: the picture is reproducible
    meta = data.get("meta", {})
    title = "sbx latency vs baselines, one run ({} cpus, cgroup {}, {})".format(
        meta.get("cpus", "?"), meta.get("cgroup", "?"), meta.get("date", meta.get("time", "")))
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (WIDTH, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>' % (LEFT - 300, escape(title))]
    decade = lo
    while decade <= hi * 1.0001:
        for m in range(1, 10):
            tick = decade * m
            if tick > hi * 1.0001:
                break
            tx = x(tick)
            out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>' % (
                tx, TOP - 8, tx, height - BOTTOM + 8, "#bbb" if m == 1 else "#eee"))
            if m in (1, 2, 5):
                label = ("%g" % tick) + (" ms" if m == 1 else "")
                out.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>' % (
                    tx, height - BOTTOM + 24, label))
        decade *= 10
    out.append('<text x="%d" y="%d" text-anchor="middle" fill="#333">latency (log scale); '
               'dots: samples, box: p25-p75, tick: median, line: to p99</text>' % (
                   LEFT + plot_w / 2, height - 14))
    for i, (label, samples, baseline) in enumerate(series):
        cy = TOP + ROW * i + ROW / 2
        color = BASE_COLOR if baseline else SBX_COLOR
        s = sorted(samples)
        p25, p50, p75, p99 = (percentile(s, q) for q in (0.25, 0.5, 0.75, 0.99))
        out.append('<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle"%s>%s</text>' % (
            LEFT - 10, cy, ' fill="#555"' if baseline else "", escape(label)))
        out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>' % (
            x(s[0]), cy, x(p99), cy, color))
        out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="14" fill="%s" fill-opacity="0.25" '
                   'stroke="%s"/>' % (x(p25), cy - 7, max(x(p75) - x(p25), 1), color, color))
        for v in samples:
            out.append('<circle cx="%.1f" cy="%.1f" r="1.6" fill="%s" fill-opacity="0.6"/>' % (
                x(v), cy + rng.uniform(-9, 9), color))
        out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-width="2"/>' % (
            x(p50), cy - 10, x(p50), cy + 10))
        out.append('<text x="%.1f" y="%.1f" font-size="10" fill="#333">%.3g ms</text>' % (
            x(p50) + 4, cy - 9, p50))
    out.append("</svg>")
    with open(argv[2], "w") as f:
        f.write("\n".join(out) + "\n")
    print("plot.py: %d series -> %s" % (len(series), argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
