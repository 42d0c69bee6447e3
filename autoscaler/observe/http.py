"""The one HTTP client shared by the whole fleet: bounded, time-limited, size-capped GETs.

Transport: aiohttp directly. Measured on this 2-core machine (``python -m
benchmarks.bench_observe --compare-transports --sizes 2000``: 2,000 loopback GETs of the
captured 12 KB /metrics, 64 in flight, median of 5): aiohttp 0.20 s, httpx with the aiohttp
transport (httpx-aiohttp) 0.78 s. This path is CPU-bound (one event loop, thousands of small
answers per cycle), and httpx on top of the same aiohttp connection adds its own URL and
header models, request/response objects and stream wrappers, converted to and from aiohttp's
at every request: about four times the CPU per GET.

Every failure leaves here as an `ObserveError` with a short message; nothing from aiohttp
escapes.
"""

from __future__ import annotations

import os
import socket

import aiohttp
from yarl import URL

from autoscaler.errors import ObserveError


class HTTPStatusError(ObserveError):
    """The scheduler answered with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class FleetClient:
    """GETs to many schedulers through one aiohttp session.

    ``concurrency`` bounds connections in use (callers also bound requests in flight);
    ``timeout`` is the total time allowed for one GET, body included, so a slow-loris
    answer is cut; a body over ``max_bytes`` is refused (checked against Content-Length
    first, then while reading). Responses are not decompressed: we ask for identity
    encoding, so ``max_bytes`` bounds what is held in memory.
    """

    def __init__(self, *, concurrency: int, timeout: float) -> None:
        self.concurrency = concurrency
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.concurrency, family=socket.AF_UNSPEC)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                auto_decompress=False,
                headers={"Accept-Encoding": "identity"},
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def get(self, url: str | URL, *, path: str, max_bytes: int) -> bytes:
        """Body of ``GET url`` (``path`` names the endpoint in messages)."""
        if self._session is None:
            raise RuntimeError("FleetClient is not open")
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    reason = f"HTTP {response.status} {response.reason or ''}".rstrip()
                    raise HTTPStatusError(f"GET {path}: {reason}", response.status)
                length = response.content_length
                if length is not None:
                    if length > max_bytes:
                        raise ObserveError(f"GET {path}: body of {length} bytes > {max_bytes}")
                    return await response.read()
                return await _read_capped(response, path, max_bytes)
        except ObserveError:
            raise
        except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError
            raise ObserveError(f"GET {path}: timed out after {self.timeout:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            error = exc.os_error
            reason = os.strerror(error.errno) if error.errno else str(error) or repr(error)
            raise ObserveError(
                f"GET {path}: cannot connect to {exc.host}:{exc.port}: {reason.lower()}"
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise ObserveError(f"GET {path}: invalid URL {str(exc)!r}") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            detail = str(exc) or type(exc).__name__
            raise ObserveError(f"GET {path}: {detail}") from exc


async def _read_capped(response: aiohttp.ClientResponse, path: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise ObserveError(f"GET {path}: body over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
