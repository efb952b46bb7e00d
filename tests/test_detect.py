"""Detection heads (SSDLite, FCOS, RetinaNet), COCO mAP, TTA and the train → val → predict round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from ghostkit.cli import main
from ghostkit.engine.detect import DetectMetrics
from ghostkit.errors import GhostkitError
from ghostkit.tasks import build_head
from ghostkit.tasks.detect import (
    DETECT_ARCHS,
    DetectHead,
    FCOSDetect,
    RetinaNetDetect,
    SSDLiteDetect,
    detect_head_config,
)
from ghostkit.tasks.detect_results import tta_predict
from ghostkit.tasks.model import build_task_model

ARCHS = sorted(DETECT_ARCHS)
# a small stand-in for the backbone's stride 4, 8, 16 and 32 stage ends
FEATURE_INFO = [{"num_chs": c, "reduction": r, "module": f"blocks.{i}"}
                for i, (c, r) in enumerate([(8, 4), (16, 8), (24, 16), (40, 32)])]


def _features(batch: int, h: int, w: int) -> list[torch.Tensor]:
    """Maps of the sizes a GhostNet produces for an h x w input (each stride-2 step rounds up)."""
    torch.manual_seed(0)
    out = []
    for f in FEATURE_INFO:
        s = f["reduction"]
        out.append(torch.randn(batch, f["num_chs"], -(-h // s), -(-w // s)))
    return out


def _head(arch: str, num_classes: int = 3, imgsz: int = 64, **kw) -> DetectHead:
    return build_head("detect", FEATURE_INFO, num_classes=num_classes, arch=arch,
                      **(detect_head_config(arch, imgsz) | kw))


def _targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[5.0, 6.0, 30.0, 40.0], [40.0, 10.0, 60.0, 28.0]]), "labels": torch.tensor([2, 0])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]  # a negative image


def test_dispatch_by_arch():
    assert isinstance(_head("fcos"), FCOSDetect)
    assert isinstance(_head("retinanet"), RetinaNetDetect)
    assert isinstance(_head("ssdlite"), SSDLiteDetect)
    with pytest.raises(GhostkitError, match="unknown detection head 'yolo'"):
        build_head("detect", FEATURE_INFO, num_classes=3, arch="yolo")


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_loss_postprocess_at_odd_size(arch):
    head = _head(arch)
    h, w = 70, 90
    images = torch.zeros(2, 3, h, w)
    out = head(_features(2, h, w), images)
    a = out["anchors"].shape[0]
    k = 3 + (arch == "ssdlite")  # SSD's softmax has a background column
    assert out["cls_logits"].shape == (2, a, k) and out["bbox_regression"].shape == (2, a, 4)
    assert out["image_size"] == (h, w)
    centres = (out["anchors"][:, :2] + out["anchors"][:, 2:]) / 2
    # cell centres: the last cell of a stride-s map overhangs the input when s does not divide it (the convolutions
    # pad), its centre by less than s / 2 (16 px for stride 32)
    assert centres.min() > 0 and centres[:, 0].max() < w + 16 and centres[:, 1].max() < h + 16
    losses = head.loss(out, _targets())
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    losses["loss"].backward()
    grads = [p.grad for p in head.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # a batch without any object still gives a finite loss (background only)
    empty = head.loss(head(_features(2, h, w), images), [_targets()[1]] * 2)
    assert torch.isfinite(empty["loss"])
    head.eval()
    with torch.no_grad():
        res = head.postprocess(head(_features(2, h, w), images), [(140, 45), (h, w)], conf=0.0)
    assert len(res) == 2
    for r, (ih, iw) in zip(res, [(140, 45), (h, w)]):
        assert 0 < len(r["boxes"]) <= head.max_det
        assert r["boxes"].shape[1] == 4 and r["scores"].shape == r["labels"].shape
        assert r["boxes"][:, 0::2].max() <= iw + 1e-4 and r["boxes"][:, 1::2].max() <= ih + 1e-4
        assert r["labels"].max() < 3 and (r["scores"][:-1] >= r["scores"][1:]).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_postprocess_maps_boxes_to_original_sizes(arch):
    """One confident (anchor, class) → its decoded box, scaled from the input size to each image's size."""
    head = _head(arch).eval()
    h, w = 64, 96
    with torch.no_grad():
        out = head(_features(2, h, w), torch.zeros(2, 3, h, w))
    anchors = out["anchors"]
    j = int(((anchors[:, 0] - 30).abs() + (anchors[:, 1] - 20).abs()).argmin())  # an anchor inside the image
    logits = torch.full_like(out["cls_logits"], -30.0)
    if arch == "ssdlite":
        logits[..., 0] = 30.0  # background everywhere...
        logits[:, j, 0], logits[:, j, 2] = -30.0, 30.0  # ...but class 1 at anchor j
    else:
        logits[:, j, 1] = 30.0
    out["cls_logits"] = logits
    if "bbox_ctrness" in out:
        out["bbox_ctrness"] = torch.full_like(out["bbox_ctrness"], 30.0)
    out["bbox_regression"] = torch.zeros_like(out["bbox_regression"])
    expected = head.decode(out["bbox_regression"][0, j:j + 1], anchors[j:j + 1])
    expected[:, 0::2] = expected[:, 0::2].clamp(0, w)
    expected[:, 1::2] = expected[:, 1::2].clamp(0, h)
    sizes = [(h, w), (3 * h, 2 * w)]
    res = head.postprocess(out, sizes, conf=0.5)
    for r, (ih, iw) in zip(res, sizes):
        assert r["labels"].tolist() == [1] and float(r["scores"][0]) > 0.99
        scale = torch.tensor([iw / w, ih / h, iw / w, ih / h])
        torch.testing.assert_close(r["boxes"], expected * scale)


