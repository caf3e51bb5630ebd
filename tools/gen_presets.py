"""Generate notebooks/presets/*.yaml and docs/presets.md: python tools/gen_presets.py notebooks/presets"""
from __future__ import annotations
import sys
from pathlib import Path
import yaml

OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)
for old in OUT.glob("*.yaml"):
    old.unlink()
ROWS = []


def dump(name, header, params, table_method, data_label, imf):
    import textwrap
    wrapped = [w for l in header for w in textwrap.wrap(l, 108)]
    lines = [f"# {l}" for l in wrapped]
    body = yaml.safe_dump(params, sort_keys=False, default_flow_style=None, width=110)
    (OUT / f"{name}.yaml").write_text("\n".join(lines) + "\n" + body)
    rep = params.get("reported", {})
    ROWS.append((name, table_method, data_label, imf, rep, "stage_two" in params, params.get("posthoc"),
                 params.get("model", "convnet_small")))


def R(overall=None, many=None, medium=None, few=None):
    return {k: v for k, v in dict(overall=overall, many=many, medium=medium, few=few).items() if v is not None}


CIFAR = {"cifar10_lt": "CIFAR-10-LT", "cifar100_lt": "CIFAR-100-LT"}
SHORT = {"cifar10_lt": "cifar10", "cifar100_lt": "cifar100"}
DATA_NOTE = ("Data: the torchvision CIFAR folder (cifar-10-batches-py / cifar-100-python) under root "
             "(default $LTLAB_DATA or ~/.cache/ltlab/data); standard CIFAR-LT selection (baselines.md 1.1).")

# LDAM-DRW CIFAR recipe (baselines.md 5): ResNet-32, SGD 0.9, wd 2e-4, bs 128, lr 0.1, 200 epochs,
# warm-up 5, x0.01 after epoch 160 and x1e-4 after 180.
LDAM_RECIPE = dict(model="resnet32", epochs=200, batch_size=128, lr=0.1, momentum=0.9, weight_decay=2e-4,
                   warmup_epochs=5, lr_schedule="step", milestones=[160, 180], lr_gamma=0.01)
LDAM_HDR = ["Recipe: LDAM-DRW CIFAR code (kaidic/LDAM-DRW; reference/baselines.md section 5): ResNet-32, SGD m 0.9,",
            "wd 2e-4, bs 128, lr 0.1, 200 epochs, warm-up 5, lr x0.01 from 0-based epoch 160 and x1e-4 from 180,",
            "crop + flip. Model selection: last epoch (LIB; the LDAM-DRW script prints the best test epoch)."]

# ----------------------------------------------------------------------------------------------- baselines
CE_REP = {("cifar10_lt", 200): (65.68, "GCL Tab. 1"), ("cifar10_lt", 100): (70.36, "LDAM-DRW paper / BoT"),
          ("cifar10_lt", 50): (74.81, "Cui et al. / BoT"), ("cifar10_lt", 10): (86.39, "LDAM-DRW paper"),
          ("cifar100_lt", 200): (34.84, "GCL Tab. 1"), ("cifar100_lt", 100): (38.43, "GCL Tab. 1 (BoT: 38.32)"),
          ("cifar100_lt", 50): (43.85, "BoT (GCL Tab. 1: 43.9)"), ("cifar100_lt", 10): (55.71, "GALA Tab. 1")}
for (ds, imf), (acc, src) in CE_REP.items():
    dump(f"ce_{SHORT[ds]}_if{imf}",
         [f"CE baseline on {CIFAR[ds]} IF {imf}. Reported: {acc} ({src}; reference/baselines.md section 6).",
          *LDAM_HDR, DATA_NOTE],
         dict(method="CE", dataset=ds, imbalance_factor=imf, loss="ce", **LDAM_RECIPE, reported=R(acc)),
         "CE", CIFAR[ds], imf)

LDAM_REP = {("cifar10_lt", 200): (73.52, "GCL Tab. 1"), ("cifar10_lt", 100): (77.03, "LDAM-DRW paper, GCL Tab. 1"),
            ("cifar10_lt", 50): (81.03, "GCL Tab. 1"), ("cifar10_lt", 10): (88.16, "LDAM-DRW paper"),
            ("cifar100_lt", 200): (38.91, "GCL Tab. 1"), ("cifar100_lt", 100): (42.04, "LDAM-DRW paper, GCL Tab. 1"),
            ("cifar100_lt", 50): (47.62, "GCL Tab. 1"), ("cifar100_lt", 10): (58.71, "GALA Tab. 1")}
for (ds, imf), (acc, src) in LDAM_REP.items():
    dump(f"ldam_drw_{SHORT[ds]}_if{imf}",
         [f"LDAM-DRW on {CIFAR[ds]} IF {imf}. Reported: {acc} ({src}; reference/baselines.md section 6).",
          "LDAM: cosine head, max margin 0.5, s 30; DRW: effective-number weights (beta 0.9999) from 0-based epoch 160.",
          *LDAM_HDR, DATA_NOTE],
         dict(method="LDAM-DRW", dataset=ds, imbalance_factor=imf, loss="ldam", loss_params={"max_m": 0.5, "s": 30.0},
              drw_start=160, **LDAM_RECIPE, reported=R(acc)),
         "LDAM-DRW", CIFAR[ds], imf)

