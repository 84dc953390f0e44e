"""The Azure Files data plane through azure-storage-file-share, over real folders."""

from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.core.exceptions import ClientAuthenticationError, ResourceExistsError, ResourceNotFoundError

from tests.fixtures_local import make_share


@pytest.fixture
def share(local_cloud, local_factory):
    return make_share(local_factory)


def _code(exc: pytest.ExceptionInfo) -> str:
    code = exc.value.error_code
    return str(getattr(code, "value", code))


def test_round_trip_nested_dirs_big_files_list_delete(local_cloud, share):
    share.create_directory("a")
    share.get_directory_client("a").create_subdirectory("b")
    share.create_directory("a/b/c")  # sent as a%2Fb%2Fc
    fc = share.get_file_client("a/b/c/hello.txt")
    fc.upload_file(b"hello world", metadata={"sha256": "abc"})
    assert fc.download_file().readall() == b"hello world"
    props = fc.get_file_properties()
    assert (props.size, props.metadata) == (11, {"sha256": "abc"})
    big = os.urandom(9 * 1024 * 1024 + 123)  # three put-range calls of at most 4 MiB
    share.get_file_client("a/big.bin").upload_file(big)
    assert share.get_file_client("a/big.bin").download_file().readall() == big
    assert share.get_file_client("a/big.bin").download_file(offset=5, length=10).readall() == big[5:15]
    share.get_file_client("a/empty.txt").upload_file(b"")
    assert share.get_file_client("a/empty.txt").download_file().readall() == b""
    listing = {(e["name"], e["is_directory"], e.get("size")) for e in share.get_directory_client("a").list_directories_and_files()}
    assert listing == {("b", True, None), ("big.bin", False, len(big)), ("empty.txt", False, 0)}
    assert [e["name"] for e in share.list_directories_and_files()] == ["a"]
    # the share is a real folder: what a replica sees at /mount
    assert (local_cloud.files_root / "acct1" / "share1" / "a" / "b" / "c" / "hello.txt").read_bytes() == b"hello world"
    assert fc.exists() and share.get_directory_client("a/b").exists()
    assert not share.get_file_client("a/nope").exists() and not share.get_directory_client("zz").exists()
    fc.delete_file()
    assert not fc.exists()
    share.get_directory_client("a/b/c").delete_directory()
    assert not share.get_directory_client("a/b/c").exists()


def test_errors_carry_storage_codes(local_factory, share):
    with pytest.raises(ResourceExistsError) as e:
        share.create_share()
    assert _code(e) == "ShareAlreadyExists"
    share.create_directory("a")
    with pytest.raises(ResourceExistsError) as e:
        share.create_directory("a")
    assert _code(e) == "ResourceAlreadyExists"
    with pytest.raises(ResourceNotFoundError) as e:
        share.create_directory("x/y")
    assert _code(e) == "ParentNotFound"
    with pytest.raises(ResourceNotFoundError) as e:
        share.get_file_client("a/missing").download_file()
    assert _code(e) == "ResourceNotFound"
    share.get_file_client("a/f").upload_file(b"x")
    with pytest.raises(ResourceExistsError) as e:
        share.get_directory_client("a").delete_directory()
    assert _code(e) == "DirectoryNotEmpty"
    with pytest.raises(ResourceNotFoundError) as e:
        local_factory.share("acct1", "noshare", share.key).get_share_properties()
    assert _code(e) == "ShareNotFound"


def test_a_wrong_key_or_no_key_is_rejected(local_cloud, local_factory, share):
    bad = local_factory.share("acct1", "share1", "AAAA" + share.key[4:])
    with pytest.raises(ClientAuthenticationError) as e:
        list(bad.list_directories_and_files())
    assert _code(e) == "AuthenticationFailed"
    req = urllib.request.Request(f"{local_cloud.url}/acct1/share1?restype=directory&comp=list")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, context=ssl.create_default_context(cafile=local_cloud.ca_bundle), timeout=5)
    assert err.value.code == 403 and err.value.headers["x-ms-error-code"] == "AuthenticationFailed"
    unknown = local_factory.share("nosuchacct", "share1", share.key)
    with pytest.raises(ClientAuthenticationError):
        unknown.create_share()


def test_five_hundred_files_from_eight_threads_all_land(share, tmp_path):
    share.create_directory("up")
    for d in range(10):
        share.create_directory(f"up/d{d}")
    payload = os.urandom(2000)

    def upload(i: int) -> None:
        share.get_file_client(f"up/d{i % 10}/f{i}.txt").upload_file(payload)

    # Speed is benchmarks/deploy_sync.py's business; this proves concurrent uploads are all kept.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, range(500)))
    assert sum(1 for _ in share.get_directory_client("up/d3").list_directories_and_files()) == 50
    assert all(share.get_file_client(f"up/d{i % 10}/f{i}.txt").get_file_properties().size == 2000
               for i in range(0, 500, 37))


def test_clear_range_costs_what_the_file_holds_not_the_ranges_size(local_cloud, share):
    """Clear Range wrote real zeros over the whole range (256 MB in 0.1 s, up to 4 TiB): a
    range reaching the end becomes a hole, and inside the file only data is overwritten."""
    mib = 1024 * 1024
    fc = share.get_file_client("sparse.bin")
    fc.create_file(size=64 * mib)
    data = os.urandom(4 * mib)
    fc.upload_range(data, offset=0, length=len(data))
    fc.upload_range(data, offset=60 * mib, length=len(data))
    path = local_cloud.files_root / "acct1" / "share1" / "sparse.bin"

    fc.clear_range(offset=mib, length=62 * mib)  # inside: only the two data extents are touched
    assert os.stat(path).st_blocks * 512 <= 9 * mib  # not the 62 MiB of the range
    assert fc.download_file(offset=0, length=mib).readall() == data[:mib]
    assert fc.download_file(offset=mib, length=3 * mib).readall() == b"\0" * (3 * mib)
    assert fc.download_file(offset=63 * mib, length=mib).readall() == data[3 * mib:]

    fc.clear_range(offset=0, length=64 * mib)  # to the end: a hole
    assert os.stat(path).st_size == 64 * mib and os.stat(path).st_blocks * 512 <= mib
    assert fc.download_file(offset=63 * mib, length=mib).readall() == b"\0" * mib

    big = share.get_file_client("huge.bin")  # the largest file Azure allows, cleared whole
    big.create_file(size=4 * 1024 ** 4)
    big.upload_range(b"x" * 512, offset=1024 ** 4, length=512)
    big.clear_range(offset=0, length=4 * 1024 ** 4 - 512)
    assert big.download_file(offset=1024 ** 4, length=512).readall() == b"\0" * 512
    assert os.stat(path.parent / "huge.bin").st_blocks * 512 <= mib
