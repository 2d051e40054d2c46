# The one switchyard binary, for the Kubernetes manifests in
# deploy/kubernetes (docs/kubernetes.md):
#   docker build -t switchyard:dev .
# Static (pure Go: SQLite is modernc.org/sqlite), on distroless: no shell,
# no package manager, runs as the nonroot user (65532).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/switchyard ./cmd/switchyard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchyard /usr/local/bin/switchyard
USER 65532:65532
# gateway 8080 (traffic) and 9901 (admin, /healthz, /metrics); registry 8500;
# Hitch services 8080.
EXPOSE 8080 9901 8500
ENTRYPOINT ["/usr/local/bin/switchyard"]
