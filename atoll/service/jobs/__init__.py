"""Asynchronous jobs, one package with one owner (:class:`~atoll.service.jobs.system.JobSystem`).

============  ==========================================================================
``model``     the job record (``JobStatus``, ``Job``, ``ErrorBody``, ...) and the task
              message (``JobMessage``): plain data, neither Flask nor Celery
``errors``    what the job system refuses (``JobNotFound``, ``JobFinished``, ...)
``store``     job records in the Celery result backend, and what is kept beside them
``queue``     the Celery app, the pipeline task and the message guard
``delivery``  callbacks: signed POSTs, the SSRF guard, retries
``system``    :class:`JobSystem`, which owns the Celery app, the store and delivery
============  ==========================================================================

The HTTP routes of jobs are :mod:`atoll.service.http.jobs`; nothing here imports them, or Flask.
"""