for ds, acc, src in (("cifar10_lt", 77.89, "LA repo README re-run"), ("cifar100_lt", 43.89, "Menon et al.; GLAG Tab. 2")):
    dump(f"la_{SHORT[ds]}_if100",
         [f"Logit-adjusted loss (tau = 1) on {CIFAR[ds]} IF 100. Reported: {acc} ({src}; baselines.md section 6).",
          "The LA paper's own TF recipe (Keras ResNet-32, ~1241 LT-epochs) is not reproduced: we use the LDAM-DRW",
          "recipe below (LIB), as the BoT and GLAG comparisons do.", *LDAM_HDR, DATA_NOTE],
         dict(method="LA", dataset=ds, imbalance_factor=100, loss="logit_adjusted", loss_params={"tau": 1.0},
              **LDAM_RECIPE, reported=R(acc)), "LA (loss)", CIFAR[ds], 100)
for ds, acc in (("cifar10_lt", 77.32), ("cifar100_lt", 44.07)):
    dump(f"la_posthoc_{SHORT[ds]}_if100",
         [f"Post-hoc logit adjustment (tau = 1) of a CE model on {CIFAR[ds]} IF 100. Reported: {acc} (LA repo",
          "README re-run; baselines.md section 6). The post-hoc step runs after training (posthoc: logit_adjust)",
          "on the saved test logits and is written to posthoc_logit_adjust.json.", *LDAM_HDR, DATA_NOTE],
         dict(method="LA post-hoc", dataset=ds, imbalance_factor=100, loss="ce", **LDAM_RECIPE,
              posthoc={"method": "logit_adjust", "tau": 1.0}, reported=R(acc)), "LA (post-hoc)", CIFAR[ds], 100)

BS_REP = {("cifar10_lt", 100): (77.54, "BoT"), ("cifar10_lt", 50): (81.11, "BoT"),
          ("cifar100_lt", 100): (42.99, "BoT; GALA Tab. 1 quotes 45.0, GLAG Tab. 2 50.8 with AutoAugment"),
          ("cifar100_lt", 50): (46.55, "BoT; GALA Tab. 1 quotes 50.5"),
          ("cifar100_lt", 10): (61.1, "GALA Tab. 1 (quoted)")}
for (ds, imf), (acc, src) in BS_REP.items():
    dump(f"balanced_softmax_{SHORT[ds]}_if{imf}",
         [f"Balanced Softmax on {CIFAR[ds]} IF {imf}. Reported: {acc} ({src}; baselines.md section 6).",
          "BALMS' own recipe (AutoAugment + Cutout, bs 512, 13k iterations) gives several points more; this preset",
          "uses the crop + flip LDAM-DRW recipe of the BoT numbers (LIB).", *LDAM_HDR, DATA_NOTE],
         dict(method="Balanced Softmax", dataset=ds, imbalance_factor=imf, loss="balanced_softmax", **LDAM_RECIPE,
              reported=R(acc)), "Balanced Softmax", CIFAR[ds], imf)

# decoupling on a CE stage one (BoT numbers, LDAM recipe stage one)
CRT_TWO = dict(stage="classifier", loss="ce", head="linear", classifier_init="reset", backbone_mode="train",
               sampler="class_aware", sampler_params={"num_samples_cls": 4}, epochs=10, batch_size=128, lr=0.05,
               weight_decay=5e-4, lr_schedule="cosine", momentum=0.9)
CRT_HDR = ["Stage two (cRT, Kang et al. 2020; baselines.md section 3): backbone frozen (BN statistics keep updating,",
           "backbone_mode train, as the official code), classifier re-initialised, CE with class-aware sampling (4",
           "per class), 10 epochs, cosine lr. The CIFAR lr/bs are not published: bs 128, lr 0.05 = ImageNet-LT's",
           "0.2 at bs 512 scaled linearly (LIB), wd 5e-4 (Kang)."]
for ds, imf, acc in (("cifar10_lt", 100, 74.99), ("cifar10_lt", 50, 80.17), ("cifar100_lt", 100, 40.26),
                     ("cifar100_lt", 50, 45.36)):
    dump(f"crt_{SHORT[ds]}_if{imf}",
         [f"cRT on a CE stage one, {CIFAR[ds]} IF {imf}. Reported: {acc} (BoT; baselines.md section 6).",
          "Stage one: CE with the LDAM-DRW recipe:", *LDAM_HDR, *CRT_HDR, DATA_NOTE],
         dict(method="cRT", dataset=ds, imbalance_factor=imf, loss="ce", **LDAM_RECIPE, reported=R(acc),
              stage_two=dict(CRT_TWO)), "cRT", CIFAR[ds], imf)
LWS_TWO = dict(stage="classifier", loss="ce", head="lws", classifier_init="stage_one", lws_freeze_linear=True,
               backbone_mode="train", sampler="class_aware", sampler_params={"num_samples_cls": 4}, epochs=5,
               batch_size=128, lr=0.05, weight_decay=5e-4, lr_schedule="cosine")
for ds, imf, acc in (("cifar10_lt", 100, 72.63), ("cifar10_lt", 50, 78.66), ("cifar100_lt", 100, 40.16),
                     ("cifar100_lt", 50, 45.21)):
    dump(f"lws_{SHORT[ds]}_if{imf}",
         [f"LWS on a CE stage one, {CIFAR[ds]} IF {imf}. Reported: {acc} (BoT; baselines.md section 6).",
          "Stage two (Kang et al.; baselines.md 3): logits s * (W f + b), s init 1, W and b from stage one and frozen,",
          "wd also on s, class-aware sampling (4 per class), 5 epochs, cosine lr; CIFAR lr/bs LIB (0.05 at bs 128).",
          "Stage one: CE with the LDAM-DRW recipe:", *LDAM_HDR, DATA_NOTE],
         dict(method="LWS", dataset=ds, imbalance_factor=imf, loss="ce", **LDAM_RECIPE, reported=R(acc),
              stage_two=dict(LWS_TWO)), "LWS", CIFAR[ds], imf)
