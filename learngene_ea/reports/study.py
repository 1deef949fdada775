"""A study's numbers: every seed's transfer table pooled over independent units, then written.

Everything here works on plain dicts (the seeds' ``transfer.json`` and ``summary.json``), so
a study's report can be redrawn from its run folders without evaluating anything again.

Rows are keyed by method for the learngene's own architecture (``scratch``, ``learngene``,
...) and ``METHOD@ARCH`` for other descendants (``learngene@conv4 x1``); paired differences by
``learngene-METHOD`` (``learngene-scratch@conv4 x1`` for other architectures), always between
rows of one architecture of one seed, episode by episode.

The unit of a pooled interval is a distinct test episode: a study gives every seed episodes of
its own (``api/study.py``), so the units are the (seed, episode) pairs; where seeds share an
episode (a study of older transfer tables), that episode's values are first averaged over the
seeds that share it, so that no episode counts twice. Every interval is Student's t
(:func:`learngene_ea.fewshot.sampling.mean_and_ci95`); ``over_seeds`` is the stricter one over
the seeds' means (n = seeds), which also counts what varies from one evolution to the next.
"""
from __future__ import annotations

import os

import numpy as np

from .files import complement_words, pyplot, save_figure, split_words, write_report_files
from ..fewshot.sampling import mean_and_ci95
from ..core.traced import arch_label

FORMAT = "learngene-ea/study-v2"  # v2: independent units, Student-t, every accuracy recorded


def row_key(method: str, arch: str, main_arch: str) -> str:
    """``method`` on the learngene's own architecture, else ``method@arch``."""
    return method if arch == main_arch else f"{method}@{arch}"


def main_architecture(transfer: dict) -> str:
    """The learngene's own architecture in a ``transfer.json`` (``conv4 x0.5``)."""
    return arch_label(transfer["learngene"]["family"], transfer["learngene"]["width"])


def episode_digests(transfer: dict) -> dict[str, list[str]]:
    """``{setting: [digest of every episode]}``: equal for two tables evaluated on the same episodes."""
    return {s["name"]: [e["digest"] for e in s["episodes"]] for s in transfer["settings"]}


def episode_units(values: list, digests: list[list[str]]) -> tuple[np.ndarray, str]:
    """The independent units of one setting: ``(values, unit)`` from per-seed ``values`` (episode order).

    Episodes are told apart by their digests. When no two seeds share an episode, every (seed,
    episode) value is a unit (``"seed-episode"``); otherwise each distinct episode is one unit,
    the mean of its values over the seeds that evaluated it (``"episode"``).
    """
    flat = [d for seed_digests in digests for d in seed_digests]
    pooled = np.concatenate([np.asarray(v, dtype=np.float64) for v in values])
    if len(set(flat)) == len(flat):
        return pooled, "seed-episode"
    groups: dict[str, list[float]] = {}
    for digest, value in zip(flat, pooled):
        groups.setdefault(digest, []).append(float(value))
    return np.asarray([np.mean(g) for g in groups.values()]), "episode"


def _over_seeds(per_seed_means: list[float]) -> dict | None:
    if len(per_seed_means) < 2:
        return None
    mean, ci95 = mean_and_ci95(per_seed_means)
    return {"mean": mean, "ci95": ci95, "seeds": len(per_seed_means)}


def _summary(values) -> dict:
    mean, ci95 = mean_and_ci95(values)
    return {"mean": mean, "ci95": ci95, "episodes": int(len(values))}


def _paired(diff) -> dict:
    diff = np.asarray(diff, dtype=np.float64)
    mean, ci95 = mean_and_ci95(diff)
    return {"mean": mean, "ci95": ci95, "won": int((diff > 0).sum()), "lost": int((diff < 0).sum()),
            "episodes": int(diff.size)}


def _pooled(per_seed: list, digests: list[list[str]], summarise) -> dict:
    """``summarise`` over the setting's independent units, its unit and count, and the interval over seeds."""
    units, unit = episode_units(per_seed, digests)
    return {**summarise(units), "unit": unit, "units": int(units.size),
            "over_seeds": _over_seeds([float(np.mean(v)) for v in per_seed])}


