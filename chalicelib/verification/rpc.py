"""JSON-RPC to a user-supplied endpoint: web3's HTTP provider through a guarded session, with a
call budget, a deadline and a cap on each answer; raw batches checked by web3's own answer
validation; and the one rule for what RPC failures mean to a job (`rpc_errors`).

The registry's reads (`registry.py`) and the registration search (`registration.py`) go through it.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

import requests
import urllib3
from web3 import Web3
from web3.eth import Eth
from web3.exceptions import ContractLogicError, Web3Exception
from web3._utils.batching import sort_batch_response_by_response_ids
from web3._utils.error_formatters_utils import raise_contract_logic_error_on_revert
from web3._utils.validation import raise_error_for_batch_response, validate_rpc_response_and_raise_if_error
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse

from ..config import Settings
from ..errors import JobError, PermanentError, TransientError
from ..vocabulary import (
    REGISTRY_INCOMPATIBLE, RPC_ERROR, RPC_LIMIT_EXCEEDED, RPC_REJECTED, RPC_UNAVAILABLE, RPC_URL_REQUIRED,
)
from .limits import BodyTooLarge, DeadlineExceeded
from .netguard import GuardedSession, check_url, guarded_session

QUANTITY_RE = re.compile(r"^0x[0-9a-fA-F]{1,64}$")
DATA_RE = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")


class RpcHttpStatus(Exception):
    """The RPC endpoint answered with an HTTP error status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


@contextlib.contextmanager
def rpc_errors(what: str) -> Iterator[None]:
    """Turn web3/requests failures into the job error taxonomy (transient unless hopeless).

    Messages name the call and the HTTP status, never the endpoint's URL (its path often holds
    a provider key); the underlying exception goes to `detail`, for the logs."""
    try:
        yield
    except JobError:
        raise  # UrlNotAllowed from the connection-time check, or our own errors
    except ContractLogicError as exc:
        raise PermanentError(
            f"The contract reverted {what}: is registryAddress a ContentRegistry?",
            code=REGISTRY_INCOMPATIBLE, detail=str(exc),
        ) from exc
    except RpcHttpStatus as exc:
        if exc.status in (408, 425, 429) or exc.status >= 500:
            raise TransientError(f"The RPC endpoint answered HTTP {exc.status} during {what}.",
                                 code=RPC_UNAVAILABLE) from exc
        raise PermanentError(
            f"The RPC endpoint refused {what} with HTTP {exc.status}: check rpcUrl.", code=RPC_REJECTED
        ) from exc
    except BodyTooLarge as exc:
        raise PermanentError(f"The RPC endpoint's answer to {what} is larger than {exc.max_bytes} bytes.",
                             code=RPC_LIMIT_EXCEEDED) from exc
    except DeadlineExceeded as exc:
        raise TransientError(f"The RPC endpoint did not answer {what} in time.",
                             code=RPC_UNAVAILABLE, detail=str(exc)) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise TransientError(f"The RPC endpoint is unreachable during {what}.",
                             code=RPC_UNAVAILABLE, detail=f"{type(exc).__name__}: {exc}") from exc
    except (Web3Exception, ValueError) as exc:  # JSON-RPC error object, non-JSON answer, ...
        raise TransientError(f"The RPC endpoint failed {what}.", code=RPC_ERROR,
                             detail=f"{type(exc).__name__}: {exc}") from exc


class BoundedProvider(HTTPProvider):
    """web3's HTTP provider, sending through a GuardedSession: every call is bounded in time
    (the session's deadline) and size (`max_bytes` after decompression), and the client may
    make at most `budget` JSON-RPC calls (a batch counts each of its calls), whatever the node
    answers. web3's own transport reads whole bodies, with per-read timeouts only."""

    def __init__(self, rpc_url: str, session: GuardedSession, max_bytes: int, budget: int) -> None:
        # SQS redelivery is the retry policy; do not multiply it inside one attempt.
        super().__init__(rpc_url, session=session, exception_retry_configuration=None)
        self.guarded_session = session
        self.max_bytes = max_bytes
        self.budget = budget
        self.calls = 0

    def _post(self, data: bytes, calls: int) -> bytes:
        if self.calls + calls > self.budget:
            raise PermanentError(
                f"The verification needed more than {self.budget} JSON-RPC calls (RPC_CALL_BUDGET); "
                "it stopped there.", code=RPC_LIMIT_EXCEEDED)
        self.calls += calls
        fetched = self.guarded_session.fetch("POST", self.endpoint_uri, self.max_bytes, data=data,
                                             headers=self.get_request_headers())
        if fetched.status >= 400:
            raise RpcHttpStatus(fetched.status)
        return fetched.body

    def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        return self._post(request_data, 1)

    def make_batch_request(self, batch_requests: list[tuple[RPCEndpoint, Any]]) -> list[RPCResponse] | RPCResponse:
        raw = self._post(self.encode_batch_rpc_request(batch_requests), len(batch_requests))
        response = self.decode_rpc_response(raw)
        if not isinstance(response, list):
            return response  # one error object for the whole batch
        if not all(isinstance(item, dict) for item in response):
            raise ValueError("the node's answer to a batch holds something other than JSON-RPC responses")
        return sort_batch_response_by_response_ids(response)


