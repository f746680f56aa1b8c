"""`peft-studio`: run the studio, a worker, migrations, and manage jobs from a terminal.

The job commands call app.services directly (the same functions as the API and UI), so they work
against whatever database STUDIO_DATABASE_URL names. Exit codes: 0 done, 1 failed (e.g. no such
job), 2 bad input (a bad job file lists every problem).
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from app.db.migrate import upgrade
from app.db.session import session_scope
from app.jobspec import JobSpecError
from app.services import combining, jobs, merges, metrics
from app.services.jobs import JobNotFound, JobStateError, JobStatus
from app.settings import SettingsError, get_settings

FOLLOW_POLL_SECONDS = 1.0


def _err(message: str) -> None:
    print(message, file=sys.stderr)


# --- studio processes ---------------------------------------------------------------------------


class EmbeddedWorker:
    """The worker process `peft-studio run` keeps beside the web server (restarted if it dies)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._keep_running, name="embedded-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _keep_running(self) -> None:
        while not self._closing.is_set():
            self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"])
            code = self.proc.wait()
            if not self._closing.is_set():
                _err(f"peft-studio: the embedded worker exited with code {code}; restarting it in 2 s")
                self._closing.wait(2)

    def stop(self, timeout: float = 60) -> None:
        """Warm shutdown: a running job goes back to the queue and resumes at the next start."""
        self._closing.set()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    if args.host:  # the bound address decides which server-path datasets are readable (app/datasets/roots.py)
        os.environ["STUDIO_HOST"] = args.host
        get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings)
    worker = EmbeddedWorker() if args.worker else None
    if worker:
        worker.start()
    print(f"PEFT Studio on http://{args.host or settings.host}:{args.port or settings.port} (data in {settings.data_dir})", flush=True)
    # uvicorn handles SIGTERM, then raises it again once it has shut down; with the default action that
    # would kill this process before the embedded worker is stopped, so turn it into a normal exit.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run("app.server:create_app", factory=True, host=args.host or settings.host, port=args.port or settings.port,
                    log_level=settings.log_level.lower())
    finally:
        if worker:
            worker.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    upgrade(settings)
    from worker.celery_app import app

    app.worker_main([
        "worker", "--pool=threads", "--concurrency=1", "--queues", settings.queue, "--hostname", f"studio-{os.getpid()}@%h",
        "--without-mingle", "--without-gossip", "--loglevel", settings.log_level,
    ])
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    upgrade(get_settings(), args.revision)
    print(f"database at {args.revision}")
    return 0


# --- jobs ---------------------------------------------------------------------------------------


