"""Write the committed notebooks (no outputs, a tagged `parameters` cell). Run: python tools/make_notebooks.py"""
import sys
from pathlib import Path

import nbformat as nbf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's ltlab
from ltlab.config import RunConfig  # noqa: E402

HERE = Path(__file__).resolve().parent.parent / "notebooks"


def notebook(cells, stem="nb"):
    nb = nbf.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    out = []
    for kind, src, *tags in cells:
        c = nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
        if tags:
            c.metadata["tags"] = list(tags)
        c.id = f"{stem}-{len(out):02d}"  # stable ids: regenerating gives no diff
        out.append(c)
    nb.cells = out
    return nb


PARAMETERS = [  # (RunConfig field, comment): the values come from RunConfig's defaults (one set of defaults)
    ('dataset', 'digits_lt | fashion_mnist_lt | cifar10_lt | cifar100_lt | synthetic_lt | file_list'),
    ('root', "data folder (None: the dataset's default)"),
    ('dataset_params', 'extra dataset options, e.g. {"n_max": 500} or {"download": True}'),
    ('imbalance_factor', 'n_max / n_min of the training split'),
    ('model', 'convnet_small | resnet20 | resnet32 | resnet56 | resnet18 | ...'),
    ('model_params', 'extra create_model options (e.g. {"width": 16})'),
    ('head', 'auto | linear | cosine | lws (auto: cosine for cosine-input losses)'),
    ('loss', 'any name in ltlab.losses.LOSSES'),
    ('loss_params', 'loss hyper-parameters (None: method default)'),
    ('drw_start', 'epoch where deferred re-weighting starts (None: off)'),
    ('sampler', 'instance | class_balanced | sqrt | progressive | effective_number | cben | class_aware'),
    ('sampler_params', 'sampler options (e.g. {"beta": 0.999} for effective_number)'),
    ('epochs', 'training epochs'),
    ('batch_size', 'mini-batch size'),
    ('lr', 'peak learning rate (SGD)'),
    ('momentum', 'SGD momentum'),
    ('nesterov', 'Nesterov momentum'),
    ('weight_decay', 'L2 weight decay'),
    ('warmup_epochs', 'linear warm-up epochs'),
    ('lr_schedule', 'step | cosine | constant'),
    ('milestones', 'step schedule: epochs where lr is multiplied by lr_gamma'),
    ('lr_gamma', 'step schedule: factor per milestone'),
    ('augment', "random crop + flip (batched on the device; the dataset's recipe)"),
    ('mixup_alpha', 'mixup Beta(a, a); 0 turns it off'),
    ('val_per_class', 'balanced validation images per class from unused train images (0: none)'),
    ('seed', 'training seed'),
    ('device', 'auto | cpu | cuda'),
    ('precision', 'fp32 | bf16 | fp16'),
    ('channels_last', 'channels-last memory format (faster convolutions, most of all with bf16)'),
    ('compile', 'torch.compile: False | True | "reduce-overhead" (CUDA graphs) | "max-autotune"'),
    ('eval_every', 'evaluate every k epochs'),
    ('progress', 'tqdm progress bar'),
    ('tensorboard', 'TensorBoard event files in the run directory (tensorboard --logdir runs/)'),
    ('run_dir', 'output directory (None: runs/<time>_<dataset>_<loss>_...)'),
    ('checkpoint_every_steps', 'also checkpoint every k steps inside an epoch (None: once per epoch)'),
    ('init_from', 'stage-one run directory for a second stage'),
    ('stage', 'joint | classifier (backbone frozen) | afg (GLAG stage two)'),
    ('stage_params', "the stage's options (None: its default); see ltlab.stages"),
    ('resume', 'continue an interrupted run in run_dir'),
    ('epochs_per_call', 'stop after this many epochs in this call (resumable; None: all)'),
]


def parameters_cell() -> str:
    """The 01_train ``parameters`` cell: every ``PARAMETERS`` field at RunConfig's default, one literal a line."""
    defaults = RunConfig.defaults()
    return "\n".join(f"{f'{name} = {defaults[name]!r}':<30} # {comment}" for name, comment in PARAMETERS)


TRAIN = [
    ("md", "# Train a long-tailed classifier\n\nAny method on any long-tailed dataset. Edit the `parameters` "
           "cell (or pass `-p key value` to `python -m ltlab run notebooks/01_train.ipynb`). The run is written "
           "to `runs/<run_id>/`, the only thing the analysis notebooks read."),
    ("code", parameters_cell(), "parameters"),
    ("code", '''import ltlab
from ltlab.viz import plotting

config = ltlab.RunConfig.from_namespace(globals())
config'''),
    ("code", "run = ltlab.run(config)\nrun"),
    ("md", "## Result\n\nPer-class accuracy on the balanced test split, classes sorted by training count "
           "(many > 100, medium 20-100, few < 20 training images)."),
    ("code", "plotting.per_class_accuracy_bar(run).show()"),
    ("code", "run.metrics.tail(10)"),
]

NOTEBOOKS = {"01_train.ipynb": TRAIN}


def all_notebooks() -> dict:
    """01_train here plus every ``NOTEBOOKS`` dict of the sibling modules ``tools/nb_*.py``."""
    import importlib.util

    out = dict(NOTEBOOKS)
    for path in sorted(Path(__file__).resolve().parent.glob("nb_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out.update(mod.NOTEBOOKS)
    return out


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    for name, cells in all_notebooks().items():
        nbf.write(notebook(cells, name.split(".")[0].replace("_", "-")), HERE / name)
        print("wrote", HERE / name)
