"""A local STAC API + COG server (the serving half of the Sentinel-2 test kit).

``StacServer`` serves the items through /search (POST and GET, paged with rel=next links like
Earth Search) and the COGs with HTTP range requests, as GDAL's /vsicurl/ reads them, and can be
told to fail: 5xx answers, missing files, truncated files.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import shapely

from .scenes import Scene, write_scene


class StacServer:
    """A STAC API (landing page, /conformance, /search), a file server with ranges (cogs/), and
    JSON listings of other APIs (files under api/)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[dict[str, Any]] = []
        self.fail_next: dict[str, list[int]] = {}   # path -> statuses to answer, in turn
        # path prefixes served only to signed requests (a sig= in the query), as Azure Blob
        # Storage serves Planetary Computer's assets; others get 403
        self.signed_only: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StacServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, scene: Scene) -> dict[str, Any]:
        item = write_scene(self.root, scene, self.url)
        self.items.append(item)
        return item

    def search(self, params: dict[str, Any]) -> dict[str, Any]:
        found = [i for i in self.items if self._matches(i, params)]
        found.sort(key=lambda i: (i["properties"]["datetime"], i["id"]))
        limit = int(params.get("limit", 10))
        start = int(params.get("next", 0))
        page = found[start:start + limit]
        links = [{"rel": "root", "href": self.url + "/", "type": "application/json"}]
        if start + limit < len(found):
            links.append({"rel": "next", "href": self.url + "/search", "method": "POST",
                          "type": "application/geo+json",
                          "body": {**params, "next": str(start + limit)}})
        return {"type": "FeatureCollection", "features": copy.deepcopy(page), "links": links,
                "numberReturned": len(page), "context": {"returned": len(page),
                                                        "limit": limit, "matched": len(found)}}

    @staticmethod
    def _matches(item: dict[str, Any], params: dict[str, Any]) -> bool:
        if params.get("collections") and item["collection"] not in params["collections"]:
            return False
        when = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
        if params.get("datetime"):
            start, _, end = params["datetime"].partition("/")
            if start not in ("", "..") and when < datetime.fromisoformat(start.replace("Z",
                                                                                       "+00:00")):
                return False
            if end not in ("", "..") and when > datetime.fromisoformat(end.replace("Z",
                                                                                   "+00:00")):
                return False
        if params.get("intersects") and not shapely.intersects(
                shapely.from_geojson(json.dumps(params["intersects"])),
                shapely.from_geojson(json.dumps(item["geometry"]))):
            return False
        cloud = (params.get("query") or {}).get("eo:cloud_cover", {}).get("lte")
        return cloud is None or item["properties"]["eo:cloud_cover"] <= cloud

    def landing(self) -> dict[str, Any]:
        return {"type": "Catalog", "id": "earth-search-local", "stac_version": "1.0.0",
                "description": "local Earth Search stand-in",
                "conformsTo": ["https://api.stacspec.org/v1.0.0/core",
                               "https://api.stacspec.org/v1.0.0/item-search",
                               "https://api.stacspec.org/v1.0.0/item-search#sort",
                               "https://api.stacspec.org/v1.0.0/item-search#query",
                               "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
                               "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"],
                "links": [{"rel": "self", "href": self.url + "/"},
                          {"rel": "root", "href": self.url + "/"},
                          {"rel": "search", "href": self.url + "/search", "method": "GET",
                           "type": "application/geo+json"},
                          {"rel": "search", "href": self.url + "/search", "method": "POST",
                           "type": "application/geo+json"}]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str,
                      extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, payload: dict[str, Any]) -> None:
                self._send(200, json.dumps(payload).encode(), "application/json")

            def _fault(self, path: str) -> bool:
                queue = server.fail_next.get(path)
                if queue:
                    self._send(queue.pop(0), b'{"code": "ServerError"}', "application/json")
                    return True
                return False

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                url = urlparse(self.path)
                server.requests.append((self.command, url.path))
                if self._fault(url.path):
                    return
                if url.path in ("/", ""):
                    self._json(server.landing())
                elif url.path == "/conformance":
                    self._json({"conformsTo": server.landing()["conformsTo"]})
                elif url.path == "/search":
                    params: dict[str, Any] = {k: v[0] for k, v in parse_qs(url.query).items()}
                    for key in ("intersects", "query", "sortby"):
                        if key in params and params[key].startswith(("{", "[")):
                            params[key] = json.loads(params[key])
                    if "collections" in params:
                        params["collections"] = params["collections"].split(",")
                    self._json(server.search(params))
                elif url.path.startswith("/api/"):   # listing APIs: JSON files under api/
                    self._file(server.root / url.path.lstrip("/"), "application/json")
                elif url.path.startswith("/cogs/"):
                    if any(url.path.startswith(p) for p in server.signed_only) and \
                            "sig" not in parse_qs(url.query):
                        self._send(403, b"<Error><Code>AuthenticationFailed</Code></Error>",
                                   "application/xml")
                        return
                    self._file(server.root / url.path.lstrip("/"))
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                url = urlparse(self.path)
                server.requests.append((self.command, url.path))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self._fault(url.path):
                    return
                if url.path == "/search":
                    self._json(server.search(json.loads(body or b"{}")))
                else:
                    self._send(404, b"not found", "text/plain")

            def _file(self, path: Path, content_type: str = "image/tiff") -> None:
                if not path.is_file():
                    self._send(404, b"no such key", "application/xml")
                    return
                data = path.read_bytes()
                ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if not ranged:
                    self._send(200, data, content_type, {"Accept-Ranges": "bytes"})
                    return
                start = int(ranged.group(1))
                end = min(int(ranged.group(2) or len(data) - 1), len(data) - 1)
                if start >= len(data):
                    self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
                    return
                self._send(206, data[start:end + 1], content_type,
                           {"Accept-Ranges": "bytes",
                            "Content-Range": f"bytes {start}-{end}/{len(data)}"})

        return Handler
