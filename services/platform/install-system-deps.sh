#!/usr/bin/env bash
# What the local stack needs from the machine, installed only when missing and only when no
# external Kafka/Postgres is configured: Java 17+ and Maven (Kafka comes from Maven Central as
# jars), and Debian's PostgreSQL server binaries. With the argument `tests`, whatever Kafka and
# Postgres are used: Debian's Chromium and its chromedriver (the dashboard's browser test), and
# kcat, pgbench and wrk (the benchmark's machine limits and read load), Node.js and npm (the
# TypeScript SDK in sdk/typescript is built and tested by tests/integration/test_clients.py);
# and oha, the benchmark's open-loop read load, built by the machine's Rust into the venv's bin
# (Debian has no package of it; crates.io has). It is built with the system's OpenSSL: 4 minutes
# on 2 cores, against 5 with its default rustls (whose aws-lc it compiles); it does not build
# without a TLS library at all.
set -euo pipefail

OHA_CRATE="oha@1.16.0"
venv="$(cd "$(dirname "$0")/../.." && pwd)/.venv"
build_oha=false
if [[ "${1:-}" == "tests" ]] && ! command -v oha >/dev/null && [[ ! -x "$venv/bin/oha" ]]; then
  cargo="$(command -v cargo || echo "${HOME:-/root}/.cargo/bin/cargo")"
  if [[ ! -x "$cargo" ]]; then
    echo "creditledger's benchmark needs oha, built with Rust's cargo, which is not installed:" \
      "install Rust (https://rustup.rs), or put an oha binary on PATH" >&2
    exit 1
  fi
  build_oha=true
fi

missing=()
if [[ "$build_oha" == true ]]; then
  pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
fi
if [[ "${1:-}" == "tests" ]]; then
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  [[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
  command -v kcat >/dev/null || missing+=(kcat)  # the benchmark's consume-only limit
  command -v wrk >/dev/null || missing+=(wrk)  # the benchmark's HTTP read load
  command -v node >/dev/null || missing+=(nodejs)  # the TypeScript SDK's build and tests
  command -v npm >/dev/null || missing+=(npm)
  command -v pgbench >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/pgbench" >/dev/null \
    || missing+=(postgresql-contrib)
fi

if [[ -z "${CREDITLEDGER_KAFKA_BOOTSTRAP:-}" || -z "${CREDITLEDGER_DATABASE_URL:-}" ]]; then
  java_major() { java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -n1; }
  if ! command -v java >/dev/null || [[ "$(java_major)" -lt 17 ]]; then
    missing+=(openjdk-17-jre-headless)
  fi
  command -v mvn >/dev/null || missing+=(maven)
  compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
  command -v psql >/dev/null || missing+=(postgresql-client)
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "creditledger needs: ${missing[*]}. Install them: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ "$build_oha" == true ]]; then
  echo "building oha ($OHA_CRATE from crates.io, about 4 minutes on 2 cores)"
  "$cargo" install -q --locked --no-default-features --features native-tls --root "$venv" \
    "$OHA_CRATE"
fi