for ds, imf, acc in (("cifar10_lt", 100, 72.70), ("cifar10_lt", 50, 79.78), ("cifar100_lt", 100, 40.96),
                     ("cifar100_lt", 50, 45.69)):
    dump(f"tau_norm_{SHORT[ds]}_if{imf}",
         [f"tau-normalisation of a CE stage one, {CIFAR[ds]} IF {imf}. Reported: {acc} (BoT; baselines.md 6).",
          "Post-hoc (baselines.md 3): rows W_c / ||W_c||^tau, bias dropped, tau swept over 0, 0.1, ..., 2.",
          "select_on: test = the official script's test-set sweep (what the reported number used). The standard",
          "CIFAR-LT split uses every image of class 0, so no balanced validation split exists here; with",
          "val_per_class > 0 and dataset_params {n_max: ...} you can use select_on: val.",
          "Stage one: CE with the LDAM-DRW recipe:", *LDAM_HDR, DATA_NOTE],
         dict(method="tau-norm", dataset=ds, imbalance_factor=imf, loss="ce", **LDAM_RECIPE,
              posthoc={"method": "tau_norm", "select_on": "test"}, reported=R(acc)), "tau-norm", CIFAR[ds], imf)

# CE + mixup + cRT as in GCL Tab. 1
for ds, imf, acc in (("cifar10_lt", 200, 73.06), ("cifar10_lt", 100, 79.15), ("cifar10_lt", 50, 84.21),
                     ("cifar100_lt", 200, 41.73), ("cifar100_lt", 100, 45.12), ("cifar100_lt", 50, 50.86)):
    dump(f"crt_mixup_{SHORT[ds]}_if{imf}",
         [f"CE + mixup + cRT on {CIFAR[ds]} IF {imf}. Reported: {acc} (GCL paper Tab. 1, re-run with official code).",
          "Stage one: CE + mixup (alpha 1) with the GCL CIFAR stage-one recipe (bs 64, lr 0.1, wd 2e-4, 200",
          "epochs, warm-up 5, x0.1 at 160 and 180). Stage two: the GCL code's re-training (30 epochs, bs 64,",
          "cosine from 0.002, mixup kept) with Kang's cRT classifier (re-initialised, class-aware sampling,",
          "BN in train mode). GCL does not spell this baseline out; the combination is LIB.", DATA_NOTE],
         dict(method="CE+mixup+cRT", dataset=ds, imbalance_factor=imf, model="resnet32", loss="ce", mixup_alpha=1.0,
              epochs=200, batch_size=64, lr=0.1, weight_decay=2e-4, warmup_epochs=5, lr_schedule="step",
              milestones=[160, 180], lr_gamma=0.1, reported=R(acc),
              stage_two=dict(stage="classifier", loss="ce", head="linear", classifier_init="reset",
                             backbone_mode="train", sampler="class_aware", sampler_params={"num_samples_cls": 4},
                             mixup_alpha=1.0, epochs=30, batch_size=64, lr=0.002, weight_decay=2e-4,
                             lr_schedule="cosine")),
         "CE+mixup+cRT", CIFAR[ds], imf)

# ----------------------------------------------------------------------------------------------- GCL
GCL_S1 = dict(model="resnet32", loss="gcl", loss_params={"s": 30.0, "m": 0.0, "noise_mul": 0.5, "gamma": 0.0},
              mixup_alpha=1.0, epochs=200, batch_size=64, lr=0.1, momentum=0.9, weight_decay=2e-4,
              warmup_epochs=5, lr_schedule="step", milestones=[160, 180], lr_gamma=0.1)
GCL_S2 = dict(stage="classifier", loss="gcl", loss_params={"s": 20.0, "m": 0.1, "noise_mul": 0.5, "gamma": 1.0},
              classifier_init="stage_one", backbone_mode="eval", sampler="cben", mixup_alpha=1.0, epochs=30,
              batch_size=64, lr=0.002, weight_decay=2e-4, lr_schedule="cosine")
GCL_HDR = ["Recipe: official Keke921/GCLLoss CIFAR scripts (reference/methods.md section 2).",
           "Stage one: ResNet-32 + cosine classifier, GCL s 30, m 0, noise_mul 0.5, mixup alpha 1, bs 64, lr 0.1,",
           "wd 2e-4, 200 epochs, warm-up 5, x0.1 from 0-based epoch 160 and 180.",
           "Stage two (cRT in the code): backbone frozen in eval mode, classifier initialised from stage one, GCL",
           "s 20, m 0.1, focal gamma 1, CBEN sampler (code constants a 0.9999, b 1e-5; the released script's",
           "default is class-balanced), mixup kept, 30 epochs, bs 64, wd 2e-4, lr 0.002 cosine to 0 (the code's",
           "0.01 * lr0 * (1 + cos(pi e / E)) up to the last-epoch value).",
           "The code keeps the best-test-accuracy checkpoint of stage one; ltlab uses the last epoch (LIB)."]
GCL_REP = {("cifar10_lt", 200): 79.03, ("cifar10_lt", 100): 82.68, ("cifar10_lt", 50): 85.46,
           ("cifar100_lt", 200): 44.88, ("cifar100_lt", 100): 48.71, ("cifar100_lt", 50): 53.55}
