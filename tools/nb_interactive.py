"""Cells of 06_widgets, 07_sweep and 08_paper_figures (issue 7); tools/make_notebooks.py writes them."""

WIDGETS = [
    ("md", "# Interactive panels\n\nThree panels for JupyterLab (ipywidgets + plotly). Without a front end "
           "(papermill, CI) every cell still runs; the widgets then only hold their state.\n\n"
           "1. **Post-hoc adjustment** of a run's saved test logits: logit adjustment (Menon et al. 2021), "
           "PN re-balancing (GALA) and tau-normalisation (Kang et al. 2020), no retraining.\n"
           "2. **Schedule explorer**: GLAG alpha(T) and beta, ALA DF/QF, GCL cloud widths, DRW weights.\n"
           "3. **Training panel**: start a short run, watch loss and many/medium/few accuracy per epoch, "
           "stop it cleanly (the checkpoint is kept, the run can be resumed)."),
    ("code", '''run_dir = None          # a run directory with saved test logits; None means tiny digits run in a temp dir
tiny_epochs = 5         # epochs of that tiny run
features = "extract"    # tau-normalisation features: auto (features_test.npz) | extract (from checkpoint.pt) | none
train_epochs = 5        # starting value of the training panel's epochs slider
train_root = None       # where the training panel writes its runs; None means runs/
autostart = False       # start the training panel's run as soon as the cell runs and wait for it (headless runs)
device = "auto"         # auto | cpu | cuda''', "parameters"),
    ("code", '''import tempfile

import ltlab
from ltlab.viz import widgets

if run_dir is None:
    run_dir = tempfile.mkdtemp(prefix="ltlab-06-") + "/tiny_digits"
    ltlab.run(dataset="digits_lt", epochs=tiny_epochs, lr=0.05, batch_size=64, progress=False, device=device,
              run_dir=run_dir)
run = ltlab.load_run(run_dir)
run'''),
    ("md", "## 1. Post-hoc adjustment\n\nMove the sliders: bars are per-class test accuracy (classes sorted by "
           "training count, coloured many/medium/few), the black ticks the unadjusted model; the numbers above "
           "give overall and many/medium/few accuracy and their change. PN re-balancing uses the whole test set "
           "at once (transductive)."),
    ("code", "panel = widgets.posthoc_panel(run, features=features)\npanel"),
    ("md", "## 2. Schedule explorer\n\nPure functions of the epoch and the class counts (no training): pick a "
           "method, move its hyper-parameters."),
    ("code", "explorer = widgets.schedule_explorer()\nexplorer"),
    ("md", "## 3. Training panel\n\n**Start** trains in a background thread (the kernel stays free); curves update "
           "every epoch. **Stop** ends the run after the current epoch's checkpoint."),
    ("code", '''trainer = widgets.training_panel(epochs=train_epochs, run_root=train_root, device=device)
trainer'''),
    ("code", '''if autostart:
    trainer.start()
    trained = trainer.wait()
    print(trainer.status.value)'''),
]