@contextlib.contextmanager
def connected(rpc_url: str | None, settings: Settings) -> Iterator[Web3]:
    """connect() for one verification, closing its HTTP connections afterwards (a worker
    runs many jobs against many endpoints; pooled sockets must not pile up)."""
    session = guarded_session(settings.allow_private_networks, settings.http_timeout_seconds)
    with session:
        yield connect(rpc_url, settings, session)


def connect(rpc_url: str | None, settings: Settings, session: GuardedSession | None = None) -> Web3:
    """A Web3 client for a user-supplied RPC URL, under the address rule on every connection,
    with the call budget, deadline and answer cap of BoundedProvider.

    No network I/O happens here beyond resolving the host for the address check.
    """
    require_rpc_url(rpc_url)
    try:
        check_url(rpc_url, settings.allow_private_networks)
    except TransientError as exc:  # DNS trouble
        raise TransientError(
            f"The RPC endpoint is unreachable: {exc.message}", code=RPC_UNAVAILABLE, detail=exc.detail
        ) from exc
    session = session or guarded_session(settings.allow_private_networks, settings.http_timeout_seconds)
    provider = BoundedProvider(rpc_url, session, settings.rpc_max_response_bytes, settings.rpc_call_budget)
    # No default middleware: this client only reads, so it needs no gas or ENS handling, and
    # the validation middleware would add an eth_chainId round trip before every eth_call. Only
    # the eth module: building the others costs as much as a JSON-RPC call, on every job.
    return Web3(provider, middleware=[], modules={"eth": Eth})


def rpc_calls(w3: Web3) -> int:
    """JSON-RPC calls the client has made so far (for logs and tests)."""
    return int(getattr(w3.provider, "calls", 0))


def chain_id(w3: Web3) -> int:
    """The chain id the RPC endpoint serves."""
    with rpc_errors("eth_chainId"):
        return int(w3.eth.chain_id)


def raw_batch(w3: Web3, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """The results of a JSON-RPC batch as the node sent them (hex strings, dicts), through the
    bounded provider and web3's own checks of each answer (JSON-RPC errors, reverts of eth_call).

    What it does not do: web3's per-method request and result formatters. For the four calls of a
    verification those cost more CPU than the rest of the verification path (measured in
    docs/benchmarks/worker-profile.txt), so the callers parse the few fields they read
    (`quantity`, `data_bytes`)."""
    responses = w3.provider.make_batch_request([(RPCEndpoint(method), params) for method, params in calls])
    if not isinstance(responses, list):
        raise_error_for_batch_response(responses, w3.manager.logger)
    if len(responses) != len(calls):
        raise ValueError(f"the node answered {len(responses)} of {len(calls)} calls")
    for (method, params), response in zip(calls, responses):
        revert = raise_contract_logic_error_on_revert if method == "eth_call" else None
        validate_rpc_response_and_raise_if_error(response, revert, is_subscription_response=False,
                                                 logger=w3.manager.logger, params=params)
    return [response["result"] for response in responses]


def quantity(value: Any) -> int:
    """A JSON-RPC quantity ("0x" + hex digits) as an int; ValueError for anything else."""
    if not isinstance(value, str) or not QUANTITY_RE.match(value):
        raise ValueError(f"not a JSON-RPC quantity: {str(value)[:80]!r}")
    return int(value, 16)


def data_bytes(value: Any, length: int | None = None) -> bytes:
    """JSON-RPC data ("0x" + an even number of hex digits) as bytes, of `length` when given."""
    if not isinstance(value, str) or not DATA_RE.match(value):
        raise ValueError(f"not JSON-RPC data: {str(value)[:80]!r}")
    data = bytes.fromhex(value[2:])
    if length is not None and len(data) != length:
        raise ValueError(f"expected {length} bytes of JSON-RPC data, got {len(data)}")
    return data


def require_rpc_url(rpc_url: str | None) -> str:
    """The effective RPC URL, or RPC_URL_REQUIRED when neither client nor deployment gave one."""
    if not rpc_url:
        raise PermanentError("No RPC URL: pass rpcUrl or configure RPC_URL.", code=RPC_URL_REQUIRED)
    return rpc_url
