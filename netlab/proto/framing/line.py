"""The ``line`` framing: newline-delimited text a person can drive with nc or socat.

Client to server: one command line per ``\\n`` (a trailing ``\\r`` is dropped,
blank lines are ignored). Server to client, one reply per request::

    1 <text>        a stdout line (the original ended with a newline)
    2 <text>        a stderr line
    1-<text>        a stdout piece with no newline after it: the last piece,
                    or part of a line longer than max_frame (2- for stderr)
    = exit 0 stdout=6 stderr=0 ms=0.021 sha256=<64 hex>   end of reply
    = signal 9 stdout=0 stderr=0 ms=1000.2 sha256=<hex> command_timeout_ms=1000 timeout
    ! command-refused 'rm' is not allowed ...              failed request

The first two characters of every reply line say what it is, so output that
itself contains ``=`` or ``!`` is never mistaken for the end of a reply. Output
bytes travel unchanged (not necessarily UTF-8); chunk boundaries do not.
A ``!`` line that arrives while no request is outstanding is a connection-level
error (request id 0); newlines inside an error message are sent as spaces.
Cannot carry: authentication, per-request timeouts.
"""

from __future__ import annotations

from netlab.errors import LocalProtocolError, RemoteProtocolError
from netlab.proto.framing.base import DEFAULT_MAX_FRAME, Capabilities, Framer, Role
from netlab.proto.messages import (
    END_OF_STREAM,
    NEED_DATA,
    STDERR,
    STDOUT,
    Error,
    ErrorCode,
    Exit,
    Message,
    Output,
    Request,
    _Sentinel,
)

_STREAM_PREFIX = {STDOUT: b"1", STDERR: b"2"}
_ERROR_CODES = {code.label: code for code in ErrorCode}


