"""Output: the table, the SVG plot."""

def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    return f"{v:,}{unit}"


def ratio_text(v):
    return "n/a" if v is None else f"{v:.2f}"


def table(results):
    r = results["scenarios"]
    rows = []
    for k, v in r.items():
        if isinstance(v, dict) and "error" in v:
            rows.append((f"{k}: FAILED", v["error"]))
    base = r.get("baseline-parallel", {}).get("mb_per_s")

    def ratio(v):
        return f"  ({v / base:.2f} x parallel GETs)" if base and v else ""

    if "baseline-single" in r:
        rows.append(("direct S3, one GET per object", fmt(r["baseline-single"]["mb_per_s"], " MB/s")))
    if "baseline-parallel" in r:
        rows.append(("direct S3, 16 ranged GETs in flight", fmt(base, " MB/s")))
    for k, label in (("cold", "cold sequential read"), ("warm", "warm re-read")):
        if k in r:
            rows.append((label, fmt(r[k]["mb_per_s"], " MB/s") + ratio(r[k]["mb_per_s"])))
    if "ttfb" in r:
        for k in ("cold", "warm"):
            t = r["ttfb"][k]
            rows.append((f"time to first byte, {k} (p50 / p99)", f"{t['p50_ms']:.1f} / {t['p99_ms']:.1f} ms"))
    for k, label in (("training-listing-order", "training, listing order"),
                     ("training-manifest", "training, shuffled + manifest"),
                     ("training-order-hint", "training, shuffled + live order hint"),
                     ("training-shuffled", "training, shuffled"),
                     ("training-local-copy", "training, local copy (bound)")):
        if k in r:
            t = r[k]
            bound = r.get("training-local-copy", {}).get("compute_busy_pct")
            vs = f" ({t['compute_busy_pct'] / bound:.2f} x local copy)" if bound and k != "training-local-copy" else ""
            rows.append((label, f"compute-busy {t['compute_busy_pct']:.1f} %{vs}, stall {t['stall_s']:.2f} s "
                                f"(p50 {t['stall_p50_ms']:.0f} ms, p99 {t['stall_p99_ms']:.0f} ms)"))
    if "epochs" in r:
        for ep in r["epochs"]["per_epoch"]:
            rows.append((f"epoch {ep['epoch']}, cache = 1/2 dataset",
                         f"{ratio_text(ep.get('s3_byte_hit_ratio'))} of bytes without S3, reader hit ratio "
                         f"{ratio_text(ep.get('hit_ratio'))}, {fmt(ep['mb_per_s'], ' MB/s')}"))
    if "random" in r:
        t = r["random"]
        rows.append((f"random 256 KiB reads, {t['threads']} threads",
                     f"{t['iops']:,.0f} IOPS, p50 {t['p50_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms"))
    if "ls" in r:
        t = r["ls"]
        ttl = f", within TTL {t['seconds_within_ttl']:.2f} s" if t.get("seconds_within_ttl") is not None else ""
        rss = t.get("rss_bytes_per_entry")
        rows.append((f"ls -l of {t['entries']:,} objects",
                     f"{t['seconds']:.2f} s, {fmt(t.get('s3_requests'))} S3 requests{ttl}, "
                     f"daemon RSS {fmt(rss, ' B')} per entry"))
    for k, label in (("small-manifest-8", "small objects, shuffled + manifest, 8 readers"),
                     ("small-manifest-1", "small objects, shuffled + manifest, 1 reader"),
                     ("small-order-hint-8", "small objects, shuffled + live order hint, 8 readers"),
                     ("small-order-hint-1", "small objects, shuffled + live order hint, 1 reader"),
                     ("small-listing-1", "small objects, listing order, no order, 1 reader"),
                     ("small-listing-8", "small objects, listing order, no order, 8 readers"),
                     ("small-tmpfs-shuffled-8", "small objects, tmpfs copy, shuffled, 8 readers"),
                     ("small-tmpfs-shuffled-1", "small objects, tmpfs copy, shuffled, 1 reader"),
                     ("small-tmpfs-listing-1", "small objects, tmpfs copy, listing order, 1 reader"),
                     ("small-tmpfs-listing-8", "small objects, tmpfs copy, listing order, 8 readers")):
        if k in r and "files_per_s" in r[k]:
            t = r[k]
            vs = f" ({t['x_tmpfs']:.3f} x tmpfs)" if t.get("x_tmpfs") is not None else ""
            gets = f", {t['s3_gets'] / t['files']:.2f} GETs/file" if t.get("s3_gets") is not None and t["files"] else ""
            rows.append((label, f"{t['files_per_s']:,.1f} files/s{vs}, {t['files']} files, p99 {t['p99_ms']:.1f} ms{gets}"))
    if "seq4" in r and "mb_per_s" in r["seq4"]:
        t = r["seq4"]
        rows.append((f"seq4: 4 sequential readers, 256 KiB sync ({t['tool'].split()[0]})",
                     f"{t['mb_per_s']:,.1f} MB/s ({t['mib_per_s']:,.1f} MiB/s), {t['x_link']:.2f} x link"))
    if "rand4" in r and "mib_per_s" in r["rand4"]:
        t = r["rand4"]
        per = t.get("s3_bytes_per_byte_read")
        rows.append((f"rand4: 4 random readers, 256 KiB sync ({t['tool'].split()[0]})",
                     f"{t['mib_per_s']:,.1f} MiB/s, {t['x_latency_bound']:.2f} x latency bound "
                     f"({t['latency_bound_mib_per_s']:.1f} MiB/s), p50 {t['p50_ms']:.1f} ms, "
                     f"S3 bytes / bytes read {'n/a' if per is None else f'{per:.2f}'}"))
    i = results["integrity"]
    rows.append(("integrity", f"{i['checked_bytes']:,} bytes compared, " +
                 ("all identical" if not i["mismatches"] else f"{len(i['mismatches'])} MISMATCHES")))
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def svg_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plot(results, path):
    """Throughput over time per scenario, stalls as red bars under the curve."""
    panels = [(k, v) for k, v in results["scenarios"].items() if isinstance(v, dict) and v.get("series", {}).get("t")]
    W, H, pad = 760, 150, 50
    height = 40 + len(panels) * (H + 30)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W + 2 * pad}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{pad}" y="22" font-size="14">valkyrie-bench: throughput over time (MB/s), stalls in red</text>']
    y0 = 40
    for name, v in panels:
        s = v["series"]
        tmax = max(s["t"][-1], max((b for _, b in s["stalls"]), default=0), 0.001)
        vmax = max(max(s["mb_per_s"]), 1)
        out.append(f'<text x="{pad}" y="{y0 + 12}">{svg_escape(name)}</text>')
        top = y0 + 18
        out.append(f'<rect x="{pad}" y="{top}" width="{W}" height="{H - 30}" fill="none" stroke="#999"/>')
        pts = " ".join(f"{pad + W * t / tmax:.1f},{top + (H - 30) * (1 - m / vmax):.1f}"
                       for t, m in zip(s["t"], s["mb_per_s"]))
        out.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>')
        for a, b in s["stalls"]:
            out.append(f'<rect x="{pad + W * a / tmax:.1f}" y="{top + H - 28}" width="{max(0.5, W * (b - a) / tmax):.1f}" '
                       f'height="6" fill="#d62728"/>')
        out.append(f'<text x="{pad - 4}" y="{top + 8}" text-anchor="end">{vmax:.0f}</text>')
        out.append(f'<text x="{pad - 4}" y="{top + H - 30}" text-anchor="end">0</text>')
        out.append(f'<text x="{pad + W}" y="{top + H - 8}" text-anchor="end">{tmax:.2f} s</text>')
        y0 += H + 30
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


