"""GitHub Actions: workflow runs, their jobs, and job logs (a redirect to the blob host)."""

from __future__ import annotations

from .. import shapes_checks
from ..state import Job, Repo, WorkflowRun
from .base import Call, Reply, not_found, operation
from .checks import head_commit


def workflow_run_of(call: Call, repo: Repo) -> WorkflowRun:
    run = repo.workflow_runs.get(call.int_param("run_id"))
    if run is None:
        raise not_found()
    return run


def job_of(call: Call, repo: Repo) -> Job:
    job = repo.jobs.get(call.int_param("job_id"))
    if job is None:
        raise not_found()
    return job


@operation("actions/get-workflow-run")
async def get_workflow_run(call: Call) -> Reply:
    repo = call.repo()
    run = workflow_run_of(call, repo)
    body = shapes_checks.workflow_run(call.twin, repo, run, await head_commit(repo, run.head_sha))
    if call.query.get("exclude_pull_requests") == "true":
        body["pull_requests"] = []
    return Reply(200, body)


@operation("actions/list-jobs-for-workflow-run")
async def list_jobs(call: Call) -> Reply:
    repo = call.repo()
    run = workflow_run_of(call, repo)
    jobs = sorted((j for j in repo.jobs.values() if j.run_id == run.id), key=lambda j: j.id)
    items = [shapes_checks.job(call.twin, repo, j) for j in call.page(jobs)]
    return Reply(200, {"total_count": len(jobs), "jobs": items})


@operation("actions/get-job-for-workflow-run")
async def get_job(call: Call) -> Reply:
    repo = call.repo()
    return Reply(200, shapes_checks.job(call.twin, repo, job_of(call, repo)))


@operation("actions/download-job-logs-for-workflow-run")
async def download_job_log(call: Call) -> Reply:
    """302 to a fresh URL on the blob host, as GitHub does (404 while there is no log)."""
    repo = call.repo()
    job = job_of(call, repo)
    if job.log_path is None or not job.log_path.is_file():
        raise not_found()
    return Reply(302, None, headers={"Location": call.twin.blobs.url_for(job.log_path)})
