"""Streaming multipart/form-data upload, parsed the way pve-http-server does.

PVE's parser (PVE::APIServer::AnyEvent::file_upload_multipart) is not a
general multipart parser:
  * it extracts the form fields `content`, then `checksum-algorithm`, then
    `checksum` from the start of the body (other orders or other fields make
    it fail: "wrong Content-Disposition ... expected 'form-data'");
  * the next part must be the file, `Content-Disposition: form-data;
    name="filename"; filename="..."` as its first header line; the stored
    name comes from the filename="..." attribute;
  * the file data runs up to the *closing* delimiter `--BOUNDARY--`, so no
    part may follow the file.
The file part is spooled to disk in chunks while it is hashed; all-zero
chunks become holes, so sparse test images stay sparse. Memory use is
bounded by the chunk size no matter how large the upload is.
"""

import hashlib
import os
import re

from .perlish import trim

CHUNK = 1 << 20
_ZERO = bytes(CHUNK)
ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
MAX_PREFIX = 64 << 10


class UploadFailed(Exception):
    """The parser gave up; pve-http-server answers 501 with this message."""


class UploadedFile:
    """The spooled file part (PVE's /var/tmp/pveupload-<md5>)."""

    counter = 0

    def __init__(self, tmp_dir):
        UploadedFile.counter += 1
        name = "pveupload-" + hashlib.md5(f"{UploadedFile.counter}{os.getpid()}{id(self)}".encode()).hexdigest()
        self.path = os.path.join(tmp_dir, name)
        self.pve_path = f"/var/tmp/{name}"
        self.size = 0
        self.checksums = {}

    def discard(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class MultipartUpload:
    def __init__(self, boundary, params, upload):
        self.boundary = re.escape(boundary.encode())
        self.close_delimiter = b"--" + boundary.encode() + b"--"
        self.keep = len(boundary) + 8  # PVE's boundlen: \r\n--BOUNDARY--\r\n
        self.params = params
        self.upload = upload
        self.phase = 0
        self.buffer = bytearray()
        self.handle = None
        self.hashers = {}

    # --- driving ------------------------------------------------------------

    def feed(self, chunk):
        if self.phase in (-1, 100):
            return
        self.buffer += chunk
        if self.phase == 0:
            self._skip_preamble()
        if self.phase == 1:
            self._parse_fields()
        if self.phase == 2:
            self._spool()

    def finish(self):
        """After the whole body was read: the upload must have reached its end marker."""
        if self.handle:
            self.handle.truncate(self.upload.size)
            self.handle.close()
            self.handle = None
        if self.phase != 100:
            self.upload.discard()
            raise UploadFailed("upload failed")
        self.upload.checksums = {name: h.hexdigest() for name, h in self.hashers.items()}

    def abort(self):
        if self.handle:
            self.handle.close()
            self.handle = None
        self.upload.discard()

    # --- phases ------------------------------------------------------------------

    def _skip_preamble(self):
        match = re.search(b"--" + self.boundary + rb"\r?\n", self.buffer)
        if match:
            del self.buffer[:match.start()]
            self.phase = 1
        elif len(self.buffer) > MAX_PREFIX:
            del self.buffer[:-self.keep]

    def _parse_fields(self):
        # PVE runs these regexes on whatever it has buffered; wait until the
        # file part's header is complete so the result does not depend on how
        # the client's writes were split into TCP segments.
        if not self._file_header_complete():
            if len(self.buffer) > MAX_PREFIX:
                self.phase = -1
            return
        for name in ("content", "checksum-algorithm", "checksum"):
            self._extract_field(name)
        delim = b"--" + self.boundary + rb"\r?\n"
        match = re.match(delim + rb'Content-Disposition: (.*?); name="(.*?)"; filename="([^"]+)"\r?\n',
                         self.buffer, re.S)
        if not match:
            self.phase = -1
            return
        _assert_form_data(match.group(1))
        if match.group(2) != b"filename":
            raise UploadFailed(f"wrong field name '{match.group(2).decode(errors='replace')}' "
                               "for file upload, expected 'filename'")
        self.params["filename"] = trim(match.group(3).decode("utf-8", errors="replace"))
        del self.buffer[:match.end()]
        self._remove_part_headers()
        self._start_file()

    def _file_header_complete(self):
        header = re.search(rb'filename="[^"]+"\r?\n', self.buffer)
        if not header or len(self.buffer) - header.end() < 2:
            return False
        if re.match(rb"\r?\n", self.buffer[header.end():header.end() + 2]):
            # PVE strips "everything up to the next blank line" after the
            # Content-Disposition line, so without another header line it eats
            # the start of the file (or leaves a stray CRLF in it). Refuse loudly.
            raise UploadFailed("pve-sim: the file part has no header line after Content-Disposition; PVE "
                               "would corrupt the file's start - send 'Content-Type: application/octet-stream'")
        return re.search(rb"\r?\n\r?\n", self.buffer[header.end():]) is not None

    def _extract_field(self, name):
        delim = b"--" + self.boundary + rb"\r?\n"
        pattern = b"^" + delim + rb".*?Content-Disposition: (.*?); name=\"" + re.escape(name.encode()) \
            + b'"(.*?' + delim + b")"
        match = re.match(pattern, self.buffer, re.S)
        if not match:
            return
        _assert_form_data(match.group(1))
        rest = bytes(match.group(2))
        del self.buffer[:match.end()]
        self.buffer[:0] = rest
        self._remove_part_headers()
        value = re.match(b"^(.*?)(" + delim + b")", self.buffer, re.S)
        if value:
            self.params[name] = trim(value.group(1).decode("utf-8", errors="replace"))
            del self.buffer[:value.start(2)]

    def _remove_part_headers(self):
        match = re.match(rb"^.*?(?:\r?\n){2}", self.buffer, re.S)
        if match:
            del self.buffer[:match.end()]

    def _start_file(self):
        self.handle = open(self.upload.path, "wb")
        self.hashers = {"sha256": hashlib.sha256()}
        algorithm = self.params.get("checksum-algorithm")
        if algorithm in ALGORITHMS and algorithm not in self.hashers:
            self.hashers[algorithm] = hashlib.new(algorithm)
        self.phase = 2

    def _spool(self):
        end = self.buffer.find(self.close_delimiter)
        if end >= 0:
            data = memoryview(self.buffer)[:end]
            if data[-2:] == b"\r\n":
                data = data[:-2]
            elif data[-1:] == b"\n":
                data = data[:-1]
            self._write(data)
            data.release()
            self.buffer = bytearray()
            self.phase = 100
        elif len(self.buffer) > self.keep:
            cut = len(self.buffer) - self.keep
            view = memoryview(self.buffer)[:cut]
            self._write(view)
            view.release()
            del self.buffer[:cut]

    def _write(self, data):
        for offset in range(0, len(data), CHUNK):
            piece = data[offset:offset + CHUNK]
            for hasher in self.hashers.values():
                hasher.update(piece)
            if _is_zero(piece):
                self.handle.seek(len(piece), os.SEEK_CUR)
            else:
                self.handle.write(piece)
            self.upload.size += len(piece)


def _is_zero(piece):
    if len(piece) == CHUNK:
        return piece == _ZERO
    return bytes(piece) == bytes(len(piece))


def _assert_form_data(disposition):
    if disposition != b"form-data":
        text = disposition.decode("utf-8", errors="replace")
        raise UploadFailed(f"wrong Content-Disposition '{text}' in multipart, expected 'form-data'")
