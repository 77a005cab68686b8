# Dockerfile.app: the hits app as a static binary in an image FROM scratch.
# Build from the repository root (the context): docker build -f Dockerfile.app .
#
# The builder image is an argument so an engine without a registry can pass a
# local one (scripts/standin-images builds hits-standin/golang from this
# machine's toolchain). No `# syntax=` line and no RUN --mount: both need a
# registry or BuildKit, and Debian's docker-compose 1.29 uses the legacy builder.
ARG GO_IMAGE=golang:1.26
FROM ${GO_IMAGE} AS build
WORKDIR /src/app
# The HTTP/1.1 module app and lb share (app/go.mod: replace hits/h1 => ../h1);
# it has no dependencies of its own.
COPY h1/ /src/h1/
# Module downloads get a layer of their own, reused until go.mod/go.sum change.
COPY app/go.* ./
RUN go mod download
COPY app/ ./
# The version shown on the page and sent as X-App-Version. Declared after the
# module layer so a new version rebuilds only the binary.
ARG APP_VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${APP_VERSION}" -o /out/app . \
 && mkdir -p /out/etc/ssl/certs && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/

FROM scratch
# Managed PostgreSQL and Redis speak TLS; scratch has no roots of its own.
COPY --from=build /out/etc /etc
COPY --from=build /out/app /app
# 65532 is the distroless "nonroot" uid: no shell, no passwd entry needed.
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
# No curl in scratch: the binary probes its own /healthz.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["/app", "healthcheck"]
ENTRYPOINT ["/app"]
