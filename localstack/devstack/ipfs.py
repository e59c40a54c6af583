"""A small IPFS dev node: the two calls the project makes of IPFS, on one loopback port.

* Kubo's RPC ``POST /api/v0/add``: multipart/form-data with one or more file parts, one JSON
  line per file (``{"Name", "Hash", "Size"}``); ``?cid-version=1`` for CIDv1;
* the path gateway's ``GET /ipfs/{cid}[/path]``: the exact bytes of an added file.

The CIDs are the ones Kubo's ``ipfs add`` gives the same bytes with its defaults: a UnixFS file
of 256 KiB chunks in the balanced layout (at most 174 links a node); CIDv0 with dag-pb leaves,
or CIDv1 in base32 with raw leaves. CIDs and multihashes come from py-cid and py-multihash,
dag-pb blocks from py-ipld-dag, the UnixFS ``Data`` message from pure-protobuf.

What it does not do (Kubo cannot be installed offline; this is only what the product needs):
no directories (``wrap-with-directory``), so ``/ipfs/{cid}/path`` answers 404; no other RPC
command (cat, pin, ls, version, ...) and no add option but ``cid-version``; no other chunker,
hash, layout or CID base; no chunked request bodies; no HEAD, byte ranges, ETag revalidation
or content-type sniffing (files are served as application/octet-stream); no IPNS, no peers,
no persistence: added files live in this process's memory until it stops.
"""
from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from enum import IntEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import multihash
import multipart
from cid import CIDv0, CIDv1, from_string, make_cid
from dag.codecs import dag_pb
from pure_protobuf.annotations import Field, uint
from pure_protobuf.message import BaseMessage

CHUNK_SIZE = 256 * 1024  # Kubo's default chunker: size-262144
MAX_LINKS = 174  # Kubo's balanced layout: links per internal node

Cid = CIDv0 | CIDv1


class UnixfsType(IntEnum):
    RAW = 0
    DIRECTORY = 1
    FILE = 2


@dataclass
class UnixfsData(BaseMessage):
    """UnixFS's ``Data`` message (unixfs.proto, proto2: ``blocksizes`` is not packed)."""

    type: Annotated[UnixfsType, Field(1)]
    data: Annotated[Optional[bytes], Field(2)] = None
    filesize: Annotated[Optional[uint], Field(3)] = None
    blocksizes: Annotated[list[uint], Field(4, packed=False)] = field(default_factory=list)


@dataclass(frozen=True)
class UnixfsFile:
    cid: str
    size: int  # cumulative DAG size: what Kubo's add reports as "Size"
    file_size: int
    blocks: int


@dataclass(frozen=True)
class _Node:
    cid: Cid
    file_size: int  # bytes of file data below this node
    dag_size: int  # this block's size plus the Tsize of its links


def _block_cid(block: bytes, version: int, codec: str) -> Cid:
    return make_cid(version, codec, multihash.digest(block, "sha2-256").encode())


def _dag_pb_node(data: UnixfsData, children: list[_Node], version: int) -> _Node:
    # Kubo writes an empty Name on every link.
    links = [dag_pb.PBLink(hash=child.cid, name="", tsize=child.dag_size) for child in children]
    block = dag_pb.encode(dag_pb.PBNode(data=bytes(data), links=links))
    file_size = data.filesize or 0
    return _Node(_block_cid(block, version, "dag-pb"), file_size,
                 len(block) + sum(child.dag_size for child in children))


def _leaf(chunk: bytes, cid_version: int) -> _Node:
    if cid_version == 1:  # Kubo's --cid-version=1 implies --raw-leaves
        return _Node(_block_cid(chunk, 1, "raw"), len(chunk), len(chunk))
    return _dag_pb_node(UnixfsData(UnixfsType.FILE, chunk or None, len(chunk)), [], 0)


def build_unixfs_file(data: bytes, *, cid_version: int = 0, chunk_size: int = CHUNK_SIZE,
                      max_links: int = MAX_LINKS) -> UnixfsFile:
    """The root of the UnixFS DAG Kubo's ``ipfs add`` builds for ``data`` (balanced layout)."""
    if cid_version not in (0, 1):
        raise ValueError("cid_version must be 0 or 1")
    if chunk_size <= 0 or max_links < 2:
        raise ValueError("chunk_size must be positive and max_links at least 2")
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    level = [_leaf(chunk, cid_version) for chunk in chunks]
    while len(level) > 1:  # group at most max_links children per parent, level by level
        groups = [level[i : i + max_links] for i in range(0, len(level), max_links)]
        level = [
            _dag_pb_node(UnixfsData(UnixfsType.FILE, None, sum(c.file_size for c in group),
                                    [c.file_size for c in group]), group, cid_version)
            for group in groups
        ]
    root = level[0]
    return UnixfsFile(cid=cid_text(root.cid), size=root.dag_size, file_size=len(data), blocks=len(chunks))