def test_fcos_assignment_by_size_and_ssd_every_box_matched():
    # 64 px size ranges on the stride 8-32 maps: P3 takes reaches up to 16 px, P4 up to 32, P5 the rest
    fcos = _head("fcos", strides=[8, 16, 32])
    out = fcos(_features(1, 64, 64), torch.zeros(1, 3, 64, 64))
    anchors = out["anchors"]
    small, large = torch.tensor([[20.0, 20.0, 36.0, 36.0]]), torch.tensor([[2.0, 2.0, 62.0, 62.0]])
    stride = anchors[:, 2] - anchors[:, 0]
    assert set(stride[fcos.match(anchors, small) >= 0].tolist()) == {8.0}
    assert set(stride[fcos.match(anchors, large) >= 0].tolist()) == {32.0}
    assert (fcos.match(anchors, torch.zeros(0, 4)) == -1).all()
    # the 64 px default taps strides 4-16: the large box goes to the coarsest of them
    fcos = _head("fcos")
    anchors = fcos(_features(1, 64, 64), torch.zeros(1, 3, 64, 64))["anchors"]
    stride = anchors[:, 2] - anchors[:, 0]
    assert set(stride.unique().tolist()) == {4.0, 8.0, 16.0}
    assert set(stride[fcos.match(anchors, large) >= 0].tolist()) == {16.0}
    ssd = _head("ssdlite").eval()  # eval: BatchNorm in training mode refuses the 1 x 1 extra map of one image
    anchors = ssd(_features(1, 64, 64), torch.zeros(1, 3, 64, 64))["anchors"]
    boxes = torch.tensor([[1.0, 1.0, 9.0, 9.0], [10.0, 30.0, 60.0, 62.0]])
    matched = ssd.matcher(box_iou(boxes, anchors))
    assert set(matched[matched >= 0].tolist()) == {0, 1}  # even the tiny box gets its best default box


def test_fcos_box_distances_start_alive():
    # torchvision's zero bias starts half the ReLU'd distances at 0, where a side can die for good; ours start at
    # one stride on every side of every location
    out = _head("fcos")(_features(2, 64, 64), torch.zeros(2, 3, 64, 64))
    assert (out["bbox_regression"] > 0.5).all()


