"""A small content-addressed IPFS dev node for the local stack.

It speaks the two HTTP surfaces the project uses:

* Kubo's RPC ``POST /api/v0/add`` (multipart/form-data; one JSON line per file,
  ``{"Name", "Hash", "Size"}``) plus ``/api/v0/cat`` and ``/api/v0/version``;
* the path gateway ``GET``/``HEAD /ipfs/{cid}`` (exact bytes, ``Etag``, single byte ranges,
  404 with a text body for unknown CIDs).

The CIDs are the ones Kubo produces with its default settings: a UnixFS file DAG of
256 KiB fixed-size chunks in the balanced layout (at most 174 links per node), dag-pb leaves
and CIDv0 (``Qm...``) by default, raw leaves and CIDv1 base32 with ``?cid-version=1``
(``bafkrei...`` for a file of one chunk, ``bafybei...`` above that).

Run standalone with ``python -m devstack.ipfs --port 5001``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
from base64 import b32decode, b32encode
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import base58

from devstack.httpserver import LoopbackHTTPService, QuietHandler

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_LINKS",
    "DevIpfsNode",
    "UnixfsFile",
    "build_unixfs_file",
    "cid_for_bytes",
    "parse_cid",
]

DEFAULT_CHUNK_SIZE = 256 * 1024  # Kubo's default chunker: size-262144
MAX_LINKS = 174  # Kubo's balanced layout: links per internal node

CODEC_RAW = 0x55
CODEC_DAG_PB = 0x70
MH_SHA2_256 = 0x12
UNIXFS_FILE = 2

# --------------------------------------------------------------------------------------------
# protobuf, multihash and CID encoding
# --------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _pb_varint_field(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _pb_bytes_field(field: int, value: bytes) -> bytes:
    return _varint((field << 3) | 2) + _varint(len(value)) + value


def _unixfs_data(data: bytes | None, filesize: int, blocksizes: list[int]) -> bytes:
    """UnixFS ``Data`` message of a file node (Type=File, Data?, filesize, blocksizes*)."""
    out = _pb_varint_field(1, UNIXFS_FILE)
    if data:
        out += _pb_bytes_field(2, data)
    out += _pb_varint_field(3, filesize)
    for size in blocksizes:  # proto2 repeated uint64: not packed
        out += _pb_varint_field(4, size)
    return out


def _dag_pb_node(links: list[tuple[bytes, int]], data: bytes) -> bytes:
    """dag-pb ``PBNode`` in canonical order: Links (field 2) first, then Data (field 1).

    Each link carries Hash, an empty Name (Kubo always writes it) and Tsize.
    """
    out = b""
    for cid_bytes, tsize in links:
        link = _pb_bytes_field(1, cid_bytes) + _pb_bytes_field(2, b"") + _pb_varint_field(3, tsize)
        out += _pb_bytes_field(2, link)
    return out + _pb_bytes_field(1, data)


def _multihash(block: bytes) -> bytes:
    return bytes([MH_SHA2_256, 32]) + hashlib.sha256(block).digest()


@dataclass(frozen=True)
class _Cid:
    version: int
    codec: int
    multihash: bytes

    def to_bytes(self) -> bytes:
        if self.version == 0:
            return self.multihash
        return _varint(1) + _varint(self.codec) + self.multihash

    def __str__(self) -> str:
        if self.version == 0:
            return base58.b58encode(self.multihash).decode("ascii")
        return "b" + b32encode(self.to_bytes()).decode("ascii").lower().rstrip("=")

    @property
    def key(self) -> tuple[int, bytes]:
        """What identifies the content whatever the CID version or base: (codec, multihash)."""
        return self.codec, self.multihash


def parse_cid(text: str) -> _Cid:
    """Parse a CIDv0 (``Qm...``) or a CIDv1 in base32 (``b...``) or base58btc (``z...``)."""
    try:
        if len(text) == 46 and text.startswith("Qm"):
            mh = base58.b58decode(text)
            if len(mh) != 34 or mh[:2] != bytes([MH_SHA2_256, 32]):
                raise ValueError("not a sha2-256 multihash")
            return _Cid(0, CODEC_DAG_PB, mh)
        if text[:1] in ("b", "B"):
            body = text[1:].upper()
            raw = b32decode(body + "=" * (-len(body) % 8))
        elif text[:1] == "z":
            raw = base58.b58decode(text[1:])
        else:
            raise ValueError("unsupported multibase")
        version, pos = _read_varint(raw, 0)
        codec, pos = _read_varint(raw, pos)
        mh = raw[pos:]
        code, mpos = _read_varint(mh, 0)
        length, mpos = _read_varint(mh, mpos)
        if version != 1 or len(mh) - mpos != length:
            raise ValueError("malformed CIDv1")
        return _Cid(1, codec, mh)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"invalid CID {text!r}: {exc}") from None


# --------------------------------------------------------------------------------------------
# UnixFS file DAG (balanced layout), as `ipfs add` builds it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnixfsFile:
    cid: str
    size: int  # cumulative DAG size (what Kubo's add reports as "Size")
    file_size: int
    blocks: int


@dataclass(frozen=True)
class _Node:
    cid: _Cid
    file_size: int  # bytes of file data below this node
    dag_size: int  # encoded size of this block plus the Tsize of its links


def build_unixfs_file(
    data: bytes,
    *,
    cid_version: int = 0,
    raw_leaves: bool | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_links: int = MAX_LINKS,
) -> UnixfsFile:
    """Build the UnixFS DAG of ``data`` like Kubo's ``ipfs add`` and return its root.

    Defaults are Kubo's: ``cid_version=0`` with dag-pb leaves; ``raw_leaves`` defaults to
    ``cid_version == 1``, as in Kubo. Only the root is returned (this node stores whole files).
    """
    if cid_version not in (0, 1):
        raise ValueError("cid_version must be 0 or 1")
    if chunk_size <= 0 or max_links < 2:
        raise ValueError("chunk_size must be positive and max_links at least 2")
    if raw_leaves is None:
        raw_leaves = cid_version == 1
    view = memoryview(data)
    chunks = [view[i : i + chunk_size] for i in range(0, len(view), chunk_size)] or [view[:0]]

    level: list[_Node] = []
    for chunk in chunks:
        if raw_leaves:
            block = bytes(chunk)
            cid = _Cid(1, CODEC_RAW, _multihash(block))
        else:
            block = _dag_pb_node([], _unixfs_data(bytes(chunk), len(chunk), []))
            cid = _Cid(cid_version, CODEC_DAG_PB, _multihash(block))
        level.append(_Node(cid, len(chunk), len(block)))

    # Balanced layout: a single leaf is the root; otherwise group <= max_links children per
    # internal node, level by level, which is the tree Kubo's balanced builder produces.
    while len(level) > 1:
        parents: list[_Node] = []
        for i in range(0, len(level), max_links):
            children = level[i : i + max_links]
            sizes = [child.file_size for child in children]
            block = _dag_pb_node(
                [(child.cid.to_bytes(), child.dag_size) for child in children],
                _unixfs_data(None, sum(sizes), sizes),
            )
            cid = _Cid(cid_version, CODEC_DAG_PB, _multihash(block))
            parents.append(
                _Node(cid, sum(sizes), len(block) + sum(child.dag_size for child in children))
            )
        level = parents
    root = level[0]
    return UnixfsFile(cid=str(root.cid), size=root.dag_size, file_size=len(data), blocks=len(chunks))


def cid_for_bytes(data: bytes, cid_version: int = 0, raw_leaves: bool | None = None) -> str:
    """The CID Kubo's ``ipfs add`` (default chunker and layout) gives ``data``."""
    return build_unixfs_file(data, cid_version=cid_version, raw_leaves=raw_leaves).cid


