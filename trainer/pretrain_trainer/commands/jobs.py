"""`pretrainjob validate|run|train|worker|demo`: check PretrainJob manifests and run jobs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pretrain_trainer.__main__ import add_job_arguments
from pretrain_trainer.commands.registry import EXIT_FAILED_CHECK, CommandTree, default
from pretrain_trainer.config import PretrainJobSpec
from pretrain_trainer.contract import EXIT_BAD_CONFIG, EXIT_PREEMPTED, EXIT_STALLED, EXIT_STORAGE_UNAVAILABLE
from pretrain_trainer.launch import run_worker


def cmd_validate(args: argparse.Namespace) -> int:
    from pretrain_trainer.config import ConfigError, load_jobs

    failed = 0
    for path in args.files:
        try:
            for job in load_jobs(path):
                _check_with_trainer(job.spec, path)
                _check_tokenizer(job.spec, path)
        except ConfigError as err:
            failed += 1
            print(err)
        except OSError as err:
            failed += 1
            print(f"{path}: cannot read ({err.strerror})")
    if not failed:
        print(f"{len(args.files)} valid")
    return EXIT_FAILED_CHECK if failed else 0


def _check_with_trainer(spec: PretrainJobSpec, path: str) -> None:
    """The checks that need the trainer's libraries, where they are installed (the operator's image has no
    transformers: its admission checks stop at the schema): model.config keys against the architecture's
    transformers config class, and a distillation teacher's vocabulary against the job's tokenizer where both
    can be read (local folders, or a store that answers at once)."""
    from pretrain_trainer.config import ConfigError

    try:
        from pretrain_trainer.preflight import model_config_problems, teacher_vocabulary_problems
        from pretrain_trainer.storage import StorageOptions

        problems = model_config_problems(spec.model)
        quick = StorageOptions.from_spec(spec.storage).with_overrides(retry_timeout_s=0.0, max_attempts=1)
        problems += teacher_vocabulary_problems(spec, quick)
    except ImportError:
        return
    if problems:
        raise ConfigError(problems, path)


def _check_tokenizer(spec: PretrainJobSpec, path: str) -> None:
    """A local tokenizer.uri against the objective (a mask token for masked LM, enough sentinels for span
    corruption); object-store URIs are not read (validate stays offline), nor anything without torch."""
    from pretrain_trainer.config import ConfigError, Problem

    uri = spec.tokenizer.uri.removeprefix("file://")
    if "://" in uri:
        return
    local = Path(uri) if uri.endswith(".json") else Path(uri) / "tokenizer.json"
    if not local.is_file():
        return
    try:
        from pretrain_trainer.objectives import build_objective
        from pretrain_trainer.token_roles import TokenRoles
        from pretrain_trainer.tokenizer.load import load_tokenizer
    except ImportError:
        return
    try:
        tok = load_tokenizer(str(local))
        build_objective(spec, TokenRoles.from_tokenizer(tok.tokenizer, eos_id=tok.eos_id))
    except ValueError as err:
        field, _, message = str(err).partition(": ")
        where = field if field.startswith("spec.") else "spec.tokenizer.uri"
        raise ConfigError([Problem(where, message if where == field else str(err))], path) from None


def add_validate(tree: CommandTree) -> None:
    validate = tree.add(
        "validate",
        cmd_validate,
        help="check PretrainJob manifests offline (for GitOps pipelines)",
        description="Check each manifest with the trainer's schema and semantic checks, model.config against "
        "the architecture, a distillation teacher's vocabulary against the job's tokenizer where both can be "
        "read, and a local tokenizer against the objective (its mask token, its sentinels). Prints one line per "
        "problem (file: field path: message) and exits 1 if any file is invalid.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="PretrainJob manifests (or bare specs)")


def cmd_run(args: argparse.Namespace) -> int:
    from pretrain_trainer.config import load_job
    from pretrain_trainer.launch import run_local
    from pretrain_trainer.report import SUMMARY_FILE, format_summary, plot_loss

    if not args.local:
        raise ValueError("run: only --local runs start here; on a cluster, `kubectl apply -f` the manifest")
    job = load_job(args.job)  # fail on a bad manifest before any process starts
    run_dir = Path(args.run_dir or f"runs/{job.name}")
    code = run_local(args.job, args.nproc, run_dir)
    summary_file = run_dir / SUMMARY_FILE
    if summary_file.exists():
        print(format_summary(json.loads(summary_file.read_text())))
        plot = plot_loss(run_dir)
        print(f"run folder: {run_dir} (train.jsonl, rank logs{', loss plot ' + str(plot) if plot else ''})")
    return code


def add_run(tree: CommandTree) -> None:
    run = tree.add(
        "run",
        cmd_run,
        help="run a PretrainJob with local worker processes",
        description="Start the job's workers as local processes with the environment a pod gets (torchrun "
        "contract), wait for them, then print a summary and plot the loss.",
    )
    run.add_argument("job", help="PretrainJob manifest (or bare spec)")
    run.add_argument("--local", action="store_true", help="run here (the only mode of this command)")
    run.add_argument("--nproc", type=int, help="processes (default: workers.replicas × workers.procsPerWorker)")
    run.add_argument("--run-dir", help="folder for logs, summary and plot (default: runs/<job name>)")


def cmd_train(args: argparse.Namespace) -> int:
    from pretrain_trainer.__main__ import run_job

    return run_job(args.config, args.run_dir)


def add_train(tree: CommandTree) -> None:
    train = tree.add("train", cmd_train, help="run the trainer in this process (what each worker runs)")
    add_job_arguments(train)


def cmd_worker(args: argparse.Namespace) -> int:
    return run_worker(args.config, rendezvous_timeout_s=args.rendezvous_timeout)


def add_worker(tree: CommandTree) -> None:
    worker = tree.add(
        "worker",
        cmd_worker,
        help="what an operator-made pod runs: this node's trainer processes in a multi-node job",
        description="Read the node's place from PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE, PET_MASTER_ADDR and "
        "PET_MASTER_PORT (as torchrun does), wait until the rendezvous host resolves, then run the processes with "
        "torchrun's environment. Exits with the first failing process's code "
        f"({EXIT_BAD_CONFIG}: bad config, {EXIT_PREEMPTED}: checkpointed after SIGTERM, {EXIT_STORAGE_UNAVAILABLE}: "
        f"object store unavailable, {EXIT_STALLED}: a rank stalled).",
    )
    worker.add_argument("--config", required=True, help="PretrainJob manifest (the pod's ConfigMap)")
    worker.add_argument(
        "--rendezvous-timeout",
        type=float,
        default=default(run_worker, "rendezvous_timeout_s"),
        help="seconds to wait for the rendezvous host's DNS",
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from pretrain_trainer.demo import run_demo

    return run_demo(Path(args.workdir))


def add_demo(tree: CommandTree) -> None:
    demo = tree.add(
        "demo",
        cmd_demo,
        help="run the whole data path on the bundled corpus with an embedded S3 endpoint",
        description="Train and audit a tokenizer on the bundled corpus, prepare shards into a local S3 "
        "endpoint on loopback, and stream them back as two ranks would.",
    )
    demo.add_argument("--workdir", default="runs/demo", help="local folder for reports (default: %(default)s)")
