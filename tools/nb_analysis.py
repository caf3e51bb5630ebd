"""Analysis notebooks 02-05 (picked up by tools/make_notebooks.py). Cells: ("md" | "code", source, *tags)."""

_RUNS = '''run_dirs = []                   # run directories (absolute, or names under runs/)
labels = None                   # legend name per run; None means each run's loss'''
_EXPORT = '''formats = ["png", "svg", "pdf"] # static formats written when export is True
export = False                  # write static figures (kaleido + Chromium)'''

_LOAD = '''import ltlab
from ltlab import features, plotting
from ltlab.export import save_figures, slug
from ltlab.runs import list_runs

if not run_dirs:
    display(list_runs())
    raise ValueError("set run_dirs to one or more run directories (the table above lists runs/)")
runs = [ltlab.load_run(d) for d in run_dirs]
names = plotting.run_labels(runs, labels)
figures = {}'''

_SAVE = '''for fig in figures.values():
    fig.show()
if export:
    for path in save_figures({slug(k): fig for k, fig in figures.items()}, output_dir, formats):
        print(path)'''

TSNE = [
    ("md", "# t-SNE of learned features\n\nPenultimate features of each run's test (or train) split, embedded "
           "with t-SNE (openTSNE when installed, else scikit-learn; PCA to 50 dimensions first, seeded). "
           "Colour by class or by many / medium / few training-count group. `extract=True` computes "
           "`features_<split>.npz` from the run's checkpoint when it is missing and saves it in the run directory."),
    ("code", _RUNS + '''
split = "test"                  # test | train
extract = True                  # compute features_<split>.npz from checkpoint.pt when missing
color = "label"                 # label (class) | group (many / medium / few)
max_points = 5000               # embed a seeded random subset of at most this many points (None: all)
perplexity = 30.0               # t-SNE perplexity (both libraries' default)
method = "auto"                 # auto | opentsne | sklearn
seed = 0                        # t-SNE and subset seed
output_dir = "figures/tsne"     # relative to the project root
''' + _EXPORT, "parameters"),
    ("code", _LOAD + "\nplotting.check_same_classes(runs, \"02_tsne\", same_counts=False)"),
    ("code", '''embeddings = {}
for run, name in zip(runs, names):
    f = features.run_features(run, split, extract=extract)
    embeddings[name] = features.tsne(f["features"], f["labels"], class_counts=run.class_counts,
                                     preds=f["logits"].argmax(1), perplexity=perplexity, method=method,
                                     max_points=max_points, random_state=seed)
    print(f"{name}: {len(embeddings[name])} points, accuracy {embeddings[name]['correct'].mean():.3f}")'''),
    ("md", "## Embeddings\n\nOne figure per run, and all runs side by side when there are several."),
    ("code", '''class_names = plotting.run_class_names(runs[0])
for name, df in embeddings.items():
    figures[f"tsne_{name}"] = plotting.tsne_scatter(df, color, class_names=class_names,
                                                    title=f"t-SNE of {split} features: {name}")
if len(embeddings) > 1:
    figures["tsne_side_by_side"] = plotting.tsne_scatter(embeddings, color, class_names=class_names)
''' + _SAVE),
]

PER_CLASS = [
    ("md", "# Per-class accuracy\n\nTest accuracy per class (sorted by training count, runs side by side), "
           "overall and many / medium / few accuracy over epochs, and each run's confusion matrix. The test "
           "split is balanced; many > 100, medium 20-100, few < 20 training images."),
    ("code", _RUNS + '''
epoch = -1                      # evaluated epoch for the per-class curve (-1: the last)
output_dir = "figures/per_class"  # relative to the project root
''' + _EXPORT, "parameters"),
    ("code", _LOAD),
    ("code", '''import pandas as pd

pd.concat([plotting.summary_table(r).assign(run=n) for r, n in zip(runs, names)]).set_index("run")'''),
    ("code", '''figures["per_class_accuracy"] = plotting.per_class_accuracy_curve(runs, names, epoch=epoch)
figures["accuracy_over_epochs"] = plotting.accuracy_over_epochs(runs, names)
for run, name in zip(runs, names):
    figures[f"confusion_{name}"] = plotting.confusion_matrix(run)
''' + _SAVE),
]

