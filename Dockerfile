# syntax=docker/dockerfile:1
# Project image: one image, the subcommand (init, processor, sink, simulate ...) picks the role.

# Build stage: installs into a venv that the runtime stage copies, so no pip/build leftovers ship.
# Every pinned dependency has a manylinux wheel for CPython 3.11, so no compiler is needed here.
# The portal's chart library, from the pinned npm lock file (bundled into the image, never a CDN).
FROM node:20-bookworm-slim AS assets
WORKDIR /assets
COPY portal/package.json portal/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund --silent \
    && mkdir vendor && cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css vendor/

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
# Dependencies first, from pyproject alone, so a code change does not reinstall them.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt
COPY backbone/ backbone/
COPY contract/ contract/
COPY producers/ producers/
COPY stream_processors/ stream_processors/
COPY sinks/ sinks/
COPY portal/ portal/
COPY --from=assets /assets/vendor/ portal/static/vendor/
COPY simulators/ simulators/
COPY devstack/ devstack/
COPY cli/ cli/
RUN pip install --no-cache-dir .

# Runtime stage.
FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BACKBONE_BIND_HOST=0.0.0.0 \
    BACKBONE_SCHEMAS_DIR=/app/schemas \
    BACKBONE_CATALOG_DIR=/app/catalog \
    BACKBONE_KPI_DIR=/app/kpis \
    BACKBONE_HOLIDAYS_CSV=/app/data/holidays_id.csv \
    BACKBONE_REGIONS_CSV=/app/data/bojonegoro_regions.csv \
    BACKBONE_RUN_DIR=/var/lib/backbone
# Fixed uid/gid so volume ownership is predictable across rebuilds.
RUN groupadd --system --gid 10001 backbone \
    && useradd --system --uid 10001 --gid backbone --home-dir /var/lib/backbone \
        --no-create-home --shell /usr/sbin/nologin backbone \
    && install -d -o backbone -g backbone -m 0750 /var/lib/backbone
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Contracts and reference data, read at run time; owned by root, so read-only for the service.
COPY schemas/ schemas/
COPY catalog/ catalog/
COPY kpis/ kpis/
COPY data/ data/
# Numeric, so runtimes can check "non-root" without resolving the name.
USER 10001:10001
EXPOSE 9100 9101 9102 8124
ENTRYPOINT ["backbone"]
CMD ["--help"]
