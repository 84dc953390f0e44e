"""The Azure Files data plane (the calls azure-storage-file-share makes), over real folders.

``https://127.0.0.1:PORT/<account>/<share>/<path>`` maps to
``<state_dir>/files/<account>/<share>/<path>``: that folder is what a replica sees as
``/mount``. Content headers and metadata, when set, live in a sidecar tree
(``<state_dir>/files-meta``) so the share folder holds only the user's files. Errors are
Storage's XML ``<Error><Code/><Message/></Error>`` with the ``x-ms-error-code`` header.
"""

from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape

from ..config.share_names import account_name_ok, path_problem, share_name_ok
from .httpd import MAX_BODY_BYTES, HttpError, Request, Response, too_large
from .storage_auth import check_shared_key

_CONTENT = {"x-ms-content-type": "content_type", "x-ms-content-md5": "content_md5",
            "x-ms-content-encoding": "content_encoding", "x-ms-content-language": "content_language",
            "x-ms-content-disposition": "content_disposition", "x-ms-cache-control": "cache_control"}
_OUT = {"content_type": "Content-Type", "content_encoding": "Content-Encoding", "content_language": "Content-Language",
        "content_disposition": "Content-Disposition", "cache_control": "Cache-Control"}
_PERMISSION_KEY = "4066528134148476695*1"
CHUNK = 1 << 20


