"""The worker: Celery tasks that claim jobs from the database and supervise training in a child process.

Only the training child (worker.child, worker.training) imports torch; the Celery worker process
around it stays small so a crash, an OOM or a kill of a run never takes the worker down.
"""