def test_fcos_class_cross_entropy_trains_the_class_choice_at_positive_locations():
    features, images = _features(2, 64, 64), torch.zeros(2, 3, 64, 64)
    plain, with_ce = _head("fcos", class_ce=0.0), _head("fcos", class_ce=0.5)
    with_ce.load_state_dict(plain.state_dict())
    out = with_ce(features, images)
    out["cls_logits"].retain_grad()
    targets = _targets()
    matched = [with_ce.match(out["anchors"], t["boxes"]) for t in targets]
    # by hand: log-softmax at every location matched to a box, against that box's label
    logp = out["cls_logits"].detach().log_softmax(-1)
    picks = [-logp[i, a, t["labels"][m[a]]] for i, (m, t) in enumerate(zip(matched, targets))
             for a in torch.nonzero(m >= 0).flatten()]
    expected = torch.stack(picks).mean()
    losses = with_ce.loss(out, targets)
    torch.testing.assert_close(losses["ce"], expected)
    base = plain.loss(plain(features, images), targets)
    assert "ce" not in base
    torch.testing.assert_close(losses["loss"], base["loss"] + 0.5 * expected)
    # the cross-entropy alone reaches the logits of positive locations only
    FCOSDetect.class_cross_entropy(out["cls_logits"], matched, targets).backward()
    touched = out["cls_logits"].grad.abs().sum(-1) > 0
    assert touched[0].tolist() == (matched[0] >= 0).tolist() and not touched[1].any()
    # no positive location anywhere: zero, and still a graph to backpropagate
    empty = [targets[1], targets[1]]
    none = FCOSDetect.class_cross_entropy(out["cls_logits"], [m * 0 - 1 for m in matched], empty)
    assert float(none.detach()) == 0.0 and none.requires_grad
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(GhostkitError, match="class_ce must be a finite weight >= 0"):
            _head("fcos", class_ce=bad)


