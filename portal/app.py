"""The portal's web application (aiohttp + jinja2): pages, downloads, the DCAT catalogue and the
CKAN Action API. Every request is hostile: path and query values are checked against the dataset's
dimensions or the region list, sizes are bounded, each client is rate limited, and answers carry a
cache lifetime no longer than the data's freshness."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from aiohttp_remotes import XForwardedStrict

from backbone.settings import Settings
from contract.reference import load_regions
from portal import opendata, pages
from portal.datasets import BY_SLUG, DATASETS, LICENCES, SERVICES
from portal.i18n import Formatter, pick_language
from portal.ratelimit import RateLimiter
from portal.store import PublicStore, StoreError

HERE = Path(__file__).parent
MAX_PARAM = 64  # longest query value accepted
WARM_SECONDS = 60.0  # longest wait for the store at start (then the portal opens with what it has)
STORE = web.AppKey("store", PublicStore)
SETTINGS = web.AppKey("settings", Settings)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
REGIONS = web.AppKey("regions", dict)
LIMITER = web.AppKey("limiter", RateLimiter)


def _param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and (len(value) > MAX_PARAM or not value.isprintable()):
        raise web.HTTPBadRequest(text=f"parameter {name} is too long or not printable\n")
    return value


def _lang(request: web.Request) -> str:
    return pick_language(
        request.query.get("lang"), request.cookies.get("lang"), request.headers.get("Accept-Language", "")[:200]
    )


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def render(request: web.Request, template: str, **context: Any) -> web.Response:
    lang = _lang(request)
    f = Formatter(lang)
    other = "en" if lang == "id" else "id"
    query = {k: v for k, v in request.query.items() if k != "lang"}
    switch = request.rel_url.with_query({**query, "lang": other})
    html = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            f=f,
            lang=lang,
            switch_url=str(switch),
            services=SERVICES,
            path=request.path,
            live_seconds=max(2, int(request.app[SETTINGS].portal_cache_seconds * 2)),
            **context,
        )
    )
    resp = web.Response(text=html, content_type="text/html", charset="utf-8")
    if request.query.get("lang") in ("id", "en"):
        resp.set_cookie("lang", lang, max_age=365 * 86400, samesite="Lax", httponly=True)
    return resp


async def home(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    figures = await pages.headlines(request.app[STORE], settings.portal_min_cell)
    return render(request, "home.html", figures=figures, live=True)


async def service(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    store = request.app[STORE]
    tables = await pages.service(store, name)
    series = await pages.over_time(store, name)
    return render(request, "service.html", name=name, tables=tables, series=series, live=True)


async def budget(request: web.Request) -> web.Response:
    path = {k: v for k in pages.BUDGET_KEYS[:3] if (v := _param(request, k))}
    context = await pages.budget(request.app[STORE], _param(request, "year"), _param(request, "month"), path)
    return render(request, "budget.html", b=context, live=True)


async def kecamatan(request: web.Request) -> web.Response:
    ctx = await pages.kecamatan(request.app[STORE], request.match_info["code"], request.app[REGIONS])
    return render(request, "region.html", r=ctx, kind="kecamatan", live=True)


async def village(request: web.Request) -> web.Response:
    ctx = await pages.village(request.app[STORE], request.match_info["code"], request.app[REGIONS])
    return render(request, "region.html", r=ctx, kind="village", live=True)


async def regions(request: web.Request) -> web.Response:
    all_regions = request.app[REGIONS]
    kec = sorted((c, r["name"]) for c, r in all_regions.items() if r["level"] == "kecamatan")
    return render(request, "regions.html", kecamatan=kec)


async def dataset_list(request: web.Request) -> web.Response:
    return render(request, "datasets.html", datasets=DATASETS, licences=LICENCES)


def _dataset(request: web.Request) -> Any:
    dataset = BY_SLUG.get(request.match_info["slug"])
    if dataset is None:
        raise pages.NotFound(request.match_info["slug"])
    return dataset


def _filters(request: web.Request, dataset: Any) -> dict[str, str]:
    """The request's filters: only the dataset's dimensions, each value bounded."""
    filters = {}
    for name in request.query:
        if name == "lang":
            continue
        if name not in dataset.dimensions:
            raise web.HTTPBadRequest(text=f"unknown filter {name!r}: filter on {', '.join(dataset.dimensions)}\n")
        filters[name] = _param(request, name) or ""
    return filters


async def dataset_page(request: web.Request) -> web.Response:
    dataset = _dataset(request)
    info = await pages.table(request.app[STORE], dataset)
    return render(
        request, "dataset.html", d=dataset, t=info, licence=LICENCES[dataset.licence], formats=opendata.FORMATS
    )


async def download(request: web.Request) -> web.Response:
    dataset, fmt = _dataset(request), request.match_info["fmt"]
    rows = await request.app[STORE].rows(dataset, _filters(request, dataset))
    body = opendata.SERIALISERS[fmt](dataset, rows)
    return web.Response(
        body=body,
        content_type=opendata.FORMATS[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{dataset.slug}.{fmt}"',
        },
    )


async def catalog(request: web.Request) -> web.Response:
    doc = opendata.dcat_catalog(_base(request), await request.app[STORE].freshness())
    return web.json_response(doc, content_type="application/ld+json")


async def ckan(request: web.Request) -> web.Response:
    action, base = request.match_info["action"], _base(request)
    fresh = await request.app[STORE].freshness()

    def answer(result: Any = None, error: dict[str, str] | None = None, status: int = 200) -> web.Response:
        return web.json_response(opendata.ckan_envelope(base, action, result, error), status=status)

    if action == "package_list":
        return answer([d.slug for d in DATASETS])
    if action == "package_show":
        dataset = BY_SLUG.get(_param(request, "id") or "")
        if dataset is None:
            return answer(error={"__type": "Not Found Error", "message": "Not found"}, status=404)
        return answer(opendata.ckan_package(base, dataset, fresh))
    if action == "package_search":
        try:
            rows = min(1000, max(0, int(_param(request, "rows") or 10)))
            start = max(0, int(_param(request, "start") or 0))
        except ValueError:
            return answer(error={"__type": "Validation Error", "rows": "Invalid integer"}, status=409)
        return answer(opendata.ckan_search(base, _param(request, "q") or "", rows, start, fresh))
    return answer(error={"__type": "Not Found Error", "message": f"Action name not known: {action}"}, status=400)


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Rate limit, errors without internals, cache lifetime and security headers."""
    client = request.remote or "?"
    wait = request.app[LIMITER].allow(client)
    if wait:
        return web.Response(status=429, text="too many requests\n", headers={"Retry-After": str(math.ceil(wait))})
    try:
        resp = await handler(request)
    except pages.NotFound:
        resp = render(request, "error.html", status=404)
        resp.set_status(404)
    except StoreError:
        resp = render(request, "error.html", status=503)
        resp.set_status(503)
        resp.headers["Retry-After"] = "5"
    if resp.status == 200 and request.method == "GET":
        lifetime = int(request.app[SETTINGS].portal_cache_seconds)
        resp.headers.setdefault("Cache-Control", f"public, max-age={lifetime}")
    else:
        resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers["Vary"] = "Accept-Language, Cookie"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    )
    return resp


