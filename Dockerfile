# Builds the jetflow binary; docker-compose.yml runs it against a NATS server.
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /jetflow ./cmd/jetflow

FROM gcr.io/distroless/static-debian12
COPY --from=build /jetflow /jetflow
ENTRYPOINT ["/jetflow"]
