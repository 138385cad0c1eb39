"""``vllm-mlx launch``: run a command (usually ``serve``) on every rank of a distributed group."""

from __future__ import annotations

import logging
import sys

import click


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--hostfile", default=None, type=click.Path(dir_okay=False),
              help="mlx's JSON hostfile: hosts (ssh name, ips, rdma), optional backend and envs.")
@click.option("--hosts", default="127.0.0.1", show_default=True,
              help="Comma-separated hosts when there is no hostfile (only the literal 127.0.0.1 runs locally).")
@click.option("-n", "--repeat-hosts", "repeat", default=1, show_default=True, type=click.IntRange(1),
              help="Repeat each host this many times (-n 2 = two local ranks).")
@click.option("--backend", default=None, type=click.Choice(["ring", "jaccl", "jaccl-ring", "mpi"]),
              help="Distributed backend (default: the hostfile's, else ring).")
@click.option("--starting-port", default=None, type=click.IntRange(1, 65535),
              help="Ring: first port (one per rank and IP); default: free ports when every rank is local, "
                   "else 32323. Each restart moves on to fresh ports.")
@click.option("--restarts", default=0, show_default=True, type=click.IntRange(0),
              help="Start a failed group again this many times.")
@click.option("--grace", default=45.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds ranks get to exit after SIGTERM before SIGKILL.")
@click.option("--env", "envs", multiple=True, metavar="NAME=VALUE", help="Set this in every rank (repeatable).")
@click.option("--python", default=None, help="Interpreter on the ranks for `serve` (default: this one).")
@click.option("--cwd", default=None, help="Working directory on every host.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def launch(hostfile, hosts, repeat, backend, starting_port, restarts, grace, envs, python, cwd, command):
    """Start COMMAND on every rank and supervise the group; put `--` before it:

        vllm-mlx launch -n 2 -- serve MODEL --tensor-parallel-size 2

    Exits non-zero when any rank fails; SIGTERM/SIGINT reach every rank (then SIGKILL
    after --grace). See docs/guides/distributed.md.
    """
    from ..distributed.launcher import Plan, load_hosts, supervise

    logging.basicConfig(level="INFO", format="%(asctime)s launch %(levelname)s: %(message)s")
    try:
        host_list, file_backend, file_envs = load_hosts(hostfile, hosts, repeat)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if len(host_list) < 2:
        raise click.UsageError("a group needs at least 2 ranks: give a hostfile, several --hosts or -n N")
    bad = [e for e in envs if "=" not in e]
    if bad:
        raise click.UsageError(f"--env {bad[0]!r}: expected NAME=VALUE")
    plan = Plan(hosts=host_list, backend=backend or file_backend or "ring", command=list(command),
                envs=[*file_envs, *envs], starting_port=starting_port, python=python, cwd=cwd)
    try:
        status = supervise(plan, restarts=restarts, grace=grace)
    except (ValueError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    sys.exit(status)
