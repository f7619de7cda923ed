"""Turn bench/results/*.json into bench/results/RESULTS.md and PNG charts.

Reads whichever of the benchmarks' results exist; a benchmark
without results is listed as not run. Every figure is a median over alternating rounds.
Results kept from an earlier run in ``results/previous/`` (same file names) add a column to the
summary, so that a regression shows beside the figure it regressed from.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.common import RESULTS_DIR, SHORT

NAMES = {**SHORT, "bare": "bare pycrdt (1 process)", "encspaces-log": "encspaces, full log (snapshots off)"}
COLORS = {"bare": "#bbbbbb", "null": "#7f7f7f", "null-sansio": "#c7c7c7", "pycrdt": "#1f77b4", "node": "#2ca02c",
          "encspaces": "#d62728",
          "encspaces-log": "#ff9896"}
BENCHMARKS = ["fanout", "latency", "replay", "cold_open", "idle", "many_spaces", "files", "removal", "typing",
              "cluster"]
NOT_LANDED: list[tuple[str, str]] = []
PREVIOUS = "previous"  # the sub-folder of results kept from an earlier run, for comparison


def load(results: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for name in BENCHMARKS:
        path = results / f"{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text())
    return found


def num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def times(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f}×"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def ratio_of(data: dict[str, Any], vs: str, key: str, shape: str | None = None) -> Any:
    for r in data.get("ratios_encspaces_over", []):
        if r["vs"] == vs and (shape is None or r.get("shape") == shape):
            return r.get(key)
    return None


def skipped_lines(data: dict[str, Any]) -> list[str]:
    return [f"- {NAMES.get(c, c)} skipped: {why}" for c, why in data.get("skipped", {}).items()]


def errors_of(row: dict[str, Any]) -> str:
    errs = row.get("errors") or []
    failed = sum(1 for r in row.get("rounds", []) if "error" in r)
    return f"{failed} of {len(row.get('rounds', []))} rounds failed: {'; '.join(errs)}" if errs else ""


# --- sections ------------------------------------------------------------------------------


def fanout_section(data: dict[str, Any]) -> list[str]:
    s = data["settings"]
    lines = ["## Fan-out", "",
             f"W writers × R readers on one document, writers typing 1-character edits as fast as the server "
             f"takes them (at most {s['window']} edits ahead of a probe reader); {s['duration']:g} s per run, "
             f"the last {s['duration'] - s['warmup']:g} s measured; {s['rounds']} alternating rounds, medians. "
             "*Edits/s* = edits applied per second summed over all readers; *messages/s* = the frames "
             "carrying them (Yjs updates; encspaces log entries, each a batch of edits); server CPU from "
             "psutil on the server's pid over the same window.", ""]
    rows = []
    for row in data["results"]:
        m, c = row["median"], row["contender"]
        rows.append([row["shape"], NAMES[c], num(m.get("deliveries_per_s")), num(m.get("messages_per_s")),
                     num(m.get("edits_per_message")), num(m.get("server_us_per_delivery")),
                     num(m.get("server_us_per_message")), num(m.get("server_cpu_cores")),
                     num(m.get("clients_cpu_cores")), num(m.get("max_reader_lag_edits")),
                     "" if c == "encspaces" else times(ratio_of(data, c, "deliveries_per_s", row["shape"])),
                     "" if c == "encspaces" else times(ratio_of(data, c, "server_us_per_message", row["shape"])),
                     errors_of(row)])
    lines += table(["W×R", "contender", "edits/s", "messages/s", "edits per message", "server µs / edit",
                    "server µs / message", "server CPU (cores)", "clients CPU (cores)", "max reader lag (edits)",
                    "encspaces ÷ this: edits/s", "encspaces ÷ this: µs / message", "failures"], rows)
    return [*lines, "", *skipped_lines(data), "", "![fan-out](fanout.png)", ""]


def latency_section(data: dict[str, Any]) -> list[str]:
    s = data["settings"]
    lines = ["## Latency", "",
             f"Same shapes, each writer typing {s['rate']:g} edits/s for {s['duration']:g} s; latency from the "
             "writer's local edit to the edit applied in each reader's document (encspaces: verified, "
             f"decrypted, applied); percentiles over every (edit, reader) pair; {s['rounds']} rounds, medians.", ""]
    rows = []
    for row in data["results"]:
        m, c = row["median"], row["contender"]
        rows.append([row["shape"], NAMES[c], num(m.get("p50_ms")), num(m.get("p99_ms")), num(m.get("max_ms")),
                     num(m.get("samples")), num(m.get("missing")),
                     "" if c == "encspaces" else times(ratio_of(data, c, "p50_ms", row["shape"])),
                     "" if c == "encspaces" else times(ratio_of(data, c, "p99_ms", row["shape"])), errors_of(row)])
    lines += table(["W×R", "contender", "p50 ms", "p99 ms", "max ms", "samples", "missing",
                    "encspaces ÷ this: p50", "encspaces ÷ this: p99", "failures"], rows)
    return [*lines, "", *skipped_lines(data), "", "![latency](latency.png)", ""]


def replay_section(data: dict[str, Any]) -> list[str]:
    lines = ["## B4 replay", "",
             f"One writer types the {data['trace']} trace ({data['transactions']:,} transactions) as fast as it "
             "can through the server, one reader follows (both in one client process, the server in its own); "
             "time until the reader holds the final text, against typing the trace into a bare pycrdt document. "
             f"{data['rounds']} alternating rounds, medians.", ""]
    rows = []
    for row in data["results"]:
        m, c = row["median"], row["contender"]
        msgs = m.get("entries") if c == "encspaces" else m.get("messages")
        rows.append([NAMES[c], num(m.get("reader_done_s")), num(m.get("typed_s")), num(m.get("server_cpu_s")),
                     num(msgs), times(row.get("ratio_vs_bare")),
                     "" if c == "encspaces" else times(ratio_of(data, c, "reader_done_s")), errors_of(row)])
    lines += table(["contender", "reader holds final text (s)", "writer done typing (s)", "server CPU (s)",
                    "messages (encspaces: entries)", "÷ bare pycrdt", "encspaces ÷ this", "failures"], rows)
    return [*lines, "", *skipped_lines(data), "", "![B4 replay](replay.png)", ""]


def cold_open_section(data: dict[str, Any]) -> list[str]:
    doc = data.get("document", {})
    lines = ["## Cold open", "",
             f"A new device opens the B4 document ({data['transactions']:,} transactions typed; "
             f"{doc.get('characters', 0):,} characters; Yjs state {doc.get('document_state_bytes', 0):,} bytes"
             + (f"; encspaces log {num(doc.get('encspaces_entries'))} entries, relay store "
                f"{doc.get('encspaces_relay_store_bytes', 0):,} bytes" if "encspaces_entries" in doc else "")
             + f"): connect until the final text is in its document. {data['rounds']} alternating rounds, medians. "
             "encspaces twice: from its newest snapshot (the default for a new device), and in a space with "
             "snapshots turned off, from the full log.", ""]
    rows = []
    for row in data["results"]:
        m, c = row["median"], row["contender"]
        mine = c.startswith("encspaces")
        rows.append([data["contenders"].get(c, NAMES[c]),
                     num(m.get("open_s") * 1000 if m.get("open_s") is not None else None),
                     num(m.get("server_cpu_s") * 1000 if m.get("server_cpu_s") is not None else None),
                     num(m.get("entries")),
                     "" if mine else times(ratio_of(data, c, "open_s")),
                     "" if mine else times(ratio_of(data, c, "log_open_s")), errors_of(row)])
    lines += table(["contender", "open (ms)", "server CPU (ms)", "log entries verified", "encspaces (snapshot) ÷ this",
                    "encspaces (full log) ÷ this", "failures"], rows)
    return [*lines, "", *skipped_lines(data), "", "![cold open](cold_open.png)", ""]


def idle_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Idle connections", "",
             f"Server memory (RSS) per open, idle connection: {data['connections']:,} connections opened after "
             f"{data['warm_connections']} warm-up ones, each past its protocol's handshake. "
             f"{data['rounds']} alternating rounds, medians.", ""]
    rows = []
    for row in data["results"]:
        m, c = row["median"], row["contender"]
        rows.append([NAMES[c], num(m.get("kib_per_connection")), num(m.get("rss_before_mib")),
                     num(m.get("rss_after_mib")), num(m.get("open_seconds")),
                     "" if c == "encspaces" else times(ratio_of(data, c, "kib_per_connection")), errors_of(row)])
    lines += table(["contender", "KiB per connection", "RSS before (MiB)", "RSS after (MiB)",
                    "seconds to open all", "encspaces ÷ this", "failures"], rows)
    return [*lines, "", *skipped_lines(data), "", "![idle connections](idle.png)", ""]


def many_spaces_section(data: dict[str, Any]) -> list[str]:
    st = data["settings"]
    lines = ["## Many spaces", "",
             f"{st['spaces']:,} documents of {st['members']} members, every member typing {st['rate']:g} edits/s "
             f"for {st['duration']:g} s (the last {st['duration'] - st['warmup']:g} s measured). Server CPU per edit "
             "typed and per delivery (a deliveries count includes the author's own copy where the server sends one), "
             f"server memory per space (room + {st['members']} connections). {st['rounds']} round(s), medians.", ""]
    rows = []
    for row in data["results"]:
        m, c = row["median"], row["contender"]
        rows.append([NAMES[c], num(m.get("edits_per_s")), num(m.get("delivered_share")),
                     num(m.get("server_us_per_edit")), num(m.get("server_us_per_delivered_edit")),
                     num(m.get("server_us_per_delivery")), num(m.get("server_cpu_cores")), num(m.get("kib_per_space")),
                     num(m.get("kib_per_space_after_typing")),
                     "" if c == "encspaces" else times(ratio_of(data, c, "server_us_per_delivered_edit")),
                     errors_of(row)])
    lines += table(["contender", "edits/s", "delivered share", "server µs / edit typed",
                    "server µs / edit delivered", "server µs / delivery", "server CPU (cores)",
                    "KiB per space (connected)", "KiB per space (after typing)",
                    "encspaces µs/edit delivered ÷ this", "failures"], rows)
    lines += ["", "A delivered share below 0.95 is a server behind its load: its CPU per edit typed reads low; "
              "compare CPU per edit delivered, or lower `--rate` until every contender keeps up."]
    return [*lines, "", *skipped_lines(data), "", "![many spaces](many_spaces.png)", ""]


def files_section(data: dict[str, Any]) -> list[str]:
    lines = ["## File transfer", "",
             f"{data['mib']} MiB of random bytes in {data['chunk_bytes'] // 1024} KiB chunks. encspaces: "
             "`space.files.put` by one member (encrypt, hash, store at the relay, manifest entry), "
             "`space.files.get` by another member's device (fetch, check, decrypt). Floor: the same messages "
             "through the null relay from one connection to another (nothing stored, so one transfer is upload "
             f"and download at once). {data['rounds']} alternating rounds, medians.", ""]
    rows = []
    for row in data["results"]:
        m, c = row["median"], row["contender"]
        if c == "encspaces":
            rows.append([NAMES[c], num(m.get("upload_mib_per_s")), num(m.get("download_mib_per_s")),
                         num(m.get("upload_s")), num(m.get("download_s")), errors_of(row)])
        else:
            rows.append([NAMES[c], num(m.get("mib_per_s")), num(m.get("mib_per_s")), num(m.get("transfer_s")),
                         num(m.get("transfer_s")), errors_of(row)])
    lines += table(["contender", "upload MiB/s", "download MiB/s", "upload s", "download s", "failures"], rows)
    return [*lines, "", *skipped_lines(data), "", "![file transfer](files.png)", ""]


def removal_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Member removal", "",
             f"encspaces only (the plaintext servers have no membership): in a space of {data['members']:,} members, "
             "`remove_member` rotates the key and seals the new one to every remaining member in one signed entry. "
             f"Median of {data['rounds']} removals (`python -m bench.removal`).", ""]
    lines += table(["figure", "value"], [
        ["members", f"{data['members']:,}"],
        ["removal verified in the remover's log (ms)", num(data.get("removal_verified_by_remover_ms_median"))],
        ["new key held by another member (ms)", num(data.get("removal_seen_by_other_member_ms_median"))],
        ["removal entry (bytes)", f"{data.get('removal_entry_bytes', 0):,}"],
        [f"adding the {data['members']:,} members first (s)", num(data.get("setup_add_members_s"))],
    ])
    return [*lines, ""]


def typing_section(data: dict[str, Any]) -> list[str]:
    sizes = list(data["sizes"])
    lines = ["## Typing cost against document size", "",
             f"{data['keystrokes']:,} keystrokes per workload into generated documents of mixed ASCII, accented "
             "Latin, CJK and emoji (random: inserts and deletes at random positions; sequential: typing at one "
             f"cursor); µs per keystroke, medians of {data['rounds']} rounds; × = against the smallest size.", ""]
    rows = []
    for row in data["results"]:
        for workload in data["workloads"]:
            values = [row["median"].get(f"{s}/{workload}") for s in sizes]
            growth = row.get(f"ratio_vs_{sizes[0]}", {}).get(f"{sizes[-1]}/{workload}")
            rows.append([data["contenders"].get(row["contender"], row["contender"]), workload,
                         *(num(v) for v in values), times(growth)])
    medians = {row["contender"]: row["median"] for row in data["results"]}
    if "encspaces" in medians and "bare" in medians:  # what SharedText adds on top of Yrs
        for workload in data["workloads"]:
            added = [(medians["encspaces"].get(f"{s}/{workload}") or 0) - (medians["bare"].get(f"{s}/{workload}") or 0)
                     for s in sizes]
            rows.append(["encspaces − bare pycrdt (what SharedText adds)", workload, *(num(v) for v in added),
                         times(added[-1] / added[0] if added[0] else None)])
    lines += table(["implementation", "workload", *sizes, f"{sizes[-1]} ÷ {sizes[0]}"], rows)
    return [*lines, ""]


def cluster_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Several relays (PostgreSQL + NATS) beside one on SQLite", ""]
    if data.get("unavailable"):
        return [*lines, f"Not run: {data['unavailable']}.", ""]
    s = data["settings"]
    lines += [f"`bench.cluster`: fan-out at {s['fanout']['shape']} and latency at {s['latency']['shape']} "
              f"({s['latency']['rate']:g} edits/s per writer), {s['fanout']['duration']:g} s per run, "
              f"{s['rounds']} alternating rounds, medians. `pgN`: N relay processes on one PostgreSQL and one "
              "NATS, members spread over them. Relay CPU: all relay processes over the measured window, per "
              "entry sequenced (and per relay process), and net of what the relays use idle with every member "
              "connected; per message: per entry delivered to a reader. "
              "*cross*: pairs of writer and reader on different relays. *Lost commits*: commits another relay "
              "beat to the space's next seq (reloaded and sequenced again), over the whole run. *load*: the "
              "machine's 1-minute load "
              "average (2 cores, shared).", ""]
    rows = []
    for row in data["results"]:
        m = row["median"]
        each = " / ".join(num(v) for v in m.get("relay_us_per_entry_each", []))
        if row["mode"] == "fanout":
            what = f"{num(m.get('deliveries_per_s'))} edits/s, {num(m.get('entries_per_s'))} entries/s"
        else:
            what = (f"p50 {num(m.get('p50_ms'))} / p99 {num(m.get('p99_ms'))} ms; cross p50 "
                    f"{num(m.get('p50_ms_cross'))} / p99 {num(m.get('p99_ms_cross'))} ms")
        rows.append([row["mode"], row["shape"], row["contender"], what, num(m.get("relay_us_per_entry")),
                     num(m.get("relay_us_per_entry_net")), each,
                     num(m.get("server_us_per_message")), num(m.get("server_cpu_cores")),
                     f"{num(m.get('lost_commits'))} of {num(m.get('entries_sequenced'))}", num(m.get("load_1min")),
                     errors_of(row)])
    lines += table(["mode", "W×R", "relays", "throughput / latency", "relay µs / entry (all)",
                    "net of idle", "each relay",
                    "relay µs / message", "relay CPU (cores)", "lost commits of entries", "load", "failures"], rows)
    return [*lines, ""]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "fanout": fanout_section, "latency": latency_section, "replay": replay_section,
    "cold_open": cold_open_section, "idle": idle_section, "many_spaces": many_spaces_section,
    "files": files_section, "removal": removal_section,
    "typing": typing_section, "cluster": cluster_section,
}


def median_of(data: dict[str, Any], contender: str, key: str, shape: str | None = None) -> Any:
    for row in data.get("results", []):
        if row["contender"] == contender and (shape is None or row.get("shape") == shape):
            return row["median"].get(key)
    return None


def summary(found: dict[str, dict[str, Any]], previous: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """The summary table; with ``previous`` (an earlier run's results), encspaces' figure from it beside."""
    rows = summary_rows(found)
    header = ["figure (↑ more is better, ↓ less is better)", *(NAMES[c] for c in CONTENDERS), "note"]
    if previous:
        before = {row[0]: row[1] for row in summary_rows(previous)}
        dates = sorted({d["machine"]["date"][:10] for d in previous.values()})
        header.insert(2, f"encspaces, previous run ({dates[0]}" + (f" to {dates[-1]})" if len(dates) > 1 else ")"))
        rows = [[row[0], row[1], before.get(row[0], "–"), *row[2:]] for row in rows]
    return table(header, rows)


CONTENDERS = ["encspaces", "null", "pycrdt", "node"]


def summary_rows(found: dict[str, dict[str, Any]]) -> list[list[str]]:
    contenders = CONTENDERS
    rows: list[list[str]] = []

    def add(label: str, data: dict[str, Any], key: str, shape: str | None = None, scale: float = 1.0,
            extra: str = "") -> None:
        values = []
        for c in contenders:
            v = median_of(data, c, key, shape)
            failed = any(row["contender"] == c and (shape is None or row.get("shape") == shape) and row.get("errors")
                         for row in data.get("results", []))
            values.append(num(v * scale) if v is not None else ("failed" if failed else "–"))
        rows.append([label, *values, extra])

    if "fanout" in found:
        for shape in found["fanout"]["settings"]["shapes"]:
            add(f"fan-out {shape}: edits applied/s (all readers) ↑", found["fanout"], "deliveries_per_s", shape)
            add(f"fan-out {shape}: server CPU µs per message delivered ↓", found["fanout"], "server_us_per_message",
                shape)
    if "latency" in found:
        for shape in found["latency"]["settings"]["shapes"]:
            add(f"latency {shape}: p50 ms ↓", found["latency"], "p50_ms", shape)
            add(f"latency {shape}: p99 ms ↓", found["latency"], "p99_ms", shape)
    if "replay" in found:
        bare = median_of(found["replay"], "bare", "reader_done_s")
        add("B4 replay: s until the reader holds the final text ↓", found["replay"], "reader_done_s",
            extra=f"bare pycrdt: {num(bare)} s")
    if "cold_open" in found:
        add("cold open, new device (encspaces: from its newest snapshot): ms ↓", found["cold_open"], "open_s",
            scale=1000)
    if "cold_open" in found:
        v = median_of(found["cold_open"], "encspaces-log", "open_s")
        if v is not None:
            rows.append(["cold open, encspaces from the full log (snapshots off): ms ↓", num(v * 1000), "", "", "", ""])
    if "idle" in found:
        add("idle connections: server KiB per connection ↓", found["idle"], "kib_per_connection")
    if "many_spaces" in found:
        add("many spaces (1,000 × 3 members): server CPU µs per edit typed ↓", found["many_spaces"],
            "server_us_per_edit")
        add("many spaces: server CPU µs per edit delivered to every member ↓", found["many_spaces"],
            "server_us_per_delivered_edit")
        add("many spaces: share of the edits delivered in the window ↑", found["many_spaces"], "delivered_share")
        add("many spaces: server KiB per space (3 live connections) ↓", found["many_spaces"], "kib_per_space")
    if "files" in found:
        up = median_of(found["files"], "encspaces", "upload_mib_per_s")
        down = median_of(found["files"], "encspaces", "download_mib_per_s")
        floor = median_of(found["files"], "null", "mib_per_s")
        rows.append([f"file transfer, {found['files']['mib']} MiB: MiB/s (upload / download) ↑",
                     f"{num(up)} / {num(down)}", num(floor), "–", "–", "null relay: raw pass-through"])
    if "removal" in found:
        r = found["removal"]
        rows.append([f"removal in a {r['members']:,}-member space: ms until verified ↓",
                     num(r.get("removal_verified_by_remover_ms_median")), "–", "–", "–",
                     f"entry {r.get('removal_entry_bytes', 0):,} bytes"])
    return rows


def machine_lines(found: dict[str, dict[str, Any]]) -> list[str]:
    machines = {json.dumps({k: v for k, v in d["machine"].items() if k != "date"}, sort_keys=True)
                for d in found.values()}
    first = next(iter(found.values()))["machine"]
    dates = sorted({d["machine"]["date"] for d in found.values()})
    v = first["versions"]
    lines = [f"Measured {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else "")
             + f" on {first['cores']} cores ({first['cpu']}), {first['memory_gib']} GiB, {first['os']}.",
             "", "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + "."]
    if len(machines) > 1:
        lines += ["", "**Warning: these results come from different machines or versions; see each JSON.**"]
    return lines


def charts(found: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    made = []
    if "fanout" in found:
        made.append(grouped_chart(found["fanout"], out / "fanout.png", "Fan-out",
                                  [("deliveries_per_s", "edits applied / s, all readers (↑)", True),
                                   ("messages_per_s", "messages delivered / s (↑)", True),
                                   ("server_us_per_delivery", "server CPU µs per edit applied (↓)", True),
                                   ("server_us_per_message", "server CPU µs per message (↓)", False)]))
    if "latency" in found:
        made.append(grouped_chart(found["latency"], out / "latency.png", "Latency at 20 edits/s per writer",
                                  [("p50_ms", "p50 ms (↓)", False), ("p99_ms", "p99 ms (↓)", False)]))
    if "replay" in found:
        made.append(bar_chart(found["replay"], out / "replay.png", "B4 replay (automerge-paper)",
                              "reader_done_s", "seconds until the reader holds the final text (↓)"))
    if "cold_open" in found:
        made.append(bar_chart(found["cold_open"], out / "cold_open.png", "Cold open of the B4 document",
                              "open_s", "milliseconds until the new device holds the text (↓)", scale=1000))
    if "idle" in found:
        made.append(bar_chart(found["idle"], out / "idle.png", "Idle connections",
                              "kib_per_connection", "server KiB per idle connection (↓)"))
    if "many_spaces" in found:
        made.append(bar_chart(found["many_spaces"], out / "many_spaces.png", "1,000 spaces of 3 members",
                              "server_us_per_edit", "server CPU µs per edit (↓)"))
    if "files" in found:
        made.append(files_chart(found["files"], out / "files.png"))
    return made


def files_chart(data: dict[str, Any], path: Path) -> Path:
    bars: list[tuple[str, float, str]] = []
    for row in data["results"]:
        m, c = row["median"], row["contender"]
        if c == "encspaces":
            bars += [("encspaces upload", m.get("upload_mib_per_s") or 0.0, COLORS[c]),
                     ("encspaces download", m.get("download_mib_per_s") or 0.0, COLORS[c])]
        else:
            bars.append((f"{NAMES[c]} (pass-through)", m.get("mib_per_s") or 0.0, COLORS[c]))
    fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(bars) + 1.6))
    drawn = ax.barh([b[0] for b in bars][::-1], [b[1] for b in bars][::-1], color=[b[2] for b in bars][::-1])
    ax.bar_label(drawn, labels=[num(b[1]) for b in bars][::-1], padding=3, fontsize=9)
    ax.set_xlabel("MiB/s (↑)")
    ax.margins(x=0.2)
    ax.set_title(f"File transfer, {data['mib']} MiB — medians of {data['rounds']} rounds", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grouped_chart(data: dict[str, Any], path: Path, title: str, panels: list[tuple[str, str, bool]]) -> Path:
    shapes = data["settings"]["shapes"]
    contenders = [c for c in ["null", "null-sansio", "pycrdt", "node", "encspaces"] if c in data["contenders"]]
    columns = min(2, len(panels))
    rows = (len(panels) + columns - 1) // columns
    fig, grid = plt.subplots(rows, columns, figsize=(6.2 * columns, 4.2 * rows), squeeze=False)
    axes = [[ax for row in grid for ax in row][: len(panels)]]
    width = 0.8 / max(1, len(contenders))
    for ax, (key, label, log) in zip(axes[0], panels, strict=True):
        for k, c in enumerate(contenders):
            got = [median_of(data, c, key, s) for s in shapes]
            values = [v or 0.0 for v in got]
            xs = [i + (k - (len(contenders) - 1) / 2) * width for i in range(len(shapes))]
            bars = ax.bar(xs, values, width, label=NAMES[c], color=COLORS[c])
            ax.bar_label(bars, labels=[num(v) if v is not None else "failed" for v in got], fontsize=6.5,
                         rotation=90, padding=2)
        ax.set_xticks(range(len(shapes)), [f"{s} (W×R)" for s in shapes])
        ax.set_title(label, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.margins(y=0.25)
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{title} — medians of {data['settings']['rounds']} rounds", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bar_chart(data: dict[str, Any], path: Path, title: str, key: str, label: str, scale: float = 1.0) -> Path:
    rows = [(row["contender"], None if row["median"].get(key) is None else row["median"][key] * scale)
            for row in data["results"]]
    fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(rows) + 1.6))
    names = [NAMES[c] for c, _ in rows][::-1]
    if "encspaces-log" in data.get("contenders", {}):
        names = [n.replace("encspaces", "encspaces, from snapshot") if n == "encspaces" else n for n in names]
    values = [v or 0.0 for _, v in rows][::-1]
    bars = ax.barh(names, values, color=[COLORS[c] for c, _ in rows][::-1])
    ax.bar_label(bars, labels=[num(v) if v else "failed (see the table)" for v in values], padding=3, fontsize=9)
    ax.set_xlabel(label)
    ax.margins(x=0.2)
    ax.set_title(f"{title} — medians of {data['rounds']} rounds", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(results: Path = RESULTS_DIR) -> Path | None:
    found = load(results)
    if not found:
        print("no results to report", file=sys.stderr)
        return None
    lines = ["# encspaces benchmark results", "",
             "Generated by `python -m bench.report` from the JSON files beside this one; `make bench` reruns "
             "everything. How each figure is measured: [../README.md](../README.md).", "",
             *machine_lines(found), "", "## Summary (medians)", "", *summary(found, load(results / PREVIOUS)), ""]
    for name in BENCHMARKS:
        if name in found:
            lines += SECTIONS[name](found[name])
        else:
            lines += [f"## {name}", "", "Not run (no results file).", ""]
    if NOT_LANDED:
        lines += ["## Not measured yet", ""]
        lines += [f"- {what}: {why}." for what, why in NOT_LANDED]
    lines += ["", "Trace credit: automerge-paper editing trace by Martin Kleppmann (CC BY 4.0).", ""]
    charts(found, results)
    path = results / "RESULTS.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder of result JSON files")
    args = parser.parse_args(argv)
    path = render(args.results)
    if path is not None:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