def make_app(settings: Settings, store: PublicStore | None = None) -> web.Application:
    middlewares: list[Any] = [guard]
    if settings.portal_trusted_proxies:
        # Behind a proxy the peer is the proxy: the client is the address it forwards. Strict: one hop,
        # from a trusted address, or 400 (the health check is asked directly).
        proxy = XForwardedStrict([[str(n) for n in settings.portal_trusted_proxies]], white_paths=["/healthz"])
        middlewares.insert(0, proxy.middleware)
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[STORE] = store or PublicStore(settings)
    app[REGIONS] = load_regions(settings.regions_csv)
    app[LIMITER] = RateLimiter(settings.portal_rate_per_second, settings.portal_rate_burst)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["tojson"] = json.dumps
    app[TEMPLATES] = env
    r = app.router
    r.add_get("/", home)
    r.add_get("/service/{name:[a-z]+}", service)
    r.add_get("/budget", budget)
    r.add_get("/regions", regions)
    r.add_get("/kecamatan/{code:[0-9.]{1,20}}", kecamatan)
    r.add_get("/village/{code:[0-9.]{1,20}}", village)
    r.add_get("/datasets", dataset_list)
    r.add_get("/datasets/{slug:[a-z-]{1,60}}", dataset_page)
    r.add_get("/datasets/{slug:[a-z-]{1,60}}.{fmt:csv|json|parquet}", download)
    r.add_get("/catalog.jsonld", catalog)
    r.add_get("/api/3/action/{action:[a-z_]{1,40}}", ckan)
    r.add_get("/healthz", health)
    r.add_static("/static", HERE / "static", append_version=False)

    async def warm(_app: web.Application) -> None:
        # In the runner's setup, before the port opens and the portal reports ready.
        await app[STORE].start(DATASETS, WARM_SECONDS)

    async def close(_app: web.Application) -> None:
        await app[STORE].close()

    app.on_startup.append(warm)
    app.on_cleanup.append(close)
    return app