for (ds, imf), acc in GCL_REP.items():
    extra = {"stage_one_reported": R(80.52)} if (ds, imf) == ("cifar10_lt", 100) else {}
    dump(f"gcl_{SHORT[ds]}_if{imf}",
         [f"GCL on {CIFAR[ds]} IF {imf}. Reported: {acc} (GCL paper Tab. 1)."
          + (" Stage one alone (w/o RT): 80.52 (Tab. 5)." if extra else ""), *GCL_HDR, DATA_NOTE],
         dict(method="GCL", dataset=ds, imbalance_factor=imf, **GCL_S1, reported=R(acc), **extra,
              stage_two=dict(GCL_S2)), "GCL", CIFAR[ds], imf)

def file_list_params(name, folder, image_size=224, val=True):
    p = {"train_list": f"data/{folder}/{name}_train.txt", "test_list": f"data/{folder}/{name}_test.txt",
         "image_size": image_size}
    if val:
        p["val_list"] = f"data/{folder}/{name}_val.txt"
    return p

LS_DATA = {"imagenet_lt": ("ImageNet-LT", 256, file_list_params("ImageNet_LT", "ImageNet_LT"), "data/ImageNet_LT"),
           "inat18": ("iNaturalist 2018", 500, file_list_params("iNaturalist18", "iNat18"), "data/iNat18"),
           "places_lt": ("Places-LT", 996, file_list_params("Places_LT", "Places_LT"), "data/Places_LT")}
LS_NOTE = ("Data: image lists in the classifier-balancing format ('relative/path label' lines; baselines.md 1.3) "
           "under data/<set>/ in the project folder (relative paths in presets are resolved against it); "
           "override with -p root ... -p dataset_params '{...}'.")

GCL_LS = {"imagenet_lt": ("resnet50", None, 54.88, 52.93), "inat18": ("resnet50", None, 72.01, 70.33),
          "places_lt": ("resnet152", "data/pretrained/resnet152_imagenet.pth", 40.64, 34.59)}
for key, (arch, weights, acc, s1acc) in GCL_LS.items():
    label, imf, dparams, root = LS_DATA[key]
    places = key == "places_lt"
    p = dict(method="GCL", dataset="file_list", root=root, dataset_params=dparams, imbalance_factor=imf,
             model=arch, **({"model_params": {"weights_path": weights}} if weights else {}),
             loss="gcl", loss_params={"s": 30.0, "m": 0.0, "noise_mul": 1.0, "gamma": 0.0},
             mixup_alpha=0.2, epochs=90, batch_size=512 if places else 256, lr=0.2 if places else 0.1,
             weight_decay=5e-4, warmup_epochs=5, lr_schedule="step", milestones=[60, 80], lr_gamma=0.1,
             reported=R(acc), stage_one_reported=R(s1acc),
             stage_two=dict(GCL_S2, loss_params={"s": 15.0, "m": 0.1, "noise_mul": 1.0, "gamma": 1.0},
                            batch_size=512 if places else 256))
    dump(f"gcl_{key}", [f"GCL on {label} ({arch}). Reported: {acc} (GCL paper Tab. 2); stage one alone {s1acc} (GCL README).",
                        "Places-LT follows the released script: ImageNet-pretrained ResNet-152 (weights_path: a local",
                        "torchvision state_dict), bs 512, lr 0.2, wd 5e-4, 90 epochs, warm-up 5, x0.1 at 60 and 80, mixup",
                        "0.2, noise_mul 1.0; stage two 30 epochs, s 15, m 0.1, gamma 1, CBEN, backbone frozen in eval mode.",
                        "ImageNet-LT / iNat scripts were not released ('follow Kang et al. except the lr schedule'): the",
                        "Places schedule with bs 256, lr 0.1 and stage-two s 15 is our choice (LIB).", LS_NOTE],
         p, "GCL", label, imf)

# ----------------------------------------------------------------------------------------------- GLAG
GLAG_S1 = dict(model="resnet32", loss="graloss", loss_params={"s": 1.0, "c": 2.0}, epochs=200, batch_size=128, lr=0.1,
               momentum=0.9, weight_decay=5e-4, warmup_epochs=5, lr_schedule="cosine")
GLAG_S2 = dict(stage="afg", loss="ce", head="linear", classifier_init="stage_one", epochs=40, batch_size=128,
               lr=0.05, weight_decay=5e-4, lr_schedule="cosine",
               afg_params={"k": 2, "beta": 0.6, "gamma": 0.1, "tukey_lambda": 0.5, "beta_step": 0.05,
                           "kd_s": 1.0, "kd_c": 2.0})
GLAG_HDR = ["Recipe (GLAG paper Sec. 5.1; reference/methods.md section 1): SGD m 0.9, wd 5e-4, cosine lr.",
            "Stage one: GraLoss alpha(T) = s (c^(T/Tmax) - 1), c 2. Stage two (stage: afg): features of the frozen",
            "stage-one backbone, Tukey (lambda 0.5, LIB), AFG tops every class up to n_max each of the 40 generation",
            "epochs (K 2, gamma 0.1, beta 0.6 for tail classes n_c <= 100, LIB split), beta rule on the validation",
            "split (step 0.05, LIB), head-class KD from the frozen stage-one classifier weighted by alpha(T),",
            "classifier initialised from stage one (LIB).",
            "Not given by the paper (ours, LIB): stage-one epochs 200, bs 128, lr 0.1, warm-up 5; stage-two lr 0.05,",
            "bs 128. The paper trains with Balanced-Softmax augmentation (AutoAugment + Cutout), which ltlab does",
            "not implement: crop + flip here."]