def test_metrics_equal_pycocotools_cocoeval():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    gts, preds = [], []
    for _ in range(6):
        n = int(rng.integers(1, 5))
        xy = rng.uniform(0, 60, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(8, 40, (n, 2))], 1)
        labels = rng.integers(0, 3, n)
        gts.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
        # detections: jittered copies (some with the wrong class) plus a false positive
        jitter = boxes + rng.normal(0, 3, boxes.shape)
        fp = rng.uniform(0, 50, (1, 2))
        det = np.concatenate([jitter, np.concatenate([fp, fp + 10], 1)])
        det_labels = np.concatenate([np.where(rng.random(n) < 0.8, labels, (labels + 1) % 3), [0]])
        preds.append({"boxes": torch.tensor(det, dtype=torch.float32), "scores": torch.tensor(rng.random(n + 1),
                      dtype=torch.float32), "labels": torch.tensor(det_labels)})
    metric = DetectMetrics(["a", "b", "c"], _head("fcos"))
    metric.map.update(preds, gts)
    values = metric.compute()

    images, anns, dets = [], [], []
    for i, (g, p) in enumerate(zip(gts, preds)):
        images.append({"id": i, "width": 100, "height": 100})
        for b, c in zip(g["boxes"].tolist(), g["labels"].tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "iscrowd": 0,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, s, c in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            dets.append({"image_id": i, "category_id": c, "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(3)]}
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert 0.05 < values["map"] < 0.95
    assert values["map"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert values["map50"] == pytest.approx(ev.stats[1], abs=1e-6)
    assert set(values["per_class"]) == {"a", "b", "c"}
    for k, name in enumerate("abc"):  # COCOeval restricted to one category: its AP, AP50 and AR100
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.params.catIds = [k]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        got = values["per_class"][name]
        assert (got["ap"], got["ap50"], got["recall"]) == pytest.approx((ev.stats[0], ev.stats[1], ev.stats[8]),
                                                                        abs=1e-6)


def test_format_result_and_render():
    head = _head("fcos")
    result = {"boxes": torch.tensor([[1.0, 2.0, 30.5, 40.25]]), "scores": torch.tensor([0.9]),
              "labels": torch.tensor([2])}
    formatted = head.format_result(result, ["circle", "square", "triangle"])
    assert formatted == {"detections": [{"class": "triangle", "index": 2, "score": 0.9,
                                         "box": [1.0, 2.0, 30.5, 40.25]}]}
    json.dumps(formatted)
    image = Image.new("RGB", (64, 48), (0, 0, 0))
    pictures = head.render(image, result, ["circle", "square", "triangle"])
    drawn = np.asarray(pictures[""])
    assert drawn.shape[0] / drawn.shape[1] == pytest.approx(48 / 64) and drawn.max() > 0


def test_tta_on_a_task_model():
    config = {"backbone": {"name": "ghostnet_050", "kwargs": {}}, "imgsz": [64, 64],
              "heads": {"detect": {"num_classes": 2, "arch": "fcos", **detect_head_config("fcos", 64)}}}
    model = build_task_model(config).eval()
    x = torch.randn(2, 3, 64, 64)
    sizes = [(64, 64), (100, 80)]
    plain = model.heads["detect"].postprocess(model(x)["detect"], sizes, conf=0.01)
    same = tta_predict(model, x, sizes, scales=(1.0,), flips=False, conf=0.01)
    torch.testing.assert_close(same[0]["boxes"], plain[0]["boxes"])
    merged = tta_predict(model, x, sizes, conf=0.01)
    for r, (h, w) in zip(merged, sizes):
        assert len(r["boxes"]) <= model.heads["detect"].max_det
        assert r["boxes"][:, 0::2].max() <= w + 1e-4 and r["boxes"][:, 1::2].max() <= h + 1e-4


def test_backbone_stops_at_the_deepest_level_the_heads_read(tmp_path):
    """A detector on the stride 4-16 maps (FCOS under 128 px) is built without the stride-32 blocks, from the same
    initial weights, with the same outputs; a checkpoint with the whole backbone and full tower convs (a config without
    ``separable``) still loads; a classifier beside the detector keeps the stride-32 blocks."""
    from ghostkit.models import create_model
    from ghostkit.models.weights import save_weights
    from ghostkit.tasks.model import BACKBONE_OUT_INDICES, TaskModel, load_task_model

    head_cfg = {"num_classes": 2, "arch": "fcos", **detect_head_config("fcos", 96)}
    config = {"backbone": {"name": "ghostnet_050", "kwargs": {}}, "imgsz": [96, 96], "heads": {"detect": head_cfg}}
    torch.manual_seed(0)
    model = build_task_model(config).eval()
    torch.manual_seed(0)
    full = create_model("ghostnet_050", features_only=True, out_indices=BACKBONE_OUT_INDICES)
    uncut = TaskModel(full, {"detect": build_head("detect", full.feature_info, **head_cfg)}, config).eval()
    assert head_cfg["strides"] == [4, 8, 16] and [f["reduction"] for f in model.backbone.feature_info] == [4, 8, 16]
    assert len(model.backbone.blocks) < len(full.blocks)
    tower = [m for m in model.heads["detect"].head.classification_head.conv.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.groups for m in tower] == [64, 1, 64, 1]  # 2 separable convs (depthwise 3x3, pointwise 1x1)
    assert sum(p.numel() for p in model.parameters()) < 0.5 * sum(p.numel() for p in uncut.parameters())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        cut_out, uncut_out = model(x)["detect"], uncut(x)["detect"]
    for key in ("cls_logits", "bbox_regression", "bbox_ctrness"):
        torch.testing.assert_close(cut_out[key], uncut_out[key])
    # a checkpoint with the whole backbone and full 3x3 tower convs (no "separable" in its config)
    old_cfg = {k: v for k, v in head_cfg.items() if k != "separable"}
    old = TaskModel(full, {"detect": build_head("detect", full.feature_info, **old_cfg)}, config).eval()
    path = save_weights(old, tmp_path / "old.pt", {**config, "heads": {"detect": old_cfg}})
    with torch.no_grad():
        torch.testing.assert_close(load_task_model(path)(x)["detect"]["cls_logits"], old(x)["detect"]["cls_logits"])
    both = build_task_model({**config, "heads": {"detect": head_cfg, "classify": {"num_classes": 3}}})
    assert [f["reduction"] for f in both.backbone.feature_info] == [4, 8, 16, 32]


def test_cli_rejects_a_segmentation_head(tmp_path, capsys):
    code = main(["train", "--task", "detect", "--data", "shapes", "--head", "lraspp", "--imgsz", "32", "--epochs", "1",
                 "--workers", "0", "--out", str(tmp_path / "run")])
    assert code == 2 and "--head must be one of" in capsys.readouterr().err


@pytest.mark.slow
def test_train_val_predict_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--task", "detect", "--data", "shapes", "--epochs", "1", "--workers", "0", "--batch", "64",
                 "--imgsz", "32", "--head", "ssdlite", "--out", str(run)])
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"map", "map50", "per_class"} <= set(metrics) and 0 <= metrics["map"] <= metrics["map50"] <= 1
    for name in ("best.ckpt", "last.ckpt", "metrics.csv", "curves.png", "pr_curve.png", "val_predictions.png"):
        assert (run / name).is_file(), name
    assert main(["val", "--weights", str(run / "best.ckpt"), "--data", "shapes", "--workers", "0"]) == 0
    val = json.loads((run / "val" / "metrics.json").read_text())
    assert val["map50"] == pytest.approx(metrics["map50"], abs=1e-6)
    # predict at other image sizes: boxes come back in each image's own pixels
    src = tmp_path / "src"
    src.mkdir()
    Image.open(sorted((run / "samples").iterdir())[0]).resize((90, 50)).save(src / "odd.png")
    capsys.readouterr()
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(src), "--save", str(tmp_path / "pred"),
                 "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "detections" in line
    for d in line["detections"]:
        assert d["class"] in ("circle", "square", "triangle")
        assert 0 <= d["box"][0] <= d["box"][2] <= 90 and 0 <= d["box"][1] <= d["box"][3] <= 50
    assert (tmp_path / "pred" / "odd.png").is_file()

    # test-time augmentation: valid metrics, predictions in image pixels
    assert main(["val", "--weights", str(run / "best.ckpt"), "--data", "shapes", "--workers", "0", "--tta",
                 "--out", str(tmp_path / "val_tta")]) == 0
    tta = json.loads((tmp_path / "val_tta" / "metrics.json").read_text())
    assert 0 <= tta["map"] <= tta["map50"] <= 1 and {"map75", "per_class"} <= set(tta)
    capsys.readouterr()
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(src), "--json", "--tta",
                 "--conf", "0.05"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert all(0 <= d["box"][0] <= d["box"][2] <= 90 and d["score"] >= 0.05 for d in line["detections"])

    # a video, frame by frame: JSON lines and an annotated video
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for sample in sorted((run / "samples").iterdir())[:5]:
        writer.write(cv2.cvtColor(np.asarray(Image.open(sample).convert("RGB").resize((64, 48))), cv2.COLOR_RGB2BGR))
    writer.release()
    capsys.readouterr()
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(video), "--json", "--max-frames", "3",
                 "--save", str(tmp_path / "vid")]) == 0
    out = capsys.readouterr().out
    frames = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [f["frame"] for f in frames] == [0, 1, 2] and all("detections" in f for f in frames)
    assert "3 frames in" in out and "frames/s" in out
    cap = cv2.VideoCapture(str(tmp_path / "vid" / "clip_pred.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_bad_video_and_tta_sources(tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    run = tmp_path / "cls"
    # any checkpoint will do for the source checks; a classifier also shows --tta is refused for non-detectors
    model = build_task_model({"backbone": {"name": "ghostnet_050", "kwargs": {}}, "heads": {"classify": {
        "num_classes": 2}}, "class_names": {"classify": ["a", "b"]}, "imgsz": [32, 32], "mean": [0.5] * 3,
        "std": [0.5] * 3})
    run.mkdir()
    torch.save({"state_dict": model.state_dict(), "ghostkit": model.config}, run / "m.ckpt")
    for argv, words in (
        (["--source", str(broken)], [str(broken)]),
        (["--source", str(tmp_path / "missing.mp4")], ["missing.mp4", "no such video"]),
        (["--source", str(broken), "--tta"], ["--tta", "detection"]),
        (["--source", str(broken), "--max-frames", "-1"], ["--max-frames"]),
        (["--source", str(broken), "--conf", "1.5"], ["--conf"]),
        (["--source", str(broken), "--conf", "0.4"], ["--conf", "detection models"]),
    ):
        code = main(["predict", "--weights", str(run / "m.ckpt"), *argv])
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("ghostkit: error:") and "Traceback" not in err, err
        assert all(w in last for w in words), last
