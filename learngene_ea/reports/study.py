"""A study's numbers: every seed's transfer table pooled over (seed, episode) pairs, then written.

Everything here works on plain dicts (the seeds' ``transfer.json`` and ``summary.json``), so
a study's report can be redrawn from its run folders without evaluating anything again.

Rows are keyed by method for the learngene's own architecture (``scratch``, ``learngene``,
...) and ``METHOD@ARCH`` for other descendants (``learngene@conv4 x1``); paired differences by
``learngene-METHOD`` (``learngene-scratch@conv4 x1`` for other architectures), always between
rows of one architecture, per (seed, episode) pair: the same episode and the same seeds.
"""
from __future__ import annotations

import os

import numpy as np

from .files import pyplot, save_figure, write_report_files
from ..fewshot.sampling import mean_and_ci95
from ..transfer.descendants import arch_label
from ..transfer.report import complement_words, split_words

FORMAT = "learngene-ea/study-v1"


def row_key(method: str, arch: str, main_arch: str) -> str:
    """``method`` on the learngene's own architecture, else ``method@arch``."""
    return method if arch == main_arch else f"{method}@{arch}"


def main_architecture(transfer: dict) -> str:
    """The learngene's own architecture in a ``transfer.json`` (``conv4 x0.5``)."""
    return arch_label(transfer["learngene"]["family"], transfer["learngene"]["width"])


def episode_digests(transfer: dict) -> dict[str, list[str]]:
    """``{setting: [digest of every episode]}``: equal for two tables evaluated on the same episodes."""
    return {s["name"]: [e["digest"] for e in s["episodes"]] for s in transfer["settings"]}


def _summary(values) -> dict:
    mean, ci95 = mean_and_ci95(values)
    return {"mean": mean, "ci95": ci95, "episodes": int(len(values))}


def _paired(diff) -> dict:
    diff = np.asarray(diff, dtype=np.float64)
    mean, ci95 = mean_and_ci95(diff)
    return {"mean": mean, "ci95": ci95, "won": int((diff > 0).sum()), "lost": int((diff < 0).sum()),
            "episodes": int(diff.size)}


def _run_record(seed: int, summary: dict) -> dict:
    best = summary.get("best", {})
    return {"seed": seed, "run_dir": f"seed-{seed}", "transfer": os.path.join(f"seed-{seed}", "transfer.json"),
            "validation": {"accuracy": best.get("accuracy"), "ci95": best.get("ci95"),
                           "fresh_validation": best.get("fresh_validation")},
            "fraction": best.get("fraction"), "num_params": best.get("num_params"),
            "reached_target": best.get("reached_target"), "generations_run": summary.get("generations_run"),
            "evolution_seconds": summary.get("wall_seconds")}


def pool(seeds: list[int], transfers: list[dict], summaries: list[dict]) -> dict:
    """The pooled part of ``study.json`` from each seed's ``transfer.json`` and ``summary.json``.

    Returns ``settings``, ``setting_labels``, ``architecture``, ``rows``, ``row_info``,
    ``paired``, ``rows_left_out`` (rows missing from some seed's table: not pooled), ``runs``
    and ``validation`` (each validation figure's mean and 95% CI over seeds).
    """
    main_arch = main_architecture(transfers[0])
    settings = [s["name"] for s in transfers[0]["settings"]]
    tables = [{row_key(r["method"], r["arch"], main_arch): r for r in t["rows"]} for t in transfers]
    keys = [k for k in tables[0] if all(k in table for table in tables)]
    every = list(dict.fromkeys(k for table in tables for k in table))
    left_out = {k: [seed for seed, table in zip(seeds, tables) if k not in table] for k in every if k not in keys}

    def accuracies(key, setting):  # one list per seed, in episode order
        return [np.asarray(table[key]["results"][setting]["accuracies"], dtype=np.float64) for table in tables]

    rows, row_info = {}, {}
    for key in keys:
        first = tables[0][key]
        row_info[key] = {"method": first["method"], "arch": first["arch"], "fine_tuned": first["fine_tuned"],
                         "params": [int(t[key]["params"]) for t in tables],
                         "fraction": [float(t[key]["fraction"]) for t in tables]}
        rows[key] = {}
        for setting in settings:
            per_seed = accuracies(key, setting)
            rows[key][setting] = {**_summary(np.concatenate(per_seed)),
                                  "per_seed": [{"seed": s, **_summary(a)} for s, a in zip(seeds, per_seed)]}

    paired = {}
    for key in keys:
        method, arch = row_info[key]["method"], row_info[key]["arch"]
        learngene = row_key("learngene", arch, main_arch)
        if method == "learngene" or learngene not in rows:
            continue
        name = "learngene-" + row_key(method, arch, main_arch)
        paired[name] = {}
        for setting in settings:
            diffs = [a - b for a, b in zip(accuracies(learngene, setting), accuracies(key, setting))]
            paired[name][setting] = {**_paired(np.concatenate(diffs)),
                                     "per_seed": [{"seed": s, **_paired(d)} for s, d in zip(seeds, diffs)]}

    runs = [_run_record(seed, summary) for seed, summary in zip(seeds, summaries)]
    selected = [r["validation"]["accuracy"] for r in runs]
    fresh = [(r["validation"]["fresh_validation"] or {}).get("accuracy") for r in runs]
    validation = {name: None if None in values else {**dict(zip(("mean", "ci95"), mean_and_ci95(values))),
                                                      "seeds": len(values)}
                  for name, values in (("as_selected", selected), ("fresh", fresh))}
    return {"settings": settings, "setting_labels": {s["name"]: s["label"] for s in transfers[0]["settings"]},
            "architecture": main_arch, "rows": rows, "row_info": row_info, "paired": paired,
            "rows_left_out": left_out, "runs": runs, "validation": validation}


