"""Analysis notebooks 02-05 (picked up by tools/make_notebooks.py). Cells: ("md" | "code", source, *tags)."""

_RUNS = '''run_dirs = []                   # run directories (absolute, or names under runs/); [] means the newest run under runs/
labels = None                   # legend name per run; None means each run's loss'''
_EXPORT = '''formats = ["png", "svg", "pdf"] # static formats written when export is True
export = False                  # write static figures (kaleido + Chromium)'''

_LOAD = '''import ltlab
from ltlab.viz import plotting
from ltlab.viz.export import save_figures, slug

runs = ltlab.load_runs(run_dirs)  # [] : the newest run under runs/ (after `make demo`: runs/demo)
names = plotting.run_labels(runs, labels)
print("runs:", *[f"{n}: {r.dir}" for n, r in zip(names, runs)], sep="\\n  ")
figures = {}'''

_SAVE = '''for fig in figures.values():
    fig.show()
if export:
    for path in save_figures({slug(k): fig for k, fig in figures.items()}, output_dir, formats):
        print(path)'''

TSNE = [
    ("md", "# t-SNE of learned features\n\nPenultimate features of each run's test (or train) split, embedded "
           "with t-SNE (openTSNE when installed, else scikit-learn; PCA to 50 dimensions first, seeded). "
           "Colour by class or by many / medium / few training-count group; `classes` embeds a subset (GCL "
           "Fig. 1 takes 4 classes from head to tail, GLAG Fig. 4 eight). `extract=True` computes "
           "`features_<split>.npz` from the run's checkpoint when it is missing and saves it in the run "
           "directory. With `run_dirs = []` the newest run under `runs/` is drawn."),
    ("code", _RUNS + '''
split = "test"                  # test | train
classes = None                  # class indices or names to embed; None means all
extract = True                  # compute features_<split>.npz from checkpoint.pt when missing
color = "auto"                  # auto (class up to max_classes classes, else group) | label (class) | group
max_classes = 20                # with color auto: colour by class up to this many classes, by group above
max_per_class = None            # keep at most this many points of each class (None: all), before max_points
max_points = 5000               # embed a seeded random subset of at most this many points (None: all)
perplexity = 30.0               # t-SNE perplexity (both libraries' default)
method = "auto"                 # auto | opentsne | sklearn
seed = 0                        # t-SNE and subset seed
output_dir = "exports/tsne"     # relative to the project root (exports/ is git-ignored)
''' + _EXPORT, "parameters"),
    ("code", _LOAD + '''
plotting.check_same_classes(runs, "02_tsne", same_counts=False)
class_names = plotting.run_class_names(runs[0])
subset = None if classes is None else plotting.class_subset(classes, class_names, "02_tsne")'''),
    ("code", '''from ltlab import features

embeddings = {}
for run, name in zip(runs, names):
    f = features.run_features(run, split, extract=extract)
    embeddings[name] = features.tsne(f["features"], f["labels"], class_counts=run.class_counts,
                                     preds=f["logits"].argmax(1), perplexity=perplexity, method=method,
                                     max_points=max_points, max_per_class=max_per_class, random_state=seed,
                                     classes=subset)
    print(f"{name}: {len(embeddings[name])} points, accuracy {embeddings[name]['correct'].mean():.3f}")'''),
    ("md", "## What to look for\n\nWith a long-tailed training set, head classes form large clusters and "
           "tail classes small ones pressed against their neighbours, with mixed regions between them (GCL "
           "Fig. 1); a method that spreads the tail (GCL, GraLoss) should give its tail classes tighter, better "
           "separated clusters. Do not judge that by eye: each panel prints every class's mean **silhouette** "
           "(-1 to 1, higher = better separated; computed on the t-SNE input, the features after PCA), and the "
           "table below lists them side by side. On small runs the differences between methods are often "
           "within a few hundredths."),
    ("code", '''for name, df in embeddings.items():
    figures[f"tsne_{name}"] = plotting.tsne_scatter(df, color, class_names=class_names, max_classes=max_classes,
                                                    title=f"t-SNE of {split} features: {name}")
if len(embeddings) > 1:
    figures["tsne_side_by_side"] = plotting.tsne_scatter(embeddings, color, class_names=class_names,
                                                         max_classes=max_classes)
''' + _SAVE),
    ("code", "plotting.separation_table(embeddings, class_names)"),
]

