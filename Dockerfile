# authproxy: slim, non-root, no build tools in the final image.
# Build:  docker build -t authproxy .
# Run:    docker run --rm -p 8080:8080 -v $PWD/config.yaml:/etc/authproxy/config.yaml:ro authproxy

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY authproxy ./authproxy
# The `speed` extra brings uvloop; authproxy uses it whenever it is installed.
RUN python -m venv /opt/authproxy \
 && /opt/authproxy/bin/pip install --no-cache-dir ".[speed]"

FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin authproxy \
 && mkdir -p /etc/authproxy /var/lib/authproxy \
 && chown authproxy /var/lib/authproxy
COPY --from=build /opt/authproxy /opt/authproxy
ENV PATH=/opt/authproxy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    XDG_STATE_HOME=/var/lib/authproxy
USER authproxy
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/-/health', timeout=2).status != 200)"]
ENTRYPOINT ["authproxy"]
CMD ["serve", "--config", "/etc/authproxy/config.yaml", "--listen", "0.0.0.0:8080"]
