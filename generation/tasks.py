"""Generation tasks: thin; the work is in generation.services and generation.job_runner.

run_generation goes to the `gpu` queue (solo pool, one process per GPU, the model loaded once per
process); recovery is housekeeping on `cpu`. Each task imports its service inside its body and
services import the tasks at module level (HackSoft's rule: that way round there is no cycle).
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready

from config.celery import durable_task_options, worker_queues


@shared_task(name="generation.tasks.run_generation", **durable_task_options())
def run_generation_task(job_id: int) -> None:
    from generation.job_runner import generation_jobs_run

    generation_jobs_run(job_id=job_id)


@shared_task(name="generation.tasks.recover_generation_jobs", ignore_result=True)
def recover_generation_jobs_task() -> int:
    from generation.services import generation_jobs_recover

    return generation_jobs_recover()


@worker_ready.connect
def _on_gpu_worker_start(sender=None, **kwargs) -> None:
    """A `gpu` worker loads the active model before its first job (importing torch and reading the
    checkpoint take seconds), then picks up the jobs a dead worker may have left behind."""
    queues = worker_queues(sender.app) if sender else set()
    if queues and "gpu" not in queues:
        return
    from generation.job_runner import generation_runtime_warm_up
    from generation.services import generation_jobs_recover

    generation_runtime_warm_up()
    generation_jobs_recover()
