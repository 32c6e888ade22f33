"""A short real training run against a real MLflow store, read back through the client."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch

from model.config import ServiceConfig
from model.network import ModelSettings, build_model, load_checkpoint
from model.schema import ConfigError
from model.service import DetectorService
from model.verdict import VerdictConfig
from training.train import main

pytestmark = pytest.mark.integration

SHORT_RUN = ["--input-size", "96", "--batch-size", "4", "--max-steps-per-epoch", "2"]


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder}/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.chdir(folder)  # the default artifact root is ./mlruns
        yield uri


@pytest.fixture(scope="module")
def trained(tracking_uri, split_file, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("checkpoints")
    arguments = ["--split", str(split_file), "--output-dir", str(output_dir), *SHORT_RUN]
    assert main([*arguments, "--epochs", "1", "--version", "0.0.1"]) == 0
    return output_dir, arguments


def _only_run(tracking_uri):
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("deepfake-serve")
    [run] = client.search_runs([experiment.experiment_id])
    return client, run


def test_run_has_params_metrics_artifacts_and_a_registered_version(trained, tracking_uri):
    output_dir, _ = trained
    client, run = _only_run(tracking_uri)
    assert run.data.params["input_size"] == "96"
    assert run.data.params["fake_source"] == "both"
    assert run.data.params["precision_used"] in ("fp32", "bf16")
    for metric in (
        "train_loss",
        "val_loss",
        "val_frame_auc",
        "val_video_auc",
        "val_video_accuracy",
        "val_video_log_loss",
        "val_video_eer",
    ):
        assert metric in run.data.metrics, metric
    artifacts = {
        a.path
        for folder in ("checkpoint", "plots", "split")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert artifacts == {
        "checkpoint/best.pt",
        "checkpoint/best.json",
        "plots/roc.png",
        "plots/confusion.png",
        "plots/reliability.png",
        "split/split.json",
    }
    [version] = client.search_model_versions("name='deepfake'")
    assert version.run_id == run.info.run_id and version.tags["model_version"] == "0.0.1"
    network, settings = load_checkpoint(output_dir / "best.pt")
    assert settings.input_size == 96 and settings.version == "0.0.1"
    assert not network.training
    # Calibrated on the kept checkpoint's validation faces, recorded where it was logged.
    metrics = run.data.metrics
    assert settings.temperature == metrics["calibration_temperature"] > 0
    assert "validation faces: ECE" in settings.calibration
    assert metrics["val_face_ece_calibrated"] <= metrics["val_face_ece"] + 1e-9


def test_resume_continues_the_same_run(trained, tracking_uri):
    output_dir, arguments = trained
    before = torch.load(output_dir / "last_state.pt", weights_only=True)
    assert before["epoch"] == 0
    assert main([*arguments, "--epochs", "2", "--resume"]) == 0
    client, run = _only_run(tracking_uri)
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1]
    assert torch.load(output_dir / "last_state.pt", weights_only=True)["epoch"] == 1
    versions = client.search_model_versions("name='deepfake'")
    assert sorted(int(v.version) for v in versions) == [1, 2]


def test_yaml_config_is_read_and_checked(tmp_path):
    from training.recipe import config_from_args, get_args_parser

    config_file = tmp_path / "train.yaml"
    config_file.write_text("epochs: 7\ninput_size: 224\nfake_source: sbi\n")
    parsed = get_args_parser().parse_args(["--config", str(config_file), "--epochs", "9"])
    config = config_from_args(parsed)
    assert (config.epochs, config.input_size, config.fake_source) == (9, 224, "sbi")
    config_file.write_text("epochs: 7\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        config_from_args(get_args_parser().parse_args(["--config", str(config_file)]))


def _saved_random_checkpoint(folder, input_size=96):
    from model.network import ModelSettings, build_model, save_checkpoint

    torch.manual_seed(1)
    path = folder / "init.pt"
    origin = ModelSettings(
        init_source="weights.whl", init_sha256="ab" * 32, init_licence="MIT", face_crop_scale=1.5
    )
    save_checkpoint(build_model(ModelSettings(input_size=input_size)), origin, path)
    return path


def _changed_after_one_epoch(split_file, folder, *options) -> set[str]:
    """Train one short epoch from a saved checkpoint; the state_dict keys that moved."""
    init = _saved_random_checkpoint(folder)
    arguments = ["--split", str(split_file), "--output-dir", str(folder / "out"), *SHORT_RUN]
    arguments += ["--init", str(init), "--epochs", "1", "--registered-model", "", *options]
    assert main(arguments) == 0
    before = torch.load(init, weights_only=True)
    after = torch.load(folder / "out" / "best.pt", weights_only=True)
    return {key for key in before if not torch.equal(before[key], after[key])}


def test_a_frozen_first_epoch_trains_the_head_alone(tracking_uri, split_file, tmp_path):
    from training.data_dir import load_split

    options = ["--freeze-backbone-epochs", "1", "--experiment", "frozen"]
    changed = _changed_after_one_epoch(split_file, tmp_path, *options)
    # Weights and batch-norm statistics of the backbone stay ImageNet's; only the head moves.
    assert changed and all(key.startswith("last_linear") for key in changed), changed
    # Where the starting weights came from travels into the new checkpoint and into MLflow.
    _, settings = load_checkpoint(tmp_path / "out" / "best.pt")
    assert (settings.init_source, settings.init_sha256) == ("weights.whl", "ab" * 32)
    # The crop scale is the one the split's crops were cut at, not the starting checkpoint's.
    assert settings.face_crop_scale == load_split(split_file)["crop_scale"] == 1.3
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("frozen").experiment_id])
    assert run.data.params["init_sha256"] == "ab" * 32
    assert run.data.params["init_source"] == "weights.whl"


def test_a_boundary_loss_trains_a_head_the_checkpoint_leaves_out(
    tracking_uri, split_file, tmp_path
):
    options = ["--boundary-loss", "1.0", "--experiment", "boundary"]
    changed = _changed_after_one_epoch(split_file, tmp_path, *options)
    after = torch.load(tmp_path / "out" / "best.pt", weights_only=True)
    # The network trained (its middle block too), and its checkpoint holds only its own weights.
    assert any(key.startswith("block7.") for key in changed)
    assert set(after) == set(build_model(ModelSettings(input_size=96)).state_dict())
    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("boundary").experiment_id])
    assert run.data.params["boundary_loss"] == "1.0"


def test_the_backbone_learns_at_its_own_rate():
    from model.network import ModelSettings, build_model
    from training.optim import parameter_groups
    from training.recipe import TrainConfig

    network = build_model(ModelSettings())
    backbone, head = parameter_groups(network, TrainConfig(lr=1e-3, backbone_lr_scale=0.2))
    assert backbone["lr"] == pytest.approx(2e-4) and head["lr"] == 1e-3
    assert sum(p.numel() for p in head["params"]) == 2048 * 2 + 2
    total = sum(p.numel() for p in network.parameters())
    assert sum(p.numel() for p in backbone["params"]) + 4098 == total


def test_a_recipe_of_fixed_length_needs_no_validation(tracking_uri, split_file, tmp_path):
    import json

    from training.data_dir import load_split, write_split

    split = load_split(split_file)
    everything = tmp_path / "all.json"
    videos = [dict(v, split="train") for v in split["videos"]]
    write_split(dict(split, videos=videos, crop_scale=1.25), everything)
    arguments = ["--split", str(everything), "--output-dir", str(tmp_path), *SHORT_RUN]
    arguments += ["--epochs", "1", "--experiment", "no-validation", "--registered-model", ""]
    with pytest.raises(SystemExit, match="checkpoint_selection"):
        main(arguments)
    assert main([*arguments, "--checkpoint-selection", "last"]) == 0
    assert json.loads((tmp_path / "best.json").read_text())["input_size"] == 96
    assert json.loads((tmp_path / "best.json").read_text())["face_crop_scale"] == 1.25
    _, settings = load_checkpoint(tmp_path / "best.pt")
    assert settings.temperature == 1.0 and not settings.calibration  # nothing to fit it on
    # The recipe's temperature from cross-validation is carried into the checkpoint instead.
    recipe = [*arguments, "--checkpoint-selection", "last", "--recipe-temperature", "2.5"]
    crowd = ["--recipe-real-person-logit", "-0.2", "0.5"]
    assert main([*recipe, "--recipe-threshold", "0.57", *crowd]) == 0
    _, settings = load_checkpoint(tmp_path / "best.pt")
    assert settings.real_person_logit == (-0.2, 0.5)  # the server's crowd correction's null
    assert settings.temperature == 2.5 and "cross-validating this recipe" in settings.calibration
    # ... and so is its threshold, which the server then labels with.
    assert settings.decision_threshold == 0.57
    served = DetectorService.from_checkpoint(tmp_path / "best.pt", ServiceConfig())
    assert served.config.verdict.threshold == 0.57
    assert (
        DetectorService.from_checkpoint(
            tmp_path / "best.pt", ServiceConfig(verdict=VerdictConfig(threshold=0.8))
        ).config.verdict.threshold
        == 0.8
    )  # an operator's threshold wins
    with pytest.raises(SystemExit, match="recipe_temperature"):
        main([*arguments, "--checkpoint-selection", "last", "--recipe-temperature", "0"])
    with pytest.raises(SystemExit, match="recipe_threshold"):
        main([*arguments, "--checkpoint-selection", "last", "--recipe-threshold", "1.5"])
    with pytest.raises(SystemExit, match="recipe_real_person_logit"):
        main([*arguments, "--checkpoint-selection", "last", *crowd[:2], "0"])


def test_augment_and_self_blend_settings_come_from_the_yaml(tmp_path):
    from training.recipe import config_from_args, get_args_parser

    config_file = tmp_path / "train.yaml"
    config_file.write_text(
        "self_blend:\n  perturb_target: 0.5\naugment:\n  jpeg_quality: [20, 90]\n  downscale: 0.3\n"
    )
    config = config_from_args(get_args_parser().parse_args(["--config", str(config_file)]))
    assert config.self_blend.perturb_target == 0.5
    assert config.augment.jpeg_quality == (20, 90)
    assert config.augment.downscale == 0.3
    flags = ["--config", str(config_file), "--perturb-target", "0.25", "--jpeg-quality", "40", "80"]
    config = config_from_args(get_args_parser().parse_args(flags))
    assert (config.self_blend.perturb_target, config.augment.jpeg_quality) == (0.25, (40, 80))
    assert config.augment.downscale == 0.3  # the YAML's, where no flag overrides it
    config_file.write_text("augment:\n  jpeg_qualty: [20, 90]\n")
    with pytest.raises(ConfigError, match="jpeg_qualty"):
        config_from_args(get_args_parser().parse_args(["--config", str(config_file)]))


def test_twin_shuffle_keeps_each_real_crop_beside_its_self_blended_twin(split_file):
    from training.data_dir import load_split
    from training.dataset import TwinShuffle, split_items

    split = load_split(split_file)
    items = split_items(split, "train", split["image_dir"], "both")
    sampler = TwinShuffle(items, seed=0)
    first = list(sampler)
    assert sorted(first) == list(range(len(items))) and len(sampler) == len(items)
    twins = {i for i, item in enumerate(items) if item.self_blended}
    assert twins  # the small set's real crops have landmarks
    for position, index in enumerate(first):
        if index in twins:  # right after the real crop it was blended from
            before = items[first[position - 1]]
            assert before.path == items[index].path and not before.self_blended
    sampler.set_epoch(1)
    assert list(sampler) != first  # reshuffled each epoch
    sampler.set_epoch(0)
    assert list(sampler) == first  # and repeatable


def test_twin_ranking_penalises_a_blend_scored_below_its_own_real_crop():
    from training.loop import TrainingLoss

    # items 0/1 and 3/4 are real crops with their twins; item 2 has none
    twins = np.array([1, -1, -1, 4, -1, -1])
    weights = torch.ones(2)
    loss = TrainingLoss(weights, twins, twin_weight=1.0)
    labels = torch.tensor([0, 1, 0, 1])
    order = torch.tensor([3, 4, 0, 1])  # two pairs, as TwinShuffle lays them out
    right = torch.tensor([[2.0, -2.0], [-2.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
    wrong = right[[1, 0, 3, 2]]  # each real crop now above its twin
    cross_entropy = torch.nn.CrossEntropyLoss(weight=weights)
    plain = TrainingLoss(weights, twins, twin_weight=0.0)
    assert torch.equal(plain(wrong, labels, order), cross_entropy(wrong, labels))
    # the ranking term: softplus(margin of the real crop - margin of its twin), mean over pairs
    margin = wrong[:, 1] - wrong[:, 0]
    ranking = torch.nn.functional.softplus(margin[[0, 2]] - margin[[1, 3]]).mean()
    assert torch.isclose(loss(wrong, labels, order), cross_entropy(wrong, labels) + ranking)
    assert loss(wrong, labels, order) - cross_entropy(wrong, labels) > 3.0
    assert loss(right, labels, order) - cross_entropy(right, labels) < 0.1
    # crops that are not twins side by side (sharded, or another order) add no ranking term
    unpaired = torch.tensor([4, 3, 2, 0])
    assert torch.equal(loss(wrong, labels, unpaired), cross_entropy(wrong, labels))


def test_fake_methods_pick_the_swaps_trained_on(split_file):
    from training.data_dir import SplitError, check_fake_methods, load_split
    from training.dataset import split_items
    from training.recipe import TrainConfig

    split = load_split(split_file)
    fakes = [v for v in split["videos"] if v["split"] == "train" and v["label"] == "fake"]
    assert fakes and {v["method"] for v in fakes} == {"faceswap-delaunay-poisson"}

    def swaps(methods):
        items = split_items(split, "train", split["image_dir"], "both", methods)
        return {item.video_id for item in items if item.label == 1 and not item.self_blended}

    assert swaps(None) == swaps(("faceswap-delaunay-poisson",)) == {v["video_id"] for v in fakes}
    assert swaps(("another-method",)) == set()
    check_fake_methods(split, ("faceswap-delaunay-poisson",))
    with pytest.raises(SplitError, match=r"\['another-method'\]; its methods: \['faceswap-"):
        check_fake_methods(split, ("another-method",))
    with pytest.raises(ConfigError, match="fake_source to videos or both"):
        TrainConfig(fake_source="sbi", fake_methods=("faceswap-delaunay-poisson",))


def test_twin_ranking_needs_paired_batches():
    from training.recipe import TrainConfig

    with pytest.raises(ConfigError, match="paired_batches"):
        TrainConfig(twin_ranking=1.0)
    with pytest.raises(ConfigError, match="twin_ranking"):
        TrainConfig(twin_ranking=-1.0, paired_batches=True)
    assert TrainConfig(twin_ranking=0.5, paired_batches=True).twin_ranking == 0.5


def test_modules_before_train_from_keep_their_weights(tracking_uri, split_file, tmp_path):
    options = ["--train-from", "block11", "--experiment", "train-from"]
    changed = {
        key.split(".")[0] for key in _changed_after_one_epoch(split_file, tmp_path, *options)
    }
    assert changed == {"block11", "block12", "conv3", "bn3", "conv4", "bn4", "last_linear"}
    with pytest.raises(SystemExit, match="train_from"):
        main(["--split", str(split_file), "--train-from", "block13"])


def _tiny_network() -> torch.nn.Module:
    """A seeded conv, batch norm and linear head: one step of the loop in milliseconds."""
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def test_weight_averaging_keeps_the_mean_of_the_weights_after_every_step():
    from torch.optim.swa_utils import AveragedModel
    from torch.utils.data import DataLoader, TensorDataset

    from training.loop import TrainingLoss, train_one_epoch

    network = _tiny_network()
    images, labels = torch.randn(12, 3, 8, 8), torch.tensor([0, 1] * 6)
    loader = DataLoader(TensorDataset(images, labels, torch.arange(12)), batch_size=4)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.5)
    after_each_step = []
    optimizer.register_step_post_hook(
        lambda *_: after_each_step.append(
            {k: v.detach().clone() for k, v in network.state_dict().items()}
        )
    )
    averaged = AveragedModel(network, use_buffers=True)
    loss = TrainingLoss(torch.ones(2), np.full(12, -1), 0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    train_one_epoch(
        network, loader, loss, optimizer, schedule, "fp32", None, None, 0, averaged=averaged
    )
    assert len(after_each_step) == 3
    for key in ("0.weight", "4.bias", "1.running_mean", "1.running_var"):
        mean = torch.stack([weights[key] for weights in after_each_step]).mean(dim=0)
        assert torch.allclose(averaged.module.state_dict()[key], mean, atol=1e-6), key
        assert not torch.allclose(network.state_dict()[key], mean, atol=1e-4), key  # it moved


def test_a_weight_averaged_recipe_keeps_and_resumes_the_average(tracking_uri, split_file, tmp_path):
    arguments = ["--split", str(split_file), "--output-dir", str(tmp_path), *SHORT_RUN]
    arguments += ["--experiment", "averaged", "--registered-model", "", "--lr", "0.01"]
    arguments += ["--checkpoint-selection", "last"]
    with pytest.raises(SystemExit, match="weight_average_epochs must lie in \\[0, 1\\]"):
        main(
            [
                *arguments,
                "--epochs",
                "2",
                "--freeze-backbone-epochs",
                "1",
                "--weight-average-epochs",
                "2",
            ]
        )
    assert main([*arguments, "--epochs", "2", "--weight-average-epochs", "2"]) == 0
    state = torch.load(tmp_path / "last_state.pt", weights_only=True)
    assert state["averaged"]["n_averaged"] == 4  # 2 epochs of 2 steps
    kept = torch.load(tmp_path / "best.pt", weights_only=True)
    last_step = state["network"]
    key = "last_linear.1.weight"
    assert torch.equal(kept[key], state["averaged"][f"module.{key}"])
    assert not torch.equal(kept[key], last_step[key])  # the average, not the last step
    # A resumed run goes on averaging from where the state left off.
    assert main([*arguments, "--epochs", "3", "--weight-average-epochs", "3", "--resume"]) == 0
    resumed = torch.load(tmp_path / "last_state.pt", weights_only=True)["averaged"]
    assert resumed["n_averaged"] == 6


def test_sharpness_aware_steps_take_the_gradient_at_the_worst_nearby_weights():
    import copy

    from torch.utils.data import DataLoader, TensorDataset

    from training.loop import TrainingLoss, train_one_epoch
    from training.sharpness import SharpnessAware

    network = _tiny_network()
    images, labels, rho, lr = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]), 0.5, 0.1
    loss = TrainingLoss(torch.ones(2), np.full(4, -1), 0.0)
    start = copy.deepcopy(network)
    # By hand: the gradient at w, the weights moved rho along it, the gradient there.
    expected = copy.deepcopy(network)
    loss(expected(images), labels, torch.arange(4)).backward()
    gradients = [p.grad.clone() for p in expected.parameters()]
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in gradients]))
    once_statistics = expected[1].running_mean.clone()  # after one forward pass
    moved = copy.deepcopy(network)
    with torch.no_grad():
        for parameter, gradient in zip(moved.parameters(), gradients, strict=True):
            parameter.add_(gradient * rho / norm)
    loss(moved(images), labels, torch.arange(4)).backward()
    with torch.no_grad():
        for parameter, there in zip(expected.parameters(), moved.parameters(), strict=True):
            parameter.sub_(lr * there.grad)

    optimizer = torch.optim.SGD(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loader = DataLoader(TensorDataset(images, labels, torch.arange(4)), batch_size=4)
    sharpness = SharpnessAware(network.parameters(), rho)
    train_one_epoch(
        network, loader, loss, optimizer, schedule, "fp32", None, None, 0, sharpness=sharpness
    )
    for key, value in expected.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        assert torch.allclose(network.state_dict()[key], value, atol=1e-6), key
    # The second pass leaves batch norm's running statistics as the first one set them.
    assert torch.allclose(network[1].running_mean, once_statistics)
    plain_step = start[0].weight - lr * gradients[0]
    assert not torch.allclose(network[0].weight, plain_step, atol=1e-4)  # not a plain step


def test_a_negative_sharpness_radius_is_refused():
    from training.recipe import TrainConfig

    with pytest.raises(ConfigError, match="sharpness_rho must be >= 0"):
        TrainConfig(sharpness_rho=-0.05)


def test_sharpness_epochs_take_sam_steps_in_the_last_epochs_only(
    tracking_uri, split_file, tmp_path, monkeypatch
):
    import training.train as train_module
    from training.sharpness import SharpnessAware

    # The real ascent and epochs, each ascent noted with the epoch it came in.
    epoch_now, ascents = [None], []
    ascend, train_epoch = SharpnessAware.ascend, train_module.train_epoch

    def noted_epoch(config, training, epoch, *rest):
        epoch_now[0] = epoch
        return train_epoch(config, training, epoch, *rest)

    def noted_ascend(self):
        ascents.append(epoch_now[0])
        ascend(self)

    monkeypatch.setattr(train_module, "train_epoch", noted_epoch)
    monkeypatch.setattr(SharpnessAware, "ascend", noted_ascend)
    arguments = ["--split", str(split_file), "--output-dir", str(tmp_path), *SHORT_RUN]
    arguments += ["--experiment", "sharpness", "--registered-model", "", "--epochs", "3"]
    arguments += ["--checkpoint-selection", "last", "--sharpness-rho", "0.05"]
    with pytest.raises(SystemExit, match="sharpness_epochs must lie in \\[1, 3\\]"):
        main([*arguments, "--sharpness-epochs", "4"])
    assert main([*arguments, "--sharpness-epochs", "1"]) == 0
    assert ascents == [2, 2]  # the two steps of the last epoch
    ascents.clear()
    assert main(arguments) == 0  # unset: every epoch
    assert ascents == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("recipe", ["training/demo.yaml", "training/full.yaml"])
def test_the_shipped_recipes_read_as_checked_configs(recipe):
    from pathlib import Path

    from training.recipe import config_from_args, get_args_parser

    root = Path(__file__).resolve().parents[1]
    config = config_from_args(get_args_parser().parse_args(["--config", str(root / recipe)]))
    assert config.fake_source == "sbi" and config.checkpoint_selection == "last"
    # Both carry protocol v2's fits for themselves, which the served checkpoint needs.
    assert config.recipe_temperature and config.recipe_threshold is not None
    assert config.recipe_real_person_logit is not None