GLAG_C100 = {200: 46.9, 100: 51.7, 50: 55.3, 10: 64.5}
for imf, acc in GLAG_C100.items():
    extra = {}
    rep = R(acc)
    if imf == 100:
        rep = R(51.7, 65.8, 52.9, 33.9)
        extra = {"stage_one_reported": R(50.4, 70.1, 49.0, 29.0)}
    dump(f"glag_cifar100_if{imf}",
         [f"GLAG on CIFAR-100-LT IF {imf}. Reported: {acc} (GLAG paper Tab. 2)"
          + ("; many/medium/few 65.8/52.9/33.9 and GraLoss stage one 50.4 (70.1/49.0/29.0) from Tab. 7." if imf == 100 else "."),
          *GLAG_HDR,
          "Validation split (beta rule): 20 unused training images per class (LIB); the standard split uses every",
          "image of class 0, so val_policy 'available' takes what is left (0 for class 0, which is not a tail class",
          "and needs none).", DATA_NOTE],
         dict(method="GLAG", dataset="cifar100_lt", imbalance_factor=imf, val_per_class=20,
              dataset_params={"val_policy": "available"}, **GLAG_S1, reported=rep, **extra, stage_two=dict(GLAG_S2)),
         "GLAG", "CIFAR-100-LT", imf)
for key, arch, acc, epochs, s in (("imagenet_lt_r10", "resnet10", 43.3, 200, 1.0), ("imagenet_lt_r50", "resnet50", 51.5, 200, 1.0),
                                  ("inat18", "resnet50", 69.2, 90, 0.5)):
    data_key = "inat18" if key == "inat18" else "imagenet_lt"
    label, imf, dparams, root = LS_DATA[data_key]
    p = dict(method="GLAG", dataset="file_list", root=root, dataset_params=dparams, imbalance_factor=imf, val_per_class=1,
             **dict(GLAG_S1, model=arch, epochs=epochs, batch_size=256, loss_params={"s": s, "c": 2.0}),
             **({"model_params": {"weights_path": "data/pretrained/ssp_resnet50_inat18.pth"}} if key == "inat18" else {}),
             reported=R(acc),
             stage_two=dict(GLAG_S2, batch_size=256, afg_params=dict(GLAG_S2["afg_params"], kd_s=s)))
    dump(f"glag_{key}", [f"GLAG on {label} ({arch}). Reported: {acc} (GLAG paper Tab. {3 if data_key == 'imagenet_lt' else 4}).",
                         *GLAG_HDR,
                         f"{label}: {epochs} stage-one epochs + 40 generation epochs (paper); s = {s}."
                         + (" iNat starts from an SSP self-supervised ResNet-50 (weights_path: your local copy)." if key == "inat18" else ""),
                         "Validation: the list's val split (val_list); val_per_class > 0 only switches it on.",
                         "AFG samples (Q, D, D) covariances: with 2048-d features this stage is heavy.", LS_NOTE],
         p, "GLAG", label, imf)

# ----------------------------------------------------------------------------------------------- ALA
ALA = {"imagenet_lt_r50": ("ImageNet-LT", "resnet50", 256, 0.1, 5e-4, 90, R(52.4, 62.4, 49.1, 35.7), "Tab. 1"),
       "imagenet_lt_x50": ("ImageNet-LT", "resnext50_32x4d", 256, 0.1, 5e-4, 90, R(53.3, 64.1, 49.9, 34.7), "Tab. 1"),
       "inat18": ("iNaturalist 2018", "resnet50", 512, 0.2, 2e-4, 90, R(70.7, 71.3, 70.8, 70.4), "Tab. 2"),
       "places_lt": ("Places-LT", "resnet152", 256, 0.1, 5e-4, 30, R(40.1, 43.9, 40.1, 32.9), "Tab. 3")}
for key, (label, arch, bs, lr, wd, ep, rep, tab) in ALA.items():
    data_key = key.split("_r50")[0].split("_x50")[0]
    _, imf, dparams, root = LS_DATA[data_key]
    p = dict(method="ALA", dataset="file_list", root=root, dataset_params=dparams, imbalance_factor=imf, model=arch,
             **({"model_params": {"weights_path": "data/pretrained/resnet152_imagenet.pth"}} if key == "places_lt" else {}),
             loss="ala", loss_params={"s": 30.0, "qf": "paper"}, drw_start=int(ep * 0.8), epochs=ep, batch_size=bs,
             lr=lr, weight_decay=wd, warmup_epochs=5, lr_schedule="cosine", reported=rep)
    dump(f"ala_{key}", [f"ALA on {label} ({arch}). Reported: {rep['overall']} (many/medium/few {rep['many']}/{rep['medium']}/{rep['few']}; ALA paper {tab}).",
                        f"Recipe (ALA Sec. 4.2; methods.md 3): bs {bs}, lr {lr}, wd {wd}, {ep} epochs, s 30, paper QF.",
                        "Not given (LIB): cosine schedule with a 5-epoch warm-up; DRW (beta 0.9999) in the last 20% of",
                        "epochs ('same training strategies as LDAM')."
                        + (" Places-LT: ImageNet-pretrained ResNet-152 (weights_path), lr/bs as ImageNet-LT (LIB)." if key == "places_lt" else ""),
                        LS_NOTE], p, "ALA", label, imf)

