# syntax=docker/dockerfile:1
# One image holds every kubemail binary; each Deployment runs its own (the chart and the
# operator set the command): operator, mailstore, smtp-ingress, delivery-queue, imap-frontend,
# and kubemail (`kubemail admin` for `kubectl exec`).
#
#   docker build -t ghcr.io/kubemail/kubemail:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p kubemail-operator -p kubemail-mailstore -p kubemail-smtp-ingress \
        -p kubemail-delivery-queue -p kubemail-imap-frontend -p kubemail \
    && mkdir /out \
    && for binary in operator mailstore smtp-ingress delivery-queue imap-frontend kubemail; do \
           cp "target/release/$binary" /out/; \
       done

# glibc and CA certificates, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 9090
CMD ["operator"]