SWEEP = [
    ("md", "# Sweep: many runs, one table\n\nEach parameter combination runs `01_train.ipynb` through papermill in "
           "its own process, `parallel` at a time, each with its own run directory (named from its parameters) "
           "holding the executed notebook. Start it again and complete runs are skipped, interrupted ones resumed; "
           "a two-stage preset runs both stages in one job. Same thing from a shell: `python -m ltlab sweep "
           "preset.yaml --grid loss=ce,balanced_softmax --seeds 0,1,2 --parallel 2`. On a Slurm cluster set "
           "`executor = \"slurm\"` and `slurm` options (`docs/sweeps.md`); with GPUs here, "
           "`per_gpu` runs share each GPU."),
    ("code", '''notebook = "01_train.ipynb"     # the notebook each run executes (relative to the cwd, else to notebooks/)
grid = {"loss": ["ce", "balanced_softmax", "logit_adjusted"]}  # name -> values (product)
seeds = [0, 1, 2]               # every grid point runs once per seed
base_params = {"dataset": "digits_lt", "epochs": 10, "batch_size": 64, "lr": 0.05, "progress": False}
parallel = 2                    # runs side by side (CPU); with GPUs: per_gpu runs on each GPU
per_gpu = None                  # runs at once on each visible GPU (None: CPU processes, or one per GPU)
executor = "local"              # local | submitit_local | slurm
slurm = {}                      # Slurm options: partition, gpus_per_node, timeout_min, mem_gb, array_parallelism
out_root = None                 # run directories; None means runs/sweep_07
table = None                    # CSV/LaTeX output stem; None means <out_root>/results''', "parameters"),
    ("code", '''from pathlib import Path

import pandas as pd

from ltlab import batch
from ltlab.runs import runs_root

root = Path(out_root) if out_root else runs_root() / "sweep_07"
results = batch.sweep(notebook, grid=grid, seeds=seeds, base_params=base_params, parallel=parallel, out_root=root,
                      executor=executor, slurm=slurm, per_gpu=per_gpu)
results[["run_id", *grid, "seed", "status", "overall", "many", "medium", "few", "seconds"]]'''),
    ("code", '''failed = results[results.status == "failed"]
if len(failed):
    display(failed[["run_id", "notebook", "error"]])
else:
    print("all", len(results), "runs complete")'''),
    ("code", "batch.sweep_status(root)  # done / running / failed / interrupted / missing, from the run directories"),
    ("md", "## Mean ± std over seeds\n\nAccuracy in % on the balanced test split; many > 100, medium 20-100, "
           "few < 20 training images."),
    ("code", '''summary = batch.summarise(results, by=list(grid))
batch.format_table(summary)'''),
    ("code", '''paths = batch.export_tables(summary, Path(table) if table else root / "results",
                            caption="Top-1 accuracy (\\\\%), mean $\\\\pm$ std over seeds")
print(paths["tex"].read_text())
paths'''),
]

FIGURES = [
    ("md", "# Paper figures\n\nRegenerates every figure in `figures/` (PNG, SVG and PDF) and `figures/README.md` "
           "with the numbers a reader should see, with the same library code as `make figures` "
           "(`ltlab.viz.paper_figures`): gradient ratios under each statistic (GALA Fig. 1), weight norms, feature "
           "similarity, predictions with and without PN (GALA Fig. 2), ALA's probabilities and factors (ALA "
           "Figs. 2-4), GLAG's alpha forms and beta (GLAG Fig. 3), t-SNE of GLAG stage one and of CE vs GCL "
           "(GLAG Fig. 4, GCL Fig. 3), per-class feature spread of CE and GCL (GCL Fig. 1), per-class accuracy, GHM-CWAP bins and the schedules. Point `run_dirs` at "
           "your runs, or leave it `None` to train (or reuse) the Fashion-MNIST-LT runs under `runs/figures/`."),
    ("code", '''run_dirs = None                  # {legend: run directory}, legends as in ltlab.viz.paper_figures.METHODS and AFG;
                                 # None means train or reuse runs/figures/ (Fashion-MNIST-LT, IF 100, n_max 500)
epochs = 30                      # epochs of those runs when they are trained here (~30 min on 2 CPU cores)
output_dir = "figures"           # relative paths are taken from the project root
formats = ["png", "svg", "pdf"]  # static formats written for every figure
max_points = 3000                # t-SNE subset per panel''', "parameters"),
    ("code", '''import pandas as pd

from ltlab.viz import paper_figures
from ltlab.viz.export import resolve_out_dir

runs = paper_figures.train(epochs) if run_dirs is None else paper_figures.check_runs(run_dirs)
pd.DataFrame([{"method": label, "run": r.dir.name, **r.summary()} for label, r in runs.items()]).round(4)'''),
    ("code", '''figures = paper_figures.build(runs, max_points)
paths = paper_figures.save(figures, output_dir, formats)
readme = paper_figures.write_readme(runs, figures, output_dir)
print(f"{len(figures)} figures x {len(formats)} formats and {readme.name} -> {resolve_out_dir(output_dir)}")
sorted(p.name for p in paths)'''),
    ("md", "## What a reader should see\n\nThe README written above gives, per figure, the paper figure it "
           "mirrors and the numbers on these runs, including where the paper's picture does not appear and why."),
    ("code", '''from IPython.display import Markdown

Markdown(readme.read_text())'''),
    ("md", "## Two of them, interactive\n\nAt the notebook's width (`save` above gave them their export size)."),
    ("code", 'figures["per_class_accuracy"].update_layout(width=None)'),
    ("code", 'figures["gradient_ratio_by_class"].update_layout(width=None)'),
]

NOTEBOOKS = {"06_widgets.ipynb": WIDGETS, "07_sweep.ipynb": SWEEP, "08_paper_figures.ipynb": FIGURES}
