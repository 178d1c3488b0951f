"""Which process group this training process belongs to (Accelerate on CPU, one GPU, DDP, FSDP,
multi-node), and the launch mistakes refused before any work: a launcher that started several
processes that would each train alone, ``accelerate launch`` that started one of several, FSDP
asked for on a CPU (:func:`process_group`)."""

from __future__ import annotations

import os

from lab_tools.errors import LabError


# Variables a launcher sets for the size of the job: torchrun / torch elastic, MPI (mpirun).
_WORLD_ENV = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _launched_world() -> int:
    from accelerate.utils import get_int_from_env

    return get_int_from_env(list(_WORLD_ENV), 1)


def on_cpu() -> bool:
    """True when Accelerate would put this process on the CPU (no GPU or other accelerator), or
    ``accelerate launch --cpu`` asked for it (``ACCELERATE_USE_CPU``)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_CPU") or \
        PartialState.default_device.fget(None).type == "cpu"


def process_group():
    """Join the process group this process was launched into, on CPU as on GPU; returns
    Accelerate's ``PartialState`` (``num_processes``, ``process_index``, barriers).

    Why ``cpu=True`` on a machine without an accelerator: Accelerate (1.x,
    ``PartialState._prepare_backend``) picks a multi-process type from ``LOCAL_RANK`` only for an
    accelerator backend (NCCL, ...), and ``MULTI_CPU`` (gloo) only when told ``cpu=True``; without
    it, every process of ``torchrun --nproc_per_node 2`` reports ``DistributedType.NO``, world
    size 1, and trains alone into the same output dir.

    Raises:
        LabError: the launcher started several processes but this one would run alone
        (``WORLD_SIZE`` > 1, world size 1), or ``accelerate launch`` was asked for several
        processes and started only this one (its ``--cpu`` / no-GPU launcher starts one process
        unless given an MPI hostfile), or FSDP was asked for (``ACCELERATE_USE_FSDP``) on the
        CPU: Accelerate's ``FullyShardedDataParallelPlugin`` requires a GPU or other
        accelerator device, and its ``MULTI_CPU`` type never becomes ``FSDP``.
    """
    from accelerate import PartialState

    from accelerate.utils import parse_flag_from_env

    if parse_flag_from_env("ACCELERATE_USE_FSDP") and on_cpu():
        raise LabError("FSDP was asked for, but this process runs on the CPU, where Accelerate "
                       "has no FSDP (it needs a GPU or other accelerator); on CPU use DDP: "
                       "`accelerate launch --multi_gpu` or `torchrun`", field="distributed")
    state = PartialState(cpu=on_cpu())
    launched = _launched_world()
    if launched > 1 and state.num_processes != launched:
        raise LabError(f"launched as one of {launched} processes, but Accelerate set up a world of "
                       f"{state.num_processes} ({state.distributed_type}); each process would train "
                       "alone into the same output dir", field="world_size")
    if launched == 1 and state.num_processes == 1 and "ACCELERATE_MIXED_PRECISION" in os.environ \
            and "MASTER_ADDR" in os.environ and "RANK" not in os.environ:
        raise LabError(
            "`accelerate launch` was asked for several processes but started only this one (its "
            "--cpu launcher starts several only through MPI, --mpirun_hostfile); on CPU launch "
            "with `accelerate launch --multi_gpu --num_processes N -m lab_tools.train ...` or "
            "`torchrun --nproc_per_node N -m lab_tools.train ...` (lab train then uses gloo)",
            field="world_size")
    return state
