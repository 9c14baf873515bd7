"""Generation tasks: thin; the work is in generation.services.

run_generation goes to the `gpu` queue (solo pool, one process per GPU, the model loaded once per
process); recovery is housekeeping on `cpu`.
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready

from config.celery import durable_task_options, worker_queues
from generation import services


@shared_task(**durable_task_options())
def run_generation(job_id: int) -> None:
    services.generation_jobs_run(job_id=job_id)


@shared_task(ignore_result=True)
def recover_generation_jobs() -> int:
    return services.generation_jobs_recover()


@worker_ready.connect
def _on_gpu_worker_start(sender=None, **kwargs) -> None:
    """A `gpu` worker loads the active model before its first job (importing torch and reading the
    checkpoint take seconds), then picks up the jobs a dead worker may have left behind."""
    queues = worker_queues(sender.app) if sender else set()
    if queues and "gpu" not in queues:
        return
    services.generation_runtime_warm_up()
    services.generation_jobs_recover()