# ----------------------------------------------------------------------------------------------- GALA
GALA_S1 = dict(model="resnet32", head="linear", epochs=200, batch_size=64, lr=0.1, momentum=0.9, weight_decay=5e-4,
               warmup_epochs=2, lr_schedule="cosine")
GALA_HDR = ["Recipe (official lt-peoject code; methods.md section 4): ResNet-32 + linear head, SGD m 0.9, wd 5e-4,",
            "bs 64, 200 epochs, lr 0.05 -> 0.1 over 2 warm-up epochs then cosine to 0 (warmup_epochs 2 reproduces",
            "it), instance sampling. The code adds AutoAugment + Cutout and drops the last partial batch; ltlab",
            "uses crop + flip and keeps it (the reported numbers come from the AutoAugment recipe)."]
for imf, acc, acc_pn in ((200, 48.0, 48.5), (100, 52.1, 52.3), (50, 56.3, 56.5), (10, 64.0, 64.2)):
    dump(f"gala_cifar100_if{imf}", [f"GALA on CIFAR-100-LT IF {imf}. Reported: {acc} (GALA paper Tab. 1; lambda1 = lambda2 = 1).",
                                    *GALA_HDR, DATA_NOTE],
         dict(method="GALA", dataset="cifar100_lt", imbalance_factor=imf, loss="gala",
              loss_params={"lambda1": 1.0, "lambda2": 1.0}, **GALA_S1, reported=R(acc)), "GALA", "CIFAR-100-LT", imf)
    dump(f"gala_pn_cifar100_if{imf}", [f"GALA + PN on CIFAR-100-LT IF {imf}. Reported: {acc_pn} (GALA paper Tab. 1).",
                                       "Config gala_pn of the code: lambda1 1.2, lambda2 0.9, then prediction re-balancing",
                                       "(tau 1) on the saved test logits (posthoc_pn.json).", *GALA_HDR, DATA_NOTE],
         dict(method="GALA+PN", dataset="cifar100_lt", imbalance_factor=imf, loss="gala",
              loss_params={"lambda1": 1.2, "lambda2": 0.9}, **GALA_S1, posthoc={"method": "pn", "tau": 1.0},
              reported=R(acc_pn)), "GALA+PN", "CIFAR-100-LT", imf)
GALA_LS = {"imagenet_lt": ("resnet50", 64, 0.025, 5e-4, 53.4, 55.0), "inat18": ("resnet50", 256, 0.1, 1e-4, 71.2, 73.3),
           "places_lt": ("resnet152", 64, 0.025, 5e-4, 41.0, 41.4)}
for key, (arch, bs, lr, wd, acc, acc_pn) in GALA_LS.items():
    label, imf, dparams, root = LS_DATA[key]
    for pn in (False, True):
        p = dict(method="GALA+PN" if pn else "GALA", dataset="file_list", root=root, dataset_params=dparams,
                 imbalance_factor=imf, model=arch,
                 **({"model_params": {"weights_path": "data/pretrained/resnet152_imagenet.pth"}} if key == "places_lt" else {}),
                 loss="gala", loss_params={"lambda1": 1.2, "lambda2": 0.9} if pn else {"lambda1": 1.0, "lambda2": 1.0},
                 head="linear", epochs=200, batch_size=bs, lr=lr, weight_decay=wd, warmup_epochs=2, lr_schedule="cosine",
                 **({"posthoc": {"method": "pn", "tau": 1.0}} if pn else {}), reported=R(acc_pn if pn else acc))
        dump(f"gala{'_pn' if pn else ''}_{key}",
             [f"GALA{' + PN' if pn else ''} on {label} ({arch}). Reported: {acc_pn if pn else acc} (GALA paper Tab. 2).",
              f"Paper: SGD m 0.9, cosine, 200 epochs, bs {bs}; 'rest as MiSLAS' (backbone; MiSLAS' wd). The backbone is",
              "not stated (MiSLAS': R-50 / R-50 / R-152). Not given (LIB): lr = MiSLAS' lr scaled linearly to this bs,",
              "2 warm-up epochs as the CIFAR code." + (" lambda1 1.2, lambda2 0.9 + PN (tau 1) as the CIFAR gala_pn config." if pn else ""),
              LS_NOTE], p, "GALA+PN" if pn else "GALA", label, imf)

# ----------------------------------------------------------------------------------------------- GHM-CWAP
GHM_REP = {"cifar10_lt": {500: 66.13, 100: 75.39, 10: 87.29, 1: 92.75},
           "cifar100_lt": {500: 33.85, 100: 41.59, 10: 57.81, 1: 71.41}}
GHM_RECIPE = dict(LDAM_RECIPE)
GHM_PARAMS = {"bins": 30, "alpha": 0.9, "gamma": 0.8}  # paper Sec. 4.1 (gamma following Seesaw)
GHM_RULES = ("The paper has no code: an empty frozen bin gets W = 1, a class absent from the previous epoch is "
             "neutral and the loss is sum W CE / sum W (ours, docs/ghm_cwap.md).")
GHM_MARGINS = ("Margins only (ours): use_weights False, i.e. Eq. 2 without the intra-category weights of Eq. 1 "
               "(the paper's Table 3 row 'A'). Measured by us on Fashion-MNIST-LT IF 100 (3 seeds, "
               "docs/ghm_cwap.md): overall / few 0.59 / 0.43, CE 0.49 / 0.13, full method 0.47 / 0.16.")