PER_CLASS = [
    ("md", "# Per-class accuracy and predictions\n\nTest accuracy per class (sorted by training count, runs side "
           "by side), overall and many / medium / few accuracy over epochs, each run's confusion matrix, how many "
           "test images each class receives as a prediction (GALA Fig. 2) and the predicted probability of the "
           "true class (ALA Fig. 3). The test split is balanced; many > 100, medium 20-100, few < 20 training "
           "images. With `run_dirs = []` the newest run under `runs/` is drawn."),
    ("code", _RUNS + '''
epoch = -1                      # evaluated epoch for the per-class curve (-1: the last)
pn_tau = 1.0                    # also draw predictions after GALA's PN re-balancing with this tau (None: off)
classes = None                  # class indices or names to draw; None means all
max_classes = 100               # draw classes one by one up to this many; above, rank bins (confusion: groups)
bins = 50                       # rank bins above max_classes (mean and 25-75 % band per bin)
top_k = 15                      # most confused class pairs listed above max_classes
output_dir = "exports/per_class"  # relative to the project root (exports/ is git-ignored)
''' + _EXPORT, "parameters"),
    ("code", _LOAD),
    ("code", '''import pandas as pd

pd.concat([plotting.summary_table(r).assign(run=n) for r, n in zip(runs, names)]).set_index("run")'''),
    ("md", "## What to look for\n\n* **Per-class accuracy** falls from the head (left) to the tail (right) for "
           "plain CE: the classifier is biased towards classes it saw often. Re-balancing losses lift the few "
           "group, usually at some cost to the many group.\n"
           "* **Confusion matrix** (rows true, columns predicted, both sorted by count): tail test images land "
           "in the head columns on the left. Above `max_classes` classes it is many / medium / few x many / "
           "medium / few beside the most confused class pairs.\n"
           "* Above `max_classes` classes every class-axis figure draws `bins` rank bins (the bin mean, a band "
           "from the 25th to the 75th percentile of its classes), and says so under its title; `classes` draws "
           "chosen classes instead.\n"
           "* **Predictions per class**: a balanced test set expects the same number per class (dotted line); "
           "CE predicts head classes far more often than that. PN re-balancing (dashed) divides each class's "
           "probabilities by their sum over the test set and flattens the curve.\n"
           "* **True-class probability** per group, sorted: the share of hard (p_y < 0.2) and easy (p_y > 0.8) "
           "test images is in each panel's title; ALA's claim is fewer hard images in the few group without "
           "many more in the many group."),
    ("code", '''axis = dict(classes=classes, max_classes=max_classes)
figures["per_class_accuracy"] = plotting.per_class_accuracy_curve(runs, names, epoch=epoch, bins=bins, **axis)
figures["accuracy_over_epochs"] = plotting.accuracy_over_epochs(runs, names)
for run, name in zip(runs, names):
    figures[f"confusion_{name}"] = plotting.confusion_matrix(run, top_k=top_k, **axis)
figures["prediction_counts"] = plotting.prediction_counts(runs, names, pn_tau=pn_tau, bins=bins, **axis)
figures["true_class_probability"] = plotting.true_class_probability(runs, names)
''' + _SAVE),
]

