"""`pretrain-operator`: run the PretrainJob controller (what the operator Deployment's container runs).

    pretrain-operator --all-namespaces                      # cluster-wide (ClusterRole)
    pretrain-operator --namespace team-a --namespace team-b # only these (a Role in each)
    KUBECONFIG=~/.kube/config pretrain-operator --namespace default   # from a laptop, against any cluster

One instance at a time (kopf's standalone mode; the Deployment has one replica and the Recreate strategy).
Liveness: GET /healthz on --health-port. Metrics: /metrics on --metrics-port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

import kopf

from .handlers import OperatorConfig, register
from .lifecycle import Settings
from .policy import DEFAULT_FORBIDDEN_ANNOTATION_PREFIXES, DEFAULT_FORBIDDEN_TOLERATION_KEYS, Policy


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pretrain-operator", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--all-namespaces", action="store_true", help="watch PretrainJobs in every namespace")
    scope.add_argument("--namespace", action="append", metavar="NS", help="watch this namespace (repeatable)")
    defaults = Settings()
    config = OperatorConfig()
    parser.add_argument("--default-image", default=defaults.image, help="trainer image for jobs without spec.image")
    parser.add_argument("--metrics-port", type=int, default=config.metrics_port, help="operator /metrics port (0: off)")
    parser.add_argument("--health-port", type=int, default=8080, help="liveness /healthz port (0: off)")
    parser.add_argument(
        "--resync-seconds", type=float, default=defaults.resync_s, help="how often running jobs' progress is read"
    )
    parser.add_argument(
        "--stuck-grace-seconds",
        type=float,
        default=defaults.stuck_grace_s,
        help="how long an image pull or container config error may last before the gang restarts",
    )
    _add_policy_arguments(parser)
    parser.add_argument("--log-format", choices=("json", "plain"), default="json", help="log line format")
    parser.add_argument("--verbose", action="store_true", help="log every handler run (debugging)")
    return parser.parse_args(argv)


def _add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """The operator-wide policy (policy.py). Repeatable flags; a forbidden-* flag given replaces its defaults."""
    policy = parser.add_argument_group("policy", "what job authors may choose for their worker pods")
    policy.add_argument(
        "--allowed-registry", action="append", default=[], metavar="PREFIX", help="allowed spec.image prefix"
    )
    policy.add_argument("--require-image-digest", action="store_true", help="spec.image must be image@sha256:...")
    policy.add_argument(
        "--allowed-service-account", action="append", default=[], metavar="NAME", help="allowed serviceAccountName"
    )
    policy.add_argument(
        "--forbid-service-account-token",
        action="store_true",
        help="refuse workers.automountServiceAccountToken: true",
    )
    policy.add_argument(
        "--allow-writable-root-filesystem",
        action="store_true",
        help="allow workers.readOnlyRootFilesystem: false",
    )
    policy.add_argument(
        "--forbidden-annotation-prefix",
        action="append",
        metavar="PREFIX",
        help="pod annotation prefix job authors may not set ('' for none; default: "
        f"{', '.join(DEFAULT_FORBIDDEN_ANNOTATION_PREFIXES)})",
    )
    policy.add_argument(
        "--forbidden-toleration-key",
        action="append",
        metavar="KEY",
        help="taint key job authors may not tolerate ('' for none; default: "
        f"{', '.join(DEFAULT_FORBIDDEN_TOLERATION_KEYS)})",
    )


def policy_from(args: argparse.Namespace) -> Policy:
    return Policy(
        allowed_registries=tuple(args.allowed_registry),
        require_digest=args.require_image_digest,
        allowed_service_accounts=tuple(args.allowed_service_account),
        allow_service_account_token=not args.forbid_service_account_token,
        allow_writable_root_filesystem=args.allow_writable_root_filesystem,
        forbidden_annotation_prefixes=tuple(
            DEFAULT_FORBIDDEN_ANNOTATION_PREFIXES
            if args.forbidden_annotation_prefix is None
            else [p for p in args.forbidden_annotation_prefix if p]
        ),
        forbidden_toleration_keys=tuple(
            DEFAULT_FORBIDDEN_TOLERATION_KEYS
            if args.forbidden_toleration_key is None
            else [k for k in args.forbidden_toleration_key if k]
        ),
    )


def config_from(args: argparse.Namespace) -> OperatorConfig:
    settings = Settings(
        image=args.default_image,
        stuck_grace_s=args.stuck_grace_seconds,
        resync_s=args.resync_seconds,
        policy=policy_from(args),
    )
    return OperatorConfig(lifecycle=settings, metrics_port=args.metrics_port)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    if not args.verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)  # quiet: our own lines say what changed
    registry = kopf.OperatorRegistry()
    register(registry, config_from(args))
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=args.all_namespaces,
            namespaces=args.namespace or (),
            standalone=True,
            liveness_endpoint=liveness,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
