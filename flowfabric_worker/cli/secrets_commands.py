"""``secrets init|rotate|list``: the waitpoint HMAC keystore."""

from __future__ import annotations

import argparse
import json
import sys

import anyio

from flowfabric_worker.cli.common import settings_from
from flowfabric_worker.cli.execution_commands import iso_time
from flowfabric_worker.errors import ConfigurationError
from flowfabric_worker.settings import Settings


def _secret_arg(args: argparse.Namespace, settings: Settings) -> str | None:
    """The secret from ``--secret-file``, else (``init`` only)
    ``FLOWFABRIC_WAITPOINT_HMAC_SECRET``; never from the command line, where
    ``ps`` would show it."""
    path = getattr(args, "secret_file", None)
    if not path:
        # Only init (bootstrap) takes the environment's secret, like 0.15 at
        # boot: a rotation re-using a long-lived env secret would rotate nothing.
        env = settings.waitpoint_hmac_secret
        if env is None or args.secrets_command != "init":
            return None
        return env.get_secret_value().strip()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read --secret-file: {exc}") from exc


def secrets_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.backend.backend import Backend
    from flowfabric_worker.client import keystore as ks

    settings = settings_from(args)
    secret = _secret_arg(args, settings)

    async def go() -> int:
        async with await Backend.open(settings.url, mode=settings.mode) as backend:
            if args.secrets_command == "init":
                out = await ks.init_secrets(backend, kid=args.kid, secret_hex=secret)
                what = {"initialised": f"initialised: kid {out.kid} installed on "
                                       f"{out.written} partitions",
                        "already_initialised": f"already initialised: kid {out.kid} on all "
                                               f"{out.partitions} partitions (nothing written)",
                        "repaired": f"repaired: kid {out.kid} written to {out.written} of "
                                    f"{out.partitions} partitions"}[out.status]
                print(what)
                if out.note:
                    print(f"warning: {out.note}", file=sys.stderr)
                return 0
            if args.secrets_command == "rotate":
                grace_ms = round(args.grace * 1000)
                rot = await ks.rotate_secrets(backend, grace_ms=grace_ms, kid=args.kid,
                                              secret_hex=secret)
                until = iso_time(await backend.server_time_ms() + grace_ms)
                print(f"rotated {rot.previous_kid} -> {rot.kid} on {rot.partitions} partitions; "
                      f"tokens of {rot.previous_kid} accepted until about {until} "
                      f"(grace {args.grace:g}s); {rot.gc_count} expired kid entries removed")
                return 0
            status = await ks.list_secrets(backend)
            if args.json:
                doc = {"partitions": status.partitions, "consistent": status.consistent,
                       "groups": [{"partitions": g.partition_ranges(),
                                   "count": len(g.partitions),
                                   "current_kid": g.current_kid or None,
                                   "in_grace": [{"kid": k, "expires_at": iso_time(e),
                                                 "expires_at_ms": e} for k, e in g.in_grace],
                                   **({"secrets": {k: v.reveal() for k, v in g.secrets.items()}}
                                      if args.show_secrets else {})}
                                  for g in status.groups]}
                print(json.dumps(doc, indent=2))
            else:
                for g in status.groups:
                    head = f"partitions {g.partition_ranges()} ({len(g.partitions)}): "
                    if not g.current_kid:
                        print(head + "NOT INITIALISED")
                        continue
                    grace = ", ".join(f"{k} until {iso_time(e)}" for k, e in g.in_grace)
                    print(head + f"current {g.current_kid}" +
                          (f"; in grace: {grace}" if grace else "; no kid in grace"))
                    if args.show_secrets:
                        for kid, value in g.secrets.items():
                            print(f"    secret {kid}: {value.reveal()}")
                if not status.initialised:
                    print("keystore not initialised everywhere: run "
                          "`flowfabric-worker secrets init`", file=sys.stderr)
                elif not status.consistent:
                    print("partitions disagree (interrupted rotation?): run "
                          "`flowfabric-worker secrets init` to finish it", file=sys.stderr)
            return 0 if status.consistent else 1

    return int(anyio.run(go))
