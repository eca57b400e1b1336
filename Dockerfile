# gpumode image: gpumode-controller and gpumode-agent (the agent runs in the
# privileged helper pods, from this same image).
#
# NOTE: not built in the development environment (it has no container
# engine); `docker build -t gpumode .` or `buildah bud` at the repo root.

# ---- builder ----
FROM debian:bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config \
      libcurl4-openssl-dev libuv1-dev libjson-c-dev libyaml-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY controller ./controller
# `make programs`, not `make`: the default target first runs
# scripts/deps.sh --build, which would run apt-get again for the packages
# installed above (and scripts/ is not copied in).
RUN make -j"$(nproc)" programs \
 && strip build/gpumode-controller build/gpumode-agent

# ---- runtime ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libcurl4 libuv1 libjson-c5 libyaml-0-2 libssl3 ca-certificates \
      tzdata \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/build/gpumode-controller /usr/local/bin/gpumode-controller
COPY --from=builder /src/build/gpumode-agent /usr/local/bin/gpumode-agent
# The controller runs as this user (deployment.yaml sets the same ids); the
# helper pods override it, since nvidia-smi needs root on the node.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gpumode-controller"]
