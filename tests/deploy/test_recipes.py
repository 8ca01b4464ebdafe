"""The deploy/ recipes render: YAML parses, services/mounts/threads as documented, job scripts.

Nothing here needs Docker, Kubernetes, SLURM or a GPU; the real SLURM run is
tests/distributed/test_slurm.py.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("dask_jobqueue", reason="needs the slurm extra: pip install -e '.[slurm]'")

from pathosam_wsi.distributed.slurm import (
    SlurmOptions,
    cluster_kwargs,
    load_jobqueue_config,
    render_job_script,
)
from pathosam_wsi.errors import ConfigError

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_compose_one_worker_service_per_gpu() -> None:
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    workers = {k: v for k, v in services.items() if k.startswith("worker")}
    assert set(services) == {"scheduler", "run", *workers}
    assert len(workers) >= 2
    devices = []
    for svc in workers.values():
        (dev,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert "count" not in dev
        devices += dev["device_ids"]
        cmd = svc["command"]
        assert cmd[:3] == ["dask", "cuda", "worker"]
        assert _arg(cmd, "--resources") == "GPU=1"
        assert int(_arg(cmd, "--nthreads")) == int(svc["cpus"])
        assert "--no-dashboard" in cmd
    assert len(devices) == len(set(devices)) == len(workers)
    for name, svc in services.items():
        # Certificates read-only; the CA key folder (certs.ca) never mounted.
        assert svc["volumes"][0] == "./certs:/certs:ro", name
        assert not any("certs.ca" in v or "ca-key" in v for v in svc["volumes"]), name
        assert svc["environment"]["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "true"
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert compose["networks"]["dask"]["internal"] is True


def test_k8s_workers_read_their_secret_and_threads_match_cpus() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "daskcluster.yaml").read_text()))
    cluster = next(d for d in docs if d["kind"] == "DaskCluster")
    driver = next(d for d in docs if d["kind"] == "Deployment")
    pods = [
        cluster["spec"]["scheduler"]["spec"],
        cluster["spec"]["worker"]["spec"],
        driver["spec"]["template"]["spec"],
    ]
    for pod in pods:
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == 10001
        (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
        assert tls["secret"]["defaultMode"] == 0o440
    (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
    assert int(_arg(worker["args"], "--nthreads")) == int(worker["resources"]["requests"]["cpu"])
    assert cluster["spec"]["scheduler"]["service"]["type"] == "ClusterIP"


def test_slurm_job_script_has_the_options_given(tmp_path: Path) -> None:
    options = SlurmOptions(
        jobs=3,
        partition="gpu-a100",
        gpus_per_job=1,
        job_walltime="02:00:00",
        job_memory="32GiB",
        jobqueue_config=DEPLOY / "slurm" / "jobqueue.yaml",
        work_dir=tmp_path / "w",
        extra_env={"PYTHONPATH": "/opt/site"},
    )
    script = render_job_script(options, "tls://10.1.2.3:8786", host="10.1.2.3")
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    for directive in [
        "#SBATCH -p gpu-a100",
        "#SBATCH -t 02:00:00",
        "#SBATCH --mem=32G",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gres=gpu:1",
        f"#SBATCH -e {tmp_path / 'w' / 'logs'}/pathosam-worker-%J.err",
    ]:
        assert directive in lines, directive
    assert "export PYTHONPATH=/opt/site" in lines
    assert any(line.startswith("source ") for line in lines)
    worker = lines[-1]
    for arg in ["tls://10.1.2.3:8786", "--nthreads 8", "--resources GPU=1", "--interface ib0"]:
        assert arg in worker, arg
    assert "--protocol tls://" in worker
    assert "--no-dashboard" in worker
    # Folders the jobs write to exist before any job starts; certificates private.
    assert (tmp_path / "w" / "logs").is_dir()
    assert stat.S_IMODE((tmp_path / "w" / "tls").stat().st_mode) == 0o700


def test_slurm_defaults_are_cpu_jobs_with_one_thread(tmp_path: Path) -> None:
    kw = cluster_kwargs(SlurmOptions(work_dir=tmp_path), security=None, host="127.0.0.1")
    assert kw["cores"] == 1
    assert kw["processes"] == 1
    assert kw["job_extra_directives"] == []
    assert kw["worker_extra_args"] == ["--no-dashboard"]
    assert kw["scheduler_options"] == {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("cores: 2\nbogus: 1\n", "unknown key"),
        ("jobqueue:\n  slurm:\n    env-extra: []\n", "deprecated"),
        ("log-directory: /x\n", "sets itself"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_jobqueue_config_is_refused(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "jq.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_jobqueue_config(path)


def test_nested_jobqueue_config_is_read(tmp_path: Path) -> None:
    path = tmp_path / "jq.yaml"
    path.write_text("jobqueue:\n  slurm:\n    cores: 4\n    account: lab\n")
    assert load_jobqueue_config(path) == {"cores": 4, "account": "lab"}


@pytest.mark.parametrize(
    ("kw", "match"), [({"jobs": 0}, "--jobs"), ({"gpus_per_job": 2}, "0 or 1")]
)
def test_bad_slurm_options(kw: dict[str, int], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SlurmOptions(**kw)  # type: ignore[arg-type]


def test_shell_recipes_parse() -> None:
    for script in [DEPLOY / "slurm" / "submit.sh", DEPLOY / "docker" / "make-certs.sh"]:
        subprocess.run(["bash", "-n", str(script)], check=True)
    submit = (DEPLOY / "slurm" / "submit.sh").read_text()
    assert 'pathosam-wsi run "$@" --cluster slurm --jobqueue-config' in submit
    (output,) = [line for line in submit.splitlines() if line.startswith("#SBATCH --output")]
    assert "/" not in output, "SLURM opens the log before the job runs: no folder in its path"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("openssl") is None, reason="needs root and openssl"
)
def test_make_certs_keys_readable_by_the_image_user_only(tmp_path: Path) -> None:
    env = {**os.environ, "BITS": "2048"}
    script = DEPLOY / "docker" / "make-certs.sh"
    subprocess.run(["bash", str(script), str(tmp_path / "certs")], check=True, env=env)
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == [
        "ca.pem",
        "node-key.pem",
        "node.pem",
    ]
    key = (tmp_path / "certs" / "node-key.pem").stat()
    assert (key.st_uid, stat.S_IMODE(key.st_mode)) == (10001, 0o400)
    ca_key = (tmp_path / "certs.ca" / "ca-key.pem").stat()
    assert stat.S_IMODE(ca_key.st_mode) == 0o400
    subprocess.run(
        ["openssl", "verify", "-CAfile", "ca.pem", "node.pem"],
        cwd=tmp_path / "certs",
        check=True,
        capture_output=True,
    )