# ---------------------------------------------------------------------------- reports

def _cell(result: dict) -> str:
    return f"{100 * result['mean']:.1f} ± {100 * result['ci95']:.1f}"


def _diff_cell(result: dict) -> str:
    return f"{100 * result['mean']:+.1f} ± {100 * result['ci95']:.1f} ({result['won']}/{result['episodes']})"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def study_title(study: dict) -> str:
    """``default on synthetic``: the recipe (its ``name``, else its file's name) and the dataset."""
    recipe = study["recipe"]
    name = recipe["config"].get("name") or (os.path.splitext(os.path.basename(recipe["path"]))[0]
                                            if recipe.get("path") else "defaults")
    return f"{name} on {study.get('dataset_label') or study['dataset']}"


def markdown_table(study: dict) -> str:
    """``study.md``: pooled rows x settings, paired differences pooled and per seed, validation per seed."""
    seeds, settings, labels = study["seeds"], study["settings"], study["setting_labels"]
    evaluation = study["transfer"]
    lines = [
        f"### Study `{study_title(study)}`: {study['architecture']} learngenes of "
        f"{len(seeds)} evolution seeds ({', '.join(map(str, seeds))})",
        "",
        f"Every seed's learngene on the same episodes of {split_words(study['transfer'].get('classes', 'test'))} "
        f"(`{study['dataset']}`, {evaluation['n_way']}-way, "
        f"{evaluation['episodes']} episodes per setting, transfer seed {evaluation['seed']}); pooled over every "
        f"(seed, episode) pair: mean query accuracy (%) ± 95% CI (1.96 · sd / √n, n = seeds × episodes). "
        f"{study['launch']['processes']} process(es), {study['launch']['threads']} torch thread(s) each."
        f"{complement_words(evaluation)}",
        "",
        "| Row | Params transferred (mean over seeds) | " + " | ".join(labels[s] for s in settings) + " |",
        "|:--|--:|" + "--:|" * len(settings),
    ]
    for key, results in study["rows"].items():
        info = study["row_info"][key]
        name = key + ("" if info["fine_tuned"] else " (no update)")
        lines.append(f"| {name} | {np.mean(info['params']):,.0f} ({100 * np.mean(info['fraction']):.1f}%) | "
                     + " | ".join(_cell(results[s]) for s in settings) + " |")
    if study["paired"]:
        lines += ["", "Paired differences, per (seed, episode) pair (percentage points, mean ± 95% CI; pairs won / "
                  "pairs), pooled and per seed:", "",
                  "| Comparison | Setting | pooled | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                  "|:--|:--|--:|" + "--:|" * len(seeds)]
        for name, results in study["paired"].items():
            label = name.replace("learngene-", "learngene − ", 1)
            for s in settings:
                lines.append(f"| {label} | {labels[s]} | {_diff_cell(results[s])} | "
                             + " | ".join(_diff_cell(r) for r in results[s]["per_seed"]) + " |")
    lines += ["", "Validation accuracy (%) per seed: as selected (the best of every evaluation on the run's fixed "
              "episodes, biased upward) and rescored on fresh validation episodes by a fresh descendant.", "",
              "| Seed | Learngene fraction | As selected | Rescored (fresh) |", "|--:|--:|--:|--:|"]
    for run in study["runs"]:
        fresh = run["validation"]["fresh_validation"] or {}
        lines.append(f"| {run['seed']} | {_pct(run['fraction'])}% | {_pct(run['validation']['accuracy'])} ± "
                     f"{_pct(run['validation']['ci95'])} | {_pct(fresh.get('accuracy'))} ± {_pct(fresh.get('ci95'))} |")
    pooled = study["validation"]
    lines.append("| mean over seeds | | " + " | ".join("–" if pooled[k] is None else _cell(pooled[k])
                                                     for k in ("as_selected", "fresh")) + " |")
    if study["rows_left_out"]:
        lines += ["", "Not pooled (missing from some seeds' transfer.json): "
                  + "; ".join(f"{k} (seeds {', '.join(map(str, v))})" for k, v in study["rows_left_out"].items())]
    return "\n".join(lines) + "\n"


def plot_study(study: dict, path: str | os.PathLike) -> None:
    """Left: every row's pooled accuracy with 95% CI per setting. Right: paired differences, the pooled
    mean with its CI and each seed's mean as a point (Agg backend, atomic write)."""
    plt = pyplot()

    settings, labels, rows, paired = study["settings"], study["setting_labels"], study["rows"], study["paired"]
    fig, (ax_rows, ax_diff) = plt.subplots(1, 2, figsize=(12, 4.4), dpi=110,
                                           gridspec_kw={"width_ratios": [1.2, 1.0]})
    cmap = plt.get_cmap("tab10" if max(len(rows), len(paired)) <= 10 else "tab20")
    x = np.arange(len(settings))
    width = 0.8 / max(1, len(rows))
    for i, (key, results) in enumerate(rows.items()):
        ax_rows.bar(x - 0.4 + width * (i + 0.5), [100 * results[s]["mean"] for s in settings], width,
                    yerr=[100 * results[s]["ci95"] for s in settings], capsize=2, color=cmap(i % cmap.N),
                    label=key, edgecolor="black", linewidth=0.3)
    ax_rows.axhline(100.0 / study["transfer"]["n_way"], color="grey", ls=":", lw=1, label="chance")
    ax_rows.set_xticks(x, [labels[s] for s in settings])
    ax_rows.set_ylabel("query accuracy (%), 95% CI")
    ax_rows.set_ylim(0, 100)
    ax_rows.set_title(f"{len(study['seeds'])} seeds x {study['transfer']['episodes']} episodes, pooled", fontsize=9)
    ax_rows.legend(fontsize=6, loc="upper left")
    width = 0.8 / max(1, len(paired))
    for i, (name, results) in enumerate(paired.items()):
        positions = x - 0.4 + width * (i + 0.5)
        color = cmap(i % cmap.N)
        ax_diff.errorbar(positions, [100 * results[s]["mean"] for s in settings],
                         yerr=[100 * results[s]["ci95"] for s in settings], fmt="s", ms=5, capsize=3,
                         color=color, label=name.replace("learngene-", "learngene − ", 1))
        for j, s in enumerate(settings):
            points = [100 * r["mean"] for r in results[s]["per_seed"]]
            ax_diff.scatter(np.full(len(points), positions[j]) + width * 0.25, points, s=10, color=color,
                            alpha=0.6, edgecolor="none")
    ax_diff.axhline(0.0, color="black", lw=0.8)
    ax_diff.set_xticks(x, [labels[s] for s in settings])
    ax_diff.set_ylabel("paired difference (points): pooled ± 95% CI, dots: seeds")
    ax_diff.set_title("learngene − each other row, same episodes", fontsize=9)
    ax_diff.legend(fontsize=6, loc="best")
    fig.suptitle(f"Study {study_title(study)}: {study['architecture']} learngenes",
                 fontsize=10)
    save_figure(fig, path)


def write_study_reports(study: dict, out_dir: str) -> dict[str, str]:
    """``study.json``, ``study.md`` and ``study.png`` in ``out_dir`` (atomically); return their paths."""
    return write_report_files(study, out_dir, "study", markdown_table, plot_study)