GRADIENTS = [
    ("md", "# Gradient ratios\n\nFor classifier c the training loop sums, over the batches, the positive gradient "
           "`pos_c = sum_{y_i = c} |dL/dz_ic|` (its own samples pull it) and the negative gradient "
           "`neg_c = sum_{y_i != c} |dL/dz_ic|` (the other classes' samples push it away), and records them "
           "under three **statistics** (`probes.npz`): per epoch, accumulated from step 0, and GALA's code "
           "(the running sum of running sums the official GALA code keeps, which weights early steps most). "
           "Epoch 1 is also recorded at step resolution. Figures: the ratio pos / neg per class under each "
           "statistic (GALA Fig. 1(b)), the ratios over training, where a tail classifier's negative gradient "
           "comes from (Fig. 1(c)), the classifier weight norms (Fig. 1(a)), the similarity of each class vector "
           "to its own features (Fig. 1(d)), the by-source heatmap and, for GALA runs, its theta / phi. With "
           "`run_dirs = []` the newest run under `runs/` is drawn."),
    ("code", _RUNS + '''
epoch = -1                      # epoch for the per-class figures (-1: the last; heatmaps need an evaluated epoch)
statistic = None                # epoch | first_epoch | cumulative | gala_code, or a list; None means all recorded
classes = None                  # class indices or names for the curves over training; None means all (up to 10)
classifier = None               # classifier whose negative-gradient sources are drawn; None means the rarest class
max_classes = 100               # draw classes one by one up to this many; above, rank bins (heatmap: groups)
bins = 50                       # rank bins above max_classes (mean and 25-75 % band per bin)
output_dir = "exports/gradients"  # relative to the project root (exports/ is git-ignored)
''' + _EXPORT, "parameters"),
    ("code", _LOAD),
    ("md", "## What to look for\n\nWith a softmax loss and a classifier bias, the bias gradient of class c is "
           "exactly `neg_c - pos_c`. Summed over many steps that difference stays bounded (about "
           "`-(b_end - b_start) / lr`) while `pos_c` and `neg_c` keep growing, so **every ratio of sums over a long "
           "stretch of training goes to 1 for every class, whatever the loss**. The head / tail imbalance the "
           "papers describe lives in the early transient: at initialisation `pos_c / neg_c = n_c (C - 1) / "
           "(N - n_c)`, above 1 for the head and far below 1 for the tail.\n\n"
           "So expect: in **epoch 1**, CE's ratio falls from above 1 at the head to about 0.1-0.2 at the tail, "
           "and GALA keeps the tail nearer 1 (measured on Fashion-MNIST-LT, IF 100, 500 to 5 images: CE tail "
           "0.11, GALA 0.37); in the **last epoch** and **accumulated from step 0** every class sits near 1 for "
           "CE and GALA alike (0.85-1.11); the **GALA-code** statistic keeps a little of the transient (CE "
           "tail 0.86). The curves over training (log x, epoch 1 at step resolution) show the transient decay. "
           "A figure that shows every class near 1 is not a broken probe: it is what these sums do."),
    ("code", '''figures["gradient_ratio_by_class"] = plotting.gradient_ratio_by_class(runs, names, epoch=epoch, statistic=statistic,
                                                                max_classes=max_classes, bins=bins)
plotting.gradient_ratio_table(runs, names, epoch=epoch, statistic=statistic, max_classes=max_classes).round(3)'''),
    ("code", '''curve_statistic = statistic if statistic not in ("first_epoch", ["first_epoch"]) else "epoch"
figures["gradient_ratio_curves"] = plotting.gradient_ratio_curves(runs, names, classes=classes,
                                                              statistic=curve_statistic)
missing = {n: plotting.sources_missing(r) for r, n in zip(runs, names)}  # "" : by source class or group recorded
if not any(missing.values()):
    figures["negative_gradient_sources"] = plotting.negative_gradient_sources(runs, names, classifier=classifier,
                                                                          epoch=epoch, max_classes=max_classes)
else:
    print("negative-gradient sources skipped:", *[f"{n}: {why}" for n, why in missing.items() if why], sep="\\n  ")
figures["weight_norms"] = plotting.weight_norms(runs, names, epoch=epoch, max_classes=max_classes, bins=bins)
figures["class_feature_similarity"] = plotting.class_feature_similarity(runs, names, max_classes=max_classes,
                                                                        bins=bins)
for run, name in zip(runs, names):
    if missing[name]:
        print(f"gradient heatmap of {name} skipped: {missing[name]}")
    else:
        figures[f"gradient_heatmap_{name}"] = plotting.gradient_ratio_heatmap(run, epoch=epoch,
                                                                           max_classes=max_classes)
gala = [(r, n) for r, n in zip(runs, names) if "theta" in r.probes]
for run, name in gala:
    figures[f"gala_theta_phi_{name}"] = plotting.gala_theta_phi(run, epoch=epoch, max_classes=max_classes, bins=bins)
if not gala:
    print("no GALA run among the runs: theta / phi figures skipped")
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
    ("md", "Runs, where they exist, show the real thing: with `beta_run_dir = None` the newest GLAG stage-two "
           "(`stage=\"afg\"`) run under `runs/` gives the beta its tail classes were generated with, and with "
           "`ala_run_dir = None` the newest ALA run gives DF, QF and their product per group over training "
           "(ALA Fig. 4). Without such runs those panels fall back to a synthetic illustration or are skipped."),
    ("code", '''n_max = 5000                    # images of the largest class
num_classes = 10                # number of classes
imbalance_factor = 100          # n_max / n_min
profile = "exp"                 # exp | step
num_epochs = 200                # stage-one epochs (alpha(T), DRW)
glag_s = 1.0                    # GLAG alpha scale s (paper: 1 CIFAR / ImageNet-LT, 0.5 iNat)
glag_c = [2.0]                  # GLAG alpha base c, one curve each (paper: 2)
glag_generation_epochs = 40     # GLAG stage-two generation epochs (beta)
glag_forms = ["convex", "linear", "concave"]  # GLAG alpha forms (paper Fig. 3; convex is Eq. 4)
beta_run_dir = None             # a run for beta; None: the newest GLAG stage-two (afg) run under runs/, else synthetic
ala_run_dir = None              # an ALA run for DF and QF over training; None: the newest under runs/ if any
gcl_noise_mul = 0.5             # GCL cloud multiplier (official code: 0.5 CIFAR, 1.0 Places-LT)
ghm_bins = 30                   # GHM-CWAP unit regions N
ghm_alpha = 0.9                 # GHM-CWAP effectiveness exponent
ghm_gamma = 0.8                 # GHM-CWAP margin scale
ghm_run_dir = None              # a ghm_cwap run for recorded bins; None: synthetic histogram
drw_start = 160                 # DRW switch epoch (None: off)
seed = 0                        # synthetic illustrations
output_dir = "exports/schedules"  # relative to the project root (exports/ is git-ignored)
''' + _EXPORT, "parameters"),
    ("code", '''import ltlab
from ltlab.viz import plotting
from ltlab.data import longtail_counts
from ltlab.viz.export import save_figures, slug

class_counts = longtail_counts(n_max, num_classes, imbalance_factor, profile)
print("class counts:", class_counts)
figures = {}'''),
    ("md", "## GLAG: alpha(T) and beta\n\nalpha(T) grows from 0 to s (c - 1); the convex form (the paper's "
           "choice, its Tab. 5) stays low while the learning rate is high and rises late (GLAG Fig. 3). beta is the "
           "calibration strength of each tail class in stage two: it rises while the class's validation accuracy "
           "improves and falls when it drops."),
    ("code", '''afg = ltlab.load_runs(beta_run_dir, stage="afg", missing_ok=True)
if afg:
    beta, beta_labels, beta_source = afg[0], None, None
    print("beta from", afg[0].dir)
else:
    beta, beta_labels = plotting.synthetic_glag_beta(class_counts, glag_generation_epochs, seed=seed)
    beta_source = "synthetic accuracy history, no run"
    print("no GLAG stage-two run under runs/: beta replayed on a synthetic accuracy history")
figures["glag_schedule"] = plotting.glag_schedule(num_epochs, glag_s, glag_c, beta=beta, beta_classes=beta_labels,
                                                  forms=glag_forms, beta_source=beta_source)'''),
    ("md", "## ALA over training (a run)\n\nALA Fig. 4: DF (the epoch mean over each class's training samples), "
           "QF and their product averaged per many / medium / few group. Expect DF to fall as the network fits "
           "and to be larger for the few group than for the many group, and the product to adjust the few group "
           "most. Next, the factors as functions of the class counts: ALA's QF gives the tail a far larger "
           "adjustment than the LDAM margin (ALA Fig. 2)."),
    ("code", '''ala = ltlab.load_runs(ala_run_dir, loss="ala", missing_ok=True)
if ala:
    figures["ala_adjustment_over_training"] = plotting.ala_adjustment_curves(ala[0])
    print("DF and QF from", ala[0].dir)
else:
    print("no ALA run under runs/: train one (loss='ala') to draw DF and QF over training")'''),
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
