"""A multipart upload whose CompleteMultipartUpload answer is lost (issue 12, fault 5): the store
completed the object, botocore retries the Complete and gets NoSuchUpload. The put must succeed when
the object is whole, and stay a TransientError when it is not.

The loss is real: a loopback HTTP proxy in front of moto forwards the Complete, reads moto's answer
and closes the client's connection without sending it; botocore, s3transfer and boto3 then do what
they do against S3. One thing moto does differently from S3 and Wasabi: it answers a repeated Complete
of a completed upload with 200 (its "idempotent" shortcut), where they answer 404 ``NoSuchUpload``
("the upload may have been aborted or completed", S3 API reference). The proxy answers that repeat
as S3 does, with S3's error document.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import boto3
import pytest

from boundaries.errors import TransientError
from boundaries.storage.s3 import S3Store

PART = 5 * 1024 * 1024  # S3's smallest part
_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}


NO_SUCH_UPLOAD = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified'
                  b' upload does not exist. The upload ID may be invalid, or the upload may have been aborted or'
                  b' completed.</Message><RequestId>LOSSYPROXY</RequestId></Error>')


class LossyProxy:
    """Forwards every request to ``upstream``; drops the answer of the first ``drop`` CompleteMultipartUpload
    requests (``POST …?uploadId=…``) and answers a repeated Complete of a completed upload id with S3's
    404 NoSuchUpload. ``on_drop(path)`` runs after a dropped one was completed upstream."""

    def __init__(self, upstream: str, drop: int = 1, on_drop=None):
        up = urlsplit(upstream)
        self.completes, self.dropped = 0, 0
        completed: set[str] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue answered by the server class

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                is_complete = self.command == "POST" and "uploadId=" in self.path
                if is_complete and self.path in completed:  # S3: the upload id is gone once completed
                    proxy.completes += 1
                    self.send_response_only(404, "Not Found")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(NO_SUCH_UPLOAD)))
                    self.end_headers()
                    self.wfile.write(NO_SUCH_UPLOAD)
                    return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if is_complete:
                    proxy.completes += 1
                    if resp.status == 200:
                        completed.add(self.path)
                    if proxy.dropped < drop:
                        proxy.dropped += 1
                        if on_drop:
                            on_drop(self.path)
                        self.close_connection = True  # the answer is lost: close without a byte
                        return
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() not in ("content-length", "date", "server"):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="lossy-proxy", daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy_factory(moto_s3):
    proxies = []

    def make(**kw):
        p = LossyProxy(moto_s3.endpoint_url, **kw)
        proxies.append(p)
        return p
    yield make
    for p in proxies:
        p.close()


def _data() -> bytes:
    return bytes(range(256)) * (PART // 256) + b"tail" * 1000  # 2 parts


def test_a_lost_complete_answer_of_a_whole_object_is_a_success(proxy_factory, s3_bucket):
    # given: a store whose first CompleteMultipartUpload answer is lost on the way back
    proxy = proxy_factory(drop=1)
    store = S3Store(s3_bucket, endpoint_url=proxy.url, multipart_threshold_bytes=PART)
    data = _data()

    # when: a multipart put (the Complete is done, its answer dropped, botocore's retry gets NoSuchUpload)
    store.put_bytes("results/run.db", data)

    # then: the put succeeded and the object is whole
    assert proxy.dropped == 1 and proxy.completes == 2
    assert store.get_bytes("results/run.db") == data


def test_a_lost_complete_answer_of_an_object_gone_stays_transient(proxy_factory, moto_s3, s3_bucket):
    # given: the completed object is deleted before the retry (it is not there to confirm)
    direct = boto3.client("s3", endpoint_url=moto_s3.endpoint_url, region_name="us-east-1")
    proxy = proxy_factory(drop=1, on_drop=lambda path: direct.delete_object(Bucket=s3_bucket, Key="results/run.db"))
    store = S3Store(s3_bucket, endpoint_url=proxy.url, multipart_threshold_bytes=PART)

    # when / then: NoSuchUpload with no whole object is retried later, not reported as written
    with pytest.raises(TransientError, match="NoSuchUpload"):
        store.put_bytes("results/run.db", _data())
    assert proxy.completes == 2