def cid_for_bytes(data: bytes, cid_version: int = 0) -> str:
    """The CID Kubo's ``ipfs add`` (default chunker and layout) gives ``data``."""
    return build_unixfs_file(data, cid_version=cid_version).cid


def cid_text(cid: Cid) -> str:
    """A CID as Kubo prints it: base58btc for v0, base32 for v1."""
    return cid.encode("base32").decode() if cid.version == 1 else str(cid)


def parse_cid(text: str) -> Cid:
    """A CID in any multibase py-cid knows; ValueError when it is none."""
    try:
        return from_string(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"invalid CID {text!r}: {exc}") from None


def content_key(cid: Cid) -> tuple[str, bytes]:
    """What names the content whatever the CID's version or base: (codec, multihash)."""
    return cid.codec, cid.multihash


class _ClientError(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    node: DevIpfsNode  # set on the per-node subclass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        if self.node.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        body = self._body()
        if url.path != "/api/v0/add":
            self._send(404, f"command not found: {url.path}\n".encode())
            return
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            lines = self._add(body, query.get("cid-version", "0"))
        except _ClientError as exc:  # Kubo's RPC error shape
            error = {"Message": str(exc), "Code": 0, "Type": "error"}
            self._send(400, json.dumps(error).encode() + b"\n", "application/json")
            return
        self._send(200, b"".join(json.dumps(line).encode() + b"\n" for line in lines), "application/json")

    def _add(self, body: bytes, cid_version: str) -> list[dict[str, str]]:
        if cid_version not in ("0", "1"):
            raise _ClientError(f"unknown CID version: {cid_version}")
        kind, options = multipart.parse_options_header(self.headers.get("Content-Type", ""))
        if kind != "multipart/form-data" or not options.get("boundary"):
            raise _ClientError("expected a multipart/form-data request body")
        parser = multipart.MultipartParser(io.BytesIO(body), options["boundary"], content_length=len(body),
                                           memory_limit=2**62, disk_limit=2**62, partsize_limit=2**62)
        lines = []
        try:
            for part in parser:
                built = self.node.add_file(part.raw, int(cid_version))
                lines.append({"Name": unquote(part.filename or "") or built.cid, "Hash": built.cid,
                              "Size": str(built.size)})
        except multipart.MultipartError as exc:
            raise _ClientError(f"malformed multipart body: {exc}") from None
        if not lines:
            raise _ClientError("no file given: send multipart/form-data with a file part")
        return lines

    def do_GET(self) -> None:  # noqa: N802
        path = unquote(urlsplit(self.path).path)
        if not path.startswith("/ipfs/"):
            self._send(404, b"404 page not found\n")
            return
        cid_part, _, subpath = path[len("/ipfs/"):].partition("/")
        try:
            cid = parse_cid(cid_part)
        except ValueError as exc:
            self._send(400, f"failed to resolve {path}: {exc}\n".encode())
            return
        self.node.count_gateway_read()
        data = self.node.get(cid)
        if data is None or subpath:
            self._send(404, f"ipfs resolve -r {path}: not found\n".encode())
            return
        self._send(200, data, "application/octet-stream")


class DevIpfsNode:
    """The dev node in a daemon thread of this process; ``api_url`` and ``gateway_url`` are the
    same loopback root (the add endpoint is ``{api_url}/api/v0/add``)."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self._lock = threading.Lock()
        self._files: dict[tuple[str, bytes], bytes] = {}
        self.gateway_reads = 0  # gateway GETs answered since start: benchmarks count calls per job
        self._server: ThreadingHTTPServer | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("DevIpfsHandler", (_Handler,), {"node": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="devstack-ipfs", daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the IPFS dev node is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    api_url = gateway_url = url

    def add_file(self, data: bytes, cid_version: int = 0) -> UnixfsFile:
        """Store ``data`` under its Kubo CID."""
        built = build_unixfs_file(data, cid_version=cid_version)
        with self._lock:
            self._files[content_key(parse_cid(built.cid))] = data
        return built

    def add(self, data: bytes, cid_version: int = 0) -> str:
        return self.add_file(data, cid_version).cid

    def count_gateway_read(self) -> None:
        with self._lock:
            self.gateway_reads += 1

    def get(self, cid: Cid | str) -> bytes | None:
        key = content_key(parse_cid(cid) if isinstance(cid, str) else cid)
        with self._lock:
            return self._files.get(key)
