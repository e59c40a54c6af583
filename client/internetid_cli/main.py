"""`internetid`: verify a file against its manifest and on-chain registration through the
verification API, or run the whole creator-to-verifier round trip against the local stack."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from internetid_cli import flow, report
from internetid_cli.api import ApiClient, ClientError, Target
from internetid_cli.config import ConfigError, inline_max, resolve_api_url, state_file
from internetid_cli.multipart import ResumeState


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", metavar="URL", help="the API's base URL (default: $INTERNETID_API_URL, else the local "
                        "stack's .stack/endpoints.json, else http://127.0.0.1:8000)")
    parser.add_argument("--api-key", metavar="KEY", default=os.environ.get("INTERNETID_API_KEY"),
                        help="sent as x-api-key (default: $INTERNETID_API_KEY)")


def _common(parser: argparse.ArgumentParser) -> None:
    _connection(parser)
    parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                        help="wait for the job to finish (default) or print its id and poll URL and exit")
    parser.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                        help="give up waiting for the job after this long (default 900)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or step messages")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="internetid", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = commands.add_parser("verify", help="verify a file (or make its proof.json)",
                                 description="Verify FILE against its signed manifest and its on-chain "
                                 "registration. Exit code: 0 OK, 1 WARN or FAIL, 2 error.")
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument("--manifest", required=True, metavar="URI", help="manifest URI (ipfs://CID or https://)")
    verify.add_argument("--registry", required=True, metavar="ADDR", help="registry contract address (0x…)")
    verify.add_argument("--rpc-url", metavar="URL", help="JSON-RPC endpoint (default: the deployment's)")
    verify.add_argument("--proof", action="store_true", help="generate a proof instead of a verify result")
    verify.add_argument("--output", type=Path, default=Path("proof.json"), metavar="PATH",
                        help="where --proof writes the proof (default proof.json)")
    _common(verify)

    demo = commands.add_parser("demo", help="anchor a random file on the local stack and verify it",
                               description="Against the local stack (`make up`): make a random file, sign its "
                               "manifest with a fresh funded key, add it to IPFS, register it on the dev chain, "
                               "then verify it exactly as `verify` does.")
    demo.add_argument("--size", type=int, default=8 * 1024 * 1024, metavar="BYTES",
                      help="size of the random file (default 8 MiB: over the inline cap, so it is uploaded "
                      "to storage)")
    _common(demo)

    cancel = commands.add_parser("cancel", help="cancel a job that has not finished",
                                 description="Cancel JOB_ID: the API stops it at its next step and deletes its "
                                 "file. Exit code: 0 cancelled, 2 error (unknown job, or already finished).")
    cancel.add_argument("job_id", metavar="JOB_ID")
    _connection(cancel)
    cancel.add_argument("--json", action="store_true", help="print the cancelled job as JSON on stdout")
    return parser


def _stderr_log(quiet: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)
    return log


def finish(outcome: flow.Outcome, args: argparse.Namespace, output: Path | None = None) -> int:
    """Print (and for proofs, write) the result; the exit code follows its status."""
    if outcome.result is None:
        # --no-wait: the job runs on without us.
        if args.json:
            print(json.dumps({"jobId": outcome.job_id, "pollUrl": outcome.poll_url}))
        else:
            print(f"Job ID:   {outcome.job_id}\nPoll URL: {outcome.poll_url}")
        return report.EXIT_OK
    status = report.result_status(outcome.kind, outcome.result)
    if outcome.kind == "proof":
        assert output is not None
        report.write_proof(outcome.result, output)
        print(json.dumps(outcome.result, indent=2) if args.json else report.proof_summary(outcome.result, output))
    else:
        print(json.dumps(outcome.result, indent=2) if args.json else report.summary(outcome.result))
    return report.exit_code(status)


def client_for(args: argparse.Namespace) -> ApiClient:
    """The API client of a command; it says on stderr when it waits out the rate limit."""
    return ApiClient(resolve_api_url(args.api_url), api_key=args.api_key,
                     log=_stderr_log(getattr(args, "quiet", False)))


def cmd_verify(args: argparse.Namespace) -> int:
    client = client_for(args)
    target = Target(args.registry, args.manifest, args.rpc_url)
    kind = "proof" if args.proof else "verify"
    outcome = flow.run(client, kind, args.file, target, wait=args.wait, quiet=args.quiet,
                       inline_limit=inline_max(), timeout=args.timeout, log=_stderr_log(args.quiet),
                       state=ResumeState(state_file()))
    return finish(outcome, args, args.output)


def cmd_cancel(args: argparse.Namespace) -> int:
    job = client_for(args).cancel_job(args.job_id)
    print(json.dumps(job, indent=2) if args.json else f"Job {job.get('jobId', args.job_id)} {job.get('status')}")
    return report.EXIT_OK


def interrupted(stopped: flow.WaitInterrupted, args: argparse.Namespace) -> int:
    """The job runs on: print its id and the commands to poll or cancel it."""
    poll = ApiClient(resolve_api_url(args.api_url)).url(stopped.poll_url)
    api_url = f" --api-url {args.api_url}" if args.api_url else ""
    print(f"\ninterrupted; job {stopped.job_id} goes on without this command.\n"
          f"  poll it:   curl -s {poll}\n"
          f"  cancel it: internetid cancel {stopped.job_id}{api_url}\n"
          f"         or: curl -s -X POST {poll}/cancel", file=sys.stderr)
    return report.EXIT_INTERRUPTED


def cmd_demo(args: argparse.Namespace) -> int:
    from internetid_cli import demo  # needs the local stack's tooling (web3, eth-account)

    return demo.run(args, _stderr_log(args.quiet), finish)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"verify": cmd_verify, "demo": cmd_demo,
                                                            "cancel": cmd_cancel}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ClientError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except flow.WaitInterrupted as stopped:
        return interrupted(stopped, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return report.EXIT_INTERRUPTED
    return report.EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
