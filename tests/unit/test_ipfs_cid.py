"""The dev IPFS node must give the CIDs Kubo's `ipfs add` gives (default settings)."""

import pytest

from devstack.ipfs import build_unixfs_file, cid_for_bytes, cid_text, content_key, parse_cid

KIB = 1024
CHUNK = 256 * KIB


def pattern(size: int) -> bytes:
    """Byte i is i % 251: every 256 KiB chunk differs from its neighbours."""
    block = bytes(range(251))
    return (block * (size // 251 + 1))[:size]


# Published by Kubo itself (docs, sharness fixtures): `echo ... | ipfs add [--cid-version 1]`.
KUBO_VECTORS = [
    (b"", 0, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
    (b"", 1, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
    (b"hello world\n", 0, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"),
    (b"hello world\n", 1, "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"),
    (b"hello\n", 0, "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN"),
    (b"hello\n", 1, "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"),
]


@pytest.mark.parametrize(("data", "version", "expected"), KUBO_VECTORS)
def test_kubo_published_cids(data, version, expected):
    assert cid_for_bytes(data, cid_version=version) == expected


# Cross-checked with an independent importer (ipfs-unixfs-importer, profile "unixfs-v0-2015",
# i.e. Kubo's defaults: 256 KiB fixed chunks, balanced layout of at most 174 links; CIDv0 with
# dag-pb leaves, and CIDv1 with raw leaves).
PATTERN_VECTORS = [
    # size, chunk size, CIDv0, CIDv1 (raw leaves)
    (12, CHUNK, "QmebaVP2bwpoZK9XEV6QWrjmHXodxS3fdL1SypEYDb8vGx",
     "bafkreih76ou3zxjxgy6xapa4j6kreuzwqykxq2hq2tywudyc2dy5ujhzui"),
    (CHUNK - 1, CHUNK, "QmRfm83kqBpGJbGxJg1en9hpwq8eNnP4E2Dj8K73F4m983",
     "bafkreiagptg6ztonoojy4wflk3wwusl5xt4vcy6uult4wa7oemsjtxhjsu"),
    (CHUNK, CHUNK, "QmeqfRyS3vkku7n6krqC3DgGMex3x2sCpSeKMDmrG13QQq",
     "bafkreibruh455iawsviqslif5c7uurdcfdemh22mtnytyzvnzn75kpejxy"),
    (CHUNK + 1, CHUNK, "QmUSjGawaz4ptvREcMKSMJneWCa5j8dAz2wSAAvHtW2rnB",
     "bafybeiexg2oqkfnj56l7fcmawswqbijt5shq4b5rg6a546uwpkqqzwjioi"),
    (4 * CHUNK, CHUNK, "QmXgkY4miMKJBrg8YYke4xw6C2n8WNsUc1GXLhN84k4QM3",
     "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau"),
    # exactly one full level of 174 leaves, then one leaf more (a second level appears)
    (174 * CHUNK, CHUNK, "QmXCym15aFeWjAWyPFaAgwVmkuKB7EBsV77Skt54KmxChF",
     "bafybeihpe5snhzneq7xs53nivmsopto5lrogo3wjynauqylqeym5a3irbm"),
    (174 * CHUNK + 1, CHUNK, "QmTedsTekQQkgACJXb1sPZSW8bLdS9LPMrT7L4YdjNRd4n",
     "bafybeib4y7ghw2rq7bracc4xwtxrbzo7cfvagdpte2tmrkgwl6dyard3cm"),
    # a three-level tree (174 * 174 leaves and one more) with a 1 KiB chunker
    (174 * 174 * KIB + 3, KIB, "QmUc5PNnpma74CvbLoiQJP6M63zuU2TGGSKRDccBeoWuRi",
     "bafybeidaeiix2mdwymsaxm6dw7j3yyugbswoijhic7pd4jugljtkdcuhga"),
    (5000, 100, "QmWLsrDhUwJ7k5rvhJZ4pE4ckYX64gBoT44nRWB1Z2d4Go",
     "bafybeicsyfvpf4khroms3jz6mhkyvxpapstusnharzuucmw6dgl5y4aquq"),
]


@pytest.mark.parametrize(("size", "chunk", "cid_v0", "cid_v1"), PATTERN_VECTORS)
def test_balanced_dag_matches_reference_importer(size, chunk, cid_v0, cid_v1):
    data = pattern(size)
    assert build_unixfs_file(data, chunk_size=chunk).cid == cid_v0
    assert build_unixfs_file(data, cid_version=1, chunk_size=chunk).cid == cid_v1


def test_add_reports_the_cumulative_dag_size_like_kubo():
    # the single dag-pb block of "hello world\n" is 20 bytes; a raw leaf is the file itself
    assert build_unixfs_file(b"hello world\n").size == 20
    assert build_unixfs_file(b"hello world\n", cid_version=1).size == 12
    big = build_unixfs_file(pattern(4 * CHUNK))
    assert big.file_size == 4 * CHUNK and big.blocks == 4
    assert big.size > 4 * CHUNK


def test_parse_cid_round_trips_and_relates_versions():
    v0 = parse_cid("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
    # the same dag-pb block in CIDv1 base32 (what `ipfs cid base32` prints)
    v1 = parse_cid("bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby")
    assert content_key(v0) == content_key(v1)
    assert cid_text(v0) == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    assert cid_text(v1) == "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"
    raw = parse_cid("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")
    assert raw.codec == "raw" and raw.version == 1


@pytest.mark.parametrize(
    "text",
    ["", "Qm", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5", "hello", "bafy!!", "x" * 46, "../etc/passwd"],
)
def test_parse_cid_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_cid(text)


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        build_unixfs_file(b"x", cid_version=2)
    with pytest.raises(ValueError):
        build_unixfs_file(b"x", chunk_size=0)
