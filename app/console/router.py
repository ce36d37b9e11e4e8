"""Routes of the console's static files. The pages hold no data: everything they show comes
from the /v1 API, called by the browser with the API key the user typed (kept in
sessionStorage), so the console is exactly as protected as the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from nerve.errors import NotFound

router = APIRouter(prefix="/console", tags=["console"], include_in_schema=False)
# The service's root: a browser is sent to the console, a program gets where things are.
front_door = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parent / "static"
# The only files served: no path from the URL ever reaches the file system.
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
# Scripts and styles from this origin only, no inline script, no framing: text a user
# submitted can never run as code here, even if some rendering bug treated it as HTML.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@front_door.get("/")
async def root(request: Request) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/console/", status_code=307)
    return JSONResponse(
        {
            "service": "nerve",
            "console": "/console/",
            "docs": "/docs",
            "openapi": "/openapi.json",
            "methods": "/v1/methods",
            "health": "/readyz",
        }
    )


@router.get("")
async def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/")
async def console_index() -> FileResponse:
    return _file("index.html")


@router.get("/{name}")
async def console_file(name: str) -> FileResponse:
    return _file(name)


def _file(name: str) -> FileResponse:
    media_type = _FILES.get(name)
    if media_type is None:
        raise NotFound(f"no console file {name!r}")
    return FileResponse(STATIC / name, media_type=media_type, headers=_HEADERS)
