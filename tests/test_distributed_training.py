"""`torchrun --nproc_per_node 2` training on CPU (gloo): real processes, real MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest
import torch

from model.network import ModelSettings, build_model
from support.torchserve import REPO_ROOT
from training.distributed import Processes
from training.train import seed_everything

pytestmark = pytest.mark.integration

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")
STEPS, BATCH, INPUT_SIZE = 3, 4, 96


@pytest.fixture(scope="module")
def two_process_run(split_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    train_args = [
        "--split", str(split_file),
        "--output-dir", str(folder / "checkpoints"),
        "--input-size", str(INPUT_SIZE),
        "--batch-size", str(BATCH),
        "--max-steps-per-epoch", str(STEPS),
        "--epochs", "1",
        "--experiment", "ddp-test",
    ]  # fmt: skip
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "tests.ddp_worker",
         str(folder), *train_args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return folder, tracking_uri, result


def test_both_ranks_end_with_identical_weights_and_statistics_changed_by_training(two_process_run):
    folder, _, _ = two_process_run
    rank0 = torch.load(folder / "rank0.pt", weights_only=True)
    rank1 = torch.load(folder / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    seed_everything(0)  # what training.train does before building the network
    initial = build_model(ModelSettings(input_size=INPUT_SIZE)).state_dict()
    changed = [name for name in rank0 if not torch.equal(rank0[name], initial[name])]
    assert len(changed) > len(rank0) // 2


def test_only_rank_0_logs_to_mlflow_and_steps_count_both_shards(two_process_run):
    folder, tracking_uri, result = two_process_run
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("ddp-test")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.data.params["world_size"] == "2"
    assert run.data.params["distributed_backend"] == "gloo"
    crops = int(run.data.params["train_crops"])
    shard = -(-crops // 2)  # DistributedSampler pads the last shard to the same length
    steps = min(STEPS, shard // BATCH)
    assert run.data.metrics["train_images"] == 2 * steps * BATCH
    assert "val_video_auc" in run.data.metrics
    assert (folder / "checkpoints" / "best.pt").is_file()
    assert result.stdout.count("train: kept") == 1  # rank 1 prints no summary


def test_each_rank_trains_on_its_own_shard_of_the_crops():
    dataset = list(range(10))
    shards = [
        list(Processes(rank=rank, world_size=2).sampler(dataset, seed=0, drop_last=False))
        for rank in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 5
    assert sorted(shards[0] + shards[1]) == dataset
    assert Processes().sampler(dataset, seed=0, drop_last=False) is None