for ds, reps in GHM_REP.items():
    for imf, acc in reps.items():
        dump(f"ghm_cwap_{SHORT[ds]}_if{imf}",
             [f"GHM-CWAP on {CIFAR[ds]} IF {imf}. Reported: {acc} (GHM-CWAP paper Tab. 1, ResNet-32).",
              "Loss: N 30 unit regions, alpha 0.9, gamma 0.8 (paper). The paper gives no training recipe: LDAM-DRW",
              "CIFAR recipe without DRW (LIB: our choice).", GHM_RULES, *LDAM_HDR, DATA_NOTE],
             dict(method="GHM-CWAP", dataset=ds, imbalance_factor=imf, loss="ghm_cwap",
                  loss_params=GHM_PARAMS, **GHM_RECIPE, reported=R(acc)),
             "GHM-CWAP", CIFAR[ds], imf)
    dump(f"ghm_cwap_margins_{SHORT[ds]}_if100",
         [f"GHM-CWAP margins only on {CIFAR[ds]} IF 100 (ours): no paper number for this ablation on CIFAR.",
          GHM_MARGINS, "Loss: N 30, alpha 0.9, gamma 0.8 (paper). Recipe: LDAM-DRW CIFAR recipe without DRW (ours).",
          *LDAM_HDR, DATA_NOTE],
         dict(method="GHM-CWAP margins only", dataset=ds, imbalance_factor=100, loss="ghm_cwap",
              loss_params={**GHM_PARAMS, "use_weights": False}, **GHM_RECIPE, reported={}),
         "GHM-CWAP margins only", CIFAR[ds], 100)
for imf, acc in {500: 34.79, 100: 42.66, 10: 55.35, 1: 63.21}.items():
    dump(f"ghm_cwap_tinyimagenet_lt_if{imf}",
         [f"GHM-CWAP on TinyImageNet-LT IF {imf}. Reported: {acc} (GHM-CWAP paper Tab. 1, ResNet-32).",
          "The paper's LT subsets are not published: build train_if<IF>.txt yourself (e.g. with",
          "ltlab.data.longtail_counts / longtail_indices on the 500-per-class TinyImageNet train set, 64x64) and",
          "test on the 50-per-class val set. Recipe: LDAM-DRW CIFAR recipe without DRW (LIB).", GHM_RULES,
          *LDAM_HDR, "Data: lists under data/TinyImageNet (relative to the project folder)."],
         dict(method="GHM-CWAP", dataset="file_list", root="data/TinyImageNet",
              dataset_params={"train_list": f"data/TinyImageNet/train_if{imf}.txt", "test_list": "data/TinyImageNet/val.txt",
                              "image_size": 64, "mean": [0.480, 0.448, 0.398], "std": [0.277, 0.269, 0.282]},
              imbalance_factor=imf, loss="ghm_cwap", loss_params=GHM_PARAMS,
              **GHM_RECIPE, reported=R(acc)), "GHM-CWAP", "TinyImageNet-LT", imf)
for key, label, imf, acc, note, lists in (
        ("imagenet_lt_if100", "ImageNet-LT (own split, IF 100)", 100, 38.77,
         "many/medium/few/rare 63.61/48.73/25.78/16.95 in the paper's own four groups (not the >100/20-100/<20 split)",
         file_list_params("ImageNet_LT_if100", "ImageNet_LT_if100", val=False)),
        ("inat17", "iNaturalist 2017", 435, 59.85,
         "many/medium/few/rare 87.84/73.59/56.75/48.02 in the paper's own four groups (not the >100/20-100/<20 split)",
         file_list_params("iNaturalist17", "iNat17", val=False))):
    dump(f"ghm_cwap_{key}",
         [f"GHM-CWAP on {label} (ResNet-50). Reported overall: {acc} (GHM-CWAP paper Tab. 2); {note}, so only",
          "the overall number is recorded. Recipe not given (LIB): Kang et al.'s ImageNet-LT recipe (90 epochs,",
          "bs 256, lr 0.1 cosine, wd 5e-4). The IF-100 ImageNet subset is the paper's own: supply its list.",
          GHM_RULES, LS_NOTE],
         dict(method="GHM-CWAP", dataset="file_list", root=f"data/{lists['train_list'].split('/')[1]}",
              dataset_params=lists, imbalance_factor=imf, model="resnet50", loss="ghm_cwap",
              loss_params=GHM_PARAMS, epochs=90, batch_size=256, lr=0.1,
              weight_decay=5e-4, warmup_epochs=5, lr_schedule="cosine", reported=R(acc)),
         "GHM-CWAP", label, imf)
    if key == "imagenet_lt_if100":  # the paper's ablation (Table 3) is on this split
        dump("ghm_cwap_margins_imagenet_lt_if100",
             [f"GHM-CWAP margins only on {label} (ResNet-50). Reported overall: 37.07, row 'A^URA' of the GHM-CWAP "
              "paper Tab. 3 (margins from equal-width bins; here S comes from the adaptive bins, as in the full "
              "method); many/medium/few/rare 63.93/48.32/22.60/13.44 in the paper's own four groups, so only the "
              "overall number is recorded.", GHM_MARGINS, "Recipe not given (LIB): as ghm_cwap_imagenet_lt_if100.",
              LS_NOTE],
             dict(method="GHM-CWAP margins only", dataset="file_list",
                  root=f"data/{lists['train_list'].split('/')[1]}", dataset_params=lists, imbalance_factor=imf,
                  model="resnet50", loss="ghm_cwap", loss_params={**GHM_PARAMS, "use_weights": False}, epochs=90,
                  batch_size=256, lr=0.1, weight_decay=5e-4, warmup_epochs=5, lr_schedule="cosine",
                  reported=R(37.07)),
             "GHM-CWAP margins only", label, imf)