def _load_job_file(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise JobSpecError([f"{path}: cannot read the file ({exc.strerror})"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise JobSpecError([f"{path}:{where} not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from exc


def cmd_submit(args: argparse.Namespace) -> int:
    try:
        spec = _load_job_file(args.file)
        with session_scope() as session:
            job = jobs.create_job(session, spec=spec)
    except JobSpecError as exc:
        _err(f"{args.file}: the job was not submitted:")
        for problem in exc.problems:
            _err(f"  - {problem}")
        return 2
    print(job.id)
    return 0


def _describe(job: Any) -> str:
    progress = f"{job.progress_step}/{job.progress_total}" if job.progress_total else str(job.progress_step)
    lines = [
        f"job {job.id}: {job.name}",
        f"  status:   {job.status} (attempt {job.attempt} of {job.max_attempts})",
        f"  message:  {job.message}",
        f"  model:    {job.base_model}  method: {job.method}",
        f"  progress: step {progress}" + (f", checkpoint at step {job.last_checkpoint_step}" if job.last_checkpoint_step else ""),
    ]
    if job.error_hint:
        lines.append(f"  what to do: {job.error_hint}")
    if job.merge_status:
        lines.append(f"  merge:    {job.merge_status}: {job.merge_message}")
    if job.publish_status:
        lines.append(f"  publish:  {job.publish_status}: {job.publish_message}")
    lines += [f"  artifact: {a.kind} {a.path}" for a in job.artifacts]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    with session_scope() as session:
        if args.job_id is not None:
            job = jobs.get_job(session, job_id=args.job_id)
            print(_describe(job))
            last = metrics.latest_metric(session, job_id=job.id)
            if last is not None:
                print(f"  last metric: step {last.step} loss {last.loss} eval_loss {last.eval_loss}")
            return 0
        rows = jobs.list_jobs(session, status=JobStatus(args.status) if args.status else None, limit=args.limit)
        print(f"{'ID':>5}  {'STATUS':<10} {'STEP':>11}  {'NAME':<30} MESSAGE")
        for job in rows:
            step = f"{job.progress_step}/{job.progress_total}" if job.progress_total else str(job.progress_step)
            print(f"{job.id:>5}  {job.status:<10} {step:>11}  {job.name[:30]:<30} {job.message[:80]}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with session_scope() as session:
        try:
            job = jobs.request_cancel(session, job_id=args.job_id)
        except JobStateError as exc:
            _err(str(exc))
            return 1
    print(f"job {job.id}: {job.status}: {job.message}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Queue the merge of a succeeded run into its base model; a worker does it (`status ID` follows it)."""
    with session_scope() as session:
        try:
            job = merges.request_merge(session, job_id=args.job_id)
        except JobStateError as exc:
            _err(str(exc))
            return 1
    print(f"run {job.id}: merge {job.merge_status}: {job.merge_message}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Queue the publish of a succeeded run to the Hub; a worker does it (`status ID` follows it).

    The token is never a command-line argument (it would sit in shell history and `ps`): --ask-token
    prompts for it without echo; otherwise the saved token or the worker's HF_TOKEN is used."""
    from app.services import publishing

    token = getpass.getpass("Hub token (input hidden): ") if args.ask_token else None
    with session_scope() as session:
        try:
            job = publishing.request_publish(session, job_id=args.job_id, repo_id=args.repo, target="merged" if args.merged else "adapter",
                                             private=not args.public, token=token, remember=args.remember)
        except (JobStateError, publishing.PublishRequestError) as exc:
            _err(str(exc))
            return 1
    print(f"run {job.id}: publish {job.publish_status} to {job.publish_repo_id}: {job.publish_message}")
    return 0


def cmd_combine(args: argparse.Namespace) -> int:
    """Queue the combination of succeeded LoRA runs into a new adapter (a job of its own; `status ID` follows it)."""
    weights = args.weights or [1.0] * len(args.run_ids)
    with session_scope() as session:
        try:
            job = combining.request_combine(session, run_ids=args.run_ids, weights=weights, combination_type=args.type, name=args.name,
                                            density=args.density, majority_sign_method=args.sign, svd_rank=args.svd_rank)
        except combining.CombineError as exc:
            _err("cannot combine these runs:\n  " + "\n  ".join(exc.problems))
            return 1
    print(job.id)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    seen = 0
    with session_scope() as session:
        while True:
            job = jobs.get_job(session, job_id=args.job_id)
            new, seen = jobs.log_since(job, seen)
            for line in new:
                print(line, flush=True)
            if not args.follow or JobStatus(job.status).terminal:
                break
            session.commit()  # end the read so the next poll sees new rows
            time.sleep(FOLLOW_POLL_SECONDS)
    if args.follow:
        print(f"--- job {job.id} {job.status}: {job.message}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peft-studio", description="PEFT Studio: fine-tune models without code.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="serve the studio (web UI and API) with an embedded worker")
    p.add_argument("--host", help="address to listen on (default STUDIO_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default STUDIO_PORT, 7860)")
    p.add_argument("--no-worker", dest="worker", action="store_false", help="serve only; workers run elsewhere")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("worker", help="run a training worker (one per GPU)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("db", help="database maintenance")
    db = p.add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply migrations (the studio also does this at start)")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("submit", help="queue a training job from a YAML or JSON file; prints its id")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="list jobs, or show one")
    p.add_argument("job_id", type=int, nargs="?")
    p.add_argument("--status", choices=[s.value for s in JobStatus])
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("publish", help="publish a succeeded run's adapter (or merged model) to the Hugging Face Hub (a worker task)")
    p.add_argument("job_id", type=int)
    p.add_argument("--repo", required=True, help="'name' (under the token's account) or 'owner/name'")
    p.add_argument("--merged", action="store_true", help="publish the merged model (merge the run first) instead of the adapter")
    p.add_argument("--public", action="store_true", help="make a new repo public (default: private)")
    p.add_argument("--ask-token", action="store_true", help="prompt for a Hub token (hidden); default: the saved token or HF_TOKEN")
    p.add_argument("--remember", action="store_true", help="with --ask-token: save the token (encrypted) for later publishes")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("cancel", help="cancel a job (a running one stops after its current step)")
    p.add_argument("job_id", type=int)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("merge", help="merge a succeeded run's adapter into its base model (a worker task)")
    p.add_argument("job_id", type=int)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("combine", help="combine succeeded LoRA runs on one base model into a new adapter (a worker task); prints its job id")
    p.add_argument("run_ids", type=int, nargs="+")
    p.add_argument("--weights", type=float, nargs="+", help="one per run (default: 1 each)")
    p.add_argument("--type", default="svd", choices=combining.COMBINATION_TYPES)
    p.add_argument("--name", default="")
    p.add_argument("--density", type=float, help=f"share of entries kept, for {', '.join(combining.NEEDS_DENSITY)}")
    p.add_argument("--sign", default="total", choices=combining.SIGN_METHODS, help="sign election of ties and dare_ties")
    p.add_argument("--svd-rank", type=int, help="rank of an svd combination (default: the largest source rank)")
    p.set_defaults(func=cmd_combine)

    p = sub.add_parser("logs", help="print a job's log tail")
    p.add_argument("job_id", type=int)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the job ends")
    p.set_defaults(func=cmd_logs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        _err(str(exc))
        return 2
    except JobNotFound as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
