"""The gateway's routing table: which path prefix goes to which service, and what is public."""

from dataclasses import dataclass

from shared.registry import ROUTED

# prefix -> upstream service name, and the (method, path) pairs reachable without a token:
# both from the service registry.
ROUTES: dict[str, str] = {prefix: service.name for service in ROUTED for prefix in service.prefixes}
PUBLIC_ENDPOINTS: frozenset[tuple[str, str]] = frozenset().union(*(service.public for service in ROUTED))

# Identity is proven by the token alone: a client must never assert it in a header.
STRIPPED_REQUEST_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",  # the client's framing; the upstream request gets its own
        "upgrade",
        "x-user-id",
        "x-user-roles",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "forwarded",
    }
)
STRIPPED_REQUEST_PREFIXES = ("x-internal-",)
STRIPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "server",
        "date",
        "x-request-id",
    }
)


@dataclass(frozen=True)
class Upstream:
    name: str
    base_url: str