# ----------------------------------------------------------------------------------------------- CPU demos
FM = ["Data: Fashion-MNIST (Debian package dataset-fashion-mnist, /usr/share/datasets/fashion-mnist), IF 100 with",
      "the head class capped at n_max = 500 (LIB): counts 500 299 179 107 64 38 23 13 8 5, so many/medium/few",
      "= 4/3/3 classes (the full n_max = 6000 gives an EMPTY few group: min count 60). Validation: 50 unused",
      "training images per class. CPU-sized recipe of ours (convnet_small); no paper numbers (reported: {})."]
dump("glag_fashion_mnist_if100",
     ["GLAG (GraLoss + AFG) CPU demo on Fashion-MNIST-LT IF 100 (ours).", *FM,
      "Stage one: GraLoss (s 1, c 2), 15 epochs, bs 64, lr 0.05 cosine, wd 5e-4. Stage two: AFG, 40 generation",
      "epochs, lr 0.05 cosine, KD weighted by alpha(T) (methods.md 1b)."],
     dict(method="GLAG", dataset="fashion_mnist_lt", imbalance_factor=100, dataset_params={"n_max": 500}, val_per_class=50,
          model="convnet_small", loss="graloss", loss_params={"s": 1.0, "c": 2.0}, epochs=15, batch_size=64, lr=0.05,
          weight_decay=5e-4, lr_schedule="cosine", eval_every=5, reported={},
          stage_two=dict(GLAG_S2, batch_size=64, eval_every=10)), "GLAG", "Fashion-MNIST-LT (n_max 500)", 100)
dump("gcl_fashion_mnist_if100",
     ["GCL CPU demo on Fashion-MNIST-LT IF 100 (ours).", *FM,
      "Stage one: GCL (s 30, noise_mul 0.5) + mixup 1, 15 epochs, bs 64, lr 0.05 cosine, wd 2e-4. Stage two: the",
      "GCL code's re-training (frozen backbone in eval mode, stage-one classifier, s 20, m 0.1, gamma 1, CBEN,",
      "mixup), 10 epochs, lr 0.01 cosine."],
     dict(method="GCL", dataset="fashion_mnist_lt", imbalance_factor=100, dataset_params={"n_max": 500}, val_per_class=50,
          model="convnet_small", loss="gcl", loss_params={"s": 30.0, "m": 0.0, "noise_mul": 0.5, "gamma": 0.0},
          mixup_alpha=1.0, epochs=15, batch_size=64, lr=0.05, weight_decay=2e-4, lr_schedule="cosine", eval_every=5,
          reported={}, stage_two=dict(GCL_S2, epochs=10, lr=0.01, eval_every=5)),
     "GCL", "Fashion-MNIST-LT (n_max 500)", 100)

# GHM-CWAP full vs margins only on the recipe of benchmarks/compare_methods.py (the numbers in docs/ghm_cwap.md)
for name, label, params in (("ghm_cwap_fashion_mnist_if100", "GHM-CWAP", GHM_PARAMS),
                            ("ghm_cwap_margins_fashion_mnist_if100", "GHM-CWAP margins only",
                             {**GHM_PARAMS, "use_weights": False})):
    dump(name,
         [f"{label} CPU demo on Fashion-MNIST-LT IF 100 (ours).", *(GHM_MARGINS if "margins" in name else GHM_RULES,),
          "Data: Fashion-MNIST (Debian package dataset-fashion-mnist), IF 100 with the head capped at n_max = 500",
          "(ours): counts 500 ... 5, many/medium/few = 4/3/3 classes. Recipe (ours, as benchmarks/compare_methods.py):",
          "convnet_small, 30 epochs, bs 128, lr 0.05 cosine, 1 warm-up epoch, wd 5e-4; no paper numbers (reported: {})."],
         dict(method=label, dataset="fashion_mnist_lt", imbalance_factor=100, dataset_params={"n_max": 500},
              model="convnet_small", loss="ghm_cwap", loss_params=params, epochs=30, batch_size=128, lr=0.05,
              weight_decay=5e-4, warmup_epochs=1, lr_schedule="cosine", eval_every=10, reported={}),
         label, "Fashion-MNIST-LT (n_max 500)", 100)

# ----------------------------------------------------------------------------------------------- table
def fmt(rep):
    if not rep:
        return "–"
    s = f"{rep['overall']}"
    if all(k in rep for k in ("many", "medium", "few")):
        s += f" ({rep['many']} / {rep['medium']} / {rep['few']})"
    return s

lines = ["| method | data | IF | model | reported top-1 % (many / med / few) | stages | command |",
         "|---|---|---|---|---|---|---|"]
order = {"GLAG": 0, "GCL": 1, "ALA": 2, "GALA": 3, "GALA+PN": 4, "GHM-CWAP": 5, "GHM-CWAP margins only": 6}
for name, m, data, imf, rep, two, post, arch in sorted(ROWS, key=lambda r: (order.get(r[1], 9), r[1], r[2], -r[3])):
    stages = "2" if two else "1"
    if post:
        stages += f" + {post['method']}"
    lines.append(f"| {m} | {data} | {imf} | {arch} | {fmt(rep)} | {stages} | "
                 f"`python -m ltlab run notebooks/01_train.ipynb --preset notebooks/presets/{name}.yaml` |")
Path(sys.argv[2]).write_text("\n".join(lines) + "\n")
print(len(ROWS), "presets")
