"""The path to AtHoc: TLS 1.2+ context, certificate trust, proxies, and the one place an HTTP attempt is sent.

* One `requests.Session` per client (connection pooling), TLS 1.2 minimum through an adapter with its own
  SSL context, `verify=` passed on every request because requests lets `REQUESTS_CA_BUNDLE` /
  `CURL_CA_BUNDLE` override `session.verify` (and even `verify=True`), proxies from the environment
  (`trust_env` stays on), connect and read timeouts on every request, no redirects followed (a 307 would
  re-post the password form to wherever it points).
* Every JSON body is decoded from its bytes (decode_json): the server's charset labels are not trusted.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import certifi
import requests
import requests.adapters
import requests.utils
from urllib3.util.ssl_ import create_urllib3_context

from shared import telemetry
from shared.athoc.errors import AtHocAuthError, AtHocError, AtHocTLSError
from shared.athoc.redaction import Redactor, shorten, strip_userinfo
from shared.errors import ErrorKind
from shared.settings import AtHocSettings

log = logging.getLogger(__name__)

# No common protocol version or cipher: a configuration problem, not worth retrying.
_TLS_VERSION_MARKERS = (
    "wrong_version_number",
    "unsupported protocol",
    "protocol version",
    "no protocols available",
    "handshake failure",
    "no shared cipher",
)
_TLS_CERTIFICATE_MARKERS = ("certificate", "hostname", "host name", "verify failed")
_UNUSABLE_URL = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)


@dataclass(frozen=True)
class ApiRequest:
    """One logical AtHoc request: sent, and sent again after a transient failure, until it succeeds or fails."""

    label: str  # names the call in logs and errors: "token", "SyncByCommonNames", "users/search/basic"
    method: str
    path: str  # below ATHOC_SERVER_URL
    params: Mapping[str, str] | None = None
    body: bytes | Mapping[str, str] | None = None  # JSON bytes, or a form to encode
    headers: Mapping[str, str] | None = None
    # The token endpoint: no bearer; a 400/401 is a refused grant; its body is never quoted (it echoes forms).
    token_endpoint: bool = False
    max_retries: int | None = None  # None: settings.max_retries


def decode_json(content: bytes) -> object:
    """A JSON body from its raw bytes, whatever charset the Content-Type claims or omits.

    json.loads on bytes detects UTF-8/16/32 and skips a BOM (RFC 8259 JSON is UTF-8), where
    requests' response.json() would decode `text/json` or `text/plain` without charset as ISO-8859-1 and
    fail on a UTF-8 BOM. Raises ValueError (JSONDecodeError, UnicodeDecodeError) when it is not JSON.
    """
    result: object = json.loads(content)
    return result


def body_as_text(response: requests.Response) -> str:
    """A non-JSON body as text: UTF-8 when it is valid UTF-8 (the common case), else requests' guess."""
    try:
        return response.content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return response.text


def build_ssl_context(settings: AtHocSettings) -> ssl.SSLContext:
    """TLS 1.2 minimum; the trust store the settings ask for; no verification only when switched off."""
    if not settings.verify_tls:
        context = create_urllib3_context(ssl_minimum_version=ssl.TLSVersion.TLSv1_2, cert_reqs=ssl.CERT_NONE)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = create_urllib3_context(ssl_minimum_version=ssl.TLSVersion.TLSv1_2, cert_reqs=ssl.CERT_REQUIRED)
    context.check_hostname = True
    try:
        if settings.ca_bundle:
            # A private CA only: the AtHoc certificate must chain to it.
            context.load_verify_locations(cafile=settings.ca_bundle)
        else:
            # The OS store; requests adds certifi's bundle through verify=<path> (see request_verify).
            context.load_default_certs()
    except (OSError, ssl.SSLError) as error:
        raise AtHocTLSError(
            f"ATHOC_CA_BUNDLE {settings.ca_bundle!r} could not be loaded as PEM certificates "
            f"({error.__class__.__name__})"
        ) from None
    return context


def request_verify(settings: AtHocSettings) -> bool | str:
    """The `verify=` value for every request.

    Never `True`: requests replaces `verify=True` with `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE` from the
    environment, so the default trust is passed as certifi's path, which the environment cannot override.
    """
    if not settings.verify_tls:
        return False
    if settings.ca_bundle:
        return settings.ca_bundle
    return certifi.where()


def describe_verify(settings: AtHocSettings) -> str:
    """How the server certificate is checked, for `check`."""
    if urlsplit(settings.server_url).scheme.lower() == "http":
        return "not applicable (http:// without TLS)"
    if not settings.verify_tls:
        return "disabled (ATHOC_VERIFY_TLS=false)"
    if settings.ca_bundle:
        return f"ATHOC_CA_BUNDLE {settings.ca_bundle}"
    return f"system CA store and certifi bundle {certifi.where()}"


def proxy_for(url: str) -> str | None:
    """The proxy requests will use for `url` (HTTPS_PROXY / HTTP_PROXY / NO_PROXY), credentials removed."""
    proxies = requests.utils.get_environ_proxies(url)
    proxy = requests.utils.select_proxy(url, proxies)
    return strip_userinfo(proxy) if proxy else None


def _tls_version(response: requests.Response) -> str | None:
    """The negotiated TLS version, read from the socket before the body is consumed."""
    connection = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    version = getattr(sock, "version", None)
    if callable(version):
        try:
            result = version()
        except (OSError, ValueError):
            return None
        return result if isinstance(result, str) else None
    return None