GRADIENTS = [
    ("md", "# Gradient ratios\n\nPositive / negative gradient on each classifier's logit, accumulated per "
           "epoch by the training loop (`probes.npz`): per class at one epoch, over training, and the negative "
           "gradient by source class. Tail classifiers of a plain CE run receive far more negative than "
           "positive gradient; GALA and GHM-CWAP aim to even this out. GALA runs also show the accumulated "
           "statistics theta / phi its loss adjusts with."),
    ("code", _RUNS + '''
epoch = -1                      # epoch for the per-class ratio and the heatmaps (-1: the last; heatmaps need an evaluated epoch)
classes = None                  # class indices for the curves over training; None means all (up to 10) or 8 spread
output_dir = "figures/gradients"  # relative to the project root
''' + _EXPORT, "parameters"),
    ("code", _LOAD),
    ("code", '''figures["gradient_ratio_by_class"] = plotting.gradient_ratio_by_class(runs, names, epoch=epoch)
figures["gradient_ratio_curves"] = plotting.gradient_ratio_curves(runs, names, classes=classes)
figures["weight_norms"] = plotting.weight_norms(runs, names, epoch=epoch)
for run, name in zip(runs, names):
    figures[f"gradient_heatmap_{name}"] = plotting.gradient_ratio_heatmap(run, epoch=epoch)
gala = [(r, n) for r, n in zip(runs, names) if "theta" in r.probes]
for run, name in gala:
    figures[f"gala_theta_phi_{name}"] = plotting.gala_theta_phi(run, epoch=epoch)
if not gala:
    print("no GALA run among run_dirs: theta / phi figures skipped")
''' + _SAVE),
]

SCHEDULES = [
    ("md", "# Schedules and per-class factors\n\nEverything here is a pure function of the epoch and the class "
           "counts, so no training run is needed: GLAG's alpha(T) and class-wise beta, ALA's quantity and "
           "difficulty factors, GCL's cloud widths, GHM-CWAP's adaptive bins with the weights they give (and "
           "the paper's Fig. 2: the distribution of g = 1 - p_y per group against equal-width and adaptive "
           "bins) and DRW's class weights. Give "
           "`ghm_run_dir` (a `loss=\"ghm_cwap\"` run) to draw its recorded bins instead of a synthetic histogram, "
           "and `beta_run_dir` to replay the beta rule on a run's per-class accuracy."),
    ("code", '''n_max = 5000                    # images of the largest class
num_classes = 10                # number of classes
imbalance_factor = 100          # n_max / n_min
profile = "exp"                 # exp | step
num_epochs = 200                # stage-one epochs (alpha(T), DRW)
glag_s = 1.0                    # GLAG alpha scale s (paper: 1 CIFAR / ImageNet-LT, 0.5 iNat)
glag_c = [2.0]                  # GLAG alpha base c, one curve each (paper: 2)
glag_generation_epochs = 40     # GLAG stage-two generation epochs (beta)
beta_run_dir = None             # run whose per-class accuracy replays the beta rule; None: synthetic
gcl_noise_mul = 0.5             # GCL cloud multiplier (official code: 0.5 CIFAR, 1.0 Places-LT)
ghm_bins = 30                   # GHM-CWAP unit regions N
ghm_alpha = 0.9                 # GHM-CWAP effectiveness exponent
ghm_gamma = 0.8                 # GHM-CWAP margin scale
ghm_run_dir = None              # a ghm_cwap run for recorded bins; None: synthetic histogram
drw_start = 160                 # DRW switch epoch (None: off)
seed = 0                        # synthetic illustrations
output_dir = "figures/schedules"  # relative to the project root
''' + _EXPORT, "parameters"),
    ("code", '''import ltlab
from ltlab import plotting
from ltlab.data import longtail_counts
from ltlab.export import save_figures, slug

class_counts = longtail_counts(n_max, num_classes, imbalance_factor, profile)
print("class counts:", class_counts)
figures = {}'''),
    ("md", "## GLAG: alpha(T) and beta"),
    ("code", '''if beta_run_dir:
    beta, beta_labels = ltlab.load_run(beta_run_dir), None
else:
    beta, beta_labels = plotting.synthetic_glag_beta(class_counts, glag_generation_epochs, seed=seed)
figures["glag_schedule"] = plotting.glag_schedule(num_epochs, glag_s, glag_c, beta=beta, beta_classes=beta_labels)'''),
    ("md", "## ALA, GCL, GHM-CWAP and DRW"),
    ("code", '''figures["ala_factors"] = plotting.ala_factors(class_counts)
figures["gcl_cloud_widths"] = plotting.gcl_cloud_widths(class_counts, gcl_noise_mul)
ghm_source = ltlab.load_run(ghm_run_dir) if ghm_run_dir else plotting.synthetic_ghm_cwap_loss(
    class_counts, ghm_bins, ghm_alpha, ghm_gamma, seed=seed)
figures["ghm_cwap_bins"] = plotting.ghm_cwap_bins(ghm_source)
figures["ghm_cwap_fig2"] = plotting.ghm_cwap_bins(ghm_source, view="distribution")
figures["drw_weights"] = plotting.drw_weights(class_counts, drw_start, num_epochs)
''' + _SAVE),
]

NOTEBOOKS = {"02_tsne.ipynb": TSNE, "03_per_class_accuracy.ipynb": PER_CLASS,
             "04_gradient_ratios.ipynb": GRADIENTS, "05_schedules.ipynb": SCHEDULES}
