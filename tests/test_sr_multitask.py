"""Super-resolution as a member of multi-task training: LR input, HR image + HR masks + HR boxes, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ghostkit.cli import main
from ghostkit.data.multitask import build_multitask_data
from ghostkit.data.restore import Degradation
from ghostkit.engine.config import TrainConfig
from ghostkit.engine.multitask import MultiTaskSpec
from ghostkit.tasks.model import build_task_model

HR, SCALE = 64, 2


def _model_and_batch(join: str | None = None, tasks=("restore", "segment", "detect"), n: int = 2):
    spec = MultiTaskSpec(",".join(tasks))
    cfg = TrainConfig(task=",".join(tasks), data="shapes", model="ghostnet_050", imgsz=HR, scale=SCALE, sr_join=join)
    data = spec.build_data(cfg)
    config = {"backbone": {"name": "ghostnet_050", "kwargs": {}}, "heads": spec.head_configs(cfg, data),
              "class_names": data.class_names, "imgsz": [data.imgsz, data.imgsz], "task_weights": "auto",
              "mean": list(data.mean), "std": list(data.std)}
    torch.manual_seed(0)
    model = build_task_model(config)
    images, targets = data.collate([data.val[i] for i in range(n)])
    return model, images, targets, data


def test_data_gives_lr_inputs_and_hr_targets():
    data = build_multitask_data("shapes", ["restore", "segment", "detect"], HR, degradation=Degradation(SCALE))
    assert data.imgsz == HR // SCALE
    image, target = data.val[0]
    assert image.shape == (3, HR // SCALE, HR // SCALE)
    assert target["restore"].shape == (3, HR, HR) and target["segment"].shape == (HR, HR)
    boxes = target["detect"]["boxes"]
    assert len(boxes) and boxes.max() <= HR and boxes[:, 2:].max() > HR // SCALE  # HR pixels, not input pixels


def test_every_head_predicts_in_the_hr_frame_and_trains():
    model, images, targets, _ = _model_and_batch("fused")
    assert images.shape[-1] == HR // SCALE
    out = model(images)
    assert out["restore"]["image"].shape == (2, 3, HR, HR)
    assert out["segment"].shape[-2:] == (HR, HR)
    assert out["detect"]["image_size"] == (HR, HR)
    anchors = out["detect"]["anchors"]
    assert anchors[:, 2:].max() > HR * 0.75 and anchors[:, :2].min() >= -HR  # they cover the HR frame
    losses = model.loss(out, targets)
    losses["loss"].backward()
    assert {"restore/loss", "segment/loss", "detect/loss"} <= set(losses)
    assert model.heads["restore"].fusion[2].weight.grad.abs().sum() > 0  # the fusion learns from the HR masks
    model.eval()
    with torch.no_grad():
        results = model.postprocess(model(images), [(HR // SCALE, HR // SCALE)] * 2)
    assert results[0]["restore"]["image"].shape == (3, HR, HR)
    assert results[0]["segment"]["mask"].shape == (HR, HR)
    # predictions at another input size: every result in SCALE x that frame
    with torch.no_grad():
        other = model.postprocess(model(images), [(40, 60)] * 2)
    assert other[0]["segment"]["mask"].shape == (80, 120) and other[0]["restore"]["image"].shape == (3, 80, 120)


def test_classification_joins_a_super_resolution_run():
    model, images, targets, _ = _model_and_batch(tasks=("restore", "classify"))
    assert model.heads["restore"].fusion is None  # nothing to fuse without masks
    out = model(images)
    assert out["restore"]["image"].shape[-1] == HR and out["classify"].shape == (2, 3)
    assert torch.isfinite(model.loss(out, targets)["loss"])
    model.eval()
    with torch.no_grad():
        result = model.postprocess(model(images), [(HR // SCALE, HR // SCALE)] * 2)[0]
    assert result["restore"]["image"].shape == (3, HR, HR) and result["classify"]["scores"].shape == (3,)


def test_the_default_join_fuses_masks_and_detects_on_the_restored_image():
    seg, _, _, _ = _model_and_batch(tasks=("restore", "segment"))
    assert seg.heads["restore"].join == "fused" and seg.heads["restore"].fusion is not None
    assert seg.config["heads"]["restore"]["join"] == "fused"  # written down: a checkpoint keeps its join
    det, _, _, _ = _model_and_batch(tasks=("restore", "detect", "segment"))
    assert det.heads["restore"].join == "restored" and det.heads["restore"].lift is None


def test_the_fused_model_exports_to_one_onnx_model_with_its_outputs(tmp_path):
    from ghostkit.deploy.export import export

    model, _, _, _ = _model_and_batch(tasks=("restore", "segment"))
    for conv in (model.heads["restore"].fusion[2], model.heads["restore"].upsample[0]):  # as after training
        torch.nn.init.normal_(conv.weight, std=0.05)
    result = export(model.eval(), out=tmp_path / "fused.onnx", log=None)
    assert result.max_abs_diff <= result.tolerance


def test_an_untrained_fusion_starts_as_the_lr_join():
    fused, images, _, _ = _model_and_batch("fused")
    plain, _, _, _ = _model_and_batch("lr")
    assert plain.heads["restore"].fusion is None
    plain.load_state_dict({k: v for k, v in fused.state_dict().items() if ".fusion." not in k})
    fused.eval(), plain.eval()
    with torch.no_grad():
        a, b = fused(images), plain(images)
    assert torch.allclose(a["segment"], b["segment"], atol=1e-5)


def test_the_restored_join_runs_the_backbone_on_the_hr_image_only():
    model, images, targets, _ = _model_and_batch("restored", tasks=("restore", "segment"))
    seen = []
    model.backbone.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    out = model(images)
    assert seen == [(HR, HR)]
    # the masks' loss stops at the restored image: the restore network learns from its own target only
    model.heads["segment"].loss(out["segment"], targets["segment"])["loss"].backward()
    assert model.backbone.conv_stem.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.heads["restore"].parameters())
    head = model.heads["restore"]
    assert head.lift is None and (head.conv_first.out_channels, len(head.body)) == (32, 6)  # a restore model's size


def test_the_joint_restore_branch_is_lighter_and_reads_the_backbone():
    model, images, targets, _ = _model_and_batch("lr", tasks=("restore", "segment"))
    head = model.heads["restore"]
    assert (head.conv_first.out_channels, len(head.body)) == (16, 4)
    torch.nn.init.normal_(head.upsample[0].weight, std=0.01)  # as after a training step (it starts at zero)
    out = model(images)
    out["restore"]["image"].sum().backward()  # the restore loss reaches the backbone through the lifted features
    assert head.lift.weight.grad.abs().sum() > 0 and model.backbone.conv_stem.weight.grad.abs().sum() > 0
    # tiles (small, with the lifted features cropped alike) give the whole image's result
    model.eval()
    with torch.no_grad():
        whole = model(images)["restore"]["image"]
        head.tile, head.tile_overlap = 16, 12
        tiled = model(images)["restore"]["image"]
    assert torch.allclose(whole, tiled, atol=1e-5)


# -- bad input: one line naming the file, exit code 2 --------------------------------------------------------------
def _one_line_error(capsys, argv: list[str], *words: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("ghostkit: error:") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


def _masks_folder(root: Path, size: int = 96, odd: str | None = None, mask_size: int | None = None, n: int = 2,
                  boxes: bool = False) -> None:
    """``images/{train,val}`` + ``masks/{train,val}`` (one square per image), with ``boxes`` also YOLO labels of
    the squares; ``odd``: the one image whose mask is ``mask_size`` px."""
    rng = np.random.default_rng(0)
    if boxes:
        root.mkdir(parents=True, exist_ok=True)
        (root / "data.yaml").write_text(json.dumps({"names": ["square"]}))
    for split in ("train", "val"):
        for d in ("images", "masks", "labels"):
            (root / d / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{split}{i}"
            image = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
            x, y, w = (int(v) for v in rng.integers(size // 8, size // 2, 3))
            image[y:y + w, x:x + w] = (230, 40, 40)
            Image.fromarray(image).save(root / "images" / split / f"{name}.png")
            m = mask_size if name == odd else size
            mask = np.zeros((m, m), np.uint8)
            mask[y * m // size:(y + w) * m // size, x * m // size:(x + w) * m // size] = 1
            Image.fromarray(mask).save(root / "masks" / split / f"{name}.png")
            if boxes:
                (root / "labels" / split / f"{name}.txt").write_text(
                    f"0 {(x + w / 2) / size} {(y + w / 2) / size} {w / size} {w / size}\n")


def _train(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "--task", "restore,segment", "--scale", "2", "--data", str(data), "--model", "ghostnet_050",
            "--epochs", "1", "--workers", "0", *extra, "--out", str(tmp_path / "run")]


def test_images_smaller_than_the_hr_frame_are_refused(capsys, tmp_path):
    _masks_folder(tmp_path / "d", size=48)
    _one_line_error(capsys, _train(tmp_path, tmp_path / "d", "--imgsz", "64"), "train0.png", "48 x 48",
                    "64 x 64", "--scale 2")


def test_a_scale_that_does_not_divide_the_frame_is_refused(capsys, tmp_path):
    _masks_folder(tmp_path / "d")
    _one_line_error(capsys, ["train", "--task", "restore,segment", "--scale", "3", "--imgsz", "128", "--data",
                             str(tmp_path / "d"), "--out", str(tmp_path / "run")], "--imgsz 128", "--scale 3")


def test_masks_of_another_size_than_their_image_are_refused(capsys, tmp_path):
    _masks_folder(tmp_path / "d", odd="train1", mask_size=80)
    _one_line_error(capsys, _train(tmp_path, tmp_path / "d", "--imgsz", "64"), "train1.png", "80 x 80", "96 x 96")


def test_sr_join_needs_a_super_resolution_run(capsys, tmp_path):
    _one_line_error(capsys, ["train", "--task", "restore,segment", "--scale", "1", "--noise", "25", "--sr-join",
                             "lr", "--data", "shapes", "--out", str(tmp_path / "run")], "--sr-join")


# -- end to end ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_val_predict_export_end_to_end(tmp_path, capsys):
    run, data = tmp_path / "run", str(tmp_path / "d")
    _masks_folder(tmp_path / "d", n=4, boxes=True)
    assert main(["train", "--task", "restore,segment,detect", "--scale", "2", "--imgsz", str(HR), "--data", data,
                 "--model", "ghostnet_050", "--epochs", "1", "--batch", "4", "--workers", "0",
                 "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"restore", "segment", "detect", "score"} <= set(metrics)
    assert metrics["restore"]["psnr"] > 10 and 0 <= metrics["segment"]["miou"] <= 1  # noise images: low PSNR

    assert main(["val", "--weights", str(run / "best.ckpt"), "--data", data, "--out", str(tmp_path / "val"),
                 "--workers", "0"]) == 0
    again = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert again["score"] == pytest.approx(metrics["score"], abs=1e-6)
    assert again["restore"]["psnr"] == pytest.approx(metrics["restore"]["psnr"], abs=1e-4)

    lr_image = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(lr_image)
    capsys.readouterr()
    assert main(["predict", "--weights", str(run / "best.ckpt"), "--source", str(lr_image), "--json",
                 "--save", str(tmp_path / "pred")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["restore"]["size"] == [48, 80] and result["segment"]["size"] == [48, 80]
    assert all(d["box"][2] <= 80 and d["box"][3] <= 48 for d in result["detect"]["detections"])
    with Image.open(tmp_path / "pred" / "small_all.png") as drawn:  # the restored image (enlarged for the labels)
        assert drawn.size[0] % 80 == 0 and drawn.size[0] * 48 == drawn.size[1] * 80

    onnx_file = tmp_path / "joint.onnx"
    assert main(["export", "--weights", str(run / "best.ckpt"), "--out", str(onnx_file)]) == 0
    import onnx

    outputs = [o.name for o in onnx.load(str(onnx_file)).graph.output]
    assert any(n.startswith("restore") for n in outputs) and any(n.startswith("segment") for n in outputs)
    assert any(n.startswith("detect") for n in outputs)
    capsys.readouterr()
    assert main(["predict", "--weights", str(onnx_file), "--source", str(lr_image), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert exported["segment"]["size"] == [48, 80] and exported["restore"]["size"] == [48, 80]
