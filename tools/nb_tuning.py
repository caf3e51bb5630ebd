"""Cells of 09_tuning (issue 26: the workbench panel and the Optuna search); tools/make_notebooks.py writes them."""

TUNING = [
    ("md", "# Tune a method\n\nTwo ways to tune a long-tailed method's hyper-parameters, both reading the method's "
           "search space (type, default, sensible range and scale of each hyper-parameter, declared beside each "
           "loss; `ltlab.space.space_table()` lists them with their sources).\n\n"
           "1. **Workbench**: tweak by hand. Pick a loss: the form shows its hyper-parameters (sliders on their "
           "scale, a number box beside each: a value outside the sensible range is allowed, with a note), the "
           "sampler, DRW start and the recipe. Every **Start** adds a run to the comparison: curves of overall / "
           "many / medium / few accuracy over epochs, a table labelled by the values that differ from the first "
           "run, per-class accuracy of the selected runs. Select runs to continue, copy back into the form, hide "
           "or export (the `python -m ltlab train` command and a preset YAML). **Vary** runs a list of values of "
           "one hyper-parameter side by side and draws the final accuracy against the value.\n"
           "2. **Search**: let Optuna do it. A study over the loss's search space, each trial an ordinary run "
           "directory, bad trials pruned early on their per-epoch balanced accuracy; the same from a shell: "
           "`python -m ltlab search gcl --trials 12 -p dataset digits_lt -p epochs 3` (docs/tuning.md)."),
    ("code", '''loss = "gcl"               # the method to tune (a name in ltlab.losses.LOSSES)
dataset = "digits_lt"      # data of the workbench runs and the search trials
imbalance_factor = 10      # n_max / n_min of the training split
epochs = 3                 # epochs of a workbench run (the form's starting value) and of a search trial
device = "auto"            # auto | cpu | cuda
run_root = None            # the workbench's runs; None means runs/workbench (reopening rebuilds the comparison)
autostart = False          # headless: start one workbench run and vary one value (papermill, CI)
vary_name = "noise_mul"    # the hyper-parameter "vary one value" changes when autostart is on
vary_values = [0.2, 0.8]   # its values
run_search = True          # run (or finish) the search below
search_trials = 12         # finished (complete + pruned) trials of the search
objective = "overall"      # overall | many | medium | few, or a weighted mix of them (docs/tuning.md)
pruner = "median"          # median | hyperband | none
workers = 1                # processes sharing the study
out_root = None            # the study file and trial run directories; None means runs/search''', "parameters"),
    ("code", '''from ltlab.viz import widgets

bench = widgets.workbench_panel(loss=loss, dataset=dataset, imbalance_factor=imbalance_factor, epochs=epochs,
                                run_root=run_root, device=device)
bench'''),
    ("code", '''if autostart:
    bench.start()
    bench.wait()
    bench.vary(vary_name, vary_values)
bench.table()'''),
    ("md", "## Search\n\nTrials run in this kernel (or `workers` processes) and share one study in "
           "`<out_root>/search.db`; start the cell again after an interruption and it finishes the missing trials "
           "(a killed trial resumes from its checkpoint). Pruned trials stopped early: their run directory's "
           "`search.json` says `pruned`."),
    ("code", '''from pathlib import Path

from ltlab.launch import search
from ltlab.runs import runs_root

root = Path(out_root) if out_root else runs_root() / "search"
base = {"dataset": dataset, "imbalance_factor": imbalance_factor, "epochs": epochs, "device": device}
if run_search:
    table = search.search(loss, n_trials=search_trials, base_params=base, objective=objective, pruner=pruner,
                          out_root=root, workers=workers)
else:
    table = search.search_table(root)
table.drop(columns=["error"]).round(4)'''),
    ("md", "## Optuna's figures\n\nOptimisation history (best so far), intermediate values (the per-epoch "
           "objective each trial reported: pruned ones stop early), parameter importance (fANOVA) and parallel "
           "coordinates."),
    ("code", '''figures = search.search_figures(root)
figures["history"]'''),
    ("code", 'figures["intermediate"]'),
    ("code", 'figures.get("importance", "parameter importance needs two or more complete trials")'),
    ("code", 'figures["parallel"]'),
]

NOTEBOOKS = {"09_tuning.ipynb": TUNING}
