# syntax=docker/dockerfile:1

# The interlock command as a static binary on a distroless, non-root base.
#
#   docker build -t interlock .
#   docker run --rm interlock serve --brokers kafka:9092
#
# The build stage runs on the builder's own platform and cross-compiles, so
# `docker buildx build --platform linux/amd64,linux/arm64 .` needs no emulation.

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
# Modules first, so editing code does not invalidate the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" -o /out/interlock ./cmd/interlock

# static-debian12: CA certificates and tzdata, no shell, no libc (none needed
# with CGO_ENABLED=0). The :nonroot tag runs as uid 65532; USER repeats it so
# the image stays non-root even if the base tag changes.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/interlock /interlock
USER 65532:65532
ENTRYPOINT ["/interlock"]
CMD ["serve"]