def _run_record(seed: int, summary: dict, transfer: dict) -> dict:
    best = summary.get("best", {})
    return {"seed": seed, "run_dir": f"seed-{seed}", "transfer": os.path.join(f"seed-{seed}", "transfer.json"),
            "transfer_seed": transfer.get("evaluation", {}).get("seed"), "episode_digests": episode_digests(transfer),
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

    def digests(setting):  # one list per seed: the episodes each seed's table was evaluated on
        return [episode_digests(t)[setting] for t in transfers]

    rows, row_info = {}, {}
    for key in keys:
        first = tables[0][key]
        row_info[key] = {"method": first["method"], "arch": first["arch"], "fine_tuned": first["fine_tuned"],
                         "params": [int(t[key]["params"]) for t in tables],
                         "fraction": [float(t[key]["fraction"]) for t in tables]}
        rows[key] = {}
        for setting in settings:
            per_seed = accuracies(key, setting)
            rows[key][setting] = {**_pooled(per_seed, digests(setting), _summary),
                                  "per_seed": [{"seed": s, **_summary(a), "accuracies": a.tolist()}
                                               for s, a in zip(seeds, per_seed)]}

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
            paired[name][setting] = {**_pooled(diffs, digests(setting), _paired),
                                     "per_seed": [{"seed": s, **_paired(d)} for s, d in zip(seeds, diffs)]}

    runs = [_run_record(seed, summary, t) for seed, summary, t in zip(seeds, summaries, transfers)]
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


def _over_seeds_cell(result: dict | None) -> str:
    return "–" if result is None else f"{100 * result['mean']:+.1f} ± {100 * result['ci95']:.1f}"


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
    first = study["rows"][next(iter(study["rows"]))][settings[0]] if study["rows"] else {}
    shared = first.get("unit") == "episode"
    episodes = (f"the same episodes of {split_words(evaluation.get('classes', 'test'))}" if shared else
                f"episodes of {split_words(evaluation.get('classes', 'test'))} of its own")
    units = ("each distinct episode once (its values averaged over the seeds that share it)" if shared
             else "every (seed, episode) pair, each an independent unit")
    lines = [
        f"### Study `{study_title(study)}`: {study['architecture']} learngenes of "
        f"{len(seeds)} evolution seeds ({', '.join(map(str, seeds))})",
        "",
        f"Every seed's learngene and baselines on {episodes} "
        f"(`{study['dataset']}`, {evaluation['n_way']}-way, "
        f"{evaluation['episodes']} episodes per setting and seed, transfer seed {evaluation['seed']}"
        f"{'' if shared else ' mixed with the evolution seed'}); pooled over {units}: mean query accuracy (%) "
        f"± 95% Student-t CI (t · sd / √n). "
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
        lines += ["", "Paired differences, episode by episode within a seed (percentage points, mean ± 95% CI; "
                  "units won / units): pooled over the units above, over the seeds' means (Student-t with "
                  f"{len(seeds) - 1} degree(s) of freedom: what varies between evolutions counts too), and per seed:",
                  "",
                  "| Comparison | Setting | pooled | over seeds | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                  "|:--|:--|--:|--:|" + "--:|" * len(seeds)]
        for name, results in study["paired"].items():
            label = name.replace("learngene-", "learngene − ", 1)
            for s in settings:
                lines.append(f"| {label} | {labels[s]} | {_diff_cell(results[s])} | "
                             f"{_over_seeds_cell(results[s].get('over_seeds'))} | "
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
    ax_rows.set_title(f"{len(study['seeds'])} seeds x {study['transfer']['episodes']} episodes, pooled "
                      "(Student-t 95% CI)", fontsize=9)
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
    ax_diff.set_title("learngene − each other row, paired within each seed's episodes", fontsize=9)
    ax_diff.legend(fontsize=6, loc="best")
    fig.suptitle(f"Study {study_title(study)}: {study['architecture']} learngenes",
                 fontsize=10)
    save_figure(fig, path)


def write_study_reports(study: dict, out_dir: str) -> dict[str, str]:
    """``study.json``, ``study.md`` and ``study.png`` in ``out_dir`` (atomically); return their paths."""
    return write_report_files(study, out_dir, "study", markdown_table, plot_study)