# --------------------------------------------------------------------------------------------
# content store
# --------------------------------------------------------------------------------------------


class _Store:
    """Whole files by (codec, multihash) of their root; optionally mirrored in a directory."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[int, bytes], bytes] = {}
        self._dir = Path(directory) if directory is not None else None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            for path in self._dir.iterdir():
                try:
                    key = parse_cid(path.name).key
                except ValueError:
                    continue
                self._files[key] = path.read_bytes()

    def put(self, cid: str, data: bytes) -> None:
        key = parse_cid(cid).key
        with self._lock:
            if key in self._files:
                return
            self._files[key] = data
            if self._dir is not None:
                tmp = self._dir / f".{cid}.tmp"
                tmp.write_bytes(data)
                tmp.replace(self._dir / cid)

    def get(self, cid: _Cid) -> bytes | None:
        with self._lock:
            return self._files.get(cid.key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

_CHUNKER = re.compile(r"^size-(\d+)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_TRUE = ("true", "1", "yes", "")


def _sniff_content_type(data: bytes) -> str:
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"OggS", "audio/ogg"),
        (b"ID3", "audio/mpeg"),
    )
    for magic, content_type in signatures:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    head = data[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the sniffing window
        if exc.start < len(head) - 3:
            return "application/octet-stream"
    if b"\x00" in head:
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


class _Handler(QuietHandler):
    server_version = "devstack-ipfs/0.1"
    node: DevIpfsNode  # set on the per-node subclass

    @property
    def verbose(self) -> bool:  # read at each request: the node's flag may change while it runs
        return self.node.verbose

    # -- helpers ------------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
        head_only: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode() + b"\n", "application/json")

    def _rpc_error(self, status: int, message: str) -> None:
        # Kubo's RPC error shape
        self._json(status, {"Message": message, "Code": 0, "Type": "error"})

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    # -- routes -------------------------------------------------------------------------
    def do_OPTIONS(self) -> None:  # noqa: N802
        self._send(
            204,
            b"",
            headers={
                "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
                "Access-Control-Allow-Headers": "*",
            },
        )

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            if url.path == "/api/v0/add":
                self._add(query)
            elif url.path == "/api/v0/cat":
                self._read_body()
                self._cat(query)
            elif url.path == "/api/v0/version":
                self._read_body()
                self._json(200, {"Version": "0.0.0-devstack", "Commit": "", "Repo": "0", "System": "python"})
            elif url.path.startswith("/api/v0/"):
                self._read_body()
                self._rpc_error(404, f"command not found: {url.path[len('/api/v0/'):]}")
            else:
                self._read_body()
                self._send(405, b"method not allowed\n")
        except _ClientError as exc:
            self._rpc_error(400, str(exc))

    def do_GET(self) -> None:  # noqa: N802
        self._gateway(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._gateway(head_only=True)

    def _add(self, query: dict[str, str]) -> None:
        cid_version = query.get("cid-version", "0")
        if cid_version not in ("0", "1"):
            raise _ClientError(f"unknown CID version: {cid_version}")
        raw_leaves = None
        if "raw-leaves" in query:
            raw_leaves = query["raw-leaves"].lower() in _TRUE
        chunk_size = DEFAULT_CHUNK_SIZE
        if "chunker" in query:
            match = _CHUNKER.match(query["chunker"])
            if not match or not 0 < int(match.group(1)) <= 1024 * 1024:
                raise _ClientError(f"unsupported chunker: {query['chunker']}")
            chunk_size = int(match.group(1))
        if query.get("hash", "sha2-256") != "sha2-256":
            raise _ClientError("only sha2-256 is supported by this dev node")
        only_hash = query.get("only-hash", "false").lower() in _TRUE
        quieter = query.get("quieter", "false").lower() in _TRUE

        files = self._multipart_files()
        if not files:
            raise _ClientError("no file given: send multipart/form-data with a file part")
        lines = []
        for filename, data in files:
            built = build_unixfs_file(
                data, cid_version=int(cid_version), raw_leaves=raw_leaves, chunk_size=chunk_size
            )
            if not only_hash:
                self.node._store.put(built.cid, data)
            lines.append({"Name": filename or built.cid, "Hash": built.cid, "Size": str(built.size)})
        if quieter:
            lines = lines[-1:]
        body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self._send(200, body, "application/json", headers={"X-Chunked-Output": "1"})

    def _multipart_files(self) -> list[tuple[str, bytes]]:
        import multipart  # local import: only the add route needs it

        content_type = self.headers.get("Content-Type", "")
        kind, options = multipart.parse_options_header(content_type)
        if kind not in ("multipart/form-data", "multipart/mixed") or not options.get("boundary"):
            self._read_body()
            raise _ClientError("expected a multipart/form-data request body")
        body = self._read_body()
        import io

        parser = multipart.MultipartParser(
            io.BytesIO(body),
            options["boundary"],
            content_length=len(body),
            memory_limit=2**62,
            disk_limit=2**62,
            partsize_limit=2**62,
            spool_limit=2**62,
            part_limit=1024,
        )
        files = []
        try:
            for part in parser:
                filename = part.filename
                if filename is None and part.content_type == "application/x-directory":
                    continue
                files.append((unquote(filename or ""), part.raw))
        except multipart.MultipartError as exc:
            raise _ClientError(f"malformed multipart body: {exc}") from None
        return files

    def _cat(self, query: dict[str, str]) -> None:
        arg = query.get("arg", "")
        target = arg.removeprefix("/ipfs/").split("/", 1)
        try:
            cid = parse_cid(target[0])
        except ValueError as exc:
            raise _ClientError(str(exc)) from None
        data = self.node._store.get(cid)
        if data is None or len(target) > 1 and target[1]:
            self._rpc_error(500, f"block was not found locally (offline): {arg}")
            return
        self._send(200, data, "text/plain", headers={"X-Stream-Output": "1"})

    def _gateway(self, head_only: bool) -> None:
        url = urlsplit(self.path)
        if not url.path.startswith("/ipfs/"):
            if url.path in ("/", "/health"):
                self._send(200, b"devstack ipfs node\n", head_only=head_only)
            else:
                self._send(404, b"404 page not found\n", head_only=head_only)
            return
        parts = unquote(url.path[len("/ipfs/") :]).split("/", 1)
        try:
            cid = parse_cid(parts[0])
        except ValueError as exc:
            self._send(400, f"failed to resolve /ipfs/{parts[0]}: {exc}\n".encode(), head_only=head_only)
            return
        data = self.node._store.get(cid)
        subpath = parts[1] if len(parts) > 1 else ""
        if data is None or subpath:
            self._send(404, f"ipfs resolve -r /ipfs/{url.path[6:]}: not found\n".encode(), head_only=head_only)
            return
        headers = {
            "Etag": f'"{parts[0]}"',
            "X-Ipfs-Path": url.path,
            "X-Ipfs-Roots": parts[0],
            "Cache-Control": "public, max-age=29030400, immutable",
            "Accept-Ranges": "bytes",
        }
        content_type = _sniff_content_type(data)
        if self.headers.get("If-None-Match") == headers["Etag"]:
            self.send_response(304)
            self.send_header("Etag", headers["Etag"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        match = _RANGE.match(self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            first, last = match.groups()
            if first:
                start, end = int(first), int(last) if last else len(data) - 1
            else:
                start, end = max(0, len(data) - int(last)), len(data) - 1
            end = min(end, len(data) - 1)
            if start > end or start >= len(data):
                headers = {"Content-Range": f"bytes */{len(data)}"}
                self._send(416, b"range not satisfiable\n", headers=headers, head_only=head_only)
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start : end + 1], content_type, headers, head_only)
            return
        self._send(200, data, content_type, headers, head_only)


class _ClientError(Exception):
    pass


class DevIpfsNode(LoopbackHTTPService):
    """An in-process IPFS dev node (Kubo add RPC + path gateway) on one loopback port.

    ``api_url`` is what a Kubo client takes (``http://127.0.0.1:PORT``; the add endpoint is
    ``{api_url}/api/v0/add``) and ``gateway_url`` is the gateway root (``/ipfs/{cid}`` below
    it): both are served by the same port.
    """

    _thread_name = "devstack-ipfs"
    _noun = "the node"

    def __init__(self, store_dir: str | Path | None = None, verbose: bool = False) -> None:
        self._store = _Store(store_dir)
        self.verbose = verbose

    def _handler_class(self) -> type[_Handler]:
        return type("DevIpfsHandler", (_Handler,), {"node": self})

    @property
    def api_url(self) -> str:
        return self.url

    @property
    def gateway_url(self) -> str:
        return self.url

    def add(self, data: bytes, name: str = "file", cid_version: int = 0) -> str:
        """Store ``data`` (no HTTP round trip) and return its Kubo CID."""
        built = build_unixfs_file(data, cid_version=cid_version)
        self._store.put(built.cid, data)
        return built.cid

    def get(self, cid: str) -> bytes | None:
        return self._store.get(parse_cid(cid))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.ipfs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--store-dir", default=None, help="keep the added files in this directory")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    node = DevIpfsNode(store_dir=args.store_dir, verbose=args.verbose)
    node.start(args.host, args.port)
    print(f"IPFS API      {node.api_url}/api/v0/add", flush=True)
    print(f"IPFS gateway  {node.gateway_url}/ipfs/<cid>", flush=True)
    node.serve_until_signalled()


if __name__ == "__main__":
    main()