class _TLSAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose connections (direct and through a proxy) use our SSL context (TLS 1.2+)."""

    def __init__(self, ssl_context: ssl.SSLContext, **kwargs: Any):
        self._ssl_context = ssl_context
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:  # urllib3's ProxyManager, untyped
        proxy_kwargs["ssl_context"] = self._ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)


class Transport:
    """Sends single HTTP attempts to one AtHoc server; thread-safe (requests' Session pools connections)."""

    def __init__(self, settings: AtHocSettings, *, redact: Redactor, clock: Callable[[], float]):
        self.base = settings.server_url.rstrip("/")
        self.last_tls_version: str | None = None  # of the latest https answer, for `check`
        self._settings = settings
        self._redact = redact
        self._clock = clock
        self._verify = request_verify(settings)
        self._session = requests.Session()
        # Proxies and NO_PROXY come from the environment through trust_env; it must stay on.
        self._session.trust_env = True
        self._session.mount("https://", _TLSAdapter(build_ssl_context(settings)))
        self._session.mount("http://", requests.adapters.HTTPAdapter())
        self._session.headers.update({"Accept": "application/json", "User-Agent": "bobo-sync-azure"})
        self._warn_about_transport()

    def close(self) -> None:
        self._session.close()

    def _warn_about_transport(self) -> None:
        scheme = urlsplit(self.base).scheme.lower()
        if scheme == "http":
            log.warning(
                "ATHOC_SERVER_URL %s is plain http: credentials and tokens travel unencrypted "
                "(acceptable only for a test server on loopback)",
                self.base,
            )
        elif not self._settings.verify_tls:
            log.warning(
                "ATHOC_VERIFY_TLS=false: the AtHoc server certificate is NOT verified; anyone on the path can "
                "read the password and tokens. Use only for a test server; set ATHOC_CA_BUNDLE for a private CA."
            )

    def send(
        self, request: ApiRequest, *, headers: Mapping[str, str], timeout: tuple[float, float], attempt: int
    ) -> requests.Response:
        """One HTTP exchange, body read; any status comes back, transport failures raise AtHocError.

        The only place a request goes on the wire. `attempt` counts the sends of this logical request (1-based).
        """
        started = self._clock()
        url = self.base + request.path
        # A dependency span per attempt (method, host, path, status, attempt; never a query, body or token).
        with telemetry.athoc_dependency(request.label, request.method, url, attempt) as call:
            try:
                response = self._session.request(
                    request.method,
                    url,
                    params=request.params,
                    data=request.body,
                    headers=headers,
                    timeout=timeout,
                    verify=self._verify,
                    allow_redirects=False,
                    stream=True,
                )
                try:
                    tls = _tls_version(response)
                    if tls is not None:
                        self.last_tls_version = tls
                    _ = response.content  # read the body now, inside the same error handling
                finally:
                    response.close()
            except (requests.exceptions.RequestException, OSError) as error:
                raise self._transport_error(error, request, timeout) from None
            call.set_status(response.status_code)
        log.debug(
            "%s %s -> %d in %.2f s (attempt %d)",
            request.method,
            request.path,
            response.status_code,
            self._clock() - started,
            attempt,
        )
        return response

    def _transport_error(self, error: Exception, request: ApiRequest, timeout: tuple[float, float]) -> AtHocError:
        """The one mapping of requests' (and the socket layer's) exceptions to AtHocError kinds."""
        where = f"{request.method} {request.path}"
        if isinstance(error, requests.exceptions.SSLError):
            return self._tls_error(error)
        if isinstance(error, requests.exceptions.Timeout):
            connect = isinstance(error, requests.exceptions.ConnectTimeout)
            phase, seconds = ("connect", timeout[0]) if connect else ("read", timeout[1])
            return AtHocError(f"{where}: {phase} timeout after {seconds:.1f} s", kind=ErrorKind.NETWORK, transient=True)
        if isinstance(error, requests.exceptions.ProxyError):
            text = f"{where}: proxy error ({self._redact.quoted(str(error))})"
            return AtHocError(text, kind=ErrorKind.NETWORK, transient=True)
        if isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            text = f"{where}: connection failed or dropped ({self._redact.quoted(str(error))})"
            return AtHocError(text, kind=ErrorKind.NETWORK, transient=True)
        if isinstance(error, _UNUSABLE_URL):
            return AtHocAuthError(f"ATHOC_SERVER_URL {self.base!r} is not a usable URL", kind=ErrorKind.CLIENT)
        if isinstance(error, requests.exceptions.RequestException):
            text = f"{where}: {error.__class__.__name__} ({self._redact.quoted(str(error))})"
            return AtHocError(text, kind=ErrorKind.NETWORK, transient=True)
        # An OSError outside requests' own: e.g. requests refusing an unreadable CA bundle path.
        return AtHocTLSError(f"{where}: TLS setup failed ({shorten(str(error))})")

    def _tls_error(self, error: Exception) -> AtHocError:
        text = self._redact.quoted(str(error))
        lowered = text.lower()
        if any(marker in lowered for marker in _TLS_VERSION_MARKERS):
            return AtHocTLSError(
                f"TLS failure connecting to {self.base}: {text} "
                "(the server must offer TLS 1.2 or newer with a common cipher)"
            )
        if any(marker in lowered for marker in _TLS_CERTIFICATE_MARKERS):
            return AtHocTLSError(
                f"TLS failure connecting to {self.base}: {text} (certificate not trusted: set ATHOC_CA_BUNDLE to the "
                "CA that signed it, or fix ATHOC_SERVER_URL's host name)"
            )
        # A handshake cut short by the network (EOF, reset) is worth another try.
        return AtHocError(f"TLS handshake with {self.base} interrupted: {text}", kind=ErrorKind.NETWORK, transient=True)
