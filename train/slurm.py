"""``headcam-train CONFIG ... slurm.nodes=N``: the run as a Slurm job, through submitit (as DINO and DINOv2 do).

submitit writes the sbatch script (``nodes`` x one task per GPU, ``--signal=USR2@90``: Slurm's warning 90 s
before the time limit), pickles a :class:`TrainJob` and starts one Python per task with ``srun``. In the job,
:class:`TrainJob` exports the rendezvous ``torchrun`` would (``RANK`` = ``SLURM_PROCID``, ``WORLD_SIZE`` =
``SLURM_NTASKS``, ``LOCAL_RANK`` = ``SLURM_LOCALID``, ``MASTER_ADDR`` = the first node of the job, a port
derived from the job id; submitit's ``TorchDistributedEnvironment``), so :func:`headcam.train.dist.setup` joins
the group exactly as under ``torchrun``.

The time-limit warning stops the trainer after its step with a checkpoint (:class:`~headcam.train.utils.
StopRequest`); :class:`TrainJob` then hands the signal back to submitit, whose handler asks
:meth:`TrainJob.checkpoint` for the job to run next (the same config, ``resume=auto``), requeues it with
``scontrol requeue`` and exits; the requeued job resumes exactly. A SIGTERM (``scancel``, or a preemption that
Slurm requeues by itself) also leaves a checkpoint but asks for no requeue.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import submitit

from headcam import slurm
from headcam.train.config import train_config

#: The signal submitit has Slurm send before the time limit (its default; ``StopRequest`` catches it).
WARNING_SIGNAL = signal.SIGUSR2


def export_rendezvous() -> None:
    """In a task of a submitit job: set the variables torchrun would (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT) from Slurm's, for :func:`headcam.train.dist.setup`. Every task keeps all its node's GPUs visible:
    ``dist.setup`` picks GPU ``LOCAL_RANK``."""
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


class TrainJob(submitit.helpers.Checkpointable):
    """One training run as a submitit job; every task of the job runs it, one rank each.

    It carries the raw settings (the YAML and the ``key=value`` overrides as given, read once at submission)
    and resolves them in the job, so ``device=auto``, the precision and channels-last follow the compute node's GPUs,
    not the login node's.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __call__(self) -> Any:
        from headcam.train.trainer import train
        from headcam.train.utils import StopRequest

        export_rendezvous()
        result = train(train_config(self.data), announce=lambda line: print(line, flush=True))
        if result.stopped == "preempted" and StopRequest.last_signal == WARNING_SIGNAL:
            signal.raise_signal(WARNING_SIGNAL)  # submitit's handler: checkpoint() -> scontrol requeue -> exit
        return result

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """The job to requeue: this run, resumed from its own checkpoint once it has one (until then, as given)."""
        from headcam.train.checkpoint import FILENAME

        saved = (Path(train_config(self.data).out) / FILENAME).exists()
        return submitit.helpers.DelayedSubmission(TrainJob({**self.data, "resume": "auto"} if saved else self.data))


def executor(cfg: Any) -> submitit.SlurmExecutor:
    """An executor for ``cfg.slurm``: ``nodes`` x ``max(1, gpus_per_node)`` tasks, logs in ``folder``."""
    s = cfg.slurm
    folder = Path(s.folder or Path(cfg.out) / "slurm").absolute()
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=s.requeue_max)
    optional = {"gpus_per_node": s.gpus_per_node, "partition": s.partition, "account": s.account, "qos": s.qos,
                "mem": s.mem}
    ex.update_parameters(job_name=f"headcam-{cfg.method}", nodes=s.nodes, ntasks_per_node=max(1, s.gpus_per_node),
                         cpus_per_task=s.cpus_per_task or cfg.workers + 1, time=s.minutes(),
                         **{k: v for k, v in optional.items() if v})
    return ex


def submit(cfg: Any, data: dict[str, Any]) -> tuple[str, Path]:
    """Submit the run ``cfg`` (resolved from the raw settings ``data``); returns the Slurm job id and the folder
    of its logs. A missing sbatch or its refusal is a UsageError."""
    with slurm.sbatch_errors():
        ex = executor(cfg)
        job = ex.submit(TrainJob(data))
    return job.job_id, ex.folder
