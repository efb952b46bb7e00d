"""Multi-task learning: shared backbone, per-sample missing targets, loss weighting, data mixing, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ghostkit.cli import main
from ghostkit.data.multitask import build_multitask_data, collate_multitask
from ghostkit.data.synthetic import SHAPE_CLASSES
from ghostkit.engine.config import TrainConfig
from ghostkit.engine.multitask import MultiTaskSpec
from ghostkit.tasks.model import build_task_model

TASKS = ["classify", "detect", "segment"]


def _model_and_batch(tasks=TASKS, task_weights=None, n: int = 4):
    spec = MultiTaskSpec(",".join(tasks))
    cfg = TrainConfig(task=",".join(tasks), data="shapes", model="ghostnet_050", imgsz=64, scale=1, noise="25")
    data = spec.build_data(cfg)
    config = {"backbone": {"name": "ghostnet_050", "kwargs": {}}, "heads": spec.head_configs(cfg, data),
              "class_names": data.class_names, "imgsz": [64, 64], "task_weights": task_weights}
    torch.manual_seed(0)
    model = build_task_model(config)
    images, targets = data.collate([data.train[i] for i in range(n)])
    return model, images, targets


def _backbone_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.backbone.parameters() if p.grad is not None])


def test_every_head_sends_gradient_into_the_shared_backbone():
    model, images, targets = _model_and_batch()
    model.train()
    for task in TASKS:
        model.zero_grad(set_to_none=True)
        outputs = model(images)
        only = {"present": targets["present"], task: targets[task]}
        losses = model.loss(outputs, only)
        assert set(k.split("/")[0] for k in losses if "/" in k) == {task}
        losses["loss"].backward()
        grad = _backbone_grad(model)
        assert grad.abs().sum() > 0, task
        assert all(p.grad is None for t, h in model.heads.items() if t != task for p in h.parameters())


def test_a_sample_without_a_target_adds_no_loss_to_that_head():
    model, images, targets = _model_and_batch(n=3)
    model.eval()  # BN with running statistics: images do not influence each other
    images.requires_grad_(True)
    targets["present"]["segment"] = torch.tensor([True, False, True])
    targets["segment"] = targets["segment"][[0, 2]]
    outputs = model(images)
    losses = model.loss(outputs, targets)
    (grad,) = torch.autograd.grad(losses["segment/loss"], images)
    assert grad[1].abs().sum() == 0 and grad[0].abs().sum() > 0 and grad[2].abs().sum() > 0
    # the same loss as the head computed on the two annotated images alone
    alone = model.heads["segment"].loss(outputs["segment"][[0, 2]], targets["segment"])["loss"]
    assert torch.allclose(losses["segment/loss"], alone)
    # and detection (boxes for every image) still sees all three
    assert set(losses) >= {"classify/loss", "detect/loss", "segment/loss", "loss"}


def test_detect_outputs_are_sliced_per_image_but_anchors_are_shared():
    model, images, targets = _model_and_batch(tasks=["detect", "segment"], n=3)
    model.eval()
    targets["present"]["detect"] = torch.tensor([False, True, True])
    targets["detect"] = targets["detect"][1:]
    outputs = model(images)
    sliced, target = model.select(outputs, targets, "detect")
    assert sliced["cls_logits"].shape[0] == 2 and len(target) == 2
    assert sliced["anchors"] is outputs["detect"]["anchors"] and sliced["image_size"] == (64, 64)
    full = model.heads["detect"].loss({k: (v[1:] if k in ("cls_logits", "bbox_regression", "bbox_ctrness") else v)
                                       for k, v in outputs["detect"].items()}, target)["loss"]
    assert torch.allclose(model.loss(outputs, targets)["detect/loss"], full)


def test_task_weights_default_to_learned_for_multi_task_runs():
    from ghostkit.engine.multitask import parse_task_weights

    assert parse_task_weights(None, ["detect", "segment"]) == "auto"
    assert parse_task_weights("", ["detect", "segment"]) == "auto"
    assert parse_task_weights(None, ["segment"]) is None
    assert parse_task_weights("equal", ["detect", "segment"]) == {}
    assert parse_task_weights("segment=0.5", ["detect", "segment"]) == {"segment": 0.5}


def test_weighted_and_learned_task_weights():
    model, images, targets = _model_and_batch(tasks=["classify", "segment"], task_weights={"segment": 0.25})
    model.eval()
    losses = model.loss(model(images), targets)
    assert torch.allclose(losses["loss"], losses["classify/loss"] + 0.25 * losses["segment/loss"])

    model, images, targets = _model_and_batch(tasks=["classify", "segment"], task_weights="auto")
    model.train()
    with torch.no_grad():
        model.log_vars["segment"].fill_(1.0)
    losses = model.loss(model(images), targets)
    expected = losses["classify/loss"] + torch.exp(torch.tensor(-1.0)) * losses["segment/loss"] + 1.0
    assert torch.allclose(losses["loss"], expected)
    losses["loss"].backward()
    assert model.log_vars["classify"].grad is not None and model.log_vars["segment"].grad != 0


def test_shapes_provide_every_target_and_batches_mark_missing_ones():
    data = build_multitask_data("shapes", ["classify", "multilabel", "detect", "segment"], 64)
    image, target = data.train[0]
    assert image.shape == (3, 64, 64)
    assert set(target) == {"classify", "multilabel", "detect", "segment"}
    assert target["segment"].shape == (64, 64) and target["detect"]["boxes"].shape[1] == 4
    assert data.class_names["segment"] == ["background", *SHAPE_CLASSES]
    # new training images on every read (a fixed image gives at most two masks, flipped or not); validation is fixed
    assert len({data.train[0][1]["segment"].numpy().tobytes() for _ in range(4)}) > 2
    assert torch.equal(data.val[0][1]["segment"], data.val[0][1]["segment"])
    # an image lacking a target: present is False there and the stacked targets skip it
    batch = [data.train[0], (image, {k: v for k, v in target.items() if k != "classify"}), data.train[1]]
    _, targets = collate_multitask(["classify", "segment"])(batch)
    assert targets["present"]["classify"].tolist() == [True, False, True]
    assert targets["classify"].shape == (2,) and targets["segment"].shape == (3, 64, 64)


# -- folders: COCO gives boxes, masks and image-level labels; sources mix ----------------------------------------
def _image(path: Path, w: int = 48, h: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(len(str(path))).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _coco(root: Path, names=("cat", "dog")) -> None:
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    for split in ("train", "val"):
        images, anns = [], []
        for i in range(3):
            _image(root / "images" / f"{split}{i}.png")
            images.append({"id": i, "file_name": f"{split}{i}.png", "width": 48, "height": 40})
            anns.append({"id": 10 + i, "image_id": i, "category_id": 1 + i % 2, "bbox": [4, 4, 20, 16], "area": 320,
                         "iscrowd": 0, "segmentation": [[4, 4, 24, 4, 24, 20, 4, 20]]})
        path = root / "annotations" / f"instances_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def _yolo(root: Path, names=SHAPE_CLASSES) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(json.dumps({"names": list(names)}))
    for split in ("train", "val"):
        for i in range(2):
            _image(root / "images" / split / f"y{i}.png", 64, 64)
            label = root / "labels" / split / f"y{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("0 0.5 0.5 0.4 0.4\n")


def test_a_coco_folder_gives_boxes_masks_and_image_labels(tmp_path):
    _coco(tmp_path / "coco")
    data = build_multitask_data(str(tmp_path / "coco"), ["multilabel", "detect", "segment"], 64)
    assert data.class_names == {"multilabel": ["cat", "dog"], "detect": ["cat", "dog"],
                                "segment": ["background", "cat", "dog"]}
    assert len(data.train) == 3 and len(data.val) == 3
    _, target = data.train[1]
    assert target["multilabel"].tolist() == [0.0, 1.0]
    assert target["detect"]["labels"].tolist() == [1]
    assert set(target["segment"].unique().tolist()) == {0, 2}


def test_sources_with_different_annotations_mix(tmp_path):
    _yolo(tmp_path / "boxes")
    data = build_multitask_data(f"shapes,{tmp_path / 'boxes'}", ["detect", "segment"], 64)
    assert len(data.train) == 1000 + 2
    yolo_targets = [t for src, t in data.train.items if isinstance(src, Path)]
    assert all(set(t) == {"detect"} for t in yolo_targets)
    _, targets = collate_multitask(["detect", "segment"])([data.train[0], data.train[len(data.train) - 1]])
    assert targets["present"]["segment"].tolist() == [True, False]


# -- bad input: one line, exit code 2 ----------------------------------------------------------------------------
def _one_line_error(capsys, argv: list[str], *words: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("ghostkit: error:") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("task, extra, words", [
    ("classify,bogus", [], ["bogus"]),
    ("detect,detect", [], ["twice"]),
    ("classify,multilabel", [], ["pick one"]),
    ("classify,restore", ["--scale", "1"], ["--noise"]),
])
def test_bad_task_lists(capsys, tmp_path, task, extra, words):
    _one_line_error(capsys, ["train", "--task", task, "--data", "shapes", *extra, "--out", str(tmp_path / "r")],
                    *words)


def test_restore_joins_as_denoising_of_the_shared_input():
    from ghostkit.data.restore import Degradation

    data = build_multitask_data("shapes", ["classify", "restore"], 64, degradation=Degradation.parse(1, "25"))
    image, target = data.val[3]
    again, _ = data.val[3]
    assert torch.equal(image, again)  # reproducible validation noise
    clean = target["restore"]
    assert clean.shape == (3, 64, 64) and 0 <= clean.min() and clean.max() <= 1
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    noise = (image * std + mean) - clean
    assert 0.05 < float(noise.std()) < 0.15  # sigma 25 / 255, clipped at 0 and 1
    model, images, targets = _model_and_batch(tasks=["classify", "restore"])
    assert model.heads["restore"].in_mean is not None
    model.eval()
    out = model(images)["restore"]
    # the untrained restore head returns its (un-normalised) input: the noisy image in [0, 1]
    assert torch.allclose(out["image"], images * std + mean, atol=1e-5)


def test_data_lacking_a_task_is_an_error(capsys, tmp_path):
    _yolo(tmp_path / "boxes")
    _one_line_error(capsys, ["train", "--task", "detect,segment", "--data", str(tmp_path / "boxes"),
                             "--out", str(tmp_path / "r")], "segment", "no training image")


def test_conflicting_class_lists_are_an_error(capsys, tmp_path):
    _yolo(tmp_path / "a", SHAPE_CLASSES)
    _yolo(tmp_path / "b", ("circle", "square", "hexagon"))
    _one_line_error(capsys, ["train", "--task", "detect,segment", "--data", f"shapes,{tmp_path / 'a'},{tmp_path / 'b'}",
                             "--out", str(tmp_path / "r")], "conflict", "hexagon", str(tmp_path / "b"))


@pytest.mark.parametrize("option, value, words", [
    ("--task-weights", "detect=x", ["not a number"]),
    ("--task-weights", "classify=1", ["TASK=WEIGHT"]),
    ("--task-weights", "detect=-1", ["negative"]),
    ("--monitor", "classify/top1", ["TASK/METRIC"]),
    ("--head", "fcos,lraspp,retinanet2", ["retinanet2"]),
])
def test_bad_multitask_options(capsys, tmp_path, option, value, words):
    _one_line_error(capsys, ["train", "--task", "detect,segment", "--data", "shapes", option, value, "--epochs", "1",
                             "--out", str(tmp_path / "r")], *words)


def test_single_task_runs_refuse_task_weights(capsys, tmp_path):
    _one_line_error(capsys, ["train", "--task", "detect", "--data", "shapes", "--task-weights", "detect=1",
                             "--out", str(tmp_path / "r")], "multi-task")


# -- end to end -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_val_predict_export_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "classify,detect,segment", "--data", "shapes", "--model", "ghostnet_050",
                 "--epochs", "1", "--batch", "32", "--workers", "0", "--task-weights", "auto",
                 "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"classify", "detect", "segment", "score"} <= set(metrics)
    primary = [metrics["classify"]["top1"], metrics["detect"]["map"], metrics["segment"]["miou"]]
    assert metrics["score"] == pytest.approx(sum(primary) / 3)
    assert all(0 <= v <= 1 for v in primary)
    for plot in ("classify/confusion_matrix.png", "detect/pr_curve.png", "segment/val_overlays.png", "curves.png"):
        assert (run / plot).is_file(), plot
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val/detect/map50" in header and "val/score" in header

    assert main(["val", "--weights", str(run / "best.ckpt"), "--data", "shapes", "--out", str(tmp_path / "val"),
                 "--workers", "0"]) == 0
    again = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert again["score"] == pytest.approx(metrics["score"], abs=1e-6)

    capsys.readouterr()
    sample = sorted((run / "samples").glob("*.png"))[0]
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(sample), "--json",
                 "--save", str(tmp_path / "pred")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"classify", "detect", "segment"} <= set(result)
    assert "topk" in result["classify"] and "detections" in result["detect"] and "size" in result["segment"]
    assert (tmp_path / "pred" / f"{sample.stem}_all.png").is_file()

    assert main(["export", "--weights", str(run / "best.ckpt"), "--out", str(tmp_path / "joint.onnx")]) == 0
    import onnx

    outputs = [o.name for o in onnx.load(str(tmp_path / "joint.onnx")).graph.output]
    assert any(n.startswith("classify") for n in outputs) and any(n.startswith("segment") for n in outputs)
    assert any(n.startswith("detect") for n in outputs)


def test_python_api_builds_a_multitask_model_from_parts():
    import ghostkit

    backbone = ghostkit.create_model("ghostnet_050", features_only=True, out_indices=(1, 2, 3, 4))
    heads = {"classify": ghostkit.build_head("classify", backbone.feature_info, num_classes=3),
             "detect": ghostkit.build_head("detect", backbone.feature_info, num_classes=3, arch="fcos",
                                           strides=[8, 16, 32]),
             "segment": ghostkit.build_head("segment", backbone.feature_info, num_classes=4)}
    model = ghostkit.MultiTaskModel(backbone, heads).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 80))
    assert out["classify"].shape == (2, 3) and out["segment"].shape == (2, 4, 64, 80)
    assert out["detect"]["cls_logits"].shape[0] == 2
    assert len(model.postprocess(out, [(64, 80), (128, 160)])) == 2
