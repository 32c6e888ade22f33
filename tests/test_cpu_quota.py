"""Cores a worker may use (affinity capped by the cgroup CPU quota: containers, pods) and how
the CPU is named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from model.cpu import cgroup_cpu_quota, cpu_model, usable_cores


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_is_the_tightest_along_the_path(tmp_path):
    proc = tmp_path / "proc_cgroup"
    write(proc, "0::/kubepods/pod1/container\n")
    write(tmp_path / "kubepods" / "cpu.max", "max 100000\n")  # unlimited at the top
    write(tmp_path / "kubepods" / "pod1" / "cpu.max", "150000 100000\n")  # the pod: 1.5 CPUs
    write(tmp_path / "kubepods" / "pod1" / "container" / "cpu.max", "400000 100000\n")
    assert cgroup_cpu_quota(tmp_path, proc) == 1.5
    assert usable_cores(tmp_path, proc) == min(2, len(os.sched_getaffinity(0)))  # rounded up


def test_cgroup_v1_quota_and_no_limit(tmp_path):
    proc = tmp_path / "proc_cgroup"
    write(proc, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    folder = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    write(folder / "cpu.cfs_quota_us", "100000\n")
    write(folder / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path, proc) == 1.0
    assert usable_cores(tmp_path, proc) == 1
    write(folder / "cpu.cfs_quota_us", "-1\n")  # v1's "no limit"
    assert cgroup_cpu_quota(tmp_path, proc) is None
    assert usable_cores(tmp_path, proc) == len(os.sched_getaffinity(0))


def test_no_cgroup_information_means_the_affinity_alone(tmp_path):
    assert cgroup_cpu_quota(tmp_path, tmp_path / "missing") is None
    write(tmp_path / "proc_cgroup", "0::/\n")  # v2 root without a cpu.max (this machine's kind)
    assert usable_cores(tmp_path, tmp_path / "proc_cgroup") == len(os.sched_getaffinity(0))


def test_the_cpu_is_named_with_its_family_and_model():
    two_processors = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
        "model name\t: AMD EPYC\nflags\t\t: avx512_bf16\n\n"
        "processor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: other\n"
    )
    assert cpu_model(two_processors) == "AMD EPYC (family 26, model 2)"
    assert cpu_model("model name\t: Some CPU\n") == "Some CPU"
    assert cpu_model("") == "unknown CPU"


def test_a_cpu_process_builds_the_detector_without_loading_triton():
    script = (
        "import sys\n"
        "from model.faces import DetectorConfig, make_detector\n"
        "make_detector(DetectorConfig())\n"
        "import torchvision, torch\n"
        "boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10]])\n"
        "kept = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)\n"
        "print('facenet' in ' '.join(sys.modules), sys.modules.get('triton'), kept.tolist())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert result.stdout.split("\n")[-2] == "True None [0]"