class LineFramer(Framer):
    """Newline-delimited commands and prefixed reply lines."""

    name = "line"
    capabilities = Capabilities(
        message_boundaries=True,
        stderr=True,
        exit_status=True,
        binary_safe=False,
        authentication=False,
        request_timeout=False,
    )

    def __init__(self, role: Role, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(role, max_frame)
        self._buffer = bytearray()
        self._request_id = 0  # client: the last request sent; server: the last received
        self._reply_pending = False  # client: a request was sent and its reply has not ended
        self._partial = {STDOUT: b"", STDERR: b""}  # sender: unfinished output lines

    # -- sending ---------------------------------------------------------------

    def encode(self, message: Message) -> bytes:
        kind = type(message)
        if kind is Output:
            return self._encode_output(message)  # type: ignore[arg-type]
        if kind is Request:
            if "\n" in message.line or "\r" in message.line:  # type: ignore[union-attr]
                raise LocalProtocolError("the line framing cannot carry a command containing a newline")
            if not message.line.strip():  # type: ignore[union-attr]
                raise LocalProtocolError("the line framing cannot carry a blank command (the server skips blank lines)")
            self._request_id = message.request_id  # type: ignore[union-attr]
            self._reply_pending = True
            return message.line.encode() + b"\n"  # type: ignore[union-attr]
        if kind is Exit:
            if message.exit_status is None and message.signal is None:  # type: ignore[union-attr]
                raise LocalProtocolError("the line framing needs an exit status or a signal to end a reply")
            return self._flush_partials() + _format_exit(message) + b"\n"  # type: ignore[arg-type]
        if kind is Error:
            text = message.message.replace("\n", " ")  # type: ignore[union-attr]
            return self._flush_partials() + f"! {message.code.label} {text}\n".encode()  # type: ignore[union-attr]
        raise LocalProtocolError(f"the line framing cannot carry {kind.__name__} (no authentication)")

    def _encode_output(self, output: Output) -> bytes:
        data = self._partial[output.stream] + output.data
        prefix = _STREAM_PREFIX[output.stream]
        head, newline, tail = data.rpartition(b"\n")
        # A reply line holds at most max_frame bytes before its newline: longer
        # output lines travel as several "1-" pieces (the receiver joins them).
        limit = self.max_frame - 2
        pieces = []
        if newline:
            for line in head.split(b"\n"):
                while len(line) > limit:
                    pieces.append(prefix + b"-" + line[:limit] + b"\n")
                    line = line[limit:]
                pieces.append(prefix + b" " + line + b"\n")
        while len(tail) > limit:
            pieces.append(prefix + b"-" + tail[:limit] + b"\n")
            tail = tail[limit:]
        self._partial[output.stream] = tail
        return b"".join(pieces)

    def _flush_partials(self) -> bytes:
        pieces = []
        for stream, partial in self._partial.items():
            if partial:
                pieces.append(_STREAM_PREFIX[stream] + b"-" + partial + b"\n")
                self._partial[stream] = b""
        return b"".join(pieces)

    # -- receiving -------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if data:
            self._buffer += data
        else:
            self._closed = True

    def next_message(self) -> Message | _Sentinel:
        while True:
            end = self._buffer.find(b"\n")
            if end > self.max_frame or (end < 0 and len(self._buffer) > self.max_frame):
                raise RemoteProtocolError(
                    f"a line longer than {self.max_frame} bytes: is the peer speaking the line framing?"
                )
            if end < 0:
                if self._closed:
                    if self._buffer:
                        raise RemoteProtocolError("connection closed in the middle of a line")
                    return END_OF_STREAM
                return NEED_DATA
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            message = self._parse_request(line) if self.role is Role.SERVER else self._parse_reply(line)
            if message is not None:
                return message

    def _parse_request(self, line: bytes) -> Request | None:
        text = _decode_text(line.rstrip(b"\r"))
        if not text.strip():
            return None
        self._request_id += 1
        # a text line cannot ask for the digest: every exit line carries it
        return Request(self._request_id, (), text, digest=True)

    def _parse_reply(self, line: bytes) -> Message:
        kind, separator, rest = line[:1], line[1:2], line[2:]
        # A reply line with no request outstanding is connection-level (id 0).
        request_id = self._request_id if self._reply_pending else 0
        if kind in (b"1", b"2") and separator in (b" ", b"-"):
            stream = STDOUT if kind == b"1" else STDERR
            return Output(request_id, stream, rest + b"\n" if separator == b" " else rest)
        if kind == b"=" and separator == b" ":
            exit_message = _parse_exit(request_id, _decode_text(rest))
            self._reply_pending = False
            return exit_message
        if kind == b"!" and separator == b" ":
            label, _, text = _decode_text(rest).partition(" ")
            code = _ERROR_CODES.get(label)
            if code is None:
                raise RemoteProtocolError(f"unknown error code {label!r} in a line reply")
            self._reply_pending = False
            return Error(request_id, code, text)
        raise RemoteProtocolError(
            f"a reply line must start with '1 ', '2 ', '1-', '2-', '= ' or '! ', got {line[:2]!r}"
        )


def _format_exit(message: Exit) -> bytes:
    status = f"signal {message.signal}" if message.signal is not None else f"exit {message.exit_status}"
    fields = (
        f"= {status} stdout={message.stdout_bytes} stderr={message.stderr_bytes} "
        f"ms={message.duration * 1000:.3f} sha256={message.stdout_sha256.hex()}"
    )
    if message.timed_out:
        fields += f" command_timeout_ms={round(message.command_timeout * 1000)}"
    if message.truncated:
        fields += f" output_cap={message.output_cap}"
    if message.truncated:
        fields += " truncated"
    if message.timed_out:
        fields += " timeout"
    return fields.encode()


def _parse_exit(request_id: int, text: str) -> Exit:
    words = text.split()
    try:
        kind, number = words[0], int(words[1])
        fields = dict(word.split("=", 1) for word in words[2:] if "=" in word)
        flags = {word for word in words[2:] if "=" not in word}
        if kind not in ("exit", "signal"):
            raise ValueError(kind)
        return Exit(
            request_id,
            exit_status=number if kind == "exit" else None,
            signal=number if kind == "signal" else None,
            duration=float(fields.get("ms", "0")) / 1000,
            stdout_bytes=int(fields.get("stdout", "0")),
            stderr_bytes=int(fields.get("stderr", "0")),
            stdout_sha256=bytes.fromhex(fields.get("sha256", "")),
            truncated="truncated" in flags,
            timed_out="timeout" in flags,
            command_timeout=int(fields.get("command_timeout_ms", "0")) / 1000,
            output_cap=int(fields.get("output_cap", "0")),
        )
    except (IndexError, ValueError):
        raise RemoteProtocolError(f"malformed end-of-reply line: {text!r}") from None


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"a command line must be UTF-8 (bad byte at offset {exc.start})") from None