def _iso7(ns: int) -> str:
    dt = _dt.datetime.fromtimestamp(ns // 1_000_000_000, _dt.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(ns % 1_000_000_000) // 100:07d}Z"


def _parse_iso(text: str) -> float | None:
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if not m:
        return None
    base = _dt.datetime.fromisoformat(m.group(1) + (m.group(3) or "Z").replace("Z", "+00:00"))
    return base.timestamp() + (int(m.group(2)) / 10 ** len(m.group(2)) if m.group(2) else 0.0)


def _etag(st: os.stat_result) -> str:
    return f'"0x{hashlib.sha1(f"{st.st_mtime_ns}-{st.st_ctime_ns}-{st.st_size}".encode()).hexdigest()[:15].upper()}"'


def _err(status: int, code: str, message: str) -> HttpError:
    return HttpError(status, code, message)


def _invalid_name() -> HttpError:
    # Azure's own wording, typo included.
    return _err(400, "InvalidResourceName", "The specifed resource name contains invalid characters.")


def error_response(e: HttpError, head: bool = False) -> Response:
    rid = str(uuid.uuid4())
    body = ("" if head else f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{e.code}</Code><Message>'
            f"{escape(e.message)}\nRequestId:{rid}\nTime:{_iso7(time.time_ns())}</Message></Error>").encode()
    headers = {"x-ms-error-code": e.code, "x-ms-request-id": rid, "Content-Type": "application/xml", **e.headers}
    if head:
        headers["Content-Length"] = "0"
    return Response(e.status, body, headers)


MAX_FILE_BYTES = 4 * 1024 ** 4  # Azure Files' largest file: 4 TiB


def _content_length(text: str | None) -> int:
    raw = (text or "0").strip()
    if not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_FILE_BYTES:
        raise _err(400, "InvalidHeaderValue", f"The value for one of the HTTP headers is not in the correct format "
                                              f"(x-ms-content-length: {raw[:40]!r}).")
    return int(raw)


def _range(text: str | None, size: int | None = None) -> tuple[int, int] | None:
    if not text:
        return None
    spec = text.split("=", 1)[-1].strip()
    a, _, b = spec.partition("-")
    try:
        start = int(a)
        end = int(b) if b else (size - 1 if size is not None else start)
    except ValueError:
        raise _err(400, "InvalidHeaderValue", f"The range {text!r} is not valid.") from None
    return start, end



def _clear(f, start: int, stop: int) -> None:
    """Zero ``[start, stop)`` without writing zeros where the file has none to replace: a
    range reaching the end becomes a hole (truncate, then extend), and inside the file only
    the extents that hold data are overwritten (SEEK_DATA/SEEK_HOLE). So clearing a range of
    a sparse 4 TiB file costs what the file actually holds, not the range's size."""
    fd = f.fileno()
    size = os.fstat(fd).st_size
    if stop >= size:
        f.truncate(start)
        f.truncate(size)
        return
    seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
    pos = start
    while pos < stop:
        if seek_data is None or seek_hole is None:  # no sparse-file support: plain zeros
            data, hole = pos, stop
        else:
            try:
                data = os.lseek(fd, pos, seek_data)
            except OSError:  # ENXIO: no data after pos
                return
            if data >= stop:
                return
            hole = os.lseek(fd, data, seek_hole)
        upto = min(hole, stop)
        f.seek(data)
        while data < upto:
            n = min(CHUNK, upto - data)
            f.write(b"\0" * n)
            data += n
        pos = upto


class FilesService:
    def __init__(self, files_root: Path, meta_root: Path, account_keys: Callable[[str], list[str] | None],
                 bearer_ok: Callable[[str], bool], base_url: Callable[[], str],
                 shared_key_allowed: Callable[[str], bool] = lambda account: True) -> None:
        self.root, self.meta_root = files_root, meta_root
        self.account_keys, self.bearer_ok, self.base_url = account_keys, bearer_ok, base_url
        self.shared_key_allowed = shared_key_allowed

    # -- plumbing ----------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        try:
            return self._handle(req)
        except HttpError as e:
            return error_response(e, head=req.method == "HEAD")

    def _handle(self, req: Request) -> Response:
        segs = req.segments
        account = segs[0]
        # Authorisation comes first and reads only headers: no body is read before it passes.
        check_shared_key(req, account, self.account_keys(account), self.bearer_ok)
        if (req.header("Authorization") or "").startswith("SharedKey ") and not self.shared_key_allowed(account):
            raise _err(403, "KeyBasedAuthenticationNotPermitted",
                       "Key based authentication is not permitted on this storage account.")
        if not account_name_ok(account):
            raise _invalid_name()
        if len(segs) == 1:
            if req.method == "GET" and req.query.get("comp") == "list":
                return self._list_shares(account, req)
            raise _err(501, "NotImplemented", f"The local cloud does not serve {req.method} {req.path}?{req.raw_query}")
        share = segs[1]
        if not share_name_ok(share):  # also "..", "%2F..", an absolute path
            raise _invalid_name()
        rel = self._rel(segs[2:])
        restype, comp = req.query.get("restype"), req.query.get("comp")
        share_dir = self.root / account / share
        self._confine(share_dir, share_dir / rel if rel else share_dir)
        if restype == "share":
            return self._share(req, account, share, share_dir, comp)
        if not share_dir.is_dir():
            raise _err(404, "ShareNotFound", "The specified share does not exist.")
        if restype == "directory":
            return self._directory(req, account, share, share_dir, rel, comp)
        if not rel:
            raise _err(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        return self._file(req, account, share, share_dir, rel, comp)

    @staticmethod
    def _rel(segments: list[str]) -> str:
        """The path inside the share. The SDK sends "a%2Fb" for a/b, as Azure accepts; each
        name must then pass Azure Files' rules (no "..", no backslash, no control characters)."""
        parts = [p for seg in segments for p in seg.split("/") if p]
        rel = "/".join(parts)
        if parts and path_problem(rel):
            raise _invalid_name()
        return rel

    def _confine(self, share_dir: Path, target: Path) -> Path:
        """``target`` if it resolves inside the share; a link out of it (a replica can make one) is refused."""
        share_real = os.path.realpath(share_dir)
        root_real = os.path.realpath(self.root)
        if not (share_real + os.sep).startswith(root_real + os.sep):
            raise _err(400, "InvalidUri", "The share's folder leaves the local cloud's files folder.")
        real = os.path.realpath(target)
        if real != share_real and not real.startswith(share_real + os.sep):
            raise _err(400, "InvalidUri", "The path leads out of the share (through a symbolic link).")
        return target

    def _meta_path(self, account: str, share: str, rel: str) -> Path:
        return self.meta_root / account / share / (rel + ".json")

    def _meta(self, account: str, share: str, rel: str) -> dict:
        try:
            return json.loads(self._meta_path(account, share, rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _save_meta(self, account: str, share: str, rel: str, meta: dict) -> None:
        p = self._meta_path(account, share, rel)
        if not meta:
            p.unlink(missing_ok=True)
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(meta), encoding="utf-8")

    @staticmethod
    def _req_metadata(req: Request) -> dict[str, str]:
        return {k[len("x-ms-meta-"):]: v for k, v in req.headers.items() if k.lower().startswith("x-ms-meta-")}

    @staticmethod
    def _common(st: os.stat_result, attrs: str, parent_id: str = "0") -> dict[str, str]:
        return {"ETag": _etag(st), "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
                "x-ms-file-attributes": attrs, "x-ms-file-creation-time": _iso7(st.st_mtime_ns),
                "x-ms-file-last-write-time": _iso7(st.st_mtime_ns), "x-ms-file-change-time": _iso7(st.st_ctime_ns),
                "x-ms-file-permission-key": _PERMISSION_KEY, "x-ms-file-id": str(st.st_ino),
                "x-ms-file-parent-id": parent_id, "x-ms-server-encrypted": "true",
                "x-ms-request-server-encrypted": "true", "x-ms-request-id": str(uuid.uuid4())}

    def _parent_check(self, share_dir: Path, rel: str) -> Path:
        target = share_dir / rel
        if not target.parent.is_dir():
            raise _err(404, "ParentNotFound", "The specified parent path does not exist.")
        return target

    @staticmethod
    def _apply_times(req: Request, target: Path) -> None:
        lwt = req.header("x-ms-file-last-write-time")
        if lwt and lwt.lower() not in ("now", "preserve"):
            ts = _parse_iso(lwt)
            if ts is not None:
                os.utime(target, (ts, ts))

    # -- service and shares -----------------------------------------------------------------
    def _list_shares(self, account: str, req: Request) -> Response:
        folder = self.root / account
        names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        prefix = req.query.get("prefix", "")
        items = "".join(f"<Share><Name>{escape(n)}</Name><Properties><Last-Modified>"
                        f"{email.utils.formatdate((folder / n).stat().st_mtime, usegmt=True)}</Last-Modified>"
                        f"<Etag>{_etag((folder / n).stat())}</Etag><Quota>5120</Quota></Properties></Share>"
                        for n in names if n.startswith(prefix))
        body = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="{self.base_url()}/'
                f'{account}/"><Prefix>{escape(prefix)}</Prefix><Shares>{items}</Shares><NextMarker /></EnumerationResults>')
        return Response(200, body.encode(), {"Content-Type": "application/xml"})

    def _share(self, req: Request, account: str, share: str, share_dir: Path, comp: str | None) -> Response:
        m = req.method
        if m == "PUT" and comp is None:
            if share_dir.is_dir():
                raise _err(409, "ShareAlreadyExists", "The specified share already exists.")
            share_dir.mkdir(parents=True)
            self._save_meta(account, share, "", {"metadata": self._req_metadata(req)} if self._req_metadata(req) else {})
            return Response(201, b"", self._share_headers(share_dir, account, share))
        if not share_dir.is_dir():
            raise _err(404, "ShareNotFound", "The specified share does not exist.")
        if m in ("GET", "HEAD") and comp is None:
            return Response(200, b"", self._share_headers(share_dir, account, share))
        if m == "DELETE" and comp is None:
            shutil.rmtree(share_dir)
            shutil.rmtree(self.meta_root / account / share, ignore_errors=True)
            return Response(202, b"", {"x-ms-request-id": str(uuid.uuid4())})
        if m == "PUT" and comp in ("metadata", "properties"):
            if comp == "metadata":
                self._save_meta(account, share, "", {"metadata": self._req_metadata(req)})
            return Response(200, b"", self._share_headers(share_dir, account, share))
        if m == "GET" and comp == "stats":
            used = sum(f.stat().st_size for f in share_dir.rglob("*") if f.is_file())
            body = f'<?xml version="1.0" encoding="utf-8"?><ShareStats><ShareUsageBytes>{used}</ShareUsageBytes></ShareStats>'
            return Response(200, body.encode(), {"Content-Type": "application/xml"})
        raise _err(501, "NotImplemented", f"The local cloud does not serve {m} {req.path}?{req.raw_query}")

    def _share_headers(self, share_dir: Path, account: str, share: str) -> dict[str, str]:
        st = share_dir.stat()
        h = {"ETag": _etag(st), "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
             "x-ms-share-quota": "5120", "x-ms-access-tier": "TransactionOptimized", "x-ms-request-id": str(uuid.uuid4())}
        for k, v in self._meta(account, share, "").get("metadata", {}).items():
            h[f"x-ms-meta-{k}"] = v
        return h

    # -- directories ------------------------------------------------------------------------
    def _directory(self, req: Request, account: str, share: str, share_dir: Path, rel: str,
                   comp: str | None) -> Response:
        m = req.method
        target = share_dir / rel
        if m == "PUT" and comp is None:
            if not rel:
                raise _err(409, "ResourceAlreadyExists", "The specified resource already exists.")
            self._parent_check(share_dir, rel)
            if target.exists():
                raise _err(409, "ResourceAlreadyExists", "The specified resource already exists.")
            target.mkdir()
            self._apply_times(req, target)
            return Response(201, b"", self._common(target.stat(), "Directory"))
        if m == "PUT" and comp in ("metadata", "properties"):
            if not target.is_dir():
                raise _err(404, "ResourceNotFound", "The specified resource does not exist.")
            return Response(200, b"", self._common(target.stat(), "Directory"))
        if m == "GET" and comp == "list":
            if not target.is_dir():
                raise _err(404, "ResourceNotFound", "The specified resource does not exist.")
            return self._list(req, account, share, target, rel)
        if m in ("GET", "HEAD") and comp is None:
            if not target.is_dir():
                if rel and not target.parent.is_dir():
                    raise _err(404, "ParentNotFound", "The specified parent path does not exist.")
                raise _err(404, "ResourceNotFound", "The specified resource does not exist.")
            return Response(200, b"", self._common(target.stat(), "Directory"))
        if m == "DELETE" and comp is None:
            if not rel:
                raise _err(400, "InvalidUri", "The root directory of a share cannot be deleted.")
            if not target.is_dir():
                self._parent_check(share_dir, rel)
                raise _err(404, "ResourceNotFound", "The specified resource does not exist.")
            if any(target.iterdir()):
                raise _err(409, "DirectoryNotEmpty", "The specified directory is not empty.")
            target.rmdir()
            shutil.rmtree(self.meta_root / account / share / rel, ignore_errors=True)
            return Response(202, b"", {"x-ms-request-id": str(uuid.uuid4())})
        raise _err(501, "NotImplemented", f"The local cloud does not serve {m} {req.path}?{req.raw_query}")

    def _list(self, req: Request, account: str, share: str, folder: Path, rel: str) -> Response:
        prefix = req.query.get("prefix", "")
        marker = req.query.get("marker", "")
        try:
            maxresults = int(req.query.get("maxresults") or 5000)
        except ValueError:
            raise _err(400, "InvalidQueryParameterValue", "The value of maxresults is not valid.") from None
        if not 1 <= maxresults <= 5000:
            raise _err(400, "OutOfRangeQueryParameterValue", "maxresults must be between 1 and 5000.")
        share_real = os.path.realpath(self.root / account / share) + os.sep
        # a link out of the share (a replica can make one) is not listed: its stat() would leak
        entries = sorted((e for e in os.scandir(folder) if e.name.startswith(prefix)
                          and (not e.is_symlink() or os.path.realpath(e.path).startswith(share_real))),
                         key=lambda e: e.name)
        if marker:
            entries = [e for e in entries if e.name >= marker]
        page, rest = entries[:maxresults], entries[maxresults:]
        parts = []
        for e in page:
            st = e.stat()
            times = (f"<CreationTime>{_iso7(st.st_mtime_ns)}</CreationTime><LastAccessTime>{_iso7(st.st_atime_ns)}"
                     f"</LastAccessTime><LastWriteTime>{_iso7(st.st_mtime_ns)}</LastWriteTime><ChangeTime>"
                     f"{_iso7(st.st_ctime_ns)}</ChangeTime><Last-Modified>{email.utils.formatdate(st.st_mtime, usegmt=True)}"
                     f"</Last-Modified><Etag>{_etag(st)}</Etag>")
            name = escape(e.name)
            if e.is_dir():
                parts.append(f"<Directory><FileId>{st.st_ino}</FileId><Name>{name}</Name><Properties>{times}"
                             f"</Properties><Attributes>Directory</Attributes><PermissionKey>{_PERMISSION_KEY}"
                             "</PermissionKey></Directory>")
            else:
                parts.append(f"<File><FileId>{st.st_ino}</FileId><Name>{name}</Name><Properties><Content-Length>"
                             f"{st.st_size}</Content-Length>{times}</Properties><Attributes>Archive</Attributes>"
                             f"<PermissionKey>{_PERMISSION_KEY}</PermissionKey></File>")
        next_marker = escape(rest[0].name) if rest else ""
        body = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="{self.base_url()}/{account}/" '
                f'ShareName="{escape(share)}" DirectoryPath="{escape(rel)}"><Prefix>{escape(prefix)}</Prefix>'
                f"<Marker>{escape(marker)}</Marker><MaxResults>{maxresults}</MaxResults><DirectoryId>"
                f"{folder.stat().st_ino}</DirectoryId><Entries>{''.join(parts)}</Entries><NextMarker>{next_marker}"
                "</NextMarker></EnumerationResults>")
        return Response(200, body.encode("utf-8"), {"Content-Type": "application/xml", "x-ms-request-id": str(uuid.uuid4())})

    # -- files ------------------------------------------------------------------------------
    def _file_headers(self, target: Path, st: os.stat_result, meta: dict) -> dict[str, str]:
        h = self._common(st, "Archive", str(target.parent.stat().st_ino))
        h.update({"x-ms-type": "File", "Accept-Ranges": "bytes", "x-ms-lease-state": "available",
                  "x-ms-lease-status": "unlocked", "Content-Type": meta.get("content_type") or "application/octet-stream"})
        for k, header in _OUT.items():
            if meta.get(k) and k != "content_type":
                h[header] = meta[k]
        for k, v in (meta.get("metadata") or {}).items():
            h[f"x-ms-meta-{k}"] = v
        return h

    def _existing_file(self, share_dir: Path, rel: str) -> tuple[Path, os.stat_result]:
        target = share_dir / rel
        if not target.is_file():
            if not target.parent.is_dir():
                raise _err(404, "ParentNotFound", "The specified parent path does not exist.")
            raise _err(404, "ResourceNotFound", "The specified resource does not exist.")
        return target, target.stat()

    def _file(self, req: Request, account: str, share: str, share_dir: Path, rel: str, comp: str | None) -> Response:
        m = req.method
        if m == "PUT" and comp is None:
            if req.header("x-ms-copy-source"):
                raise _err(501, "NotImplemented", "Copying files is not supported by the local cloud.")
            target = self._parent_check(share_dir, rel)
            if target.is_dir():
                raise _err(409, "ResourceTypeMismatch", "The specified resource type does not match the type of the "
                                                        "resource in the URI (a directory exists with that name).")
            size = _content_length(req.header("x-ms-content-length"))
            with open(target, "wb") as f:
                f.truncate(size)
            meta = {v: req.header(k) for k, v in _CONTENT.items() if req.header(k)}
            if self._req_metadata(req):
                meta["metadata"] = self._req_metadata(req)
            self._save_meta(account, share, rel, meta)
            self._apply_times(req, target)
            return Response(201, b"", self._common(target.stat(), "Archive"))
        target, st = self._existing_file(share_dir, rel)
        if m == "PUT" and comp == "range":
            return self._put_range(req, target, st)
        if m == "PUT" and comp in ("properties", "metadata"):
            meta = self._meta(account, share, rel)
            if comp == "metadata":
                meta["metadata"] = self._req_metadata(req)
            else:
                for k, v in _CONTENT.items():
                    meta.pop(v, None)
                    if req.header(k):
                        meta[v] = req.header(k)
                if req.header("x-ms-content-length"):
                    os.truncate(target, _content_length(req.header("x-ms-content-length")))
                self._apply_times(req, target)
            self._save_meta(account, share, rel, meta)
            return Response(200, b"", self._common(target.stat(), "Archive"))
        if m in ("GET", "HEAD") and comp is None:
            return self._download(req, target, st, self._meta(account, share, rel))
        if m == "DELETE" and comp is None:
            target.unlink()
            self._meta_path(account, share, rel).unlink(missing_ok=True)
            return Response(202, b"", {"x-ms-request-id": str(uuid.uuid4())})
        raise _err(501, "NotImplemented", f"The local cloud does not serve {m} {req.path}?{req.raw_query}")

    def _put_range(self, req: Request, target: Path, st: os.stat_result) -> Response:
        rng = _range(req.header("x-ms-range") or req.header("Range"))
        if rng is None:
            raise _err(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-range.")
        start, end = rng
        write = (req.header("x-ms-write") or "update").lower()
        if write != "clear" and end - start + 1 > MAX_BODY_BYTES:  # Azure's Put Range limit, before reading
            raise too_large()
        if start > end or end >= st.st_size:
            raise _err(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
        declared = req.header("Content-Length")
        if write != "clear" and declared and declared.isdigit() and int(declared) != end - start + 1:
            raise _err(400, "InvalidHeaderValue", f"The range is {end - start + 1} bytes but the body has {declared}.")
        with open(target, "r+b") as f:
            f.seek(start)
            if write == "clear":
                _clear(f, start, end + 1)
            else:
                if len(req.body) != end - start + 1:
                    raise _err(400, "InvalidHeaderValue", f"The range is {end - start + 1} bytes but the body has {len(req.body)}.")
                f.write(req.body)
        h = self._common(target.stat(), "Archive")
        h["Content-MD5"] = base64.b64encode(hashlib.md5(req.body).digest()).decode()
        return Response(201, b"", h)

    def _download(self, req: Request, target: Path, st: os.stat_result, meta: dict) -> Response:
        h = self._file_headers(target, st, meta)
        size = st.st_size
        rng = _range(req.header("x-ms-range") or req.header("Range"), size)
        if rng is None:
            start, end, status = 0, size - 1, 200
            if meta.get("content_md5"):
                h["Content-MD5"] = meta["content_md5"]
        else:
            start, end = rng
            if size == 0 or start >= size or start > end:
                raise HttpError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.",
                                {"Content-Range": f"bytes */{size}"})
            end = min(end, size - 1)
            status = 206
            h["Content-Range"] = f"bytes {start}-{end}/{size}"
            if meta.get("content_md5"):
                h["x-ms-content-md5"] = meta["content_md5"]
        length = max(end - start + 1, 0)
        h["Content-Length"] = str(length)
        if req.method == "HEAD":
            h["Content-Length"] = str(size)
            h.pop("Content-Range", None)
            return Response(200, b"", h)

        def stream_file(write, alive) -> None:
            with open(target, "rb") as f:
                f.seek(start)
                left = length
                while left > 0:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        break
                    write(chunk)
                    left -= len(chunk)
        if length <= 8 * CHUNK:
            with open(target, "rb") as f:
                f.seek(start)
                return Response(status, f.read(length), h)
        return Response(status, b"", h, stream=stream_file)
